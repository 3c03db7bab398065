// CPU PNG: row filtering and the native encoder (see csrc/png.h).
//
// Filtering work split: blocks of kRowsPerItem rows taken from an atomic counter. A
// filtered row depends only on its own raw row and the raw row above it (both in the
// input), so blocks are independent and the output does not depend on the thread count.
// Adaptive mode filters each row five ways into per-thread scratch rows and keeps the one
// with the smallest sum of |int8|.
//
// Encoder work split: units of whole rows (csrc/png.h), taken from an atomic counter;
// each thread filters a unit into its scratch buffer (L2-sized), deflates it, computes its
// Adler-32, and writes its IDAT chunk at a precomputed worst-case offset. The calling
// thread then packs the chunks together and ends the last one with the combined Adler-32.
#include <algorithm>
#include <cstring>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "cpu/parallel.h"
#include "png.h"

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

// Branch-free Paeth over int16 lanes (no loop-carried dependency: a, b, c are raw
// input bytes; |a + b - 2c| <= 510), so the compiler vectorises it 8 lanes wide; same
// choice as paeth_predictor.
void filter_paeth(const uint8_t* __restrict raw, const uint8_t* __restrict prior, int64_t n, int64_t bpp, uint8_t* __restrict out) {
  for (int64_t i = 0; i < bpp && i < n; ++i) out[i] = (uint8_t)(raw[i] - prior[i]);  // a = c = 0: predictor is b
  for (int64_t i = bpp; i < n; ++i) {
    int16_t a = raw[i - bpp], b = prior[i], c = prior[i - bpp];
    int16_t pa = (int16_t)(b - c), pb = (int16_t)(a - c), pc = (int16_t)(pa + pb);
    pa = pa < 0 ? (int16_t)-pa : pa;
    pb = pb < 0 ? (int16_t)-pb : pb;
    pc = pc < 0 ? (int16_t)-pc : pc;
    int16_t pred = (pa <= pb && pa <= pc) ? a : (pb <= pc ? b : c);
    out[i] = (uint8_t)(raw[i] - pred);
  }
}

using FilterFn = void (*)(const uint8_t*, const uint8_t*, int64_t, int64_t, uint8_t*);
constexpr FilterFn kFilters[5] = {filter_none, filter_sub, filter_up, filter_avg, filter_paeth};

#if !defined(__SSE2__)
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
#endif

#if defined(__SSE2__)
// Adaptive filtering of one row, 16 bytes at a time, bit-identical to the scalar path:
// the Sub/Up/Average/Paeth rows go to scratch[0..4n) and sums[f] gets the exact sum of
// |int8| of filter f's row (None: the raw row). Paeth runs in two 8 x int16 halves.
// The first bpp bytes (no left neighbour) and the tail run the scalar math.
inline __m128i abs_i8(__m128i v) { return _mm_min_epu8(v, _mm_sub_epi8(_mm_setzero_si128(), v)); }
inline __m128i select(__m128i mask, __m128i yes, __m128i no) {
  return _mm_or_si128(_mm_and_si128(mask, yes), _mm_andnot_si128(mask, no));
}
inline __m128i paeth_i16(__m128i a, __m128i b, __m128i c) {
  const __m128i zero = _mm_setzero_si128();
  __m128i pa = _mm_sub_epi16(b, c), pb = _mm_sub_epi16(a, c);
  __m128i pc = _mm_add_epi16(pa, pb);
  pa = _mm_max_epi16(pa, _mm_sub_epi16(zero, pa));
  pb = _mm_max_epi16(pb, _mm_sub_epi16(zero, pb));
  pc = _mm_max_epi16(pc, _mm_sub_epi16(zero, pc));
  __m128i not_a = _mm_or_si128(_mm_cmpgt_epi16(pa, pb), _mm_cmpgt_epi16(pa, pc));
  return select(not_a, select(_mm_cmpgt_epi16(pb, pc), c, b), a);
}

void adaptive_row_sse2(const uint8_t* __restrict raw, const uint8_t* __restrict prior, int64_t n, int64_t bpp,
                       uint8_t* __restrict scratch, uint64_t sums[5]) {
  uint8_t* rows[4] = {scratch, scratch + n, scratch + 2 * n, scratch + 3 * n};
  for (int f = 0; f < 5; ++f) sums[f] = 0;
  auto scalar = [&](int64_t i) {
    const int32_t x = raw[i], b = prior[i], a = i >= bpp ? raw[i - bpp] : 0, c = i >= bpp ? prior[i - bpp] : 0;
    const uint8_t v[5] = {(uint8_t)x, (uint8_t)(x - a), (uint8_t)(x - b), (uint8_t)(x - ((a + b) >> 1)),
                          (uint8_t)(x - paeth_predictor((uint8_t)a, (uint8_t)b, (uint8_t)c))};
    for (int f = 0; f < 5; ++f) {
      int32_t s = (int8_t)v[f];
      sums[f] += (uint64_t)(s < 0 ? -s : s);
      if (f) rows[f - 1][i] = v[f];
    }
  };
  int64_t i = 0;
  for (; i < bpp && i < n; ++i) scalar(i);
  const __m128i zero = _mm_setzero_si128(), one = _mm_set1_epi8(1);
  __m128i acc[5] = {zero, zero, zero, zero, zero};
  for (; i + 16 <= n; i += 16) {
    const __m128i x = _mm_loadu_si128((const __m128i*)(raw + i));
    const __m128i a = _mm_loadu_si128((const __m128i*)(raw + i - bpp));
    const __m128i b = _mm_loadu_si128((const __m128i*)(prior + i));
    const __m128i c = _mm_loadu_si128((const __m128i*)(prior + i - bpp));
    // floor((a + b) / 2): pavgb rounds up, so take back the carry of odd sums
    const __m128i avg = _mm_sub_epi8(_mm_avg_epu8(a, b), _mm_and_si128(_mm_xor_si128(a, b), one));
    const __m128i pred = _mm_packus_epi16(
        paeth_i16(_mm_unpacklo_epi8(a, zero), _mm_unpacklo_epi8(b, zero), _mm_unpacklo_epi8(c, zero)),
        paeth_i16(_mm_unpackhi_epi8(a, zero), _mm_unpackhi_epi8(b, zero), _mm_unpackhi_epi8(c, zero)));
    const __m128i v[5] = {x, _mm_sub_epi8(x, a), _mm_sub_epi8(x, b), _mm_sub_epi8(x, avg), _mm_sub_epi8(x, pred)};
    for (int f = 0; f < 5; ++f) {
      acc[f] = _mm_add_epi64(acc[f], _mm_sad_epu8(abs_i8(v[f]), zero));
      if (f) _mm_storeu_si128((__m128i*)(rows[f - 1] + i), v[f]);
    }
  }
  for (int f = 0; f < 5; ++f) {
    uint64_t lanes[2];
    _mm_storeu_si128((__m128i*)lanes, acc[f]);
    sums[f] += lanes[0] + lanes[1];
  }
  for (; i < n; ++i) scalar(i);
}
#endif

// Rows [r0, r1) filtered into out (row r at out + (r - r0) * (row_bytes + 1)).
void filter_rows(const PngFilterParams& p, int64_t r0, int64_t r1, uint8_t* rows_out, const uint8_t* zeros,
                 uint8_t* scratch) {
  const int64_t n = p.row_bytes;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* raw = p.in + r * p.in_row_stride;
    const uint8_t* prior = r > 0 ? raw - p.in_row_stride : zeros;
    uint8_t* out = rows_out + (r - r0) * (n + 1);
    if (p.filter != kFilterAdaptive) {
      out[0] = (uint8_t)p.filter;
      kFilters[p.filter](raw, prior, n, p.bpp, out + 1);
      continue;
    }
    int best = 0;
#if defined(__SSE2__)
    uint64_t sums[5];
    adaptive_row_sse2(raw, prior, n, p.bpp, scratch, sums);
    for (int f = 1; f < 5; ++f)
      if (sums[f] < sums[best]) best = f;  // first minimum, as below
#else
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
#endif
    out[0] = (uint8_t)best;
    if (best == 0)
      memcpy(out + 1, raw, n);
    else
      memcpy(out + 1, scratch + (best - 1) * n, n);
  }
}

bool filter_params_ok(const PngFilterParams& p) {
  return p.filter >= 0 && p.filter <= kFilterAdaptive && p.bpp >= 1 && p.row_bytes >= 1 && p.height >= 0;
}

// ---------------------------------------------------------------- encoder layout -------

constexpr int64_t kChunkOverhead = 12;               // length, type, CRC
constexpr uint8_t kZlibHeader[2] = {0x78, 0x01};     // deflate, 32 KiB window, "fastest"
constexpr uint8_t kIdat[4] = {'I', 'D', 'A', 'T'};

int64_t unit_rows(const PngFilterParams& f) {
  const int64_t rb = f.row_bytes + 1;
  int64_t bytes = std::min(kPngMaxUnitBytes, std::max(kPngMinUnitBytes, f.height * rb / kPngUnitsPerImage));
  return std::max<int64_t>(1, bytes / rb);
}
int64_t num_units(const PngFilterParams& f) { return (f.height + unit_rows(f) - 1) / unit_rows(f); }
int64_t unit_capacity(const PngFilterParams& f, int64_t u) {
  int64_t rows = std::min(f.height, (u + 1) * unit_rows(f)) - u * unit_rows(f);
  return kChunkOverhead + sizeof kZlibHeader + 4 + deflate_piece_bound(rows * (f.row_bytes + 1));  // + Adler-32
}

void put_be32(uint8_t* p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

// IDAT chunk around body[0, len), which the caller has written at dst + 8; its size.
// crc_done > 0: crc is already the CRC of the type and the first crc_done body bytes.
int64_t finish_chunk(uint8_t* dst, int64_t len, uint32_t crc = 0, int64_t crc_done = 0) {
  put_be32(dst, (uint32_t)len);
  memcpy(dst + 4, kIdat, 4);
  if (crc_done == 0) crc = crc32_update(0, dst + 4, 4);
  put_be32(dst + 8 + len, crc32_update(crc, dst + 8 + crc_done, len - crc_done));
  return len + kChunkOverhead;
}

}  // namespace

int png_filter_cpu(const PngFilterParams& p) {
  if (!filter_params_ok(p)) return 1;
  const int64_t items = (p.height + kRowsPerItem - 1) / kRowsPerItem;
  int nt = std::max(1, (int)std::min<int64_t>(p.num_threads, items));
  if (p.filter == kFilterAdaptive) nt = threads_for_scratch(nt, 4.0 * p.row_bytes);  // candidate rows per thread
  std::vector<uint8_t> zeros(p.row_bytes, 0);
  std::vector<std::vector<uint8_t>> scratch(nt);
  if (p.filter == kFilterAdaptive)
    for (auto& s : scratch) s.resize(4 * p.row_bytes);
  parallel_items(items, nt, [&](int64_t i, int tid) {
    int64_t r0 = i * kRowsPerItem, r1 = std::min(p.height, r0 + kRowsPerItem);
    filter_rows(p, r0, r1, p.out + r0 * (p.row_bytes + 1), zeros.data(), scratch[tid].data());
  });
  return 0;
}

int64_t png_encode_bound(const PngEncodeParams& p) {
  int64_t total = p.head_len + p.tail_len + kChunkOverhead + 4;  // + the Adler-32 chunk
  for (int64_t u = 0, n = num_units(p.filter); u < n; ++u) total += unit_capacity(p.filter, u);
  return total;
}

int png_encode_cpu(const PngEncodeParams& p) {
  const PngFilterParams& f = p.filter;
  if (!filter_params_ok(f) || f.height < 1 || (p.level != kPngStored && p.level != kPngFast)) return 1;
  const int64_t rb = f.row_bytes + 1, rows = unit_rows(f), units = num_units(f);
  // run distances: the byte before, the pixel before, the row above and its neighbouring
  // pixels (diagonal structure), those within deflate's 32 KiB window
  int32_t dists[5];
  int nd = 0;
  for (int64_t d : {int64_t(1), f.bpp, rb, rb - f.bpp, rb + f.bpp})
    if (d >= 1 && d <= 32768 && std::find(dists, dists + nd, (int32_t)d) == dists + nd) dists[nd++] = (int32_t)d;

  std::vector<int64_t> offset(units + 1), used(units);
  std::vector<uint32_t> adler(units);
  uint32_t last_crc = 0;  // CRC of the last chunk's type and body, before the Adler-32
  offset[0] = p.head_len;
  for (int64_t u = 0; u < units; ++u) offset[u + 1] = offset[u] + unit_capacity(f, u);
  // Per thread: the unit's filtered rows, the adaptive filter's candidate rows and the
  // matcher's list, together under kScratchBudgetBytes, all allocated here: the workers
  // allocate nothing (a failure there could not be reported safely).
  const int64_t match_bytes = p.level == kPngStored ? 0 : deflate_scratch_bytes(rows * rb);
  const int64_t cand_bytes = f.filter == kFilterAdaptive ? 4 * f.row_bytes : 0;
  const int nt = threads_for_scratch(std::max(1, (int)std::min<int64_t>(f.num_threads, units)),
                                     (double)rows * rb + (double)cand_bytes + (double)match_bytes);
  std::vector<uint8_t> zeros(f.row_bytes, 0);
  std::vector<std::vector<uint8_t>> filtered(nt), scratch(nt);
  std::vector<std::vector<uint64_t>> matches(nt);  // uint64_t: 8-byte aligned
  for (int t = 0; t < nt; ++t) {
    filtered[t].resize(rows * rb);
    scratch[t].resize(cand_bytes);
    matches[t].resize((match_bytes + 7) / 8);
  }
  parallel_items(units, nt, [&](int64_t u, int tid) {
    const int64_t r0 = u * rows, r1 = std::min(f.height, r0 + rows), n = (r1 - r0) * rb;
    auto& buf = filtered[tid];
    filter_rows(f, r0, r1, buf.data(), zeros.data(), scratch[tid].data());
    uint8_t* dst = p.out + offset[u];
    int64_t len = 0;
    if (u == 0) {
      memcpy(dst + 8, kZlibHeader, sizeof kZlibHeader);
      len = sizeof kZlibHeader;
    }
    len += deflate_piece(buf.data(), n, dists, nd, p.level, u == units - 1, dst + 8 + len, matches[tid].data());
    if (u < units - 1) {
      used[u] = finish_chunk(dst, len);
    } else {
      memcpy(dst + 4, kIdat, 4);
      last_crc = crc32_update(0, dst + 4, len + 4);
      used[u] = 8 + len;  // no length or CRC yet: the chunk is finished after packing
    }
    adler[u] = adler32_update(1, buf.data(), n);
  });

  // pack the chunks (each moves left, in order), end the last with the Adler-32, add the tail
  if (p.head_len) memcpy(p.out, p.head, p.head_len);
  int64_t pos = p.head_len;
  uint32_t a = 1;
  for (int64_t u = 0; u < units; ++u) {
    memmove(p.out + pos, p.out + offset[u], used[u]);
    pos += used[u];
    const int64_t n = (std::min(f.height, (u + 1) * rows) - u * rows) * rb;
    a = u == 0 ? adler[0] : adler32_combine(a, adler[u], n);
  }
  const int64_t last_len = used[units - 1] - 8;  // body bytes of the last chunk
  pos -= used[units - 1];
  put_be32(p.out + pos + 8 + last_len, a);
  pos += finish_chunk(p.out + pos, last_len + 4, last_crc, last_len);
  if (p.tail_len) memcpy(p.out + pos, p.tail, p.tail_len);
  *p.out_len = pos + p.tail_len;
  return 0;
}

}  // namespace tbfast
