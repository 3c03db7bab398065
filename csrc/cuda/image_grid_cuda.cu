// CUDA image grid kernels (semantics: csrc/image_grid.h; the CPU twin they must match byte for
// byte: csrc/cpu/image_grid_cpu.cpp).
//
// Launches, all on p.stream, no host sync, no allocation:
//  * kNormPerImage / kNormDataRange only: init_ranges_kernel sets ranges[k] = (+inf, -inf),
//    then range_kernel reduces the finite min/max of every image in the compute type (float
//    for everything but float64, as the CPU's range_block): work items are (image, channel,
//    band of rows of about 16 K elements); a block walks an item's (row, x) positions with
//    coalesced reads, each warp reduces with shuffles and its lane 0 folds the result into
//    ranges[k] with 64-bit integer atomicMin/atomicMax on the float64 bit pattern (min/max
//    are order-independent, so the result is exact). An image without a finite value keeps
//    (inf, -inf), as image_ranges_cpu writes.
//  * canvas_kernel: one thread per canvas pixel (out_channels bytes), grid-stride over the
//    flattened out_height x out_width pixels (consecutive threads write consecutive pixels),
//    with (row, x) advanced incrementally. Each pixel finds its cell (grid_row's arithmetic,
//    in 32 bits when the canvas allows it), reads the pixel's channels through the image's
//    strides and converts them exactly as convert_row_any / plain_byte / norm_byte do; gaps,
//    padding rows and empty cells get pad_byte. Bytes between out_width * out_channels and
//    out_row_stride are not touched (as on the CPU).
//    kNormRange: the host forms the NormArgs from (lo, hi) like make_norm. kNormPerImage:
//    each pixel reads its image's range (empty -> [0, 1]) and forms them. kNormDataRange:
//    each block first reduces ranges over all images (min of the lows, max of the highs;
//    empty -> [0, 1]) and forms them once; the grid is at most a few waves, so this costs
//    N * 16 bytes of cached reads per block.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "cuda/device_cuda.h"
#include "dispatch.h"
#include "image_grid.h"

namespace tbfast {

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int64_t kRangeItemElems = 16384;  // elements per range work item (about)
constexpr int kBlocksPerSM = 8;             // grid cap: a few waves of persistent blocks

enum CanvasMode : int { kModePlain = 0, kModeGlobal = 1, kModePerImage = 2 };

// The CPU's NormArgs / make_norm: divisor formed in double, then each value rounded to float.
struct Norm {
  float lo_f, hi_f, d_f;
  double lo, hi, d;
};

TBF_HD Norm make_norm_args(double lo, double hi) {
  const double d = norm_divisor(lo, hi);
  return Norm{(float)lo, (float)hi, (float)d, lo, hi, d};
}

// Compute-type load, exactly the CPU's Compute<T>::get: (float)Load<T>::get for everything
// but float32 (itself) and float64 (double). Integers go through double first (int64, uint32
// and uint64 values above 2^24 round twice, as on the CPU).
template <typename T>
struct Pix {
  using C = float;
  __device__ static float get(const T* p) { return (float)(double)*p; }
};
template <>
struct Pix<bool> {
  using C = float;
  __device__ static float get(const bool* p) { return *reinterpret_cast<const uint8_t*>(p) ? 1.0f : 0.0f; }
};
template <>
struct Pix<half_bits> {
  using C = float;
  __device__ static float get(const half_bits* p) {
    return __half2float(__ushort_as_half(*reinterpret_cast<const unsigned short*>(p)));
  }
};
template <>
struct Pix<bf16_bits> {
  using C = float;
  __device__ static float get(const bf16_bits* p) {
    return __uint_as_float((uint32_t)(*reinterpret_cast<const unsigned short*>(p)) << 16);
  }
};
template <>
struct Pix<float> {
  using C = float;
  __device__ static float get(const float* p) { return *p; }
};
template <>
struct Pix<double> {
  using C = double;
  __device__ static double get(const double* p) { return *p; }
};

// The canvas byte of one input value: plain_byte / norm_byte.
template <typename T, bool kNorm>
__device__ __forceinline__ uint8_t pixel_byte(const T* s, const Norm& a) {
  using C = typename Pix<T>::C;
  if constexpr (!kNorm) {
    if constexpr (std::is_same<T, uint8_t>::value) {
      return *s;  // torch's scale factor 1: unchanged
    } else {
      return convert_plain((float)Pix<T>::get(s));  // float64: rounded to float32 first
    }
  } else {
    const C v = Pix<T>::get(s);
    if constexpr (sizeof(C) == sizeof(double)) {
      return convert_plain((float)normalize_f64(v, a.lo, a.hi, a.d));
    } else {
      return convert_plain(normalize_f32(v, a.lo_f, a.hi_f, a.d_f));
    }
  }
}

__device__ __forceinline__ double dinf() { return __longlong_as_double(0x7FF0000000000000LL); }

// Unsigned 32-bit division when the operands are known to fit (canvas below 2^31 x 2^31).
__device__ __forceinline__ int64_t div_fast(int64_t a, int64_t b, bool small) {
  return small ? (int64_t)((uint32_t)a / (uint32_t)b) : a / b;
}

// ---- ranges ----------------------------------------------------------------------------------

__global__ void __launch_bounds__(kThreads) init_ranges_kernel(double* ranges, int64_t n) {
  const int64_t S = (int64_t)gridDim.x * kThreads;
  for (int64_t k = (int64_t)blockIdx.x * kThreads + threadIdx.x; k < n; k += S) {
    ranges[2 * k] = dinf();
    ranges[2 * k + 1] = -dinf();
  }
}

// min/max of doubles through the integer order of their bit patterns (no NaN; -0.0 is turned
// into +0.0 first, which changes no canvas byte). For v >= 0 the signed order of the bits is
// the order of the values and any stored negative value (negative as a signed integer) stays
// below; for v < 0 the unsigned order of the bits is the reverse order of the values, and any
// stored non-negative value (below 2^63 unsigned) compares accordingly.
__device__ __forceinline__ void atomic_min_f64(double* a, double v) {
  v = v == 0.0 ? 0.0 : v;
  if (v >= 0.0)
    atomicMin(reinterpret_cast<long long*>(a), __double_as_longlong(v));
  else
    atomicMax(reinterpret_cast<unsigned long long*>(a), (unsigned long long)__double_as_longlong(v));
}
__device__ __forceinline__ void atomic_max_f64(double* a, double v) {
  v = v == 0.0 ? 0.0 : v;
  if (v >= 0.0)
    atomicMax(reinterpret_cast<long long*>(a), __double_as_longlong(v));
  else
    atomicMin(reinterpret_cast<unsigned long long*>(a), (unsigned long long)__double_as_longlong(v));
}

__device__ __forceinline__ float min_of(float a, float b) { return fminf(a, b); }
__device__ __forceinline__ float max_of(float a, float b) { return fmaxf(a, b); }
__device__ __forceinline__ double min_of(double a, double b) { return fmin(a, b); }
__device__ __forceinline__ double max_of(double a, double b) { return fmax(a, b); }

// Work item `it` = (image k, channel c, band b of rows [b * rows_per_item, ...)); the block's
// threads take the band's elements in (row, x) order, thread t starting at element t and
// stepping by kThreads (step_y rows and step_x columns; x < W always).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    range_kernel(const ImageGridParams p, int64_t rows_per_item, int64_t bands, int64_t num_items, int64_t step_y,
                 int64_t step_x) {
  using C = typename Pix<T>::C;
  const int tid = threadIdx.x, lane = tid & 31;
  const int64_t W = p.width;
  const int64_t y_start = tid / W, x_start = tid - (tid / W) * W;
  for (int64_t it = blockIdx.x; it < num_items; it += gridDim.x) {  // block-uniform
    const int64_t kc = it / bands;
    const int64_t b = it - kc * bands;
    const int64_t k = kc / p.channels;
    const int64_t c = kc - k * p.channels;
    const int64_t y0 = b * rows_per_item;
    const int64_t y1 = y0 + rows_per_item < p.height ? y0 + rows_per_item : p.height;
    const int64_t* st = p.strides + 3 * k;
    const int64_t s0 = st[0], s1 = st[1], s2 = st[2];
    const T* base = reinterpret_cast<const T*>(p.data[k]) + c * s0;
    C mn = (C)dinf(), mx = (C)-dinf();
    int64_t y = y0 + y_start, x = x_start;
    while (y < y1) {
      const C v = Pix<T>::get(base + y * s1 + x * s2);
      if (v - v == C(0)) {  // finite
        mn = v < mn ? v : mn;
        mx = v > mx ? v : mx;
      }
      x += step_x;
      y += step_y;
      if (x >= W) {
        x -= W;
        ++y;
      }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      mn = min_of(mn, __shfl_xor_sync(0xFFFFFFFFu, mn, o));
      mx = max_of(mx, __shfl_xor_sync(0xFFFFFFFFu, mx, o));
    }
    if (lane == 0 && mn <= mx) {
      atomic_min_f64(p.ranges + 2 * k, (double)mn);
      atomic_max_f64(p.ranges + 2 * k + 1, (double)mx);
    }
  }
}

// ---- canvas ----------------------------------------------------------------------------------

template <typename T, int kMode>
__global__ void __launch_bounds__(kThreads)
    canvas_kernel(const ImageGridParams p, Norm g, int data_range, int small, int64_t total, int64_t step_r,
                  int64_t step_x) {
  const int tid = threadIdx.x;
  if (kMode == kModeGlobal && data_range) {  // block-uniform: a kernel argument
    __shared__ double red_lo[kWarps], red_hi[kWarps];
    __shared__ Norm shared_norm;
    double lo = dinf(), hi = -dinf();
    for (int64_t k = tid; k < p.num_images; k += kThreads) {
      const double a = p.ranges[2 * k], b = p.ranges[2 * k + 1];
      lo = a < lo ? a : lo;
      hi = b > hi ? b : hi;
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const double a = __shfl_xor_sync(0xFFFFFFFFu, lo, o), b = __shfl_xor_sync(0xFFFFFFFFu, hi, o);
      lo = a < lo ? a : lo;
      hi = b > hi ? b : hi;
    }
    if ((tid & 31) == 0) {
      red_lo[tid >> 5] = lo;
      red_hi[tid >> 5] = hi;
    }
    __syncthreads();
    if (tid == 0) {
      lo = red_lo[0];
      hi = red_hi[0];
      for (int w = 1; w < kWarps; ++w) {
        lo = red_lo[w] < lo ? red_lo[w] : lo;
        hi = red_hi[w] > hi ? red_hi[w] : hi;
      }
      if (!(lo <= hi)) empty_range(&lo, &hi);  // tbfast.image.global_range
      shared_norm = make_norm_args(lo, hi);
    }
    __syncthreads();
    g = shared_norm;
  }

  const int64_t OW = p.out_width, Cout = p.out_channels, Cin = p.channels;
  const int64_t W = p.width, H = p.height, pad = p.padding;
  const int64_t cell_w = W + pad, cell_h = H + pad;
  const uint8_t pb = p.pad_byte;
  const bool sm = small != 0;
  const int64_t S = (int64_t)gridDim.x * kThreads;
  int64_t i = (int64_t)blockIdx.x * kThreads + tid;
  int64_t r = div_fast(i, OW, sm && i < (int64_t(1) << 31)), x = i - r * OW;
  for (; i < total; i += S) {
    uint8_t* dst = p.out + r * p.out_row_stride + x * Cout;
    // Cell of (r, x): grid_row for the row, the same arithmetic for the column.
    int64_t k = -1, iy = 0, ix = 0;
    const int64_t rr = r - pad, xx = x - pad;
    if (rr >= 0 && xx >= 0) {
      const int64_t band = div_fast(rr, cell_h, sm);
      const int64_t gx = div_fast(xx, cell_w, sm);
      iy = rr - band * cell_h;
      ix = xx - gx * cell_w;
      if (iy < H && ix < W && gx < p.cols) {
        k = band * p.cols + gx;
        if (k >= p.num_images) k = -1;
      }
    }
    if (k < 0) {
      for (int64_t o = 0; o < Cout; ++o) dst[o] = pb;
    } else {
      const int64_t* st = p.strides + 3 * k;
      const T* src = reinterpret_cast<const T*>(p.data[k]) + iy * st[1] + ix * st[2];
      Norm a = g;
      if (kMode == kModePerImage) {
        double lo = p.ranges[2 * k], hi = p.ranges[2 * k + 1];
        if (!(lo <= hi)) empty_range(&lo, &hi);
        a = make_norm_args(lo, hi);
      }
      constexpr bool kNorm = kMode != kModePlain;
      if (Cin == 1) {  // gray: one channel, or repeated to RGB
        const uint8_t v = pixel_byte<T, kNorm>(src, a);
        for (int64_t o = 0; o < Cout; ++o) dst[o] = v;
      } else {  // Cout == Cin (3 or 4)
        const int64_t s0 = st[0];
        uint8_t v[4];
#pragma unroll
        for (int ch = 0; ch < 4; ++ch)
          if (ch < Cin) v[ch] = pixel_byte<T, kNorm>(src + ch * s0, a);
#pragma unroll
        for (int ch = 0; ch < 4; ++ch)
          if (ch < Cin) dst[ch] = v[ch];
      }
    }
    x += step_x;
    r += step_r;
    if (x >= OW) {
      x -= OW;
      ++r;
    }
  }
}

// ---- host side -------------------------------------------------------------------------------

int fail(cudaError_t err, const char* where) {
  cuda_record_error((int)err, where);
  return kCudaError;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

template <typename T>
int launch_ranges(const ImageGridParams& p, int sms, cudaStream_t stream) {
  int64_t grid = ceil_div(p.num_images, kThreads);
  if (grid > (int64_t)sms * kBlocksPerSM) grid = (int64_t)sms * kBlocksPerSM;
  init_ranges_kernel<<<(unsigned)grid, kThreads, 0, stream>>>(p.ranges, p.num_images);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return fail(err, "image_grid_cuda: init ranges kernel launch");

  int64_t rows_per_item = kRangeItemElems / p.width;
  if (rows_per_item < 1) rows_per_item = 1;
  if (rows_per_item > p.height) rows_per_item = p.height;
  const int64_t bands = ceil_div(p.height, rows_per_item);
  const int64_t items = p.num_images * p.channels * bands;
  grid = items < (int64_t)sms * kBlocksPerSM ? items : (int64_t)sms * kBlocksPerSM;
  range_kernel<T><<<(unsigned)grid, kThreads, 0, stream>>>(p, rows_per_item, bands, items, kThreads / p.width,
                                                            kThreads % p.width);
  err = cudaGetLastError();
  if (err != cudaSuccess) return fail(err, "image_grid_cuda: range kernel launch");
  return kOk;
}

template <typename T>
int launch_canvas(const ImageGridParams& p, int sms, cudaStream_t stream) {
  const int64_t total = p.out_height * p.out_width;
  int64_t grid = ceil_div(total, kThreads);
  if (grid > (int64_t)sms * kBlocksPerSM) grid = (int64_t)sms * kBlocksPerSM;
  const int64_t S = grid * kThreads;
  const int64_t step_r = S / p.out_width, step_x = S % p.out_width;
  // 32-bit divisions when every dividend and divisor fits in 31 bits.
  const int64_t lim = int64_t(1) << 31;
  const int small = p.out_height < lim && p.out_width < lim && p.height + p.padding < lim && p.width + p.padding < lim;
  const Norm g = make_norm_args(p.lo, p.hi);
  const int data_range = p.norm == kNormDataRange;
  switch (p.norm) {
    case kNormNone:
      canvas_kernel<T, kModePlain><<<(unsigned)grid, kThreads, 0, stream>>>(p, g, 0, small, total, step_r, step_x);
      break;
    case kNormPerImage:
      canvas_kernel<T, kModePerImage><<<(unsigned)grid, kThreads, 0, stream>>>(p, g, 0, small, total, step_r, step_x);
      break;
    default:  // kNormRange, kNormDataRange
      canvas_kernel<T, kModeGlobal>
          <<<(unsigned)grid, kThreads, 0, stream>>>(p, g, data_range, small, total, step_r, step_x);
      break;
  }
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return fail(err, "image_grid_cuda: canvas kernel launch");
  return kOk;
}

template <typename T>
int run(const ImageGridParams& p, int sms, cudaStream_t stream) {
  if (p.norm == kNormPerImage || p.norm == kNormDataRange) {
    const int st = launch_ranges<T>(p, sms, stream);
    if (st != kOk) return st;
  }
  return launch_canvas<T>(p, sms, stream);
}

}  // namespace

int image_grid_cuda(const ImageGridParams& p) {
  if (p.dtype < 0 || p.dtype >= kNumDTypes) return kBadDType;
  if (p.norm < kNormNone || p.norm > kNormDataRange) return kBadMode;
  if (p.num_images < 1 || p.height < 1 || p.width < 1 || p.cols < 1 || p.rows < 1 || p.padding < 0 ||
      p.out_height < 1 || p.out_width < 1)
    return kBadArgument;
  const int64_t dim_max = int64_t(1) << 40;  // keeps H + padding, W + padding, ... far from overflow
  if (p.height > dim_max || p.width > dim_max || p.padding > dim_max || p.cols > dim_max || p.rows > dim_max ||
      p.out_height > dim_max || p.out_width > dim_max)
    return kBadArgument;
  if (!(p.channels == 1 || p.channels == 3 || p.channels == 4)) return kBadArgument;
  if (!(p.out_channels == p.channels || (p.channels == 1 && p.out_channels == 3))) return kBadArgument;
  if (!p.data || !p.strides || !p.out) return kBadArgument;
  if (p.out_width > INT64_MAX / 4 / p.out_height || p.out_row_stride < p.out_width * p.out_channels)
    return kBadArgument;
  if ((p.norm == kNormPerImage || p.norm == kNormDataRange) && !p.ranges) return kBadArgument;

  int dev = 0, sms = 0;
  cudaError_t err = cudaGetDevice(&dev);
  if (err != cudaSuccess) return fail(err, "image_grid_cuda: cudaGetDevice");
  err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  if (err != cudaSuccess) return fail(err, "image_grid_cuda: cudaDeviceGetAttribute");
  if (sms < 1) sms = 1;
  cudaStream_t stream = static_cast<cudaStream_t>(p.stream);

  int st = kBadDType;
  TBF_DTYPE_SWITCH(p.dtype, scalar_t, st = run<scalar_t>(p, sms, stream));
  return st;
}

}  // namespace tbfast
