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
// Probabilities of every dtype and logits, weighted or not, take an AVX2 path when the CPU
// has it (see "AVX2 path" below): the bucket offsets of 8 elements at a time in SIMD,
// scalar increments into int32 counters (or scalar weighted sums in row order). Its scalar
// twin is the generic code, which gives the same counts and sums (for logits by a proven
// error bound and a scalar recheck, see "Logits"); TBFAST_DISABLE_SIMD=1 forces it.
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
#include "cpu/simd.h"
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
  std::vector<float> ebuf;         // AVX2 logits: exps of a batch of groups, [NB * V * 8]
  std::vector<float> ibuf;         // AVX2 softmax: 1 / row sums of a batch, [NB * 8]
  std::vector<int32_t> obuf;       // AVX2 path: counter offsets of a batch of groups, [NB * V * 8]
  std::vector<uint8_t> flags;      // AVX2 path: groups of a batch for the scalar code, [NB]
  std::vector<int32_t> lbuf;       // AVX2 logits: class index lanes of a batch, [NB * 8]
  std::vector<int32_t> bmin, bmax; // AVX2 weighted: per-lane bucket range of the block, [V * 8]
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

// ---- AVX2 path ---------------------------------------------------------------------------
//
// The rows of a block are read as one flat stream, G rows (G * C elements, a multiple of
// 8) at a time: V = G * C / 8 vectors whose lane -> (class, row in group) pattern is the
// same for every group, so it is precomputed once (LanePlan). Per group, one pass computes
// each lane's counter offset, class * 2T + 2 * bucket + positive, into a small buffer and
// flags bad values (and bad labels / class indices); a flagged group is handed whole to
// the scalar code (block_rows), which counts the bad values and the good elements exactly
// as it always does. Otherwise the offsets are applied one by one: increments of int32
// counters per thread (half the cache footprint of int64, flushed into the thread's int64
// counts before they could overflow and at the end), or, weighted, additions of the row's
// weight into the float64 block sums in element order, which is row order for every cell
// (the order np.histogram adds in). The increments are the bottleneck; gathers/scatters or
// conflict detection would not be faster. A binary curve (C = 1, unweighted) sends odd
// lanes to a second copy of the counters, so that runs of equal buckets do not serialise
// on one memory location.
//
// Probabilities: the bucket is computed with the scalar code's operations in the
// prediction's precision (float32 product; float16 rounding of the exact product; float64
// product), so every bucket is the scalar one.
//
// Logits: the scalar code computes p in float64 with libm's exp (softmax: exp(x - max) /
// sequential sum; sigmoid: 1 / (1 + exp(-x))) and takes floor(p * (T-1)). Here x' = p *
// (T-1) is approximated in float32 (exp8: Cody-Waite reduction and a degree-7 polynomial,
// at most 2^-23.49 relative error over every float in [-64, 64], checked exhaustively
// against double exp; the bound used is 2^-22), with a relative error bound `rel` against
// the scalar code's float64 value (LogitBound). Floor is taken only where x' is further
// than rel * x' from every integer; a group holding any element closer to a boundary (or
// a softmax logit outside [-64, 64], where float32 exps would leave the normal range) goes
// to the scalar code. So every bucket is the scalar code's, at the cost of a scalar
// recheck of about 2 * rel * (T-1) of the rows (rel ~ 1.5e-6 for C = 10).

constexpr int64_t kSimdMaxClasses = 1024;           // lane tables: V <= C vectors
constexpr int64_t kSimdInt32Cells = int64_t(1) << 18;  // int32 counters up to 1 MiB

struct LanePlan {
  int64_t G = 0, V = 0;  // rows and vectors per group; V == 0: no SIMD path
  int64_t copies = 1;     // counter copies (2 for an unweighted binary curve)
  int64_t NB = 1;         // groups per batch (block_simd)
  std::vector<int32_t> base, cls, row;  // per lane: class * 2T (+ copy offset), class, row in group
};

// Relative bound on |x' - x| for logits (see above), and the per-call constants.
struct LogitBound {
  float rel = 0;
};

#ifdef TBF_X86
bool cpu_has_avx2() { return simd_level() >= kSimdAvx2; }

LanePlan make_plan(const Ctx& k, bool two_copies, bool batches) {
  LanePlan plan;
  int64_t g = 8;
  while (g > 1 && (k.C * (g / 2)) % 8 == 0) g /= 2;  // smallest G with G * C % 8 == 0
  plan.G = g;
  plan.V = g * k.C / 8;
  // about 256 elements per batch (measured best); weighted: one group (its sums are the
  // bottleneck, a batch only adds buffer traffic)
  plan.NB = batches ? std::max<int64_t>(1, 256 / (plan.V * 8)) : 1;
  const int64_t cells = k.C * k.T * 2;
  plan.copies = (two_copies && k.C == 1 && cells <= kSimdInt32Cells / 2) ? 2 : 1;
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


// ---- bucket lanes of 8 probabilities (bad: a bit per lane outside [0, 1] or NaN) ----------

template <typename P>
struct SimdPred;
template <>
struct SimdPred<float> {
  __attribute__((target("avx2,f16c"))) static __m256i bucket8(const float* x, const Ctx& k, int& bad) {
    __m256 v = _mm256_loadu_ps(x);
    bad |= bad_pred_lanes(v);
    return _mm256_cvttps_epi32(_mm256_mul_ps(v, _mm256_set1_ps(k.tm1f)));
  }
};
// 16-bit floats: exact float32 values; pr_bucket_f16 in SIMD (the product of two 11-bit
// significands is exact in float32, then rounded to float16 precision with integer ops).
__attribute__((target("avx2,f16c"))) inline __m256i bucket8_f16(__m256 v, const Ctx& k, int& bad) {
  bad |= bad_pred_lanes(v);
  __m256 x = _mm256_mul_ps(v, _mm256_set1_ps(k.tm1f));
  if (!k.half_rounding) return _mm256_cvttps_epi32(x);
  __m256i b = _mm256_castps_si256(x);
  __m256i odd = _mm256_and_si256(_mm256_srli_epi32(b, 13), _mm256_set1_epi32(1));
  b = _mm256_and_si256(_mm256_add_epi32(_mm256_add_epi32(b, _mm256_set1_epi32(0x0FFF)), odd),
                       _mm256_set1_epi32(~0x1FFF));
  __m256i q = _mm256_cvttps_epi32(_mm256_castsi256_ps(b));
  __m256 tiny = _mm256_cmp_ps(x, _mm256_set1_ps(6.103515625e-05f), _CMP_LT_OQ);  // below 2^-14: bucket 0
  return _mm256_andnot_si256(_mm256_castps_si256(tiny), q);
}
template <>
struct SimdPred<half_bits> {
  __attribute__((target("avx2,f16c"))) static __m256i bucket8(const half_bits* x, const Ctx& k, int& bad) {
    return bucket8_f16(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x))), k, bad);
  }
};
template <>
struct SimdPred<bf16_bits> {
  __attribute__((target("avx2,f16c"))) static __m256i bucket8(const bf16_bits* x, const Ctx& k, int& bad) {
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x)));
    return bucket8_f16(_mm256_castsi256_ps(_mm256_slli_epi32(w, 16)), k, bad);
  }
};
template <>
struct SimdPred<double> {
  __attribute__((target("avx2,f16c"))) static __m128i half4(const double* x, const Ctx& k, int& bad, int shift) {
    __m256d v = _mm256_loadu_pd(x);
    __m256d ok = _mm256_and_pd(_mm256_cmp_pd(v, _mm256_setzero_pd(), _CMP_GE_OQ),
                               _mm256_cmp_pd(v, _mm256_set1_pd(1.0), _CMP_LE_OQ));
    bad |= (_mm256_movemask_pd(ok) ^ 0xF) << shift;
    return _mm256_cvttpd_epi32(_mm256_mul_pd(v, _mm256_set1_pd(k.tm1d)));
  }
  __attribute__((target("avx2,f16c"))) static __m256i bucket8(const double* x, const Ctx& k, int& bad) {
    __m128i lo = half4(x, k, bad, 0), hi = half4(x + 4, k, bad, 4);
    return _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
  }
};

// ---- logits --------------------------------------------------------------------------------

// exp of 8 floats in [-64, 64] (see "Logits" above for its error).
__attribute__((target("avx2,fma"))) inline __m256 exp8(__m256 d) {
  const __m256 log2e = _mm256_set1_ps(1.44269504088896341f), ln2_hi = _mm256_set1_ps(0.693359375f),
               ln2_lo = _mm256_set1_ps(-2.12194440e-4f);
  __m256 kf = _mm256_round_ps(_mm256_mul_ps(d, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(kf, ln2_hi, d);  // exact: k * ln2_hi has at most 16 bits
  r = _mm256_fnmadd_ps(kf, ln2_lo, r);
  __m256 y = _mm256_fmadd_ps(_mm256_set1_ps(1.9875691500E-4f), r, _mm256_set1_ps(1.3981999507E-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073E-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894E-2f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459E-1f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201E-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), r);
  y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
  __m256i ki = _mm256_cvtps_epi32(kf);  // |k| <= 93: 2^k is a normal float
  __m256 scale = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(ki, _mm256_set1_epi32(127)), 23));
  return _mm256_mul_ps(y, scale);
}

// 8 logits as float32 (16-bit floats exactly; float64 rounded, its error is in the bound).
// flag gets a bit per lane the SIMD code cannot take: NaN or infinite, and for softmax
// (kRange) outside [-64, 64] too.
template <bool kRange>
__attribute__((target("avx2,f16c"))) inline __m256 logits8_f(__m256 v, int& flag) {
  __m256 a = _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF)));
  flag |= _mm256_movemask_ps(_mm256_cmp_ps(a, _mm256_set1_ps(kRange ? 64.0f : INFINITY),
                                           kRange ? _CMP_NLE_UQ : _CMP_NLT_UQ));
  return v;
}
template <typename P, bool kRange>
__attribute__((target("avx2,f16c"))) inline __m256 logits8(const P* x, int& flag) {
  if constexpr (std::is_same<P, float>::value) {
    return logits8_f<kRange>(_mm256_loadu_ps(x), flag);
  } else if constexpr (std::is_same<P, half_bits>::value) {
    return logits8_f<kRange>(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x))), flag);
  } else if constexpr (std::is_same<P, bf16_bits>::value) {
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x)));
    return logits8_f<kRange>(_mm256_castsi256_ps(_mm256_slli_epi32(w, 16)), flag);
  } else {
    const __m256d abs_mask = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7FFFFFFFFFFFFFFFll));
    const __m256d lim = _mm256_set1_pd(kRange ? 64.0 : INFINITY);
    const int pred = kRange ? _CMP_NLE_UQ : _CMP_NLT_UQ;
    __m256d a = _mm256_loadu_pd(x), b = _mm256_loadu_pd(x + 4);
    flag |= _mm256_movemask_pd(_mm256_cmp_pd(_mm256_and_pd(a, abs_mask), lim, pred)) |
            (_mm256_movemask_pd(_mm256_cmp_pd(_mm256_and_pd(b, abs_mask), lim, pred)) << 4);
    // clamped first: a huge finite value must not become inf (sigmoid takes any finite value)
    a = _mm256_min_pd(_mm256_max_pd(a, _mm256_set1_pd(-1e30)), _mm256_set1_pd(1e30));
    b = _mm256_min_pd(_mm256_max_pd(b, _mm256_set1_pd(-1e30)), _mm256_set1_pd(1e30));
    return _mm256_set_m128(_mm256_cvtpd_ps(b), _mm256_cvtpd_ps(a));
  }
}

// Sums of the G <= 8 rows of C floats at eb (row g at eb + g * C) as lanes 0 .. G - 1
// (lanes >= G: 1). tail: mask of the lanes < C % 8.
__attribute__((target("avx2"))) inline __m256 row_sums(const float* eb, int64_t G, int64_t C, __m256i tail) {
  __m256 ps[8];
  const int64_t full = C / 8;
  for (int64_t g = 0; g < 8; ++g) {
    __m256 acc = _mm256_setzero_ps();
    if (g < G) {
      const float* e = eb + g * C;
      for (int64_t j = 0; j < full; ++j) acc = _mm256_add_ps(acc, _mm256_loadu_ps(e + 8 * j));
      if (C % 8) acc = _mm256_add_ps(acc, _mm256_maskload_ps(e + 8 * full, tail));
    } else {
      acc = _mm256_setr_ps(1, 0, 0, 0, 0, 0, 0, 0);
    }
    ps[g] = acc;
  }
  __m256 t01 = _mm256_hadd_ps(ps[0], ps[1]), t23 = _mm256_hadd_ps(ps[2], ps[3]);
  __m256 t45 = _mm256_hadd_ps(ps[4], ps[5]), t67 = _mm256_hadd_ps(ps[6], ps[7]);
  __m256 u0 = _mm256_hadd_ps(t01, t23), u1 = _mm256_hadd_ps(t45, t67);
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

// Relative error bound of x' (module comment "Logits"): exp8 2^-22, float32 rounding u
// per operation, the float64 conversion of float64 logits, and the scalar code's own
// float64 roundings (libm exp <= 2 ulp); times 1.25 for the second-order terms.
LogitBound logit_bound(const Ctx& k, bool softmax, bool f64_input) {
  const double u = std::ldexp(1.0, -24), eta = std::ldexp(1.0, -22), u64 = std::ldexp(1.0, -53);
  const double conv = f64_input ? 64.0 * u : 0.0;  // |x| <= 64 rounded to float32: exp's argument
  double rel;
  if (softmax)  // numerator and denominator terms, C - 1 float adds, 1/s, two products
    rel = 2 * (eta + conv) + (double)(k.C + 2) * u + (double)(2 * k.C + 8) * u64 + 512.0 * u64;
  else  // 1 + e, the division
    rel = eta + conv + 2 * u + 8 * u64;
  LogitBound b;
  b.rel = (float)(1.25 * rel + 4 * u);  // + the roundings of x' (1 +- rel) and of 1 +- rel
  return b;
}

// int32 lanes of vector v of a group: 1 for a positive label (class index == the lane's
// class, or a 1 in the label matrix at element offset off + 8v).
template <typename L, bool kIndex>
__attribute__((target("avx2"))) inline __m256i pos8(const __m256i* cls, const __m256i* rowi, __m256i labv,
                                                    const L* lab, int64_t off, int64_t v) {
  if (kIndex)
    return _mm256_sub_epi32(_mm256_setzero_si256(),
                            _mm256_cmpeq_epi32(_mm256_loadu_si256(cls + v),
                                               _mm256_permutevar8x32_epi32(labv, _mm256_loadu_si256(rowi + v))));
  int unused = 0;
  return load_bits8<L>(lab, off + 8 * v, unused);
}

// Group helpers. A group is G rows starting at row r; its V vectors of offsets go to ob.
// Each returns a non-zero flag when the group must go to the scalar code.

// Labels of a group: class indices as lanes of labv, or the check of the 0/1 matrix.
template <typename L, bool kIndex>
__attribute__((target("avx2"))) inline int group_labels(const L* lab, int64_t r, const Ctx& k, const LanePlan& plan,
                                                       __m256i& labv) {
  int bad = 0;
  labv = _mm256_setzero_si256();
  if (kIndex)
    labv = load_index8<L>(lab, r, plan.G, k.C, bad);
  else
    for (int64_t v = 0; v < plan.V; ++v) load_bits8<L>(lab, r * k.C + 8 * v, bad);
  return bad;
}

// Probabilities: buckets with the scalar code's arithmetic.
template <typename P, typename L, bool kIndex>
__attribute__((target("avx2,fma,f16c"))) inline int prob_offsets(const P* x, const L* lab, int64_t r, const Ctx& k,
                                                                 const LanePlan& plan, int32_t* ob) {
  const __m256i* base = reinterpret_cast<const __m256i*>(plan.base.data());
  const __m256i* cls = reinterpret_cast<const __m256i*>(plan.cls.data());
  const __m256i* rowi = reinterpret_cast<const __m256i*>(plan.row.data());
  const P* xg = x + r * k.C;
  __m256i labv;
  int bad = group_labels<L, kIndex>(lab, r, k, plan, labv);
  for (int64_t v = 0; v < plan.V; ++v) {
    __m256i b = SimdPred<P>::bucket8(xg + 8 * v, k, bad);
    __m256i o = _mm256_add_epi32(_mm256_loadu_si256(base + v), _mm256_add_epi32(b, b));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(ob + 8 * v),
                        _mm256_add_epi32(o, pos8<L, kIndex>(cls, rowi, labv, lab, r * k.C, v)));
  }
  return bad;
}

// Logits, first stage: exps of the group into eb (softmax exp(x), no max shift: |x| <= 64
// keeps every value and sum normal; sigmoid exp(-x) with -x clamped to [-64, 64], beyond
// which the bucket is 0 or T - 1 anyway), and the labels check.
template <typename P, typename L, bool kIndex, int kProb>
__attribute__((target("avx2,fma,f16c"))) inline int logit_exps(const P* x, const L* lab, int64_t r, const Ctx& k,
                                                               const LanePlan& plan, float* eb, __m256i* lb) {
  const P* xg = x + r * k.C;
  __m256i labv;
  int flag = group_labels<L, kIndex>(lab, r, k, plan, labv);
  _mm256_storeu_si256(lb, labv);
  for (int64_t v = 0; v < plan.V; ++v) {
    __m256 lv = logits8<P, kProb == kSoftmax>(xg + 8 * v, flag);
    __m256 d = kProb == kSoftmax ? lv
                                 : _mm256_min_ps(_mm256_max_ps(_mm256_sub_ps(_mm256_setzero_ps(), lv),
                                                               _mm256_set1_ps(-64.0f)),
                                                 _mm256_set1_ps(64.0f));
    _mm256_storeu_ps(eb + 8 * v, exp8(d));
  }
  return flag;
}

// Logits, last stage: x' = p * (T-1) from the exps (and the row sums' inverses, softmax),
// the bucket where both ends of x''s error interval agree, else the flag.
template <typename L, bool kIndex, int kProb>
__attribute__((target("avx2,fma,f16c"))) inline int logit_offsets(const L* lab, int64_t r, const Ctx& k,
                                                                  const LanePlan& plan, const LogitBound& bd,
                                                                  const float* eb, __m256 tinv, __m256i labv,
                                                                  int32_t* ob) {
  const __m256i* base = reinterpret_cast<const __m256i*>(plan.base.data());
  const __m256i* cls = reinterpret_cast<const __m256i*>(plan.cls.data());
  const __m256i* rowi = reinterpret_cast<const __m256i*>(plan.row.data());
  const __m256 tm1 = _mm256_set1_ps(k.tm1f), one = _mm256_set1_ps(1.0f);
  const __m256 lo_f = _mm256_set1_ps(1.0f - bd.rel), hi_f = _mm256_set1_ps(1.0f + bd.rel);
  const __m256i top = _mm256_set1_epi32((int32_t)(k.T - 1));
  int near = 0;
  for (int64_t v = 0; v < plan.V; ++v) {
    __m256 e = _mm256_loadu_ps(eb + 8 * v), xq;
    if (kProb == kSoftmax)
      xq = _mm256_mul_ps(e, _mm256_permutevar8x32_ps(tinv, _mm256_loadu_si256(rowi + v)));  // tinv: (T-1) / sum
    else
      xq = _mm256_div_ps(tm1, _mm256_add_ps(one, e));
    // the scalar code's x lies in [x' (1 - rel), x' (1 + rel)]: one bucket iff both ends have it
    __m256i q = _mm256_cvttps_epi32(_mm256_mul_ps(xq, lo_f));
    __m256i close = _mm256_xor_si256(_mm256_cmpeq_epi32(q, _mm256_cvttps_epi32(_mm256_mul_ps(xq, hi_f))),
                                     _mm256_set1_epi32(-1));
    if (kProb == kSigmoid) {
      // exp(-x) <= 2^-54: the float64 1 + exp(-x) rounds to 1, p = 1, bucket T - 1
      __m256i sat = _mm256_castps_si256(_mm256_cmp_ps(e, _mm256_set1_ps(5.5511151231257827e-17f), _CMP_LE_OQ));
      q = _mm256_blendv_epi8(q, top, sat);
      close = _mm256_andnot_si256(sat, close);
    }
    near |= _mm256_movemask_ps(_mm256_castsi256_ps(close));
    q = _mm256_min_epi32(q, top);
    __m256i o = _mm256_add_epi32(_mm256_loadu_si256(base + v), _mm256_add_epi32(q, q));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(ob + 8 * v),
                        _mm256_add_epi32(o, pos8<L, kIndex>(cls, rowi, labv, lab, r * k.C, v)));
  }
  return near;
}

// Rows [r0, r1) into cnt (unweighted, laid out as plan.base says) or into s.sums
// (weighted); returns the first row not done (the tail of fewer than G rows, for the
// scalar code). Groups are handled in batches of plan.NB, stage by stage (a logit group's
// stages form a long dependency chain; a batch gives the CPU independent work), then
// applied in row order; a flagged group goes to block_rows, which counts into s.counts /
// s.sums.
template <typename P, typename L, bool kIndex, int kProb, bool W, typename CT>
__attribute__((target("avx2,fma,f16c"))) int64_t block_simd(const PRCurveParams& p, const Ctx& k,
                                                            const LanePlan& plan, const LogitBound& bd, int64_t r0,
                                                            int64_t r1, CT* cnt, Scratch& s) {
  const P* x = static_cast<const P*>(p.predictions);
  const L* lab = static_cast<const L*>(p.labels);
  const int64_t G = plan.G, V = plan.V, GE = V * 8;
  int32_t* obuf = s.obuf.data();
  float* ebuf = s.ebuf.data();
  float* ibuf = s.ibuf.data();
  uint8_t* flags = s.flags.data();
  __m256i* lbuf = reinterpret_cast<__m256i*>(s.lbuf.data());
  __m256i* bmin = reinterpret_cast<__m256i*>(s.bmin.data());
  __m256i* bmax = reinterpret_cast<__m256i*>(s.bmax.data());
  const __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32((int32_t)(k.C % 8)),
                                          _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));  // lanes < C % 8
  int64_t r = r0;
  while (r + G <= r1) {
    const int64_t nb = std::min<int64_t>(plan.NB, (r1 - r) / G);
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t rb = r + b * G;
      int flag = 0;
      if (W)
        for (int64_t g = 0; g < G; ++g) {
          double wg = p.weights == nullptr ? p.weight_scalar
                      : p.weight_dtype == kFloat32 ? (double)static_cast<const float*>(p.weights)[rb + g]
                                                   : static_cast<const double*>(p.weights)[rb + g];
          flag |= !(wg >= 0 && wg <= 1.7976931348623157e308);
        }
      if (kProb == kProbabilities)
        flag |= prob_offsets<P, L, kIndex>(x, lab, rb, k, plan, obuf + b * GE);
      else
        flag |= logit_exps<P, L, kIndex, kProb>(x, lab, rb, k, plan, ebuf + b * GE, lbuf + b);
      flags[b] = flag != 0;
    }
    if (kProb == kSoftmax)
      for (int64_t b = 0; b < nb; ++b)
        _mm256_storeu_ps(ibuf + 8 * b, _mm256_div_ps(_mm256_set1_ps(k.tm1f), row_sums(ebuf + b * GE, G, k.C, tail)));
    if (kProb != kProbabilities)
      for (int64_t b = 0; b < nb; ++b)
        if (!flags[b])
          flags[b] = logit_offsets<L, kIndex, kProb>(lab, r + b * G, k, plan, bd, ebuf + b * GE,
                                                     kProb == kSoftmax ? _mm256_loadu_ps(ibuf + 8 * b)
                                                                       : _mm256_setzero_ps(),
                                                     _mm256_loadu_si256(lbuf + b), obuf + b * GE) != 0;
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t rb = r + b * G;
      const int32_t* ob = obuf + b * GE;
      if (flags[b]) {
        block_rows<P, L, W>(p, k, rb, rb + G, s);
      } else if (W) {
        // element order = row order for each cell: the scalar code's order of additions
        double w[8];
        for (int64_t g = 0; g < G; ++g)
          w[g] = p.weights == nullptr ? p.weight_scalar
                 : p.weight_dtype == kFloat32 ? (double)static_cast<const float*>(p.weights)[rb + g]
                                              : static_cast<const double*>(p.weights)[rb + g];
        double* sums = s.sums.data();
        for (int64_t g = 0; g < G; ++g) {  // lane g * C + c is class c of row g
          const int32_t* og = ob + g * k.C;
          const double wg = w[g];
          for (int64_t c = 0; c < k.C; ++c) sums[og[c]] += wg;
        }
        for (int64_t v = 0; v < V; ++v) {  // bucket range per lane: offsets of one lane differ by 2 * bucket + pos
          __m256i o = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ob + 8 * v));
          _mm256_storeu_si256(bmin + v, _mm256_min_epi32(_mm256_loadu_si256(bmin + v), o));
          _mm256_storeu_si256(bmax + v, _mm256_max_epi32(_mm256_loadu_si256(bmax + v), o));
        }
      } else {
        for (int64_t v = 0; v < V; ++v)
          increment8(cnt, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ob + 8 * v)));
      }
    }
    r += nb * G;
  }
  return r;
}

// Weighted: fold the per-lane offset ranges of the block into s.lo / s.hi (per class) and
// reset them.
void fold_ranges(const Ctx& k, const LanePlan& plan, Scratch& s) {
  for (int64_t e = 0; e < plan.V * 8; ++e) {
    if (s.bmax[e] < s.bmin[e]) continue;
    int64_t c = plan.cls[e], off = (int64_t)c * 2 * k.T;
    int64_t lo = (s.bmin[e] - off) >> 1, hi = (s.bmax[e] - off) >> 1;
    s.lo[c] = lo < s.lo[c] ? lo : s.lo[c];
    s.hi[c] = hi > s.hi[c] ? hi : s.hi[c];
  }
  std::fill(s.bmin.begin(), s.bmin.end(), INT32_MAX);
  std::fill(s.bmax.begin(), s.bmax.end(), INT32_MIN);
}
#endif

#ifdef TBF_X86
template <typename P, typename L, bool kIndex, int kProb, bool W>
int64_t simd_counts(const PRCurveParams& p, const Ctx& k, const LanePlan& plan, const LogitBound& bd, int64_t r0,
                    int64_t r1, bool use32, Scratch& s) {
  if (W || !use32) return block_simd<P, L, kIndex, kProb, W>(p, k, plan, bd, r0, r1, s.counts, s);
  return block_simd<P, L, kIndex, kProb, W>(p, k, plan, bd, r0, r1, s.c32.data(), s);
}

template <typename P, typename L, bool kIndex, bool W>
int64_t simd_prob(const PRCurveParams& p, const Ctx& k, const LanePlan& plan, const LogitBound& bd, int64_t r0,
                  int64_t r1, bool use32, Scratch& s) {
  switch (p.prob_mode) {
    case kSoftmax: return simd_counts<P, L, kIndex, kSoftmax, W>(p, k, plan, bd, r0, r1, use32, s);
    case kSigmoid: return simd_counts<P, L, kIndex, kSigmoid, W>(p, k, plan, bd, r0, r1, use32, s);
    default: return simd_counts<P, L, kIndex, kProbabilities, W>(p, k, plan, bd, r0, r1, use32, s);
  }
}

template <typename P, typename L, bool W>
int64_t simd_dispatch(const PRCurveParams& p, const Ctx& k, const LanePlan& plan, const LogitBound& bd, int64_t r0,
                      int64_t r1, bool use32, Scratch& s) {
  if (p.label_mode == kLabelIndex) return simd_prob<P, L, true, W>(p, k, plan, bd, r0, r1, use32, s);
  return simd_prob<P, L, false, W>(p, k, plan, bd, r0, r1, use32, s);
}
#endif

template <typename P, typename L, bool W>
void run_typed(const PRCurveParams& p, const Ctx& k) {
  const int64_t n_blocks = (p.num_rows + kPRBlockRows - 1) / kPRBlockRows;
  const int64_t cells = k.C * k.T * 2;
  int nt = threads_for_work((int)p.num_threads, (double)p.num_rows * (double)k.C * (double)sizeof(P),
                            kMinBytesPerThread);
  if (nt > n_blocks) nt = (int)std::max<int64_t>(1, n_blocks);
  const bool fast = !W && k.C == 1 && p.prob_mode == kProbabilities && p.label_mode == kLabelMatrix;
  const bool classes = !W && !fast && p.prob_mode == kProbabilities;
  LanePlan plan;
  LogitBound bound;
#ifdef TBF_X86
  if (k.C <= kSimdMaxClasses && cpu_has_avx2()) {
    plan = make_plan(k, !W, !W);
    if ((double)plan.copies * (double)cells > (double)INT32_MAX) plan = LanePlan();
    if (p.prob_mode != kProbabilities) bound = logit_bound(k, p.prob_mode == kSoftmax, std::is_same<P, double>::value);
  }
#endif
  const bool simd = plan.V > 0;
  const bool use32 = simd && !W && plan.copies * cells <= kSimdInt32Cells;
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
    if (simd) {
      s.obuf.assign(plan.NB * plan.V * 8, 0);
      s.flags.assign(plan.NB, 0);
      if (p.prob_mode != kProbabilities) s.ebuf.assign(plan.NB * plan.V * 8, 0.0f);
      if (p.prob_mode == kSoftmax) s.ibuf.assign(plan.NB * 8, 0.0f);
      if (p.prob_mode != kProbabilities) s.lbuf.assign(plan.NB * 8, 0);
      if (W) {
        s.bmin.assign(plan.V * 8, INT32_MAX);
        s.bmax.assign(plan.V * 8, INT32_MIN);
      }
    }
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
    if (simd) {
      if (use32 && s.rows32 + (r1 - r0) > INT32_MAX) flush32(s);
      s.rows32 += r1 - r0;
      r0 = simd_dispatch<P, L, W>(p, k, plan, bound, r0, r1, use32, s);
      if (W) fold_ranges(k, plan, s);
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
