// CPU PR-curve kernel (see csrc/pr_curve.h for the semantics).
//
// Work split: the rows are cut into blocks of kPRBlockRows; threads take blocks from an
// atomic counter (parallel_items). Unweighted, each thread counts into its own int64
// array [C, T, 2] (the first thread straight into the output when it runs alone), and the
// arrays are added up after the join: integer sums, so the result never depends on the
// thread count. Weighted, each thread sums one block into a float64 scratch array, then
// waits for its turn and adds the touched part of the scratch into the output in block
// order: the same order of float64 additions as np.histogram, whatever the thread count.
//
// float32 probabilities, unweighted (the common case) take an AVX2 path when the CPU has
// it: the bucket offsets of 8 elements at a time in SIMD, scalar increments into int32
// counters (see "AVX2 path" below). Its scalar twin is the generic code, which gives the
// same counts; TBFAST_DISABLE_SIMD=1 forces it.
#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <thread>
#include <type_traits>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TBF_X86 1
#endif

#include "cpu/parallel.h"
#include "pr_curve.h"

namespace tbfast {

namespace {

struct Ctx {
  int64_t C, T;
  float tm1f;
  double tm1d;
  bool half_rounding;
};

// ---- prediction loads and buckets ------------------------------------------------------

template <typename P>
struct Pred;
template <>
struct Pred<float> {
  using V = float;
  static V load(const float* x, int64_t i) { return x[i]; }
  static int64_t bucket(V v, const Ctx& k) { return pr_bucket_f32(v, k.tm1f); }
  // One unsigned compare: bit patterns of +0 .. 1.0 are exactly 0 .. 0x3F800000.
  static bool in_unit(V v) {
    uint32_t b;
    memcpy(&b, &v, sizeof b);
    return b <= 0x3F800000u || b == 0x80000000u;
  }
};
template <>
struct Pred<double> {
  using V = double;
  static V load(const double* x, int64_t i) { return x[i]; }
  static int64_t bucket(V v, const Ctx& k) { return pr_bucket_f64(v, k.tm1d); }
  static bool in_unit(V v) { return v >= 0 && v <= 1; }
};
template <>
struct Pred<half_bits> {
  using V = float;
  static V load(const half_bits* x, int64_t i) { return half_to_float(x[i].bits); }
  static int64_t bucket(V v, const Ctx& k) { return pr_bucket_f16(v, k.tm1f, k.half_rounding); }
  static bool in_unit(V v) { return v >= 0 && v <= 1; }
};
template <>
struct Pred<bf16_bits> {
  using V = float;
  static V load(const bf16_bits* x, int64_t i) { return bf16_to_float(x[i].bits); }
  static int64_t bucket(V v, const Ctx& k) { return pr_bucket_f16(v, k.tm1f, k.half_rounding); }
  static bool in_unit(V v) { return v >= 0 && v <= 1; }
};

// ---- label loads: 0/1 value (or -1 when bad), class index (or -1) -----------------------

template <typename L>
struct Lab {
  static int bit(const L* l, int64_t i) {
    L v = l[i];
    return v == L(0) ? 0 : (v == L(1) ? 1 : -1);
  }
  static int64_t index(const L* l, int64_t i) {
    if (std::is_integral<L>::value) {
      // Every kernel integer type fits int64; out-of-range values stay out of range.
      int64_t k = (int64_t)l[i];
      return k >= 0 ? k : -1;
    }
    double d = (double)l[i];
    if (!(d >= 0 && d < 9.2e18)) return -1;
    int64_t k = (int64_t)d;
    return (double)k == d ? k : -1;
  }
};
template <>
struct Lab<bool> {
  // Read the byte: any non-zero byte is true, as torch and NumPy treat it.
  static int bit(const bool* l, int64_t i) { return reinterpret_cast<const uint8_t*>(l)[i] != 0; }
  static int64_t index(const bool* l, int64_t i) { return bit(l, i); }
};

// ---- per-thread accumulators ------------------------------------------------------------

struct Scratch {
  int64_t* counts = nullptr;       // unweighted: [C, T, 2]
  std::vector<int64_t> own;        // storage when not writing straight into the output
  std::vector<int64_t> counts2;    // binary fast path: second count array (small T only)
  std::vector<double> sums;        // weighted: [C, T, 2], zero between blocks
  std::vector<int64_t> lo, hi;     // weighted: touched bucket range per class
  std::vector<double> row;         // softmax: exp(x - max) of one row
  std::vector<int32_t> c32;        // AVX2 path: int32 counters, [copies][C, T, 2]
  int64_t rows32 = 0;              // rows counted into c32 since its last flush
  int64_t bad[kNumBadKinds] = {0};
};

template <bool W>
inline void add(Scratch& s, const Ctx& k, int64_t c, int64_t b, int pos, double w) {
  int64_t j = (c * k.T + b) * 2 + pos;
  if (W) {
    s.sums[j] += w;
    s.lo[c] = b < s.lo[c] ? b : s.lo[c];
    s.hi[c] = b > s.hi[c] ? b : s.hi[c];
  } else {
    s.counts[j]++;
  }
}

// Binary, probabilities, unweighted: the hot loop. Pairs of elements go to two count
// arrays (cnt, cnt2) so that runs of equal buckets do not serialise on one counter.
template <typename P, typename L>
inline void binary_one(const P* x, const L* lab, int64_t i, const Ctx& k, int64_t* cnt, Scratch& s) {
  typename Pred<P>::V v = Pred<P>::load(x, i);
  int l = Lab<L>::bit(lab, i);
  if (__builtin_expect(l < 0, 0)) {
    s.bad[kBadLabel]++;
    return;
  }
  if (__builtin_expect(!Pred<P>::in_unit(v), 0)) {
    s.bad[v != v ? kBadNaNPrediction : kBadPredictionRange]++;
    return;
  }
  cnt[2 * Pred<P>::bucket(v, k) + l]++;
}

template <typename P, typename L>
void block_binary(const PRCurveParams& p, const Ctx& k, int64_t r0, int64_t r1, Scratch& s) {
  const P* x = static_cast<const P*>(p.predictions);
  const L* lab = static_cast<const L*>(p.labels);
  int64_t* cnt = s.counts;
  int64_t* cnt2 = s.counts2.empty() ? s.counts : s.counts2.data();
  int64_t i = r0;
  for (; i + 2 <= r1; i += 2) {
    binary_one<P, L>(x, lab, i, k, cnt, s);
    binary_one<P, L>(x, lab, i + 1, k, cnt2, s);
  }
  if (i < r1) binary_one<P, L>(x, lab, i, k, cnt, s);
}

// Multi-class probabilities, unweighted: class indices (kIndex) or a 0/1 matrix.
template <typename P, typename L, bool kIndex>
void block_classes(const PRCurveParams& p, const Ctx& k, int64_t r0, int64_t r1, Scratch& s) {
  const P* x = static_cast<const P*>(p.predictions);
  const L* lab = static_cast<const L*>(p.labels);
  const int64_t C = k.C, T2 = 2 * k.T;
  int64_t* cnt = s.counts;
  for (int64_t r = r0; r < r1; ++r) {
    int64_t idx = -1;
    if (kIndex) {
      idx = Lab<L>::index(lab, r);
      if (idx < 0 || idx >= C) {
        s.bad[kBadClassIndex]++;
        continue;
      }
    }
    const P* xr = x + r * C;
    for (int64_t c = 0; c < C; ++c) {
      int pos = kIndex ? (c == idx) : Lab<L>::bit(lab, r * C + c);
      typename Pred<P>::V v = Pred<P>::load(xr, c);
      if (!kIndex && pos < 0) {
        s.bad[kBadLabel]++;
        continue;
      }
      if (__builtin_expect(!Pred<P>::in_unit(v), 0)) {
        s.bad[v != v ? kBadNaNPrediction : kBadPredictionRange]++;
        continue;
      }
      cnt[c * T2 + 2 * Pred<P>::bucket(v, k) + pos]++;
    }
  }
}

// Any case, one row at a time: weight, label index, logits, then one entry per class.
template <typename P, typename L, bool W>
void block_rows(const PRCurveParams& p, const Ctx& k, int64_t r0, int64_t r1, Scratch& s) {
  const P* x = static_cast<const P*>(p.predictions);
  const L* lab = static_cast<const L*>(p.labels);
  const int64_t C = k.C;
  for (int64_t r = r0; r < r1; ++r) {
    double w = 1.0;
    if (W) {
      if (p.weights == nullptr)
        w = p.weight_scalar;
      else if (p.weight_dtype == kFloat32)
        w = (double)static_cast<const float*>(p.weights)[r];
      else
        w = static_cast<const double*>(p.weights)[r];
      if (!(w >= 0 && w <= 1.7976931348623157e308)) {
        s.bad[kBadWeight]++;
        continue;
      }
    }
    int64_t idx = -1;
    if (p.label_mode == kLabelIndex) {
      idx = Lab<L>::index(lab, r);
      if (idx < 0 || idx >= C) {
        s.bad[kBadClassIndex]++;
        continue;
      }
    }
    const P* xr = x + r * C;
    double sum = 0.0;
    if (p.prob_mode == kSoftmax) {
      double mx = -INFINITY;
      int64_t nonfinite = 0;
      for (int64_t c = 0; c < C; ++c) {
        double v = (double)Pred<P>::load(xr, c);
        if (!std::isfinite(v))
          nonfinite++;
        else
          mx = v > mx ? v : mx;
      }
      if (nonfinite) {
        s.bad[kBadLogit] += nonfinite;
        continue;
      }
      for (int64_t c = 0; c < C; ++c) {
        double e = std::exp((double)Pred<P>::load(xr, c) - mx);
        s.row[c] = e;
        sum += e;
      }
    }
    for (int64_t c = 0; c < C; ++c) {
      int pos = idx >= 0 ? (c == idx) : Lab<L>::bit(lab, r * C + c);
      if (pos < 0) {
        s.bad[kBadLabel]++;
        continue;
      }
      int64_t b;
      if (p.prob_mode == kProbabilities) {
        typename Pred<P>::V v = Pred<P>::load(xr, c);
        if (!(v >= 0 && v <= 1)) {
          s.bad[v != v ? kBadNaNPrediction : kBadPredictionRange]++;
          continue;
        }
        b = Pred<P>::bucket(v, k);
      } else if (p.prob_mode == kSoftmax) {
        b = pr_bucket_f64(s.row[c] / sum, k.tm1d);
      } else {
        double v = (double)Pred<P>::load(xr, c);
        if (!std::isfinite(v)) {
          s.bad[kBadLogit]++;
          continue;
        }
        b = pr_bucket_f64(1.0 / (1.0 + std::exp(-v)), k.tm1d);
      }
      add<W>(s, k, c, b, pos, w);
    }
  }
}

// ---- AVX2 path: float32 probabilities, unweighted -----------------------------------------
//
// The rows of a block are read as one flat float32 stream, G rows (G * C elements, a
// multiple of 8) at a time: V = G * C / 8 vectors whose lane -> (class, row in group)
// pattern is the same for every group, so it is precomputed once (LanePlan). Per group:
// one pass checks every prediction (and 0/1 label) in SIMD; a group with any bad value
// (or bad class index) is handed whole to the scalar code, which counts the bad values
// and the good elements exactly as it always does. Otherwise a second pass computes each
// lane's counter offset, class * 2T + 2 * floor(p * (T-1)) + positive, with the same
// float32 multiply and truncation as pr_bucket_f32 (so the buckets are the scalar
// ones), and increments the counters one by one: the increments are the bottleneck, and
// gathers/scatters or conflict detection would not be faster. Counters are int32 per
// thread (half the cache footprint of int64), flushed into the thread's int64 counts
// before they could overflow and at the end. A binary curve (C = 1) sends odd lanes to a
// second copy of the counters, so that runs of equal buckets do not serialise on one
// memory location.

constexpr int64_t kSimdMaxClasses = 1024;           // lane tables: V <= C vectors
constexpr int64_t kSimdInt32Cells = int64_t(1) << 18;  // int32 counters up to 1 MiB

struct LanePlan {
  int64_t G = 0, V = 0;  // rows and vectors per group; V == 0: no SIMD path
  int64_t copies = 1;     // counter copies (2 for a binary curve)
  std::vector<int32_t> base, cls, row;  // per lane: class * 2T (+ copy offset), class, row in group
};

#ifdef TBF_X86
bool cpu_has_avx2() {
  static const bool ok = __builtin_cpu_supports("avx2") &&
                         !(getenv("TBFAST_DISABLE_SIMD") && getenv("TBFAST_DISABLE_SIMD")[0] == '1');
  return ok;
}

LanePlan make_plan(const Ctx& k) {
  LanePlan plan;
  int64_t g = 8;
  while (g > 1 && (k.C * (g / 2)) % 8 == 0) g /= 2;  // smallest G with G * C % 8 == 0
  plan.G = g;
  plan.V = g * k.C / 8;
  const int64_t cells = k.C * k.T * 2;
  plan.copies = (k.C == 1 && cells <= kSimdInt32Cells / 2) ? 2 : 1;
  for (int64_t e = 0; e < plan.V * 8; ++e) {
    int64_t c = e % k.C;
    plan.cls.push_back((int32_t)c);
    plan.row.push_back((int32_t)(e / k.C));
    plan.base.push_back((int32_t)(c * 2 * k.T + (plan.copies == 2 && (e & 1) ? cells : 0)));
  }
  return plan;
}

// Lanes of v that are not in [0, 1] as float32 bit patterns: +0 .. 1.0 or -0.0 (Pred<float>::in_unit).
__attribute__((target("avx2"))) inline int bad_pred_lanes(__m256 v) {
  const __m256i one = _mm256_set1_epi32(0x3F800000), negz = _mm256_set1_epi32((int)0x80000000u);
  __m256i b = _mm256_castps_si256(v);
  __m256i ok = _mm256_or_si256(_mm256_cmpeq_epi32(_mm256_min_epu32(b, one), b), _mm256_cmpeq_epi32(b, negz));
  return _mm256_movemask_ps(_mm256_castsi256_ps(ok)) ^ 0xFF;
}

// 0/1 labels of 8 elements as int32 0/1 lanes; bad gets a bit per lane that is neither
// (Lab<L>::bit: any non-zero bool byte is true).
template <typename L>
__attribute__((target("avx2"))) inline __m256i load_bits8(const L* l, int64_t e, int& bad);

// Low 32 bits of 8 int64 lanes (a: 0-3, b: 4-7) in order.
__attribute__((target("avx2"))) inline __m256i pack_lo32(__m256i a, __m256i b) {
  __m256 s = _mm256_shuffle_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(b), _MM_SHUFFLE(2, 0, 2, 0));
  return _mm256_permute4x64_epi64(_mm256_castps_si256(s), _MM_SHUFFLE(3, 1, 2, 0));
}

__attribute__((target("avx2"))) inline __m256i bits_le1(__m256i w, int& bad) {
  const __m256i one = _mm256_set1_epi32(1);
  bad |= _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_min_epu32(w, one), w))) ^ 0xFF;
  return w;
}
template <>
__attribute__((target("avx2"))) inline __m256i load_bits8<bool>(const bool* l, int64_t e, int&) {
  __m256i w = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(l + e)));
  return _mm256_min_epu32(w, _mm256_set1_epi32(1));
}
template <>
__attribute__((target("avx2"))) inline __m256i load_bits8<uint8_t>(const uint8_t* l, int64_t e, int& bad) {
  return bits_le1(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(l + e))), bad);
}
template <>
__attribute__((target("avx2"))) inline __m256i load_bits8<int32_t>(const int32_t* l, int64_t e, int& bad) {
  return bits_le1(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(l + e)), bad);
}
template <>
__attribute__((target("avx2"))) inline __m256i load_bits8<int64_t>(const int64_t* l, int64_t e, int& bad) {
  __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(l + e));
  __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(l + e + 4));
  const __m256i not1 = _mm256_set1_epi64x(~int64_t(1)), zero = _mm256_setzero_si256();
  __m256i ok = pack_lo32(_mm256_cmpeq_epi64(_mm256_and_si256(a, not1), zero),
                         _mm256_cmpeq_epi64(_mm256_and_si256(b, not1), zero));
  bad |= _mm256_movemask_ps(_mm256_castsi256_ps(ok)) ^ 0xFF;
  return pack_lo32(a, b);
}
template <>
__attribute__((target("avx2"))) inline __m256i load_bits8<float>(const float* l, int64_t e, int& bad) {
  __m256 v = _mm256_loadu_ps(l + e);
  __m256 is1 = _mm256_cmp_ps(v, _mm256_set1_ps(1.0f), _CMP_EQ_OQ);
  __m256 ok = _mm256_or_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_EQ_OQ), is1);
  bad |= _mm256_movemask_ps(ok) ^ 0xFF;
  return _mm256_and_si256(_mm256_castps_si256(is1), _mm256_set1_epi32(1));
}
template <>
__attribute__((target("avx2"))) inline __m256i load_bits8<double>(const double* l, int64_t e, int& bad) {
  __m256d a = _mm256_loadu_pd(l + e), b = _mm256_loadu_pd(l + e + 4);
  const __m256d one = _mm256_set1_pd(1.0), zero = _mm256_setzero_pd();
  __m256i a1 = _mm256_castpd_si256(_mm256_cmp_pd(a, one, _CMP_EQ_OQ));
  __m256i b1 = _mm256_castpd_si256(_mm256_cmp_pd(b, one, _CMP_EQ_OQ));
  __m256i a0 = _mm256_castpd_si256(_mm256_cmp_pd(a, zero, _CMP_EQ_OQ));
  __m256i b0 = _mm256_castpd_si256(_mm256_cmp_pd(b, zero, _CMP_EQ_OQ));
  __m256i is1 = pack_lo32(a1, b1);
  __m256i ok = _mm256_or_si256(pack_lo32(a0, b0), is1);
  bad |= _mm256_movemask_ps(_mm256_castsi256_ps(ok)) ^ 0xFF;
  return _mm256_and_si256(is1, _mm256_set1_epi32(1));
}

// Class indices of rows r .. r + G - 1 as int32 lanes 0 .. G - 1; bad is set when one is
// outside [0, C). int32/int64 labels in SIMD when G >= 4 (the common case: C = 10 has
// G = 4); else scalar (lanes built from memory: a store-forwarding stall per group).
template <typename L>
__attribute__((target("avx2"))) inline __m256i load_index8(const L* lab, int64_t r, int64_t G, int64_t C,
                                                           int& bad) {
  if (std::is_same<L, int64_t>::value && G >= 4) {
    const int64_t* l = reinterpret_cast<const int64_t*>(lab) + r;
    __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(l));
    __m256i b = G == 8 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(l + 4)) : a;
    const __m256i lo = _mm256_set1_epi64x(-1), hi = _mm256_set1_epi64x(C);
    __m256i ok = pack_lo32(_mm256_and_si256(_mm256_cmpgt_epi64(a, lo), _mm256_cmpgt_epi64(hi, a)),
                           _mm256_and_si256(_mm256_cmpgt_epi64(b, lo), _mm256_cmpgt_epi64(hi, b)));
    bad |= _mm256_movemask_ps(_mm256_castsi256_ps(ok)) ^ 0xFF;
    return pack_lo32(a, b);
  }
  if (std::is_same<L, int32_t>::value && G >= 4) {
    const int32_t* l = reinterpret_cast<const int32_t*>(lab) + r;
    __m256i a = G == 8 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(l))
                       : _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(l)));
    const __m256i cm1 = _mm256_set1_epi32((int32_t)(C - 1));  // C <= kSimdMaxClasses
    __m256i ok = _mm256_cmpeq_epi32(_mm256_min_epu32(a, cm1), a);  // unsigned: negatives are huge
    bad |= _mm256_movemask_ps(_mm256_castsi256_ps(ok)) ^ 0xFF;
    return a;
  }
  alignas(32) int32_t li[8] = {0};
  for (int64_t g = 0; g < G; ++g) {
    int64_t idx = Lab<L>::index(lab, r + g);
    bad |= (idx < 0) | (idx >= C);
    li[g] = (int32_t)idx;
  }
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(li));
}

// Add 1 to the 8 counters whose offsets are the int32 lanes of o (64-bit extracts: a
// store and reloads of the offsets is slower, the loads wait on store forwarding).
template <typename CT>
__attribute__((target("avx2"))) inline void increment8(CT* cnt, __m256i o) {
  __m128i lo = _mm256_castsi256_si128(o), hi = _mm256_extracti128_si256(o, 1);
  uint64_t a0 = (uint64_t)_mm_cvtsi128_si64(lo), a1 = (uint64_t)_mm_extract_epi64(lo, 1);
  uint64_t a2 = (uint64_t)_mm_cvtsi128_si64(hi), a3 = (uint64_t)_mm_extract_epi64(hi, 1);
  cnt[(uint32_t)a0]++;
  cnt[a0 >> 32]++;
  cnt[(uint32_t)a1]++;
  cnt[a1 >> 32]++;
  cnt[(uint32_t)a2]++;
  cnt[a2 >> 32]++;
  cnt[(uint32_t)a3]++;
  cnt[a3 >> 32]++;
}

// Rows [r0, r1) of float32 probabilities into cnt (laid out as plan.base says); returns
// the first row not done (the tail of fewer than G rows, for the scalar code). Groups with
// a bad value go to block_classes, which counts into s.counts.
template <typename L, bool kIndex, typename CT>
__attribute__((target("avx2"))) int64_t block_simd(const PRCurveParams& p, const Ctx& k, const LanePlan& plan,
                                                   int64_t r0, int64_t r1, CT* cnt, Scratch& s) {
  const float* x = static_cast<const float*>(p.predictions);
  const L* lab = static_cast<const L*>(p.labels);
  const int64_t G = plan.G, V = plan.V, C = k.C;
  const __m256 tm1 = _mm256_set1_ps(k.tm1f);
  const __m256i* base = reinterpret_cast<const __m256i*>(plan.base.data());
  const __m256i* cls = reinterpret_cast<const __m256i*>(plan.cls.data());
  const __m256i* rowi = reinterpret_cast<const __m256i*>(plan.row.data());
  int64_t r = r0;
  for (; r + G <= r1; r += G) {
    const float* xg = x + r * C;
    int bad = 0;
    __m256i labv = _mm256_setzero_si256();
    if (kIndex) labv = load_index8<L>(lab, r, G, C, bad);
    for (int64_t v = 0; v < V; ++v) {
      bad |= bad_pred_lanes(_mm256_loadu_ps(xg + 8 * v));
      if (!kIndex) load_bits8<L>(lab, r * C + 8 * v, bad);
    }
    if (__builtin_expect(bad != 0, 0)) {
      block_classes<float, L, kIndex>(p, k, r, r + G, s);
      continue;
    }
    for (int64_t v = 0; v < V; ++v) {
      __m256i b = _mm256_cvttps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xg + 8 * v), tm1));
      __m256i o = _mm256_add_epi32(_mm256_loadu_si256(base + v), _mm256_add_epi32(b, b));
      if (kIndex) {
        __m256i hit = _mm256_cmpeq_epi32(_mm256_loadu_si256(cls + v),
                                         _mm256_permutevar8x32_epi32(labv, _mm256_loadu_si256(rowi + v)));
        o = _mm256_sub_epi32(o, hit);  // hit lanes are -1
      } else {
        int unused = 0;
        o = _mm256_add_epi32(o, load_bits8<L>(lab, r * C + 8 * v, unused));
      }
      increment8(cnt, o);
    }
  }
  return r;
}
#endif

template <typename P, typename L, bool W>
void run_typed(const PRCurveParams& p, const Ctx& k) {
  const int64_t n_blocks = (p.num_rows + kPRBlockRows - 1) / kPRBlockRows;
  const int64_t cells = k.C * k.T * 2;
  int nt = std::max(1, (int)p.num_threads);
  if (nt > n_blocks) nt = (int)std::max<int64_t>(1, n_blocks);
  const bool fast = !W && k.C == 1 && p.prob_mode == kProbabilities && p.label_mode == kLabelMatrix;
  const bool classes = !W && !fast && p.prob_mode == kProbabilities;
  LanePlan plan;
#ifdef TBF_X86
  if (std::is_same<P, float>::value && (fast || classes) && k.C <= kSimdMaxClasses && cpu_has_avx2()) {
    plan = make_plan(k);
    if ((double)plan.copies * (double)cells > (double)INT32_MAX) plan = LanePlan();
  }
#endif
  const bool simd = plan.V > 0;
  const bool use32 = simd && plan.copies * cells <= kSimdInt32Cells;
  // Private arrays per thread (int64 or float64 cells, int32 SIMD counters, the second
  // binary copy) stay under kScratchBudgetBytes together: fewer threads for huge C * T.
  // One thread counting straight into the output needs none of the int64 ones.
  {
    double per = W ? cells * 8.0 + k.C * 16.0 : cells * 8.0;
    if (use32) per += plan.copies * cells * 4.0;
    if (fast && !simd && cells <= (int64_t(1) << 15)) per += cells * 8.0;
    nt = threads_for_scratch(nt, per);
  }

  std::vector<Scratch> scratch(nt);
  for (int t = 0; t < nt; ++t) {
    Scratch& s = scratch[t];
    if (W) {
      s.sums.assign(cells, 0.0);
      s.lo.assign(k.C, k.T);
      s.hi.assign(k.C, -1);
    } else if (nt == 1) {
      s.counts = p.counts;
    } else {
      s.own.assign(cells, 0);
      s.counts = s.own.data();
    }
    if (p.prob_mode == kSoftmax) s.row.assign(k.C, 0.0);
    if (fast && !simd && cells <= (int64_t(1) << 15)) s.counts2.assign(cells, 0);
    if (use32) s.c32.assign(plan.copies * cells, 0);
  }
  // int32 counters into the thread's int64 counts; each counter gains at most 1 per row.
  auto flush32 = [&](Scratch& s) {
    for (int64_t j = 0; j < cells; ++j) s.counts[j] += s.c32[j];
    if (plan.copies == 2)
      for (int64_t j = 0; j < cells; ++j) s.counts[j] += s.c32[cells + j];
    std::fill(s.c32.begin(), s.c32.end(), 0);
    s.rows32 = 0;
  };

  std::atomic<int64_t> committed{0};
  parallel_items(n_blocks, nt, [&](int64_t blk, int tid) {
    Scratch& s = scratch[tid];
    int64_t r0 = blk * kPRBlockRows, r1 = std::min(r0 + kPRBlockRows, p.num_rows);
#ifdef TBF_X86
    if constexpr (std::is_same<P, float>::value && !W) {
      if (simd) {
        if (use32 && s.rows32 + (r1 - r0) > INT32_MAX) flush32(s);
        s.rows32 += r1 - r0;
        const bool index = p.label_mode == kLabelIndex;
        if (use32)
          r0 = index ? block_simd<L, true>(p, k, plan, r0, r1, s.c32.data(), s)
                     : block_simd<L, false>(p, k, plan, r0, r1, s.c32.data(), s);
        else
          r0 = index ? block_simd<L, true>(p, k, plan, r0, r1, s.counts, s)
                     : block_simd<L, false>(p, k, plan, r0, r1, s.counts, s);
      }
    }
#endif
    if (fast)
      block_binary<P, L>(p, k, r0, r1, s);
    else if (classes && p.label_mode == kLabelIndex)
      block_classes<P, L, true>(p, k, r0, r1, s);
    else if (classes)
      block_classes<P, L, false>(p, k, r0, r1, s);
    else
      block_rows<P, L, W>(p, k, r0, r1, s);
    if (!W) return;
    // Ordered commit: blocks are handed out in increasing order, so the owner of block
    // blk - 1 never waits on this one.
    while (committed.load(std::memory_order_acquire) != blk) std::this_thread::yield();
    for (int64_t c = 0; c < k.C; ++c) {
      if (s.hi[c] < 0) continue;
      int64_t j0 = (c * k.T + s.lo[c]) * 2, j1 = (c * k.T + s.hi[c]) * 2 + 2;
      for (int64_t j = j0; j < j1; ++j) {
        p.wsums[j] += s.sums[j];
        s.sums[j] = 0.0;
      }
      s.lo[c] = k.T;
      s.hi[c] = -1;
    }
    committed.store(blk + 1, std::memory_order_release);
  });

  for (int t = 0; t < nt; ++t) {
    Scratch& s = scratch[t];
    if (use32) flush32(s);
    if (!W && s.counts != p.counts)
      for (int64_t j = 0; j < cells; ++j) p.counts[j] += s.counts[j];
    if (!s.counts2.empty())
      for (int64_t j = 0; j < cells; ++j) p.counts[j] += s.counts2[j];
    for (int j = 0; j < kNumBadKinds; ++j) p.bad[j] += s.bad[j];
  }
}

// Narrow dtype switches: the Python layer converts anything else before the call.
template <typename F>
bool pred_switch(int32_t code, F&& f) {
  switch (code) {
    case kFloat16: f((half_bits*)nullptr); return true;
    case kBFloat16: f((bf16_bits*)nullptr); return true;
    case kFloat32: f((float*)nullptr); return true;
    case kFloat64: f((double*)nullptr); return true;
    default: return false;
  }
}

template <typename F>
bool label_switch(int32_t code, F&& f) {
  switch (code) {
    case kBool: f((bool*)nullptr); return true;
    case kUInt8: f((uint8_t*)nullptr); return true;
    case kInt32: f((int32_t*)nullptr); return true;
    case kInt64: f((int64_t*)nullptr); return true;
    case kFloat32: f((float*)nullptr); return true;
    case kFloat64: f((double*)nullptr); return true;
    default: return false;
  }
}

}  // namespace

int pr_curve_cpu(const PRCurveParams& p) {
  if (p.num_thresholds < 2 || p.num_classes < 1 || p.num_rows < 0) return 1;
  if (p.label_mode != kLabelMatrix && p.label_mode != kLabelIndex) return 1;
  if (p.prob_mode < kProbabilities || p.prob_mode > kSigmoid) return 1;
  if (p.weights != nullptr && p.weight_dtype != kFloat32 && p.weight_dtype != kFloat64) return 1;
  const bool weighted = p.wsums != nullptr;
  if (!weighted && p.counts == nullptr) return 1;
  Ctx k{p.num_classes, p.num_thresholds, (float)(p.num_thresholds - 1), (double)(p.num_thresholds - 1),
        pr_half_rounding(p.num_thresholds)};
  if (p.num_rows == 0) return 0;
  bool ok = false;
  pred_switch(p.pred_dtype, [&](auto* ptag) {
    using P = std::remove_pointer_t<decltype(ptag)>;
    ok = label_switch(p.label_dtype, [&](auto* ltag) {
      using L = std::remove_pointer_t<decltype(ltag)>;
      if (weighted)
        run_typed<P, L, true>(p, k);
      else
        run_typed<P, L, false>(p, k);
    });
  });
  return ok ? 0 : 1;
}

}  // namespace tbfast
