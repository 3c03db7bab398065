// CPU PR-curve kernel (see csrc/pr_curve.h for the semantics).
//
// Work split: the rows are cut into blocks of kPRBlockRows; threads take blocks from an
// atomic counter (parallel_items). Unweighted, each thread counts into its own int64
// array [C, T, 2] (the first thread straight into the output when it runs alone), and the
// arrays are added up after the join: integer sums, so the result never depends on the
// thread count. Weighted, each thread sums one block into a float64 scratch array, then
// waits for its turn and adds the touched part of the scratch into the output in block
// order: the same order of float64 additions as np.histogram, whatever the thread count.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <thread>
#include <type_traits>
#include <vector>

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

template <typename P, typename L, bool W>
void run_typed(const PRCurveParams& p, const Ctx& k) {
  const int64_t n_blocks = (p.num_rows + kPRBlockRows - 1) / kPRBlockRows;
  const int64_t cells = k.C * k.T * 2;
  int nt = std::max(1, (int)p.num_threads);
  if (nt > n_blocks) nt = (int)std::max<int64_t>(1, n_blocks);
  // Private arrays cost nt * cells * 8 bytes: stay under 512 MiB.
  while (nt > 1 && (double)nt * (double)cells * 8.0 > 512.0 * (1 << 20)) nt--;
  const bool fast = !W && k.C == 1 && p.prob_mode == kProbabilities && p.label_mode == kLabelMatrix;
  const bool classes = !W && !fast && p.prob_mode == kProbabilities;

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
    if (fast && cells <= (int64_t(1) << 15)) s.counts2.assign(cells, 0);
  }

  std::atomic<int64_t> committed{0};
  parallel_items(n_blocks, nt, [&](int64_t blk, int tid) {
    Scratch& s = scratch[tid];
    int64_t r0 = blk * kPRBlockRows, r1 = std::min(r0 + kPRBlockRows, p.num_rows);
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
    const Scratch& s = scratch[t];
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
