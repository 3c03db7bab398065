// CPU histogram kernels (see csrc/histogram.h for the semantics).
//
// Work split: every tensor is cut into fixed chunks of kChunk elements; the chunks of all
// tensors form one work list that threads take from an atomic counter. A thread buckets a
// chunk into its private scratch histogram, then adds it into the tensor's row with
// integer atomics (exact and order-free). Each chunk's float statistics go to their own
// slot and are reduced per tensor in chunk order afterwards, so sums are deterministic
// whatever the number of threads. The private scratch histograms together stay under
// kScratchBudgetBytes (csrc/cpu/parallel.h): huge bin counts run on fewer threads, which
// changes no count and no sum.
//
// Two inner loops:
//  * float32 / float16 / bfloat16 with edges whose float32 lookup is valid (the default
//    edges): statistics in 8 fixed lanes (AVX2 when the CPU has it, else scalar code that
//    computes the same lanes, so the result does not depend on the CPU) and an
//    integer-only bucket: ordered bits -> one table load -> two compares.
//  * everything else: values loaded as double, EdgeKey lookup or the uniform formula.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TBF_X86 1
#endif

#include "cpu/parallel.h"
#include "dispatch.h"
#include "histogram.h"

namespace tbfast {

namespace {

constexpr int64_t kChunk = int64_t(1) << 16;
constexpr double kInf = std::numeric_limits<double>::infinity();

struct Chunk {
  int64_t tensor, begin, end;
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
struct Scratch {
  std::vector<int32_t> slots;  // a chunk has at most kChunk elements: int32 cannot overflow
};

std::vector<Chunk> make_chunks(const HistogramParams& p) {
  std::vector<Chunk> chunks;
  for (int64_t t = 0; t < p.num_tensors; ++t)
    for (int64_t b = 0; b < p.numels[t]; b += kChunk) chunks.push_back({t, b, std::min(b + kChunk, p.numels[t])});
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

// Finite statistics of a chunk, branch-free: non-finite values are replaced by neutral
// elements. Four independent accumulators per sum, combined in a fixed order.
template <typename T>
ChunkStats chunk_stats(const T* x, int64_t begin, int64_t end) {
  double mn[4] = {kInf, kInf, kInf, kInf}, mx[4] = {-kInf, -kInf, -kInf, -kInf};
  double s[4] = {0, 0, 0, 0}, q[4] = {0, 0, 0, 0};
  int64_t nan = 0, pinf = 0, ninf = 0;
  auto one = [&](double v, int j) {
    bool fin = is_finite(v);
    double z = fin ? v : 0.0;
    mn[j] = std::min(mn[j], fin ? v : kInf);
    mx[j] = std::max(mx[j], fin ? v : -kInf);
    s[j] += z;
    q[j] += z * z;
    nan += v != v;
    pinf += v == kInf;
    ninf += v == -kInf;
  };
  int64_t i = begin;
  for (; i + 4 <= end; i += 4) {
    one(Load<T>::get(x, i), 0);
    one(Load<T>::get(x, i + 1), 1);
    one(Load<T>::get(x, i + 2), 2);
    one(Load<T>::get(x, i + 3), 3);
  }
  for (; i < end; ++i) one(Load<T>::get(x, i), 0);
  return {std::min(std::min(mn[0], mn[1]), std::min(mn[2], mn[3])),
          std::max(std::max(mx[0], mx[1]), std::max(mx[2], mx[3])),
          (s[0] + s[1]) + (s[2] + s[3]),
          (q[0] + q[1]) + (q[2] + q[3]),
          nan,
          pinf,
          ninf};
}

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
// float32-family path. Statistics live in 8 lanes: lane j takes elements begin + 8k + j.
// ======================================================================================

struct Lanes {
  float mn[8], mx[8];
  double s[8], q[8];
};

void lanes_init(Lanes& L) {
  for (int j = 0; j < 8; ++j) {
    L.mn[j] = std::numeric_limits<float>::infinity();
    L.mx[j] = -std::numeric_limits<float>::infinity();
    L.s[j] = L.q[j] = 0.0;
  }
}

ChunkStats lanes_finish(const Lanes& L, const ChunkStats& nonfinite) {
  ChunkStats st = nonfinite;
  float mn = L.mn[0], mx = L.mx[0];
  for (int j = 1; j < 8; ++j) {
    mn = std::min(mn, L.mn[j]);
    mx = std::max(mx, L.mx[j]);
  }
  st.mn = mn;
  st.mx = mx;
  st.sum = ((L.s[0] + L.s[1]) + (L.s[2] + L.s[3])) + ((L.s[4] + L.s[5]) + (L.s[6] + L.s[7]));
  st.sumsq = ((L.q[0] + L.q[1]) + (L.q[2] + L.q[3])) + ((L.q[4] + L.q[5]) + (L.q[6] + L.q[7]));
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
  for (int64_t i = begin; i < end; ++i) f32_one(load_f32<T>(x, i), (int)((i - begin) & 7), L, nf, slots, tab);
}

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

// 8 elements per step: finite test, lane statistics and ordered bits in AVX2; the table
// loads and counter increments stay scalar (gathers are slower than scalar loads on the
// CPUs we measured). Non-finite lanes are zeroed to ordered bits 0, which maps to slot 0.
template <typename T>
__attribute__((target("avx2,f16c"))) void f32_chunk_avx2(const T* x, int64_t begin, int64_t end, int32_t* slots,
                                                         const uint64_t* tab, bool with_stats,
                                                         Lanes& L, ChunkStats& nf) {
  const __m256i exp_mask = _mm256_set1_epi32(0x7F800000);
  const __m256i sign = _mm256_set1_epi32((int)0x80000000u);
  const __m256 zero = _mm256_setzero_ps();
  __m256 mn = _mm256_loadu_ps(L.mn), mx = _mm256_loadu_ps(L.mx);
  __m256d s0 = _mm256_loadu_pd(L.s), s1 = _mm256_loadu_pd(L.s + 4);
  __m256d q0 = _mm256_loadu_pd(L.q), q1 = _mm256_loadu_pd(L.q + 4);
  alignas(32) uint32_t ord[8];
  int64_t i = begin;
  for (; i + 8 <= end; i += 8) {
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
        vmn = _mm256_blendv_ps(v, _mm256_set1_ps(std::numeric_limits<float>::infinity()),
                               _mm256_castsi256_ps(nonfin));
        vmx = _mm256_blendv_ps(v, _mm256_set1_ps(-std::numeric_limits<float>::infinity()),
                               _mm256_castsi256_ps(nonfin));
      }
      mn = _mm256_min_ps(mn, vmn);
      mx = _mm256_max_ps(mx, vmx);
      __m256d d0 = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
      __m256d d1 = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
      s0 = _mm256_add_pd(s0, d0);
      s1 = _mm256_add_pd(s1, d1);
      q0 = _mm256_add_pd(q0, _mm256_mul_pd(d0, d0));
      q1 = _mm256_add_pd(q1, _mm256_mul_pd(d1, d1));
    }
    if (slots) {
      __m256i b = _mm256_castps_si256(_mm256_add_ps(v, zero));
      __m256i o = _mm256_xor_si256(b, _mm256_or_si256(_mm256_srai_epi32(b, 31), sign));
      _mm256_store_si256(reinterpret_cast<__m256i*>(ord), _mm256_andnot_si256(nonfin, o));
      for (int j = 0; j < 8; ++j) slots[2 * f32_slot(ord[j], tab) + (j & 1)]++;
    }
  }
  _mm256_storeu_ps(L.mn, mn);
  _mm256_storeu_ps(L.mx, mx);
  _mm256_storeu_pd(L.s, s0);
  _mm256_storeu_pd(L.s + 4, s1);
  _mm256_storeu_pd(L.q, q0);
  _mm256_storeu_pd(L.q + 4, q1);
  for (; i < end; ++i) {  // tail: same lanes as the scalar definition
    float v = load_f32<T>(x, i);
    if (with_stats) {
      f32_one(v, (int)((i - begin) & 7), L, nf, slots, tab);
    } else {
      Lanes dummy = L;
      f32_one(v, (int)((i - begin) & 7), dummy, nf, slots, tab);
    }
  }
}

// TBFAST_DISABLE_SIMD=1 forces the scalar definition (tests compare the two bit for bit).
// Equal-width bins, numpy-exact, 4 double lanes at a time: the same operations as
// UniformBins::bucket (subtract, divide, multiply, truncate, one fix-up step against
// i * step + first), so counts equal the scalar path's. Slot 0 = outside / non-finite.
template <typename T>
__attribute__((target("avx2,f16c"))) inline void load_pd8(const T* x, int64_t i, __m256d& a, __m256d& b) {
  __m256 v = load8<T>(x, i);
  a = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
  b = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
}
template <>
__attribute__((target("avx2,f16c"))) inline void load_pd8<double>(const double* x, int64_t i, __m256d& a,
                                                                   __m256d& b) {
  a = _mm256_loadu_pd(x + i);
  b = _mm256_loadu_pd(x + i + 4);
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

bool cpu_has_avx2() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c") &&
                         !(getenv("TBFAST_DISABLE_SIMD") && getenv("TBFAST_DISABLE_SIMD")[0] == '1');
  return ok;
}
#endif

template <typename T>
void f32_chunk(const T* x, const Chunk& c, int32_t* slots, const EdgeLookup* lk, bool with_stats, ChunkStats* out) {
  Lanes L;
  lanes_init(L);
  ChunkStats nf{0, 0, 0, 0, 0, 0, 0};
  const uint64_t* tab = lk ? lk->f32 : nullptr;
#ifdef TBF_X86
  if (cpu_has_avx2()) {
    f32_chunk_avx2<T>(x, c.begin, c.end, slots, tab, with_stats, L, nf);
  } else
#endif
  {
    f32_chunk_scalar<T>(x, c.begin, c.end, slots, tab, L, nf);
  }
  if (with_stats) *out = lanes_finish(L, nf);
}

template <typename T>
constexpr bool kIsF32Family = std::is_same<T, float>::value || std::is_same<T, half_bits>::value ||
                              std::is_same<T, bf16_bits>::value;

// ======================================================================================
// Driver
// ======================================================================================

void flush(Scratch& sc, int64_t* row, int64_t num_bins) {
  int32_t* slots = sc.slots.data() + 2;  // skip slot 0
  for (int64_t b = 0; b < num_bins; ++b) {
    int64_t c = (int64_t)slots[2 * b] + slots[2 * b + 1];
    if (c) {
      __atomic_fetch_add(&row[b], c, __ATOMIC_RELAXED);
      slots[2 * b] = slots[2 * b + 1] = 0;
    }
  }
  sc.slots[0] = sc.slots[1] = sc.slots[2 * (num_bins + 1)] = sc.slots[2 * (num_bins + 1) + 1] = 0;
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

template <typename T>
void run_chunk(const HistogramParams& p, const Chunk& c, Scratch& sc, bool with_stats, ChunkStats* out) {
  const T* x = reinterpret_cast<const T*>(p.data[c.tensor]);
  int32_t* slots = p.counts ? sc.slots.data() : nullptr;
  bool edges = p.mode == kEdges;
  if constexpr (kIsF32Family<T>) {
    if (!slots || (edges && p.lookup->f32_ok)) {
      f32_chunk<T>(x, c, slots, slots ? p.lookup : nullptr, with_stats, out);
      if (slots) flush(sc, p.counts + c.tensor * p.num_bins, p.num_bins);
      return;
    }
  }
  if (with_stats) *out = chunk_stats<T>(x, c.begin, c.end);
  if (!slots) return;
  if (edges) {
    chunk_count(x, c.begin, c.end, slots, EdgesSlot{p.edges, p.lookup->keys, p.edges[p.num_bins]});
  } else {
    double first, last;
    if (p.mode == kUniformAuto) {
      const double* st = p.stats + c.tensor * kStatsPerTensor;
      auto_range(st[0], st[1], &first, &last);
    } else {
      first = p.ranges[2 * c.tensor];
      last = p.ranges[2 * c.tensor + 1];
    }
    UniformBins u(first, last, p.num_bins);
    int64_t done = c.begin;
#ifdef TBF_X86
    if constexpr (kIsF32Family<T> || std::is_same<T, double>::value) {
      // n < 2^31 keeps slots in int32 lanes; step == 0 (underflowing ranges) stays scalar
      if (cpu_has_avx2() && u.step != 0.0 && p.num_bins < (int64_t(1) << 30))
        done = uniform_chunk_avx2<T>(x, c.begin, c.end, slots, u);
    }
#endif
    chunk_count(x, done, c.end, slots, UniformSlot{u});
  }
  flush(sc, p.counts + c.tensor * p.num_bins, p.num_bins);
}

int run(const HistogramParams& p, bool with_stats, bool with_counts) {
  for (int64_t t = 0; t < p.num_tensors; ++t)
    if (p.dtypes[t] < 0 || p.dtypes[t] >= kNumDTypes) return kBadDType;
  for (int64_t t = 0; t < p.num_tensors; ++t)
    if (p.numels[t] < 0) return kBadArgument;
  if (with_counts && p.mode == kUniformAuto && with_stats) return kBadArgument;  // needs the stats first
  if (with_counts) std::fill(p.counts, p.counts + p.num_tensors * p.num_bins, int64_t(0));
  std::vector<Chunk> chunks = make_chunks(p);
  std::vector<ChunkStats> cs(with_stats ? chunks.size() : 0);
  int nt = std::max(1, (int)p.num_threads);
  if (nt > (int64_t)chunks.size()) nt = (int)std::max<int64_t>(1, (int64_t)chunks.size());
  // 2 * (num_bins + 2) int32 counters per thread: fewer threads for huge bin counts
  if (with_counts) nt = threads_for_scratch(nt, 8.0 * ((double)p.num_bins + 2.0));
  std::vector<Scratch> scratch(nt);
  if (with_counts)
    for (auto& s : scratch) s.slots.assign(2 * (p.num_bins + 2), 0);
  HistogramParams q = p;
  if (!with_counts) q.counts = nullptr;
  parallel_items((int64_t)chunks.size(), nt, [&](int64_t i, int tid) {
    const Chunk& c = chunks[i];
    ChunkStats* out = with_stats ? &cs[i] : nullptr;
    TBF_DTYPE_SWITCH(q.dtypes[c.tensor], scalar_t, run_chunk<scalar_t>(q, c, scratch[tid], with_stats, out));
  });
  if (with_stats) reduce_stats(p, chunks, cs);
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
}

int histogram_stats_cpu(const HistogramParams& p) { return run(p, true, false); }

int histogram_count_cpu(const HistogramParams& p, bool with_stats) { return run(p, with_stats, true); }

}  // namespace tbfast
