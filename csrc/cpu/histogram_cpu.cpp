// CPU histogram kernels (see csrc/histogram.h for the semantics).
//
// Work split: every tensor is cut into fixed chunks of kChunk elements; the chunks of all
// tensors form one work list that threads take from an atomic counter. A thread buckets its
// chunks into a private scratch histogram (int32 counters) and adds it into the tensor's
// row with integer atomics (exact and order-free) when it moves to another tensor, before
// its counters could overflow, and at the end: consecutive chunks of one tensor (threads
// take chunks in order) share one flush. Each chunk's float statistics go to their own
// slot and are reduced per tensor in chunk order afterwards, so sums are deterministic
// whatever the number of threads. The private scratch histograms together stay under
// kScratchBudgetBytes (csrc/cpu/parallel.h): huge bin counts run on fewer threads, which
// changes no count and no sum.
//
// Inner loops (each with AVX2 when the CPU has it, else scalar code that computes the same
// statistic lanes in the same order, so no result depends on the CPU; tests compare the
// SIMD levels of csrc/cpu/simd.h bit for bit):
//  * float32 / float16 / bfloat16 with TensorBoard's default edges on an AVX-512 CPU: the
//    slot computed arithmetically from the exponent and mantissa, exact table slot near an
//    edge (f32_chunk_geo512), statistics in 16 lanes. 0.31 ns per element and core with the
//    statistics, against 0.54 for the table loop below without them (Zen 5, one thread;
//    benchmarks/micro/histogram_loops.cpp).
//  * float32 / float16 / bfloat16 with edges whose float32 lookup is valid (the default
//    edges): statistics in 16 fixed lanes and an integer-only bucket: ordered bits -> one
//    table load -> one compare.
//  * every other dtype (float64, integers, bool) with TensorBoard's default edges on an
//    AVX-512 CPU: the same computed slot, from the double's exponent and top 23 mantissa
//    bits, exact f64 table slot near an edge (d_chunk_geo512), statistics in 8 double
//    lanes. 0.42-0.46 ns per element and core, against 0.75-0.89 for the table loop below.
//  * every other dtype (float64, integers, bool) and the float32 family when its table
//    cannot take the edges: values converted to double exactly as Load<T> does (AVX2
//    int -> double conversions that round like a cast), statistics in 8 double lanes, and
//    with edges whose f64 table is valid (the default edges) the bucket fused in the same
//    way: ordered bits of the double -> one table load -> one compare.
//  * otherwise (dense user edges, uniform bins): the statistics as above, then the
//    EdgeKey lookup with binary search inside a key, or the uniform formula (AVX2 for 8
//    values at a time).
//  * bfloat16 tensors of kPatternMin elements or more, every bins mode: a 16-bit float
//    has only 65536 bit patterns, so each chunk is counted per pattern (one load and one
//    increment per element, nothing else) into the thread's pattern counters. These are
//    added into the tensor's int64 pattern totals (exact, order-free) when the thread
//    moves to another tensor, before they could overflow, and at the end; the slot counts
//    and the statistics are then derived once per tensor from its totals, in pattern
//    order. Each term count * value and count * value^2 is exact in double (8 + 45 and
//    16 + 37 significant bits), so only the summation over the distinct patterns rounds,
//    and the statistics depend on the tensor's multiset of values alone: not on the
//    chunking, the threads, the SIMD level or the other tensors of the call. A call holds
//    the totals of at most kPatternTensorsPerGroup tensors at a time (512 KiB each):
//    longer lists run in consecutive groups of tensors. Only the 16-pattern groups that
//    were counted in are copied, added and scanned (PatternTotals): 50 tensors of 1.21M
//    cost 33-36 us each beyond one tensor of their 60.5M values, against 49-60 us when
//    every tensor's 65536 totals were written and scanned. Measured at 10^8 on one core:
//    bfloat16 22.9-23.4 ms (24.6 ms when each 2^20-element chunk was scanned on its own;
//    12.2 ms on 2 cores). float16 stays on the float32 kernel (0.30 ns per element
//    and core on any data): with 8x more patterns per binade its counters spill out of L1
//    (benchmarks/micro/pattern_counting.cpp).
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <mutex>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TBF_X86 1
#endif

#include "cpu/parallel.h"
#include "cpu/simd.h"
#include "dispatch.h"
#include "histogram.h"

namespace tbfast {

namespace {

constexpr int64_t kChunk = int64_t(1) << 16;
// bfloat16 tensors of at least kPatternMin elements take the pattern path, in chunks of
// kPatternChunk (no per-chunk cost beyond the counting: patterns are scanned once per
// tensor, so the chunks only balance the threads).
constexpr int64_t kPatternMin = int64_t(1) << 20;
constexpr int64_t kPatternChunk = int64_t(1) << 18;
constexpr int64_t kPatternTensorsPerGroup = 16;
constexpr int64_t kPatterns = int64_t(1) << 16;
constexpr double kInf = std::numeric_limits<double>::infinity();

struct Chunk {
  int64_t tensor, begin, end;
  bool pattern;  // counted per 16-bit pattern (see the header)
};

struct ChunkStats {
  double mn, mx, sum, sumsq;
  int64_t nan, posinf, neginf;
};

// Per-thread scratch histogram with two extra "trash" slots: slot 0 takes values below
// the first edge, slot num_bins + 1 values above the last, so the inner loop never
// branches on the range. Bin b lives in slot b + 1. Each slot has two interleaved
// counters (even and odd elements) so that runs of equal bins do not serialise on one
// memory location. Counters are int32 (half the cache footprint); flushed every chunk.
// Which tensor's counts a set of per-thread int32 counters holds, and how many elements
// they took since their last flush.
struct Held {
  int64_t tensor = -1;  // -1: none
  int64_t pending = 0;
};

struct Scratch {
  std::vector<int32_t> slots;
  std::vector<int32_t> patterns;  // pattern path: kPatterns counters
  Held slots_held, patterns_held;
};

// Before counting chunk c into counters: they must hold c's tensor, and room for c's
// elements in int32, else flush_them() empties them first (and resets held). Consecutive
// chunks of one tensor (the common case: threads take chunks in order) share one flush.
template <typename Flush>
void hold(Held& held, const Chunk& c, Flush flush_them) {
  if (held.tensor != c.tensor || held.pending + (c.end - c.begin) > (int64_t)INT32_MAX) flush_them();
  held.tensor = c.tensor;
  held.pending += c.end - c.begin;
}

// The pattern tensors' int64 totals: tensor t's kPatterns counters start at
// counts[index[t] * kPatterns] (index -1: not a pattern tensor), in groups of
// kPatternGroup patterns (one cache line of a thread's int32 counters). Only the groups
// that a thread counted something in are ever written: a flush copies such a group into
// the totals the first time and adds to it later, and marks it in the tensor's bitmap of
// touched groups, which the scan then visits alone. So nothing is zeroed up front, and a
// tensor whose values take a few thousand patterns costs a few hundred groups, not 65536
// counters (untouched totals are never written, nor read).
constexpr int64_t kPatternGroup = 16;
constexpr int64_t kPatternGroups = kPatterns / kPatternGroup;
constexpr int64_t kTouchedWords = kPatternGroups / 64;  // bitmap words per tensor

struct PatternTotals {
  std::vector<int64_t> index;
  std::unique_ptr<int64_t[]> counts;
  std::vector<uint64_t> touched;  // per pattern tensor: kTouchedWords words, bit g = group g valid
  std::mutex lock;                // held by a flush (one pass over one thread's counters)
  int64_t* of(int64_t t) { return counts.get() + index[t] * kPatterns; }
  uint64_t* touched_of(int64_t t) { return touched.data() + index[t] * kTouchedWords; }
};

bool pattern_path(const HistogramParams& p, int64_t t) {
  return p.dtypes[t] == kBFloat16 && p.numels[t] >= kPatternMin;
}

std::vector<Chunk> make_chunks(const HistogramParams& p) {
  std::vector<Chunk> chunks;
  for (int64_t t = 0; t < p.num_tensors; ++t) {
    const bool pattern = pattern_path(p, t);
    const int64_t step = pattern ? kPatternChunk : kChunk;
    for (int64_t b = 0; b < p.numels[t]; b += step) chunks.push_back({t, b, std::min(b + step, p.numels[t]), pattern});
  }
  return chunks;
}

void count_nonfinite(double v, ChunkStats& st) {
  if (v != v)
    st.nan++;
  else if (v > 0)
    st.posinf++;
  else
    st.neginf++;
}

// ======================================================================================
// Generic path: any dtype, values as double.
// ======================================================================================

// Slot of finite v among the edges: upper_bound(edges, v), with v == last edge moved
// into the last (closed) bin.
struct EdgesSlot {
  const double* edges;
  const EdgeKey* keys;
  double last;
  int64_t operator()(double v) const { return edges_upper_bound(v, edges, keys) - (v == last); }
};

struct UniformSlot {
  UniformBins bins;
  int64_t operator()(double v) const { return bins.bucket(v) + 1; }
};

template <typename T, typename SlotFn>
void chunk_count(const T* x, int64_t begin, int64_t end, int32_t* slots, SlotFn slot) {
  int64_t i = begin;
  for (; i + 2 <= end; i += 2) {
    double v0 = Load<T>::get(x, i), v1 = Load<T>::get(x, i + 1);
    if (__builtin_expect(is_finite(v0), 1)) slots[2 * slot(v0)]++;
    if (__builtin_expect(is_finite(v1), 1)) slots[2 * slot(v1) + 1]++;
  }
  if (i < end) {
    double v = Load<T>::get(x, i);
    if (is_finite(v)) slots[2 * slot(v)]++;
  }
}

// ======================================================================================
// float32-family path. Statistics live in 16 lanes: lane j takes elements begin + 16k + j
// (one AVX-512 vector, or two AVX2 vectors, per step).
// ======================================================================================

constexpr int kF32Lanes = 16;

struct Lanes {
  float mn[kF32Lanes], mx[kF32Lanes];
  double s[kF32Lanes], q[kF32Lanes];
};

void lanes_init(Lanes& L) {
  for (int j = 0; j < kF32Lanes; ++j) {
    L.mn[j] = std::numeric_limits<float>::infinity();
    L.mx[j] = -std::numeric_limits<float>::infinity();
    L.s[j] = L.q[j] = 0.0;
  }
}

ChunkStats lanes_finish(const Lanes& L, const ChunkStats& nonfinite) {
  ChunkStats st = nonfinite;
  float mn = L.mn[0], mx = L.mx[0];
  for (int j = 1; j < kF32Lanes; ++j) {
    mn = std::min(mn, L.mn[j]);
    mx = std::max(mx, L.mx[j]);
  }
  st.mn = mn;
  st.mx = mx;
  auto tree16 = [](const double* a) {
    auto t8 = [](const double* b) { return ((b[0] + b[1]) + (b[2] + b[3])) + ((b[4] + b[5]) + (b[6] + b[7])); };
    return t8(a) + t8(a + 8);
  };
  st.sum = tree16(L.s);
  st.sumsq = tree16(L.q);
  return st;
}

template <typename T>
inline float load_f32(const T* x, int64_t i);
template <>
inline float load_f32<float>(const float* x, int64_t i) {
  return x[i];
}
template <>
inline float load_f32<half_bits>(const half_bits* x, int64_t i) {
  return half_to_float(x[i].bits);
}
template <>
inline float load_f32<bf16_bits>(const bf16_bits* x, int64_t i) {
  return bf16_to_float(x[i].bits);
}

// One element into lane j: the scalar definition of what the SIMD loop computes.
inline void f32_one(float v, int j, Lanes& L, ChunkStats& nf, int32_t* slots, const uint64_t* tab) {
  uint32_t bits;
  memcpy(&bits, &v, 4);
  if ((bits & 0x7F800000u) == 0x7F800000u) {
    count_nonfinite(v, nf);
    return;
  }
  L.mn[j] = std::min(L.mn[j], v);
  L.mx[j] = std::max(L.mx[j], v);
  double d = v;
  L.s[j] += d;
  L.q[j] += d * d;
  if (slots) {
    float c = v + 0.0f;  // -0.0 -> +0.0
    memcpy(&bits, &c, 4);
    slots[2 * f32_slot(ordered_bits_f32(bits), tab) + (j & 1)]++;
  }
}

template <typename T>
void f32_chunk_scalar(const T* x, int64_t begin, int64_t end, int32_t* slots, const uint64_t* tab,
                      Lanes& L, ChunkStats& nf) {
  for (int64_t i = begin; i < end; ++i) f32_one(load_f32<T>(x, i), (int)((i - begin) % kF32Lanes), L, nf, slots, tab);
}

// Elements [i, end) of a chunk that starts at begin, after a SIMD loop: the same lanes as
// the scalar definition (statistics dropped when the caller wants none).
template <typename T>
void f32_tail(const T* x, int64_t i, int64_t begin, int64_t end, int32_t* slots, const uint64_t* tab,
              bool with_stats, Lanes& L, ChunkStats& nf) {
  for (; i < end; ++i) {
    float v = load_f32<T>(x, i);
    if (with_stats) {
      f32_one(v, (int)((i - begin) % kF32Lanes), L, nf, slots, tab);
    } else {
      Lanes dummy = L;
      f32_one(v, (int)((i - begin) % kF32Lanes), dummy, nf, slots, tab);
    }
  }
}

// ======================================================================================
// double path: every other dtype (and the float32 family when its table cannot take the
// edges), values converted to double exactly as Load<T>::get. Statistics in 8 fixed
// lanes (lane j takes elements begin + 8k + j), AVX2 when the CPU has it, else scalar
// code that computes the same lanes. With edges whose f64 table is valid (the default
// edges) the bucket is fused in: ordered bits -> one table load -> one compare.
// ======================================================================================

// Slot + 1 of a finite double from its ordered bits (EdgeLookup::f64): the counters are
// addressed through slots - 2, so slot + 1 = 1 is slot 0 ("dropped").
inline int64_t f64_slot1(uint64_t ord, const uint64_t* tab) {
  uint64_t e = tab[ord >> 48];
  return (int64_t)(e & 0xFFFFu) + (((ord << 16) | 0xFFFFu) >= e);
}

struct DLanes {
  double mn[8], mx[8], s[8], q[8];
};

void dlanes_init(DLanes& L) {
  for (int j = 0; j < 8; ++j) {
    L.mn[j] = kInf;
    L.mx[j] = -kInf;
    L.s[j] = L.q[j] = 0.0;
  }
}

ChunkStats dlanes_finish(const DLanes& L, const ChunkStats& nonfinite) {
  ChunkStats st = nonfinite;
  double mn = L.mn[0], mx = L.mx[0];
  for (int j = 1; j < 8; ++j) {
    mn = L.mn[j] < mn ? L.mn[j] : mn;
    mx = L.mx[j] > mx ? L.mx[j] : mx;
  }
  st.mn = mn;
  st.mx = mx;
  st.sum = ((L.s[0] + L.s[1]) + (L.s[2] + L.s[3])) + ((L.s[4] + L.s[5]) + (L.s[6] + L.s[7]));
  st.sumsq = ((L.q[0] + L.q[1]) + (L.q[2] + L.q[3])) + ((L.q[4] + L.q[5]) + (L.q[6] + L.q[7]));
  return st;
}

// One element into lane j: the scalar definition of what the SIMD loop computes (min and
// max keep the lane's value on ties, as _mm256_min_pd(v, lane) does: the sign of a zero
// minimum is the same on both paths). s1: counters - 2, or null for statistics only.
inline void d_one(double v, int j, DLanes& L, ChunkStats& nf, int32_t* s1, const uint64_t* tab) {
  if (!is_finite(v)) {
    count_nonfinite(v, nf);
    return;
  }
  L.mn[j] = v < L.mn[j] ? v : L.mn[j];
  L.mx[j] = v > L.mx[j] ? v : L.mx[j];
  L.s[j] += v;
  L.q[j] += v * v;
  if (s1) s1[2 * f64_slot1(ordered_bits(v + 0.0), tab) + (j & 1)]++;
}

template <typename T>
void d_chunk_scalar(const T* x, int64_t begin, int64_t end, int32_t* s1, const uint64_t* tab, DLanes& L,
                    ChunkStats& nf) {
  for (int64_t i = begin; i < end; ++i) d_one(Load<T>::get(x, i), (int)((i - begin) & 7), L, nf, s1, tab);
}

template <typename T>
constexpr bool kMayBeNonFinite = std::is_floating_point<T>::value || std::is_same<T, half_bits>::value ||
                                 std::is_same<T, bf16_bits>::value;

template <typename T>
constexpr bool kIsF32Family = std::is_same<T, float>::value || std::is_same<T, half_bits>::value ||
                              std::is_same<T, bf16_bits>::value;

#ifdef TBF_X86
template <typename T>
__attribute__((target("avx2,f16c"))) inline __m256 load8(const T* x, int64_t i);
template <>
__attribute__((target("avx2,f16c"))) inline __m256 load8<float>(const float* x, int64_t i) {
  return _mm256_loadu_ps(x + i);
}
template <>
__attribute__((target("avx2,f16c"))) inline __m256 load8<half_bits>(const half_bits* x, int64_t i) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i)));
}
template <>
__attribute__((target("avx2,f16c"))) inline __m256 load8<bf16_bits>(const bf16_bits* x, int64_t i) {
  __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

// 16 elements per step, as two vectors of 8 (lanes 0-7 and 8-15): finite test, lane
// statistics and ordered bits in AVX2; the table loads and counter increments stay scalar
// (gathers are slower than scalar loads on the CPUs we measured). Non-finite lanes are
// zeroed to ordered bits 0, which maps to slot 0. h16: for 16-bit floats with
// EdgeLookup::h16 valid, the slot of each bit pattern (one load per element instead of
// the ordered bits, the table load and the compare).
struct F32Acc {  // the 16 statistic lanes in AVX2 registers: [h] = lanes 8h .. 8h + 7
  __m256 mn[2], mx[2];
  __m256d s[4], q[4];
};

template <typename T>
__attribute__((target("avx2,f16c"))) inline void f32_half_avx2(const T* x, int64_t i, int h, int32_t* slots,
                                                                const uint64_t* tab, const uint16_t* h16,
                                                                bool with_stats, F32Acc& A, ChunkStats& nf) {
  const __m256i exp_mask = _mm256_set1_epi32(0x7F800000);
  const __m256i sign = _mm256_set1_epi32((int)0x80000000u);
  __m256 v = load8<T>(x, i);
  __m256i bits = _mm256_castps_si256(v);
  __m256i nonfin = _mm256_cmpeq_epi32(_mm256_and_si256(bits, exp_mask), exp_mask);
  int nf_mask = _mm256_movemask_ps(_mm256_castsi256_ps(nonfin));
  if (__builtin_expect(nf_mask != 0, 0)) {
    alignas(32) float tmp[8];
    _mm256_store_ps(tmp, v);
    for (int j = 0; j < 8; ++j)
      if (nf_mask >> j & 1) count_nonfinite(tmp[j], nf);
    v = _mm256_andnot_ps(_mm256_castsi256_ps(nonfin), v);  // non-finite -> +0.0 for the sums
  }
  if (with_stats) {
    __m256 vmn = v, vmx = v;
    if (__builtin_expect(nf_mask != 0, 0)) {
      vmn = _mm256_blendv_ps(v, _mm256_set1_ps(std::numeric_limits<float>::infinity()), _mm256_castsi256_ps(nonfin));
      vmx = _mm256_blendv_ps(v, _mm256_set1_ps(-std::numeric_limits<float>::infinity()), _mm256_castsi256_ps(nonfin));
    }
    A.mn[h] = _mm256_min_ps(vmn, A.mn[h]);  // v < lane ? v : lane, as std::min(lane, v)
    A.mx[h] = _mm256_max_ps(vmx, A.mx[h]);
    __m256d d0 = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
    __m256d d1 = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
    A.s[2 * h] = _mm256_add_pd(A.s[2 * h], d0);
    A.s[2 * h + 1] = _mm256_add_pd(A.s[2 * h + 1], d1);
    A.q[2 * h] = _mm256_add_pd(A.q[2 * h], _mm256_mul_pd(d0, d0));
    A.q[2 * h + 1] = _mm256_add_pd(A.q[2 * h + 1], _mm256_mul_pd(d1, d1));
  }
  if (!slots) return;
  if constexpr (!std::is_same<T, float>::value) {
    if (h16) {  // NaN/Inf patterns have slot 0
      __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i));
      uint64_t a = (uint64_t)_mm_cvtsi128_si64(raw), b = (uint64_t)_mm_extract_epi64(raw, 1);
      slots[2 * h16[a & 0xFFFF]]++;
      slots[2 * h16[(a >> 16) & 0xFFFF] + 1]++;
      slots[2 * h16[(a >> 32) & 0xFFFF]]++;
      slots[2 * h16[a >> 48] + 1]++;
      slots[2 * h16[b & 0xFFFF]]++;
      slots[2 * h16[(b >> 16) & 0xFFFF] + 1]++;
      slots[2 * h16[(b >> 32) & 0xFFFF]]++;
      slots[2 * h16[b >> 48] + 1]++;
      return;
    }
  }
  alignas(32) uint32_t ord[8];
  __m256i b = _mm256_castps_si256(_mm256_add_ps(v, _mm256_setzero_ps()));
  __m256i o = _mm256_xor_si256(b, _mm256_or_si256(_mm256_srai_epi32(b, 31), sign));
  _mm256_store_si256(reinterpret_cast<__m256i*>(ord), _mm256_andnot_si256(nonfin, o));
  for (int j = 0; j < 8; ++j) slots[2 * f32_slot(ord[j], tab) + (j & 1)]++;
}

template <typename T>
__attribute__((target("avx2,f16c"))) void f32_chunk_avx2(const T* x, int64_t begin, int64_t end, int32_t* slots,
                                                         const uint64_t* tab, const uint16_t* h16, bool with_stats,
                                                         Lanes& L, ChunkStats& nf) {
  F32Acc A;
  for (int h = 0; h < 2; ++h) {
    A.mn[h] = _mm256_loadu_ps(L.mn + 8 * h);
    A.mx[h] = _mm256_loadu_ps(L.mx + 8 * h);
  }
  for (int k = 0; k < 4; ++k) {
    A.s[k] = _mm256_loadu_pd(L.s + 4 * k);
    A.q[k] = _mm256_loadu_pd(L.q + 4 * k);
  }
  int64_t i = begin;
  for (; i + kF32Lanes <= end; i += kF32Lanes) {
    f32_half_avx2<T>(x, i, 0, slots, tab, h16, with_stats, A, nf);
    f32_half_avx2<T>(x, i + 8, 1, slots, tab, h16, with_stats, A, nf);
  }
  for (int h = 0; h < 2; ++h) {
    _mm256_storeu_ps(L.mn + 8 * h, A.mn[h]);
    _mm256_storeu_ps(L.mx + 8 * h, A.mx[h]);
  }
  for (int k = 0; k < 4; ++k) {
    _mm256_storeu_pd(L.s + 4 * k, A.s[k]);
    _mm256_storeu_pd(L.q + 4 * k, A.q[k]);
  }
  f32_tail(x, i, begin, end, slots, tab, with_stats, L, nf);
}

// --------------------------------------------------------------------------------------
// AVX-512, TensorBoard's default edges (EdgeLookup::geo_ok): the slot is computed, not
// looked up. The default edges are +-1e-12 * 1.1^k (k < N) and 0, so for a finite float32
// x the slot is N + 2 + floor(t) (x >= 0) or N - 1 - floor(t) (x < 0) with
// t = log_1.1(|x| / 1e-12), floor(t) clamped to [-1, N - 1] (the clamped ends are the
// bin [0, 1e-12) or (-1e-12, 0] and the dropped values beyond the last edge). t comes
// from the exponent and a quadratic log2 of the mantissa on 32 intervals (coefficients
// from registers: permutes, no memory), good to ~1e-5. Every lane whose t lies within
// kGeoEps of an integer (about 0.1% of normal data: the values near an edge, the closed
// last bin, every edge itself) takes the exact table slot (f32_slot) instead, so the
// counts are the table's on every float32 bit pattern; tests check all 2^32 of them.
// Non-finite lanes land in a dropped slot (0 or 2N + 1) and are counted aside.
//
// The slots of a block of kGeoBlock elements go to a buffer, and the counter increments
// trail the SIMD work by kGeoLag elements: both kinds of work are then in flight at once
// (measured on a Zen 5 core: 0.30 ns per element with the statistics, against 0.42 ns
// for SIMD-then-increments per block and 0.50 ns for the table loop without statistics).
constexpr float kGeoEps = 4e-4f;  // all 2^32 patterns stay exact down to 1e-4
constexpr int kGeoBlock = 2048;
constexpr int kGeoLag = 128;

struct GeoLog {
  alignas(64) float q0[32], q1[32], q2[32];  // log2(m) ~ q0 + m (q1 + m q2) on m in [1 + j/32, 1 + (j+1)/32)
  float c1, c0;                              // t = (exponent field + log2(m)) * c1 + c0
};

const GeoLog& geo_log() {
  static const GeoLog g = [] {
    GeoLog r;
    const double pi = 3.14159265358979323846;
    for (int j = 0; j < 32; ++j) {  // interpolation at the 3 Chebyshev nodes of the interval
      double a = 1 + j / 32.0, b = a + 1 / 32.0, xs[3], ys[3];
      for (int k = 0; k < 3; ++k) {
        xs[k] = (a + b) / 2 + (b - a) / 2 * std::cos((2 * k + 1) * pi / 6);
        ys[k] = std::log2(xs[k]);
      }
      double d01 = (ys[1] - ys[0]) / (xs[1] - xs[0]), d12 = (ys[2] - ys[1]) / (xs[2] - xs[1]);
      double d012 = (d12 - d01) / (xs[2] - xs[0]);
      r.q2[j] = (float)d012;
      r.q1[j] = (float)(d01 - d012 * (xs[0] + xs[1]));
      r.q0[j] = (float)(ys[0] - d01 * xs[0] + d012 * xs[0] * xs[1]);
    }
    const float c1 = (float)(1.0 / std::log2(1.1));
    r.c1 = c1;
    r.c0 = (float)(-std::log2(1e-12) / std::log2(1.1)) - 127.0f * c1;
    return r;
  }();
  return g;
}

// GCC 12 reports its own AVX-512 intrinsics' undefined-register idiom as maybe-uninitialized.
// TBF_AVX512 and this pragma span both AVX-512 kernels (float32 here, the double path below).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define TBF_AVX512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,f16c,fma")))
template <typename T>
TBF_AVX512 inline __m512 load16(const T* x, int64_t i);
template <>
TBF_AVX512 inline __m512 load16<float>(const float* x, int64_t i) {
  return _mm512_loadu_ps(x + i);
}
template <>
TBF_AVX512 inline __m512 load16<half_bits>(const half_bits* x, int64_t i) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i)));
}
template <>
TBF_AVX512 inline __m512 load16<bf16_bits>(const bf16_bits* x, int64_t i) {
  __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}

// The computed slot's constants, loaded into registers once per chunk. N: the number of
// positive default edges.
struct GeoRegs {
  __m512 q0a, q0b, q1a, q1b, q2a, q2b, c1, c0, eps;
  __m512i kmin, kmax, posb, negb, mantm, one;
};

TBF_AVX512 __attribute__((always_inline)) inline GeoRegs geo_regs(int N) {
  const GeoLog& g = geo_log();
  GeoRegs r;
  r.q0a = _mm512_load_ps(g.q0);
  r.q0b = _mm512_load_ps(g.q0 + 16);
  r.q1a = _mm512_load_ps(g.q1);
  r.q1b = _mm512_load_ps(g.q1 + 16);
  r.q2a = _mm512_load_ps(g.q2);
  r.q2b = _mm512_load_ps(g.q2 + 16);
  r.c1 = _mm512_set1_ps(g.c1);
  r.c0 = _mm512_set1_ps(g.c0);
  r.eps = _mm512_set1_ps(kGeoEps);
  r.kmin = _mm512_set1_epi32(-1);
  r.kmax = _mm512_set1_epi32(N - 1);
  r.posb = _mm512_set1_epi32(2 * (N + 2));
  r.negb = _mm512_set1_epi32(2 * (N - 1));
  r.mantm = _mm512_set1_epi32(0x007FFFFF);
  r.one = _mm512_set1_epi32(0x3F800000);
  return r;
}

// 2 * slot of 16 values from their float32 exponent fields e and words m23 whose low 23
// bits are the mantissa (bits above are ignored); neg: the negative lanes. *near: the lanes
// within kGeoEps of an integer t, whose slots the caller takes from the exact table.
TBF_AVX512 __attribute__((always_inline)) inline __m512i geo_slot2(const GeoRegs& g, __m512i e, __m512i m23,
                                                                   __mmask16 neg, __mmask16* near) {
  __m512 m = _mm512_castsi512_ps(_mm512_or_si512(_mm512_and_si512(m23, g.mantm), g.one));
  __m512i j5 = _mm512_srli_epi32(m23, 18);  // the permutes read its low 5 bits: the interval
  __m512 l2 = _mm512_fmadd_ps(
      _mm512_fmadd_ps(_mm512_permutex2var_ps(g.q2a, j5, g.q2b), m, _mm512_permutex2var_ps(g.q1a, j5, g.q1b)), m,
      _mm512_permutex2var_ps(g.q0a, j5, g.q0b));
  __m512 t = _mm512_fmadd_ps(_mm512_add_ps(_mm512_cvtepi32_ps(e), l2), g.c1, g.c0);
  __m512i hi = _mm512_cvt_roundps_epi32(_mm512_add_ps(t, g.eps), _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  __m512i lo = _mm512_cvt_roundps_epi32(_mm512_sub_ps(t, g.eps), _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  *near = _mm512_cmpneq_epi32_mask(hi, lo);
  __m512i k2 = _mm512_min_epi32(_mm512_max_epi32(lo, g.kmin), g.kmax);
  k2 = _mm512_add_epi32(k2, k2);
  return _mm512_mask_sub_epi32(_mm512_add_epi32(g.posb, k2), neg, g.negb, k2);
}

// The increments of a block's slots (idx, 2 * slot each) trail its SIMD work by kGeoLag
// elements: once the slots of elements [k, k + 16) are stored, those of [k - kGeoLag,
// k - kGeoLag + 16) are counted; geo_count_rest counts the block's last kGeoLag.
// (odd = slots + 1 as its own pointer: indexing slots with p + 1 measured 20% slower.)
__attribute__((always_inline)) inline void geo_count_lagged(const int32_t* idx, int k, int32_t* slots, int32_t* odd) {
  if (k < kGeoLag) return;
  const int32_t* p = idx + k - kGeoLag;
  for (int j = 0; j < kF32Lanes; j += 2) {
    slots[p[j]]++;
    odd[p[j + 1]]++;
  }
}

__attribute__((always_inline)) inline void geo_count_rest(const int32_t* idx, int B, int32_t* slots, int32_t* odd) {
  for (int k = std::max(0, B - kGeoLag); k < B; k += 2) {
    slots[idx[k]]++;
    odd[idx[k + 1]]++;
  }
}

// slots: the thread's counters (slot s at slots[2 s] and slots[2 s + 1]); num_edges: of
// the default edges (2N + 1).
template <typename T, bool kStats>
TBF_AVX512 void f32_chunk_geo512(const T* x, int64_t begin, int64_t end, int32_t* slots, const uint64_t* tab,
                                 int64_t num_edges, Lanes& L, ChunkStats& nf) {
  const GeoRegs g = geo_regs((int)((num_edges - 1) / 2));
  const __m512i absm = _mm512_set1_epi32(0x7FFFFFFF), e255 = _mm512_set1_epi32(255);
  const __m512 zero = _mm512_setzero_ps();
  __m512 mn = _mm512_loadu_ps(L.mn), mx = _mm512_loadu_ps(L.mx);
  __m512d s0 = _mm512_loadu_pd(L.s), s1 = _mm512_loadu_pd(L.s + 8);
  __m512d q0 = _mm512_loadu_pd(L.q), q1 = _mm512_loadu_pd(L.q + 8);
  alignas(64) int32_t idx[kGeoBlock];
  int32_t* odd = slots + 1;
  int64_t i = begin;
  while (i + kF32Lanes <= end) {
    const int B = (int)std::min<int64_t>(kGeoBlock, (end - i) / kF32Lanes * kF32Lanes);
    const T* xb = x + i;
    for (int k = 0; k < B; k += kF32Lanes) {
      __m512 v = load16<T>(xb, k);
      __m512i bits = _mm512_castps_si512(_mm512_add_ps(v, zero));  // -0.0 -> +0.0
      __m512i a = _mm512_and_si512(bits, absm);
      __m512i e = _mm512_srli_epi32(a, 23);
      const __mmask16 nonfin = _mm512_cmpeq_epi32_mask(e, e255);
      __m512 vs = v, vmn = v, vmx = v;  // what the sums, the minimum and the maximum take
      if (__builtin_expect(nonfin != 0, 0)) {
        alignas(64) float tmp[16];
        _mm512_store_ps(tmp, v);
        for (int j = 0; j < 16; ++j)
          if (nonfin >> j & 1) count_nonfinite(tmp[j], nf);
        vs = _mm512_maskz_mov_ps((__mmask16)~nonfin, v);  // non-finite -> +0.0 for the sums
        vmn = _mm512_mask_mov_ps(v, nonfin, _mm512_set1_ps(std::numeric_limits<float>::infinity()));
        vmx = _mm512_mask_mov_ps(v, nonfin, _mm512_set1_ps(-std::numeric_limits<float>::infinity()));
      }
      if (kStats) {
        mn = _mm512_min_ps(vmn, mn);
        mx = _mm512_max_ps(vmx, mx);
        __m512d d0 = _mm512_cvtps_pd(_mm512_castps512_ps256(vs));
        __m512d d1 = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(vs), 1)));
        s0 = _mm512_add_pd(s0, d0);
        s1 = _mm512_add_pd(s1, d1);
        q0 = _mm512_fmadd_pd(d0, d0, q0);  // d * d is exact in double: the same as q + d * d
        q1 = _mm512_fmadd_pd(d1, d1, q1);
      }
      __mmask16 near;
      _mm512_store_si512(idx + k, geo_slot2(g, e, a, _mm512_movepi32_mask(bits), &near));
      if (__builtin_expect(near != 0, 0)) {
        for (; near; near &= near - 1) {
          const int j = __builtin_ctz(near);
          const float c = load_f32<T>(xb, k + j) + 0.0f;
          uint32_t cb;
          memcpy(&cb, &c, 4);
          // NaN/Inf keys hold slot 0 in the table
          idx[k + j] = 2 * (int32_t)f32_slot(ordered_bits_f32(cb), tab);
        }
      }
      geo_count_lagged(idx, k, slots, odd);
    }
    geo_count_rest(idx, B, slots, odd);
    i += B;
  }
  if (kStats) {
    _mm512_storeu_ps(L.mn, mn);
    _mm512_storeu_ps(L.mx, mx);
    _mm512_storeu_pd(L.s, s0);
    _mm512_storeu_pd(L.s + 8, s1);
    _mm512_storeu_pd(L.q, q0);
    _mm512_storeu_pd(L.q + 8, q1);
  }
  f32_tail(x, i, begin, end, slots, tab, kStats, L, nf);
}

// 4 elements as doubles, the values Load<T>::get gives (integers converted exactly, or
// rounded to nearest like a cast when they exceed 53 bits).
template <typename T>
__attribute__((target("avx2,f16c"))) inline __m256d load4d(const T* x, int64_t i);
template <>
__attribute__((target("avx2,f16c"))) inline __m256d load4d<double>(const double* x, int64_t i) {
  return _mm256_loadu_pd(x + i);
}
template <>
__attribute__((target("avx2,f16c"))) inline __m256d load4d<float>(const float* x, int64_t i) {
  return _mm256_cvtps_pd(_mm_loadu_ps(x + i));
}
template <>
__attribute__((target("avx2,f16c"))) inline __m256d load4d<half_bits>(const half_bits* x, int64_t i) {
  return _mm256_cvtps_pd(_mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(x + i))));
}
template <>
__attribute__((target("avx2,f16c"))) inline __m256d load4d<bf16_bits>(const bf16_bits* x, int64_t i) {
  __m128i w = _mm_cvtepu16_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(x + i)));
  return _mm256_cvtps_pd(_mm_castsi128_ps(_mm_slli_epi32(w, 16)));
}
template <>
__attribute__((target("avx2,f16c"))) inline __m256d load4d<int32_t>(const int32_t* x, int64_t i) {
  return _mm256_cvtepi32_pd(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i)));
}
__attribute__((target("avx2,f16c"))) inline __m128i load4_bytes(const void* p) {
  int32_t w;
  memcpy(&w, p, 4);
  return _mm_cvtsi32_si128(w);
}
template <>
__attribute__((target("avx2,f16c"))) inline __m256d load4d<int16_t>(const int16_t* x, int64_t i) {
  return _mm256_cvtepi32_pd(_mm_cvtepi16_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(x + i))));
}
template <>
__attribute__((target("avx2,f16c"))) inline __m256d load4d<uint16_t>(const uint16_t* x, int64_t i) {
  return _mm256_cvtepi32_pd(_mm_cvtepu16_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(x + i))));
}
template <>
__attribute__((target("avx2,f16c"))) inline __m256d load4d<int8_t>(const int8_t* x, int64_t i) {
  return _mm256_cvtepi32_pd(_mm_cvtepi8_epi32(load4_bytes(x + i)));
}
template <>
__attribute__((target("avx2,f16c"))) inline __m256d load4d<uint8_t>(const uint8_t* x, int64_t i) {
  return _mm256_cvtepi32_pd(_mm_cvtepu8_epi32(load4_bytes(x + i)));
}
template <>
__attribute__((target("avx2,f16c"))) inline __m256d load4d<bool>(const bool* x, int64_t i) {
  // any non-zero byte is true (Load<bool>)
  return _mm256_cvtepi32_pd(_mm_cvtepu8_epi32(_mm_min_epu8(load4_bytes(x + i), _mm_set1_epi8(1))));
}
// Unsigned 32-bit lanes (zero-extended in 64-bit lanes) as doubles: exact, 2^52 + u - 2^52.
__attribute__((target("avx2,f16c"))) inline __m256d u32x4_to_pd(__m256i u) {
  const __m256d magic = _mm256_set1_pd(4503599627370496.0);  // 2^52
  return _mm256_sub_pd(_mm256_castsi256_pd(_mm256_or_si256(u, _mm256_castpd_si256(magic))), magic);
}
template <>
__attribute__((target("avx2,f16c"))) inline __m256d load4d<uint32_t>(const uint32_t* x, int64_t i) {
  return u32x4_to_pd(_mm256_cvtepu32_epi64(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i))));
}
// 64-bit integers: hi * 2^32 and lo, both exact in double, added once: the sum is the
// correctly rounded value, as a cast gives. The high half goes through 2^84 + hi * 2^32
// (biased by 2^63 when signed).
template <bool kSigned>
__attribute__((target("avx2,f16c"))) inline __m256d i64x4_to_pd(__m256i v) {
  const __m256i lo_mask = _mm256_set1_epi64x(0xFFFFFFFFll);
  const __m256i hi_bias = _mm256_set1_epi64x(kSigned ? 0x80000000ll : 0);
  const __m256d m84 = _mm256_set1_pd(kSigned ? 19342813113834066795298816.0 + 9223372036854775808.0
                                             : 19342813113834066795298816.0);  // 2^84 (+ 2^63)
  __m256i hi = _mm256_xor_si256(_mm256_srli_epi64(v, 32), hi_bias);
  __m256d h = _mm256_sub_pd(
      _mm256_castsi256_pd(_mm256_or_si256(hi, _mm256_castpd_si256(_mm256_set1_pd(19342813113834066795298816.0)))),
      m84);
  return _mm256_add_pd(h, u32x4_to_pd(_mm256_and_si256(v, lo_mask)));
}
template <>
__attribute__((target("avx2,f16c"))) inline __m256d load4d<int64_t>(const int64_t* x, int64_t i) {
  return i64x4_to_pd<true>(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i)));
}
template <>
__attribute__((target("avx2,f16c"))) inline __m256d load4d<uint64_t>(const uint64_t* x, int64_t i) {
  return i64x4_to_pd<false>(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i)));
}

// Order-preserving bits of 4 doubles (-0.0 canonicalised first).
__attribute__((target("avx2,f16c"))) inline __m256i ordered4(__m256d v) {
  const __m256i sign = _mm256_set1_epi64x((long long)0x8000000000000000ull);
  __m256i b = _mm256_castpd_si256(_mm256_add_pd(v, _mm256_setzero_pd()));
  __m256i neg = _mm256_cmpgt_epi64(_mm256_setzero_si256(), b);
  return _mm256_xor_si256(b, _mm256_or_si256(neg, sign));
}

// 8 elements per step (two vectors of 4): finite test, lane statistics and the table key /
// shifted ordered bits in AVX2; the table loads and counter increments stay scalar.
// Non-finite lanes are zeroed for the sums and get key 0, whose entry is slot 0.
template <typename T>
__attribute__((target("avx2,f16c"))) void d_chunk_avx2(const T* x, int64_t begin, int64_t end, int32_t* s1,
                                                       const uint64_t* tab, bool with_stats, DLanes& L,
                                                       ChunkStats& nf) {
  const __m256i exp_mask = _mm256_set1_epi64x(0x7FF0000000000000ll);
  const __m256i low16 = _mm256_set1_epi64x(0xFFFF);
  const __m256d inf = _mm256_set1_pd(kInf), ninf = _mm256_set1_pd(-kInf);
  __m256d mn0 = _mm256_loadu_pd(L.mn), mn1 = _mm256_loadu_pd(L.mn + 4);
  __m256d mx0 = _mm256_loadu_pd(L.mx), mx1 = _mm256_loadu_pd(L.mx + 4);
  __m256d s0 = _mm256_loadu_pd(L.s), sv1 = _mm256_loadu_pd(L.s + 4);
  __m256d q0 = _mm256_loadu_pd(L.q), q1 = _mm256_loadu_pd(L.q + 4);
  alignas(32) uint64_t key[8], os[8];
  int64_t i = begin;
  for (; i + 8 <= end; i += 8) {
    __m256d v0 = load4d<T>(x, i), v1 = load4d<T>(x, i + 4);
    __m256i nf0 = _mm256_setzero_si256(), nf1 = _mm256_setzero_si256();
    int nf_mask = 0;
    if constexpr (kMayBeNonFinite<T>) {
      nf0 = _mm256_cmpeq_epi64(_mm256_and_si256(_mm256_castpd_si256(v0), exp_mask), exp_mask);
      nf1 = _mm256_cmpeq_epi64(_mm256_and_si256(_mm256_castpd_si256(v1), exp_mask), exp_mask);
      nf_mask = _mm256_movemask_pd(_mm256_castsi256_pd(nf0)) | (_mm256_movemask_pd(_mm256_castsi256_pd(nf1)) << 4);
      if (__builtin_expect(nf_mask != 0, 0)) {
        alignas(32) double tmp[8];
        _mm256_store_pd(tmp, v0);
        _mm256_store_pd(tmp + 4, v1);
        for (int j = 0; j < 8; ++j)
          if (nf_mask >> j & 1) count_nonfinite(tmp[j], nf);
        v0 = _mm256_andnot_pd(_mm256_castsi256_pd(nf0), v0);  // non-finite -> +0.0 for the sums
        v1 = _mm256_andnot_pd(_mm256_castsi256_pd(nf1), v1);
      }
    }
    if (with_stats) {
      __m256d a0 = v0, a1 = v1, b0 = v0, b1 = v1;
      if (__builtin_expect(nf_mask != 0, 0)) {
        a0 = _mm256_blendv_pd(v0, inf, _mm256_castsi256_pd(nf0));
        a1 = _mm256_blendv_pd(v1, inf, _mm256_castsi256_pd(nf1));
        b0 = _mm256_blendv_pd(v0, ninf, _mm256_castsi256_pd(nf0));
        b1 = _mm256_blendv_pd(v1, ninf, _mm256_castsi256_pd(nf1));
      }
      mn0 = _mm256_min_pd(a0, mn0);  // a < lane ? a : lane
      mn1 = _mm256_min_pd(a1, mn1);
      mx0 = _mm256_max_pd(b0, mx0);
      mx1 = _mm256_max_pd(b1, mx1);
      s0 = _mm256_add_pd(s0, v0);
      sv1 = _mm256_add_pd(sv1, v1);
      q0 = _mm256_add_pd(q0, _mm256_mul_pd(v0, v0));
      q1 = _mm256_add_pd(q1, _mm256_mul_pd(v1, v1));
    }
    if (s1) {
      __m256i o0 = ordered4(v0), o1 = ordered4(v1);
      _mm256_store_si256(reinterpret_cast<__m256i*>(key), _mm256_andnot_si256(nf0, _mm256_srli_epi64(o0, 48)));
      _mm256_store_si256(reinterpret_cast<__m256i*>(key + 4), _mm256_andnot_si256(nf1, _mm256_srli_epi64(o1, 48)));
      _mm256_store_si256(reinterpret_cast<__m256i*>(os), _mm256_or_si256(_mm256_slli_epi64(o0, 16), low16));
      _mm256_store_si256(reinterpret_cast<__m256i*>(os + 4), _mm256_or_si256(_mm256_slli_epi64(o1, 16), low16));
      for (int j = 0; j < 8; ++j) {
        uint64_t e = tab[key[j]];
        s1[2 * ((int64_t)(e & 0xFFFFu) + (os[j] >= e)) + (j & 1)]++;
      }
    }
  }
  _mm256_storeu_pd(L.mn, mn0);
  _mm256_storeu_pd(L.mn + 4, mn1);
  _mm256_storeu_pd(L.mx, mx0);
  _mm256_storeu_pd(L.mx + 4, mx1);
  _mm256_storeu_pd(L.s, s0);
  _mm256_storeu_pd(L.s + 4, sv1);
  _mm256_storeu_pd(L.q, q0);
  _mm256_storeu_pd(L.q + 4, q1);
  for (; i < end; ++i) {  // tail: same lanes as the scalar definition
    double v = Load<T>::get(x, i);
    if (with_stats) {
      d_one(v, (int)((i - begin) & 7), L, nf, s1, tab);
    } else {
      DLanes dummy = L;
      d_one(v, (int)((i - begin) & 7), dummy, nf, s1, tab);
    }
  }
}

// --------------------------------------------------------------------------------------
// AVX-512, TensorBoard's default edges, every dtype of the double path (float64 and the
// integers): the slot computed as f32_chunk_geo512 computes it, statistics in the 8 double
// lanes of d_chunk_scalar. 16 elements per step, as two vectors of 8 doubles (the values
// Load<T>::get gives). The float32 arithmetic takes the double's exponent (clamped to the
// float32 range: beyond it t lies far outside [-1, N - 1]) and the top 23 bits of its
// mantissa, so the t computed for a double x is exactly the one computed for the float32
// x_f that x truncates to. Over all float32 x_f with t in [-3, 780], |t - log_1.1(x_f /
// 1e-12)| <= 9.7e-5 (every pattern: benchmarks/micro/geo_log_error.cpp), and the truncation
// moves log_1.1 by at most log_1.1(1 + 2^-23) = 1.3e-6: so t lies within 1e-4 < kGeoEps of
// log_1.1(x / 1e-12), and a lane that is not near an integer has the right floor (the
// iterated-product edges differ from 1e-12 * 1.1^k by ~1e-13). Near lanes take the exact f64 table
// slot, non-finite lanes land in a dropped slot and are counted aside. Measured on a Zen 5
// core, one thread, 10^7 elements: float64 0.76 -> 0.46 ns per element, int32 0.75 -> 0.42,
// int64 0.89 -> 0.42 (d_chunk_avx2 -> this). The non-finite test is one mask for all 16
// lanes with one branch: a branch per vector of 8 cost float64 0.15 ns per element.
template <typename T>
TBF_AVX512 inline __m512d load8d(const T* x, int64_t i);
template <>
TBF_AVX512 inline __m512d load8d<double>(const double* x, int64_t i) {
  return _mm512_loadu_pd(x + i);
}
template <>
TBF_AVX512 inline __m512d load8d<int32_t>(const int32_t* x, int64_t i) {
  return _mm512_cvtepi32_pd(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i)));
}
template <>
TBF_AVX512 inline __m512d load8d<uint32_t>(const uint32_t* x, int64_t i) {
  return _mm512_cvtepu32_pd(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i)));
}
template <>
TBF_AVX512 inline __m512d load8d<int64_t>(const int64_t* x, int64_t i) {  // rounds to nearest, as a cast
  return _mm512_cvtepi64_pd(_mm512_loadu_si512(x + i));
}
template <>
TBF_AVX512 inline __m512d load8d<uint64_t>(const uint64_t* x, int64_t i) {
  return _mm512_cvtepu64_pd(_mm512_loadu_si512(x + i));
}
template <>
TBF_AVX512 inline __m512d load8d<int16_t>(const int16_t* x, int64_t i) {
  return _mm512_cvtepi32_pd(_mm256_cvtepi16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i))));
}
template <>
TBF_AVX512 inline __m512d load8d<uint16_t>(const uint16_t* x, int64_t i) {
  return _mm512_cvtepi32_pd(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i))));
}
template <>
TBF_AVX512 inline __m512d load8d<int8_t>(const int8_t* x, int64_t i) {
  return _mm512_cvtepi32_pd(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(x + i))));
}
template <>
TBF_AVX512 inline __m512d load8d<uint8_t>(const uint8_t* x, int64_t i) {
  return _mm512_cvtepi32_pd(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(x + i))));
}
template <>
TBF_AVX512 inline __m512d load8d<bool>(const bool* x, int64_t i) {  // any non-zero byte is true (Load<bool>)
  __m128i b = _mm_min_epu8(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(x + i)), _mm_set1_epi8(1));
  return _mm512_cvtepi32_pd(_mm256_cvtepu8_epi32(b));
}

// slots: the thread's counters (slot s at slots[2 s] and slots[2 s + 1]); tab: the f64
// table; num_edges: of the default edges (2N + 1).
template <typename T, bool kStats>
TBF_AVX512 void d_chunk_geo512(const T* x, int64_t begin, int64_t end, int32_t* slots, const uint64_t* tab,
                               int64_t num_edges, DLanes& L, ChunkStats& nf) {
  const GeoRegs g = geo_regs((int)((num_edges - 1) / 2));
  const __m512i absm = _mm512_set1_epi64(0x7FFFFFFFFFFFFFFFll), expm = _mm512_set1_epi64(0x7FF0000000000000ll);
  // double exponent field -> float32 field (1023 - 127 = 896), clamped to [0, 254]
  const __m512i ebias = _mm512_set1_epi64(896), elo = _mm512_setzero_si512(), ehi = _mm512_set1_epi64(254);
  const __m512d zero = _mm512_setzero_pd(), inf = _mm512_set1_pd(kInf), ninf = _mm512_set1_pd(-kInf);
  __m512d mn = _mm512_loadu_pd(L.mn), mx = _mm512_loadu_pd(L.mx);
  __m512d s = _mm512_loadu_pd(L.s), q = _mm512_loadu_pd(L.q);
  alignas(64) int32_t idx[kGeoBlock];
  int32_t* odd = slots + 1;
  int64_t i = begin;
  while (i + kF32Lanes <= end) {
    const int B = (int)std::min<int64_t>(kGeoBlock, (end - i) / kF32Lanes * kF32Lanes);
    const T* xb = x + i;
    for (int k = 0; k < B; k += kF32Lanes) {
      __m512d v0 = load8d<T>(xb, k), v1 = load8d<T>(xb, k + 8);
      __m512i b0 = _mm512_castpd_si512(_mm512_add_pd(v0, zero)), b1 = _mm512_castpd_si512(_mm512_add_pd(v1, zero));
      __m512i a[2] = {_mm512_and_si512(b0, absm), _mm512_and_si512(b1, absm)};  // -0.0 -> +0.0 above
      const __mmask16 neg = (__mmask16)(_mm512_movepi64_mask(b0) | ((unsigned)_mm512_movepi64_mask(b1) << 8));
      __mmask16 nonfin = 0;
      if constexpr (kMayBeNonFinite<T>)
        nonfin = (__mmask16)(_mm512_cmpeq_epi64_mask(_mm512_and_si512(a[0], expm), expm) |
                             ((unsigned)_mm512_cmpeq_epi64_mask(_mm512_and_si512(a[1], expm), expm) << 8));
      if (__builtin_expect(nonfin != 0, 0)) {
        alignas(64) double tmp[16];
        _mm512_store_pd(tmp, v0);
        _mm512_store_pd(tmp + 8, v1);
        for (int j = 0; j < 16; ++j)
          if (nonfin >> j & 1) count_nonfinite(tmp[j], nf);
        if (kStats) {  // non-finite lanes: +0.0 for the sums, +-inf for the minimum and maximum
          const __mmask8 f0 = (__mmask8)nonfin, f1 = (__mmask8)(nonfin >> 8);
          mn = _mm512_min_pd(_mm512_mask_mov_pd(v1, f1, inf), _mm512_min_pd(_mm512_mask_mov_pd(v0, f0, inf), mn));
          mx = _mm512_max_pd(_mm512_mask_mov_pd(v1, f1, ninf), _mm512_max_pd(_mm512_mask_mov_pd(v0, f0, ninf), mx));
          v0 = _mm512_maskz_mov_pd((__mmask8)~f0, v0);
          v1 = _mm512_maskz_mov_pd((__mmask8)~f1, v1);
        }
      } else if (kStats) {
        mn = _mm512_min_pd(v1, _mm512_min_pd(v0, mn));
        mx = _mm512_max_pd(v1, _mm512_max_pd(v0, mx));
      }
      if (kStats) {  // lane j takes elements begin + 8k + j in order, as in d_one
        s = _mm512_add_pd(_mm512_add_pd(s, v0), v1);
        q = _mm512_add_pd(_mm512_add_pd(q, _mm512_mul_pd(v0, v0)), _mm512_mul_pd(v1, v1));
      }
      __m512i e64[2], m64[2];
      for (int h = 0; h < 2; ++h) {
        e64[h] = _mm512_min_epi64(_mm512_max_epi64(_mm512_sub_epi64(_mm512_srli_epi64(a[h], 52), ebias), elo), ehi);
        m64[h] = _mm512_srli_epi64(a[h], 29);  // the top 23 mantissa bits (and exponent bits above them)
      }
      __m512i e = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(e64[0])),
                                     _mm512_cvtepi64_epi32(e64[1]), 1);
      __m512i m23 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(m64[0])),
                                       _mm512_cvtepi64_epi32(m64[1]), 1);
      __mmask16 near;
      _mm512_store_si512(idx + k, geo_slot2(g, e, m23, neg, &near));
      near &= (__mmask16)~nonfin;  // non-finite lanes: t > N, a dropped slot
      for (; near; near &= near - 1) {
        const int j = __builtin_ctz(near);
        idx[k + j] = 2 * (int32_t)(f64_slot1(ordered_bits(Load<T>::get(xb, k + j) + 0.0), tab) - 1);
      }
      geo_count_lagged(idx, k, slots, odd);
    }
    geo_count_rest(idx, B, slots, odd);
    i += B;
  }
  if (kStats) {
    _mm512_storeu_pd(L.mn, mn);
    _mm512_storeu_pd(L.mx, mx);
    _mm512_storeu_pd(L.s, s);
    _mm512_storeu_pd(L.q, q);
  }
  for (; i < end; ++i) {  // tail: the scalar definition, same lanes
    if (kStats) {
      d_one(Load<T>::get(x, i), (int)((i - begin) & 7), L, nf, slots - 2, tab);
    } else {
      DLanes dummy = L;
      d_one(Load<T>::get(x, i), (int)((i - begin) & 7), dummy, nf, slots - 2, tab);
    }
  }
}
#pragma GCC diagnostic pop
#undef TBF_AVX512

// TBFAST_DISABLE_SIMD=1 forces the scalar definition (tests compare the two bit for bit).
// Equal-width bins, numpy-exact, 4 double lanes at a time: the same operations as
// UniformBins::bucket (subtract, divide, multiply, truncate, one fix-up step against
// i * step + first), so counts equal the scalar path's. Slot 0 = outside / non-finite.
template <typename T>
__attribute__((target("avx2,f16c"))) inline void load_pd8(const T* x, int64_t i, __m256d& a, __m256d& b) {
  a = load4d<T>(x, i);
  b = load4d<T>(x, i + 4);
}

// i * step + first, or `last` at i == n (callers guarantee step != 0)
__attribute__((target("avx2,f16c"))) inline __m256d uniform_edge4(__m256d i, __m256d step, __m256d first,
                                                                   __m256d last, __m256d n) {
  __m256d e = _mm256_add_pd(_mm256_mul_pd(i, step), first);
  return _mm256_blendv_pd(e, last, _mm256_cmp_pd(i, n, _CMP_EQ_OQ));
}

__attribute__((target("avx2,f16c"))) inline __m128i uniform_slots4(__m256d x, const UniformBins& u) {
  const __m256d first = _mm256_set1_pd(u.first), last = _mm256_set1_pd(u.last);
  const __m256d denom = _mm256_set1_pd(u.denom), n = _mm256_set1_pd((double)u.n);
  const __m256d step = _mm256_set1_pd(u.step), zero = _mm256_setzero_pd(), one = _mm256_set1_pd(1.0);
  const __m256d nm1 = _mm256_set1_pd((double)(u.n - 1));
  __m256d keep = _mm256_and_pd(_mm256_cmp_pd(x, first, _CMP_GE_OQ), _mm256_cmp_pd(x, last, _CMP_LE_OQ));
  __m256d f = _mm256_mul_pd(_mm256_div_pd(_mm256_sub_pd(x, first), denom), n);
  __m256d ok = _mm256_and_pd(_mm256_cmp_pd(f, zero, _CMP_GE_OQ), _mm256_cmp_pd(f, n, _CMP_LE_OQ));
  __m256d idx = _mm256_and_pd(ok, _mm256_round_pd(f, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC));
  idx = _mm256_sub_pd(idx, _mm256_and_pd(_mm256_cmp_pd(idx, n, _CMP_EQ_OQ), one));
  idx = _mm256_sub_pd(idx, _mm256_and_pd(_mm256_cmp_pd(x, uniform_edge4(idx, step, first, last, n), _CMP_LT_OQ), one));
  __m256d up = _mm256_and_pd(_mm256_cmp_pd(idx, nm1, _CMP_NEQ_OQ),
                             _mm256_cmp_pd(x, uniform_edge4(_mm256_add_pd(idx, one), step, first, last, n), _CMP_GE_OQ));
  idx = _mm256_add_pd(idx, _mm256_and_pd(up, one));
  idx = _mm256_max_pd(idx, zero);
  __m256d slot = _mm256_and_pd(keep, _mm256_add_pd(idx, one));
  return _mm256_cvttpd_epi32(slot);
}

template <typename T>
__attribute__((target("avx2,f16c"))) int64_t uniform_chunk_avx2(const T* x, int64_t begin, int64_t end,
                                                               int32_t* slots, const UniformBins& u) {
  alignas(16) int32_t s[8];
  int64_t i = begin;
  for (; i + 8 <= end; i += 8) {
    __m256d a, b;
    load_pd8<T>(x, i, a, b);
    _mm_store_si128(reinterpret_cast<__m128i*>(s), uniform_slots4(a, u));
    _mm_store_si128(reinterpret_cast<__m128i*>(s + 4), uniform_slots4(b, u));
    for (int j = 0; j < 8; ++j) slots[2 * s[j] + (j & 1)]++;
  }
  return i;
}

bool cpu_has_avx2() { return simd_level() >= kSimdAvx2; }
#endif

template <typename T>
void f32_chunk(const T* x, const Chunk& c, int32_t* slots, const EdgeLookup* lk, int64_t num_edges, bool with_stats,
               ChunkStats* out) {
  Lanes L;
  lanes_init(L);
  ChunkStats nf{0, 0, 0, 0, 0, 0, 0};
  const uint64_t* tab = lk ? lk->f32 : nullptr;
#ifdef TBF_X86
  if (slots && lk->geo_ok && simd_level() >= kSimdAvx512) {
    if (with_stats)
      f32_chunk_geo512<T, true>(x, c.begin, c.end, slots, tab, num_edges, L, nf);
    else
      f32_chunk_geo512<T, false>(x, c.begin, c.end, slots, tab, num_edges, L, nf);
  } else if (cpu_has_avx2()) {
    const uint16_t* h16 = nullptr;
    if (lk && lk->h16_ok) {
      if (std::is_same<T, half_bits>::value) h16 = lk->h16[0];
      if (std::is_same<T, bf16_bits>::value) h16 = lk->h16[1];
    }
    f32_chunk_avx2<T>(x, c.begin, c.end, slots, tab, h16, with_stats, L, nf);
  } else
#endif
  {
    f32_chunk_scalar<T>(x, c.begin, c.end, slots, tab, L, nf);
  }
  if (with_stats) *out = lanes_finish(L, nf);
}

#ifdef TBF_X86
// d_chunk_geo512 where it applies: AVX-512, the default edges, counts wanted. Never for
// the float32 family, whose kernels take the default edges themselves.
template <typename T>
bool d_chunk_try_geo512(const T* x, const Chunk& c, int32_t* slots, const EdgeLookup* lk, int64_t num_edges,
                        bool with_stats, DLanes& L, ChunkStats& nf) {
  if constexpr (kIsF32Family<T>) {
    return false;
  } else {
    if (!slots || !lk->geo_ok || simd_level() < kSimdAvx512) return false;
    if (with_stats)
      d_chunk_geo512<T, true>(x, c.begin, c.end, slots, lk->f64, num_edges, L, nf);
    else
      d_chunk_geo512<T, false>(x, c.begin, c.end, slots, lk->f64, num_edges, L, nf);
    return true;
  }
}
#endif

// slots: null for statistics only; else lk's f64 table must be valid (f64_ok).
template <typename T>
void d_chunk(const T* x, const Chunk& c, int32_t* slots, const EdgeLookup* lk, int64_t num_edges, bool with_stats,
             ChunkStats* out) {
  DLanes L;
  dlanes_init(L);
  ChunkStats nf{0, 0, 0, 0, 0, 0, 0};
  int32_t* s1 = slots ? slots - 2 : nullptr;
  const uint64_t* tab = slots ? lk->f64 : nullptr;
#ifdef TBF_X86
  if (d_chunk_try_geo512<T>(x, c, slots, lk, num_edges, with_stats, L, nf)) {
  } else if (cpu_has_avx2()) {
    d_chunk_avx2<T>(x, c.begin, c.end, s1, tab, with_stats, L, nf);
  } else
#endif
  {
    d_chunk_scalar<T>(x, c.begin, c.end, s1, tab, L, nf);
  }
  if (with_stats) *out = dlanes_finish(L, nf);
}

// ======================================================================================
// Driver
// ======================================================================================

// Adds the thread's slots into its tensor's row (integer atomics: another thread may
// flush into the same row) and zeroes them.
void flush(Scratch& sc, const HistogramParams& p) {
  if (sc.slots_held.tensor < 0) return;
  int64_t* row = p.counts + sc.slots_held.tensor * p.num_bins;
  const int64_t num_bins = p.num_bins;
  int32_t* slots = sc.slots.data() + 2;  // skip slot 0
  int64_t b = 0;
  for (; b + 8 <= num_bins; b += 8) {  // 8 slots (one cache line of counters) tested at once
    uint64_t w[8];
    memcpy(w, slots + 2 * b, sizeof w);
    if (!(((w[0] | w[1]) | (w[2] | w[3])) | ((w[4] | w[5]) | (w[6] | w[7])))) continue;
    for (int64_t k = b; k < b + 8; ++k) {
      int64_t c = (int64_t)slots[2 * k] + slots[2 * k + 1];
      if (c) __atomic_fetch_add(&row[k], c, __ATOMIC_RELAXED);
    }
    memset(slots + 2 * b, 0, sizeof w);
  }
  for (; b < num_bins; ++b) {
    int64_t c = (int64_t)slots[2 * b] + slots[2 * b + 1];
    if (c) {
      __atomic_fetch_add(&row[b], c, __ATOMIC_RELAXED);
      slots[2 * b] = slots[2 * b + 1] = 0;
    }
  }
  sc.slots[0] = sc.slots[1] = sc.slots[2 * (num_bins + 1)] = sc.slots[2 * (num_bins + 1) + 1] = 0;
  sc.slots_held = Held();
}

// Before counting chunk c into the thread's slots (see hold: the shared row sees few atomics).
void claim(Scratch& sc, const HistogramParams& p, const Chunk& c) {
  hold(sc.slots_held, c, [&] { flush(sc, p); });
}

void reduce_stats(const HistogramParams& p, const std::vector<Chunk>& chunks, const std::vector<ChunkStats>& cs) {
  for (int64_t t = 0; t < p.num_tensors; ++t) {
    double* st = p.stats + t * kStatsPerTensor;
    int64_t* nf = p.nonfinite + t * kNonFinitePerTensor;
    st[0] = kInf;
    st[1] = -kInf;
    st[2] = st[3] = 0.0;
    nf[0] = nf[1] = nf[2] = 0;
  }
  for (size_t c = 0; c < chunks.size(); ++c) {
    double* st = p.stats + chunks[c].tensor * kStatsPerTensor;
    int64_t* nf = p.nonfinite + chunks[c].tensor * kNonFinitePerTensor;
    st[0] = std::min(st[0], cs[c].mn);
    st[1] = std::max(st[1], cs[c].mx);
    st[2] += cs[c].sum;
    st[3] += cs[c].sumsq;
    nf[0] += cs[c].nan;
    nf[1] += cs[c].posinf;
    nf[2] += cs[c].neginf;
  }
}

// The equal-width bins of tensor t (kUniform: its range; kUniformAuto: from its stats).
UniformBins uniform_bins(const HistogramParams& p, int64_t t) {
  double first, last;
  if (p.mode == kUniformAuto) {
    const double* st = p.stats + t * kStatsPerTensor;
    auto_range(st[0], st[1], &first, &last);
  } else {
    first = p.ranges[2 * t];
    last = p.ranges[2 * t + 1];
  }
  return UniformBins(first, last, p.num_bins);
}

// ======================================================================================
// 16-bit pattern path (see the header).
// ======================================================================================

// Pattern totals (valid in the touched groups) -> slot counts (added into row, when
// given) and statistics (written to st and nf, when given), in pattern order.
template <typename T, typename SlotFn>
void pattern_scan(const int64_t* pc, const uint64_t* touched, int64_t* row, int64_t num_bins, double* st,
                  int64_t* nf, SlotFn slot) {
  ChunkStats s{kInf, -kInf, 0.0, 0.0, 0, 0, 0};
  for (int64_t wi = 0; wi < kTouchedWords; ++wi)
    for (uint64_t m = touched[wi]; m; m &= m - 1) {
      const int64_t q = (wi * 64 + __builtin_ctzll(m)) * kPatternGroup;
      for (int64_t r = q; r < q + kPatternGroup; ++r) {
        const int64_t n = pc[r];
        if (!n) continue;
        const T bits{(uint16_t)r};
        const double v = Load<T>::get(&bits, 0);
        if (!is_finite(v)) {
          if (v != v)
            s.nan += n;
          else if (v > 0)
            s.posinf += n;
          else
            s.neginf += n;
          continue;
        }
        if (st) {
          if (v < s.mn) s.mn = v;
          if (v > s.mx) s.mx = v;
          const double dn = (double)n;  // exact products for n < 2^37 (see the header)
          s.sum += dn * v;
          s.sumsq += dn * (v * v);
        }
        if (row) {
          const int64_t k = slot(v, r);
          if (k >= 1 && k <= num_bins) row[k - 1] += n;
        }
      }
    }
  if (st) {
    st[0] = s.mn;
    st[1] = s.mx;
    st[2] = s.sum;
    st[3] = s.sumsq;
    nf[0] = s.nan;
    nf[1] = s.posinf;
    nf[2] = s.neginf;
  }
}

// Tensor t's slot counts and statistics from its pattern totals.
template <typename T>
void pattern_finish(const HistogramParams& p, int64_t t, const int64_t* pc, const uint64_t* touched,
                    bool with_stats) {
  int64_t* row = p.counts ? p.counts + t * p.num_bins : nullptr;
  double* st = with_stats ? p.stats + t * kStatsPerTensor : nullptr;
  int64_t* nf = with_stats ? p.nonfinite + t * kNonFinitePerTensor : nullptr;
  if (!row) {
    pattern_scan<T>(pc, touched, nullptr, p.num_bins, st, nf, [](double, int64_t) { return int64_t(0); });
  } else if (p.mode == kEdges && p.lookup->h16_ok) {
    const uint16_t* h16 = p.lookup->h16[std::is_same<T, bf16_bits>::value ? 1 : 0];
    pattern_scan<T>(pc, touched, row, p.num_bins, st, nf, [h16](double, int64_t r) { return (int64_t)h16[r]; });
  } else if (p.mode == kEdges) {
    EdgesSlot es{p.edges, p.lookup->keys, p.edges[p.num_bins]};
    pattern_scan<T>(pc, touched, row, p.num_bins, st, nf, [es](double v, int64_t) { return es(v); });
  } else {
    UniformSlot us{uniform_bins(p, t)};
    pattern_scan<T>(pc, touched, row, p.num_bins, st, nf, [us](double v, int64_t) { return us(v); });
  }
}

// Moves the thread's pattern counters into their tensor's totals (a group is copied the
// first time, added to later, under the totals' lock) and zeroes them.
void flush_patterns(Scratch& sc, PatternTotals& totals) {
  const int64_t t = sc.patterns_held.tensor;
  if (t < 0) return;
  int32_t* pc = sc.patterns.data();
  std::lock_guard<std::mutex> g(totals.lock);
  int64_t* tot = totals.of(t);
  uint64_t* touched = totals.touched_of(t);
  for (int64_t q = 0; q < kPatterns; q += kPatternGroup) {
    int32_t* c = pc + q;
    uint64_t w[kPatternGroup / 2];
    memcpy(w, c, sizeof w);
    if (!(((w[0] | w[1]) | (w[2] | w[3])) | ((w[4] | w[5]) | (w[6] | w[7])))) continue;
    int64_t* d = tot + q;
    uint64_t& word = touched[q / kPatternGroup / 64];
    const uint64_t bit = uint64_t(1) << (q / kPatternGroup % 64);
    if (word & bit) {
      for (int64_t r = 0; r < kPatternGroup; ++r) d[r] += c[r];
    } else {
      for (int64_t r = 0; r < kPatternGroup; ++r) d[r] = c[r];
      word |= bit;
    }
    memset(c, 0, kPatternGroup * sizeof(int32_t));
  }
  sc.patterns_held = Held();
}

// Counts chunk c per pattern into the thread's counters (see hold for the flushes).
template <typename T>
void pattern_chunk(const T* x, const Chunk& c, Scratch& sc, PatternTotals& totals) {
  static_assert(sizeof(T) == 2, "16-bit floats only");
  hold(sc.patterns_held, c, [&] { flush_patterns(sc, totals); });
  int32_t* pc = sc.patterns.data();
  const uint16_t* h = reinterpret_cast<const uint16_t*>(x) + c.begin;
  const uint16_t* const end = h + (c.end - c.begin);
  const uint16_t* const end4 = h + ((c.end - c.begin) & ~int64_t(3));
  // A pointer loop: with an index compared against c.end GCC kept a second induction variable
  // (two more instructions per load), which cost 11% (10^8 on one core: 25.6-26.0 against
  // 22.9-23.4 ms).
  for (; h != end4; h += 4) {  // four patterns per load; their order does not matter
    uint64_t w;
    memcpy(&w, h, 8);
    pc[w & 0xFFFF]++;
    pc[(w >> 16) & 0xFFFF]++;
    pc[(w >> 32) & 0xFFFF]++;
    pc[w >> 48]++;
  }
  for (; h != end; ++h) pc[*h]++;
}

template <typename T>
void run_chunk(const HistogramParams& p, const Chunk& c, Scratch& sc, PatternTotals& totals, bool with_stats,
               ChunkStats* out) {
  const T* x = reinterpret_cast<const T*>(p.data[c.tensor]);
  int32_t* slots = p.counts ? sc.slots.data() : nullptr;
  bool edges = p.mode == kEdges;
  if constexpr (sizeof(T) == 2 && kIsF32Family<T>) {
    if (c.pattern) {  // statistics: pattern_finish overwrites the tensor's after reduce_stats
      if (out) *out = ChunkStats{kInf, -kInf, 0.0, 0.0, 0, 0, 0};
      pattern_chunk<T>(x, c, sc, totals);
      return;
    }
  }
  if constexpr (kIsF32Family<T>) {
    if (!slots || (edges && p.lookup->f32_ok)) {
      if (slots) claim(sc, p, c);
      f32_chunk<T>(x, c, slots, slots ? p.lookup : nullptr, p.num_bins + 1, with_stats, out);
      return;
    }
  }
  // the f64 table (default edges): statistics and buckets in one pass
  const bool fused = slots && edges && p.lookup->f64_ok;
  if (slots) claim(sc, p, c);
  if (with_stats || fused) d_chunk<T>(x, c, fused ? slots : nullptr, p.lookup, p.num_bins + 1, with_stats, out);
  if (!slots || fused) return;
  if (edges) {
    chunk_count(x, c.begin, c.end, slots, EdgesSlot{p.edges, p.lookup->keys, p.edges[p.num_bins]});
  } else {
    UniformBins u = uniform_bins(p, c.tensor);
    int64_t done = c.begin;
#ifdef TBF_X86
    // n < 2^31 keeps slots in int32 lanes; step == 0 (underflowing ranges) stays scalar
    if (cpu_has_avx2() && u.step != 0.0 && p.num_bins < (int64_t(1) << 30))
      done = uniform_chunk_avx2<T>(x, c.begin, c.end, slots, u);
#endif
    chunk_count(x, done, c.end, slots, UniformSlot{u});
  }
}

// Tensors [b, e) of p as a call of their own.
HistogramParams tensor_range(const HistogramParams& p, int64_t b, int64_t e) {
  HistogramParams q = p;
  q.num_tensors = e - b;
  q.data += b;
  q.numels += b;
  q.dtypes += b;
  if (q.ranges) q.ranges += 2 * b;
  if (q.counts) q.counts += b * p.num_bins;
  if (q.stats) q.stats += b * kStatsPerTensor;
  if (q.nonfinite) q.nonfinite += b * kNonFinitePerTensor;
  return q;
}

// One group of tensors (at most kPatternTensorsPerGroup of them on the pattern path).
void run_group(const HistogramParams& p, bool with_stats, bool with_counts) {
  std::vector<Chunk> chunks = make_chunks(p);
  std::vector<ChunkStats> cs(with_stats ? chunks.size() : 0);
  PatternTotals totals;
  totals.index.assign(p.num_tensors, -1);
  std::vector<int64_t> pattern_tensors;
  for (int64_t t = 0; t < p.num_tensors; ++t)
    if (pattern_path(p, t)) {
      totals.index[t] = (int64_t)pattern_tensors.size();
      pattern_tensors.push_back(t);
    }
  totals.counts.reset(new int64_t[pattern_tensors.size() * kPatterns]);
  totals.touched.assign(pattern_tensors.size() * kTouchedWords, 0);
  double bytes = 0.0;
  for (int64_t t = 0; t < p.num_tensors; ++t) bytes += (double)p.numels[t] * (double)dtype_bytes(p.dtypes[t]);
  int nt = threads_for_work((int)p.num_threads, bytes, kMinBytesPerThread);
  if (nt > (int64_t)chunks.size()) nt = (int)std::max<int64_t>(1, (int64_t)chunks.size());
  // 2 * (num_bins + 2) int32 counters per thread: fewer threads for huge bin counts
  if (with_counts) nt = threads_for_scratch(nt, 8.0 * ((double)p.num_bins + 2.0));
  std::vector<Scratch> scratch(nt);
  if (with_counts)
    for (auto& s : scratch) s.slots.assign(2 * (p.num_bins + 2), 0);
  if (!pattern_tensors.empty())  // allocated here: workers allocate nothing (cpu/parallel.h)
    for (auto& s : scratch) s.patterns.assign(kPatterns, 0);
  HistogramParams q = p;
  if (!with_counts) q.counts = nullptr;
  parallel_items((int64_t)chunks.size(), nt, [&](int64_t i, int tid) {
    const Chunk& c = chunks[i];
    ChunkStats* out = with_stats ? &cs[i] : nullptr;
    TBF_DTYPE_SWITCH(q.dtypes[c.tensor], scalar_t, run_chunk<scalar_t>(q, c, scratch[tid], totals, with_stats, out));
  });
  for (auto& s : scratch) {
    if (with_counts) flush(s, q);
    flush_patterns(s, totals);
  }
  if (with_stats) reduce_stats(p, chunks, cs);
  parallel_items((int64_t)pattern_tensors.size(), nt, [&](int64_t i, int) {
    const int64_t t = pattern_tensors[i];
    if (q.dtypes[t] == kBFloat16)
      pattern_finish<bf16_bits>(q, t, totals.of(t), totals.touched_of(t), with_stats);
    else
      pattern_finish<half_bits>(q, t, totals.of(t), totals.touched_of(t), with_stats);
  });
}

int run(const HistogramParams& p, bool with_stats, bool with_counts) {
  for (int64_t t = 0; t < p.num_tensors; ++t)
    if (p.dtypes[t] < 0 || p.dtypes[t] >= kNumDTypes) return kBadDType;
  for (int64_t t = 0; t < p.num_tensors; ++t)
    if (p.numels[t] < 0) return kBadArgument;
  if (with_counts && p.mode == kUniformAuto && with_stats) return kBadArgument;  // needs the stats first
  if (with_counts) std::fill(p.counts, p.counts + p.num_tensors * p.num_bins, int64_t(0));
  // consecutive groups of tensors, each with at most kPatternTensorsPerGroup pattern tensors
  int64_t begin = 0, in_group = 0;
  for (int64_t t = 0; t < p.num_tensors; ++t) {
    if (!pattern_path(p, t)) continue;
    if (in_group == kPatternTensorsPerGroup) {
      run_group(tensor_range(p, begin, t), with_stats, with_counts);
      begin = t;
      in_group = 0;
    }
    ++in_group;
  }
  run_group(tensor_range(p, begin, p.num_tensors), with_stats, with_counts);
  return kOk;
}

float float_from_ordered(uint32_t o) {
  uint32_t b = (o & 0x80000000u) ? (o ^ 0x80000000u) : ~o;
  float f;
  memcpy(&f, &b, 4);
  return f;
}

// Smallest float32 >= e; +inf when e exceeds every finite float (and for e = +inf).
float f32_ceil(double e) {
  float f = (float)e;
  if ((double)f < e) f = std::nextafter(f, std::numeric_limits<float>::infinity());
  return f + 0.0f;
}

// Smallest float32 > e.
float f32_above(double e) {
  float f = f32_ceil(e);
  if ((double)f == e) f = std::nextafter(f, std::numeric_limits<float>::infinity());
  return f + 0.0f;
}

uint32_t f32_ordered(float f) {
  uint32_t b;
  memcpy(&b, &f, 4);
  return ordered_bits_f32(b);
}

void build_f32_lookup(const double* edges, int64_t num_edges, EdgeLookup* lk) {
  // Thresholds as ordered float32 bits (non-decreasing): v counts edge i iff ord(v) >= t[i].
  std::vector<uint32_t> t(num_edges);
  for (int64_t i = 0; i < num_edges; ++i)
    t[i] = f32_ordered(i + 1 < num_edges ? f32_ceil(edges[i]) : f32_above(edges[i]));
  lk->f32_ok = 1;
  lk->reserved = 0;
  for (int64_t k = 0; k < kLookupSize; ++k) {
    float lo = float_from_ordered((uint32_t)k << 16);
    if (std::isnan(lo) || std::isinf(lo)) {  // keys holding only Inf/NaN patterns: slot 0
      lk->f32[k] = 0xFFFFFFFFull;
      continue;
    }
    uint32_t lo_ord = (uint32_t)k << 16;
    uint64_t hi_ord = (uint64_t)(k + 1) << 16;
    int64_t base = std::lower_bound(t.begin(), t.end(), lo_ord) - t.begin();               // t < lo
    int64_t end = std::lower_bound(t.begin(), t.end(), (uint32_t)std::min<uint64_t>(hi_ord, 0xFFFFFFFFu)) - t.begin();
    if (hi_ord > 0xFFFFFFFFu) end = num_edges;
    if (end - base > 1) lk->f32_ok = 0;
    lk->f32[k] = ((uint64_t)base << 32) | (end > base ? t[base] : 0xFFFFFFFFu);
  }
}

double double_from_ordered(uint64_t o) {
  uint64_t b = (o >> 63) ? (o ^ (uint64_t(1) << 63)) : ~o;
  double d;
  memcpy(&d, &b, 8);
  return d;
}

void build_f64_lookup(const double* edges, int64_t num_edges, EdgeLookup* lk) {
  // Thresholds as ordered bits (non-decreasing): v counts edge i iff ord(v) >= t[i]; the
  // last edge counts only above it (closed last bin).
  std::vector<uint64_t> t(num_edges);
  for (int64_t i = 0; i < num_edges; ++i) {
    double e = i + 1 < num_edges ? edges[i] : std::nextafter(edges[i], kInf);
    t[i] = ordered_bits(e + 0.0);
  }
  lk->f64_ok = num_edges + 2 <= 0xFFFF;
  for (int64_t k = 0; k < kLookupSize; ++k) {
    uint64_t lo_ord = (uint64_t)k << 48;
    if (!is_finite(double_from_ordered(lo_ord))) {  // keys holding only Inf/NaN patterns: slot 0
      lk->f64[k] = 0;
      continue;
    }
    int64_t base = std::lower_bound(t.begin(), t.end(), lo_ord) - t.begin();  // t < lo
    int64_t end = k + 1 < kLookupSize
                      ? std::lower_bound(t.begin(), t.end(), (uint64_t)(k + 1) << 48) - t.begin()
                      : num_edges;
    if (end - base > 1) lk->f64_ok = 0;
    lk->f64[k] = end > base ? ((t[base] << 16) | (uint64_t)((base + 1) & 0xFFFF)) : (uint64_t)(base & 0xFFFF);
  }
}

// Slot of every 16-bit float pattern (EdgeLookup::h16), by the float32 table: what
// f32_one computes for its exact float32 value (0 for NaN/Inf).
void build_h16_lookup(int64_t num_edges, EdgeLookup* lk) {
  lk->h16_ok = lk->f32_ok && num_edges + 1 <= 0xFFFF;
  for (int64_t h = 0; h < kLookupSize; ++h) {
    for (int kind = 0; kind < 2; ++kind) {
      float v = kind == 0 ? half_to_float((uint16_t)h) : bf16_to_float((uint16_t)h);
      uint16_t slot = 0;
      if (lk->h16_ok && std::isfinite(v)) {
        float c = v + 0.0f;
        uint32_t bits;
        memcpy(&bits, &c, 4);
        slot = (uint16_t)f32_slot(ordered_bits_f32(bits), lk->f32);
      }
      lk->h16[kind][h] = slot;
    }
  }
}

// TensorBoard's default edges, bit for bit as torch builds them (iterated float64
// products, spec 1.2): the edge list f32_chunk_geo512 computes slots for.
bool is_default_edges(const double* edges, int64_t num_edges) {
  std::vector<double> pos;
  for (double v = 1e-12; v < 1e20; v *= 1.1) pos.push_back(v);
  const int64_t n = (int64_t)pos.size();
  if (num_edges != 2 * n + 1 || edges[n] != 0.0) return false;
  for (int64_t k = 0; k < n; ++k)
    if (edges[n + 1 + k] != pos[k] || edges[n - 1 - k] != -pos[k]) return false;
  return true;
}

}  // namespace

void build_edge_lookup(const double* edges, int64_t num_edges, EdgeLookup* lookup) {
  int64_t e = 0;
  for (int64_t k = 0; k < kLookupSize; ++k) {
    while (e < num_edges && lookup_key(edges[e]) < k) ++e;
    int64_t f = e;
    while (f < num_edges && lookup_key(edges[f]) == k) ++f;
    lookup->keys[k].base = (int32_t)e;
    lookup->keys[k].count = (int32_t)(f - e);
    lookup->keys[k].edge = f > e ? edges[e] : kInf;
  }
  build_f32_lookup(edges, num_edges, lookup);
  build_f64_lookup(edges, num_edges, lookup);
  build_h16_lookup(num_edges, lookup);
  lookup->geo_ok = lookup->f32_ok && is_default_edges(edges, num_edges);
  lookup->reserved2 = 0;
}

int histogram_stats_cpu(const HistogramParams& p) { return run(p, true, false); }

int histogram_count_cpu(const HistogramParams& p, bool with_stats) { return run(p, with_stats, true); }

}  // namespace tbfast
