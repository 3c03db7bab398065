// CPU image grid kernels (see csrc/image_grid.h for the semantics).
//
// Work split: the canvas is cut into blocks of kRowsPerItem output rows; threads take
// blocks from an atomic counter. Each block writes only its own rows, and every input
// pixel is read exactly once (by the block that holds its canvas row), so the result does
// not depend on the thread count. The optional range pass (normalize without
// value_range) splits every image into row blocks the same way, keeps a min/max per
// block, and reduces them per image afterwards.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "cpu/parallel.h"
#include "dispatch.h"
#include "image_grid.h"

namespace tbfast {

namespace {

constexpr int64_t kRowsPerItem = 16;

// Compute-type load: float for everything but float64 (exact for 16-bit floats and
// uint8; torch's path casts integers to float32 too), double for float64.
template <typename T>
struct Compute {
  using type = float;
  static float get(const T* p) { return (float)Load<T>::get(p, 0); }
};
template <>
struct Compute<float> {
  using type = float;
  static float get(const float* p) { return *p; }
};
template <>
struct Compute<double> {
  using type = double;
  static double get(const double* p) { return *p; }
};

template <typename T>
inline uint8_t plain_byte(const T* p) {
  return convert_plain((float)Compute<T>::get(p));  // float64: rounded to float32 first
}
template <>
inline uint8_t plain_byte<uint8_t>(const uint8_t* p) {
  return *p;  // torch's scale factor 1: unchanged
}

struct NormArgs {
  float lo_f, hi_f, d_f;
  double lo, hi, d;
};

NormArgs make_norm(double lo, double hi) {
  double d = norm_divisor(lo, hi);
  return {(float)lo, (float)hi, (float)d, lo, hi, d};
}

template <typename T>
inline uint8_t norm_byte(const T* p, const NormArgs& a) {
  using C = typename Compute<T>::type;
  C v = Compute<T>::get(p);
  if constexpr (sizeof(C) == sizeof(double)) {
    return convert_plain((float)normalize_f64(v, a.lo, a.hi, a.d));
  } else {
    return convert_plain(normalize_f32(v, a.lo_f, a.hi_f, a.d_f));
  }
}

// One image row (W pixels, all channels) into the canvas at dst. Each channel is
// converted into a contiguous scratch run first (a loop the compiler vectorises), then
// interleaved with the canvas' compile-time channel count.
constexpr int64_t kRun = 256;

template <typename T, bool Norm, int Cout>
void convert_row(const T* src, const int64_t* st, int64_t W, int64_t C, const NormArgs& a, uint8_t* dst) {
  const int64_t sc = st[0], sw = st[2];
  uint8_t run[kRun];
  for (int64_t x0 = 0; x0 < W; x0 += kRun) {
    const int64_t m = W - x0 < kRun ? W - x0 : kRun;
    for (int64_t c = 0; c < C; ++c) {
      const T* s = src + c * sc + x0 * sw;
      if (sw == 1) {
        for (int64_t x = 0; x < m; ++x) run[x] = Norm ? norm_byte<T>(s + x, a) : plain_byte<T>(s + x);
      } else {
        for (int64_t x = 0; x < m; ++x) run[x] = Norm ? norm_byte<T>(s + x * sw, a) : plain_byte<T>(s + x * sw);
      }
      uint8_t* d = dst + x0 * Cout;
      if (C == 1) {  // gray: one channel, or repeated to RGB
        for (int64_t x = 0; x < m; ++x)
          for (int k = 0; k < Cout; ++k) d[x * Cout + k] = run[x];
      } else {
        for (int64_t x = 0; x < m; ++x) d[x * Cout + c] = run[x];
      }
    }
  }
}

template <typename T, bool Norm>
void convert_row_any(const T* src, const int64_t* st, int64_t W, int64_t C, int64_t Cout, const NormArgs& a,
                     uint8_t* dst) {
  if (Cout == 3)
    convert_row<T, Norm, 3>(src, st, W, C, a, dst);
  else if (Cout == 4)
    convert_row<T, Norm, 4>(src, st, W, C, a, dst);
  else
    convert_row<T, Norm, 1>(src, st, W, C, a, dst);
}

template <typename T>
void grid_block(const ImageGridParams& p, int64_t r0, int64_t r1, const NormArgs& global) {
  const int64_t row_len = p.out_width * p.out_channels;
  for (int64_t r = r0; r < r1; ++r) {
    uint8_t* row = p.out + r * p.out_row_stride;
    int64_t band, iy = 0;
    grid_row(p, r, &band, &iy);
    if (band < 0) {
      memset(row, p.pad_byte, row_len);
      continue;
    }
    // Gaps first (left border and the padding after each cell), then the cells.
    int64_t gap = p.padding * p.out_channels, cell = p.width * p.out_channels;
    for (int64_t g = 0; g <= p.cols; ++g) memset(row + g * (cell + gap), p.pad_byte, gap);
    for (int64_t gx = 0; gx < p.cols; ++gx) {
      int64_t k = band * p.cols + gx;
      uint8_t* dst = row + gap + gx * (cell + gap);
      if (k >= p.num_images) {
        memset(dst, p.pad_byte, cell);
        continue;
      }
      const int64_t* st = p.strides + 3 * k;
      const T* src = reinterpret_cast<const T*>(p.data[k]) + iy * st[1];
      if (p.norm == kNormNone) {
        convert_row_any<T, false>(src, st, p.width, p.channels, p.out_channels, global, dst);
      } else if (p.norm == kNormRange) {
        convert_row_any<T, true>(src, st, p.width, p.channels, p.out_channels, global, dst);
      } else {
        double lo = p.ranges[2 * k], hi = p.ranges[2 * k + 1];
        if (!(lo <= hi)) empty_range(&lo, &hi);
        NormArgs a = make_norm(lo, hi);
        convert_row_any<T, true>(src, st, p.width, p.channels, p.out_channels, a, dst);
      }
    }
  }
}

// Finite min/max of rows [y0, y1) of image k, in the compute type.
template <typename T>
void range_block(const ImageGridParams& p, int64_t k, int64_t y0, int64_t y1, double* mn_out, double* mx_out) {
  using C = typename Compute<T>::type;
  const int64_t* st = p.strides + 3 * k;
  const T* base = reinterpret_cast<const T*>(p.data[k]);
  C mn = std::numeric_limits<C>::infinity(), mx = -mn;
  for (int64_t c = 0; c < p.channels; ++c)
    for (int64_t y = y0; y < y1; ++y) {
      const T* s = base + c * st[0] + y * st[1];
      for (int64_t x = 0; x < p.width; ++x) {
        C v = Compute<T>::get(s + x * st[2]);
        if (v - v == 0) {  // finite
          mn = v < mn ? v : mn;
          mx = v > mx ? v : mx;
        }
      }
    }
  *mn_out = (double)mn;
  *mx_out = (double)mx;
}

bool valid(const ImageGridParams& p) {
  return p.dtype >= 0 && p.dtype < kNumDTypes && p.num_images >= 1 && p.height >= 1 &&
         p.width >= 1 && p.cols >= 1 && (p.channels == 1 || p.channels == 3 || p.channels == 4) &&
         (p.out_channels == p.channels || (p.channels == 1 && p.out_channels == 3));
}

// Threads for a pass over every input pixel.
int threads(const ImageGridParams& p) {
  const double bytes = (double)p.num_images * (double)p.channels * (double)p.height * (double)p.width *
                       (double)dtype_bytes(p.dtype);
  return threads_for_work((int)p.num_threads, bytes, kMinBytesPerThread);
}

}  // namespace

int image_ranges_cpu(const ImageGridParams& p) {
  if (!valid(p)) return 1;
  const int64_t blocks = (p.height + kRowsPerItem - 1) / kRowsPerItem;
  const int64_t items = p.num_images * blocks;
  std::vector<double> mn(items), mx(items);
  parallel_items(items, threads(p), [&](int64_t i, int) {
    int64_t k = i / blocks, b = i % blocks;
    int64_t y0 = b * kRowsPerItem, y1 = std::min(p.height, y0 + kRowsPerItem);
    TBF_DTYPE_SWITCH(p.dtype, scalar_t, range_block<scalar_t>(p, k, y0, y1, &mn[i], &mx[i]));
  });
  for (int64_t k = 0; k < p.num_images; ++k) {
    double lo = std::numeric_limits<double>::infinity(), hi = -lo;
    for (int64_t b = 0; b < blocks; ++b) {
      lo = std::min(lo, mn[k * blocks + b]);
      hi = std::max(hi, mx[k * blocks + b]);
    }
    p.ranges[2 * k] = lo;  // (inf, -inf) when nothing is finite
    p.ranges[2 * k + 1] = hi;
  }
  return 0;
}

int image_grid_cpu(const ImageGridParams& p) {
  if (!valid(p)) return 1;
  const NormArgs global = make_norm(p.lo, p.hi);
  const int64_t items = (p.out_height + kRowsPerItem - 1) / kRowsPerItem;
  parallel_items(items, threads(p), [&](int64_t i, int) {
    int64_t r0 = i * kRowsPerItem, r1 = std::min(p.out_height, r0 + kRowsPerItem);
    TBF_DTYPE_SWITCH(p.dtype, scalar_t, grid_block<scalar_t>(p, r0, r1, global));
  });
  return 0;
}

}  // namespace tbfast
