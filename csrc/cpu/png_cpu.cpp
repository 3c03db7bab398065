// CPU PNG row filtering (see csrc/image_grid.h, PNG section).
//
// Work split: blocks of kRowsPerItem rows taken from an atomic counter. A filtered row
// depends only on its own raw row and the raw row above it (both in the input), so blocks
// are independent and the output does not depend on the thread count. Adaptive mode
// filters each row five ways into per-thread scratch rows and keeps the one with the
// smallest sum of |int8|.
#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/parallel.h"
#include "image_grid.h"

namespace tbfast {

namespace {

constexpr int64_t kRowsPerItem = 32;

void filter_none(const uint8_t* __restrict raw, const uint8_t*, int64_t n, int64_t, uint8_t* __restrict out) { memcpy(out, raw, n); }

void filter_sub(const uint8_t* __restrict raw, const uint8_t*, int64_t n, int64_t bpp, uint8_t* __restrict out) {
  for (int64_t i = 0; i < bpp && i < n; ++i) out[i] = raw[i];
  for (int64_t i = bpp; i < n; ++i) out[i] = (uint8_t)(raw[i] - raw[i - bpp]);
}

void filter_up(const uint8_t* raw, const uint8_t* prior, int64_t n, int64_t, uint8_t* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = (uint8_t)(raw[i] - prior[i]);
}

void filter_avg(const uint8_t* __restrict raw, const uint8_t* __restrict prior, int64_t n, int64_t bpp, uint8_t* __restrict out) {
  for (int64_t i = 0; i < bpp && i < n; ++i) out[i] = (uint8_t)(raw[i] - (prior[i] >> 1));
  for (int64_t i = bpp; i < n; ++i) out[i] = (uint8_t)(raw[i] - (uint8_t)(((uint32_t)raw[i - bpp] + prior[i]) >> 1));
}

// Branch-free Paeth over int32 lanes (no loop-carried dependency: a, b, c are raw
// input bytes), so the compiler vectorises it; same choice as paeth_predictor.
void filter_paeth(const uint8_t* __restrict raw, const uint8_t* __restrict prior, int64_t n, int64_t bpp, uint8_t* __restrict out) {
  for (int64_t i = 0; i < bpp && i < n; ++i) out[i] = (uint8_t)(raw[i] - prior[i]);  // a = c = 0: predictor is b
  for (int64_t i = bpp; i < n; ++i) {
    int32_t a = raw[i - bpp], b = prior[i], c = prior[i - bpp];
    int32_t pa = b - c, pb = a - c, pc = a + b - 2 * c;
    pa = pa < 0 ? -pa : pa;
    pb = pb < 0 ? -pb : pb;
    pc = pc < 0 ? -pc : pc;
    int32_t pred = ((pa <= pb) & (pa <= pc)) ? a : (pb <= pc ? b : c);
    out[i] = (uint8_t)(raw[i] - pred);
  }
}

using FilterFn = void (*)(const uint8_t*, const uint8_t*, int64_t, int64_t, uint8_t*);
constexpr FilterFn kFilters[5] = {filter_none, filter_sub, filter_up, filter_avg, filter_paeth};

uint64_t abs_sum(const uint8_t* v, int64_t n) {
  uint32_t s = 0;  // < 2^31 for rows up to 2^24 bytes; longer rows are summed in pieces
  uint64_t total = 0;
  for (int64_t i0 = 0; i0 < n; i0 += (int64_t(1) << 24)) {
    int64_t i1 = std::min(n, i0 + (int64_t(1) << 24));
    s = 0;
    for (int64_t i = i0; i < i1; ++i) {
      int32_t x = (int8_t)v[i];
      s += (uint32_t)(x < 0 ? -x : x);
    }
    total += s;
  }
  return total;
}

void filter_block(const PngFilterParams& p, int64_t r0, int64_t r1, const uint8_t* zeros, uint8_t* scratch) {
  const int64_t n = p.row_bytes;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* raw = p.in + r * p.in_row_stride;
    const uint8_t* prior = r > 0 ? raw - p.in_row_stride : zeros;
    uint8_t* out = p.out + r * (n + 1);
    if (p.filter != kFilterAdaptive) {
      out[0] = (uint8_t)p.filter;
      kFilters[p.filter](raw, prior, n, p.bpp, out + 1);
      continue;
    }
    int best = 0;
    uint64_t best_sum = abs_sum(raw, n);  // None needs no scratch
    for (int f = 1; f < 5 && best_sum > 0; ++f) {
      uint8_t* cand = scratch + (f - 1) * n;
      kFilters[f](raw, prior, n, p.bpp, cand);
      uint64_t s = abs_sum(cand, n);
      if (s < best_sum) {
        best_sum = s;
        best = f;
      }
    }
    out[0] = (uint8_t)best;
    if (best == 0)
      memcpy(out + 1, raw, n);
    else
      memcpy(out + 1, scratch + (best - 1) * n, n);
  }
}

}  // namespace

int png_filter_cpu(const PngFilterParams& p) {
  if (p.filter < 0 || p.filter > kFilterAdaptive || p.bpp < 1 || p.row_bytes < 1 || p.height < 0) return 1;
  const int64_t items = (p.height + kRowsPerItem - 1) / kRowsPerItem;
  int nt = std::max(1, (int)std::min<int64_t>(p.num_threads, items));
  std::vector<uint8_t> zeros(p.row_bytes, 0);
  std::vector<std::vector<uint8_t>> scratch(nt);
  if (p.filter == kFilterAdaptive)
    for (auto& s : scratch) s.resize(4 * p.row_bytes);
  parallel_items(items, nt, [&](int64_t i, int tid) {
    int64_t r0 = i * kRowsPerItem, r1 = std::min(p.height, r0 + kRowsPerItem);
    filter_block(p, r0, r1, zeros.data(), scratch[tid].data());
  });
  return 0;
}

}  // namespace tbfast
