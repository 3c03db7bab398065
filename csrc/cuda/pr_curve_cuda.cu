// CUDA PR-curve kernels (semantics: csrc/pr_curve.h; the CPU twin they must match bucket for
// bucket: csrc/cpu/pr_curve_cpu.cpp).
//
// Launches, all on p.stream, no host sync, no allocation (weighted scratch from the caller):
//  * element_kernel (probabilities and sigmoid): one work item per prediction e of the
//    N x C matrix (row e / C, class e % C). Grid = a persistent wave (SMs x resident blocks,
//    fewer for small inputs); thread t of block b takes e = b * 256 + t + i * S (S = grid x
//    256, four items in flight per thread), so loads are coalesced. (row, class) is
//    advanced incrementally (no division per element). Row-level checks (weight, class
//    index) are repeated by every item of the row and counted as bad by the class-0 item
//    only, so a row counts once, as in the CPU's row loop.
//  * softmax_kernel: one thread per row: max over the finite logits, the sum of
//    exp(x - max) sequentially in class order (the CPU's order of float64 additions), then
//    one bucket per class from exp(x - max) / sum. Same checks, same order as block_rows.
//  * Unweighted: counts are integers. When C*T*2 + 1 int32 counters fit in 48 KiB, each
//    block counts into shared memory (slot s, copy r at s * R + r, lane l uses copy l % R;
//    R <= 8 copies while they fit in 32 KiB, so lanes that hit one bucket spread over R
//    words; slot C*T*2 is a trash slot that absorbs skipped items without a branch), then
//    adds its non-zero counters to the int64 counts with one global atomic each. Larger
//    curves add straight to the int64 counts, one atomic per group of lanes of a warp that
//    hit the same cell (__match_any_sync). The grid is raised so that no block handles more
//    than 2^30 + 256 items: int32 counters never overflow.
//  * Weighted: each weight w (0 <= w < 2^63; others count as kBadWeight) is split exactly
//    into hi = floor(w) and lo = floor(frac(w) * 2^64) (weights finer than 2^-64 lose those
//    bits: they contribute their value truncated to a multiple of 2^-64). (lo, hi) is added
//    as a 128-bit unsigned fixed-point number (units of 2^-64) into two uint64 words per
//    cell: atomicAdd of lo on the low word, +1 on the high word when that add wrapped
//    (old + lo < old), atomicAdd of hi on the high word. Integer additions commute, so the
//    sum does not depend on the order. Cells go through shared memory when
//    (C*T*2 + 1) * 16 bytes fit in 48 KiB (flushed into the scratch with the same 128-bit
//    add), else straight into the scratch. The scratch is zeroed at the start of the call
//    (cudaMemsetAsync) and convert_kernel then adds each touched cell's exact sum, rounded
//    once to float64 (correctly rounded, ties to even), into wsums. A cell's per-call sum
//    must stay below 2^64. Results are bit-identical run to run and equal to the CPU's
//    (np.histogram's block-ordered float64 additions) to float64 rounding.
//  * Bad values are counted per thread in registers and added to `bad` with one atomic per
//    warp and non-zero kind at the end.
//
// exp() is CUDA's float64 exp (at most 1 ulp from the exact value; glibc's is within about
// 0.5 ulp): sigmoid/softmax buckets can differ from the CPU's only when a probability lands
// within an ulp or so of a threshold.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "cuda/device_cuda.h"
#include "pr_curve.h"

namespace tbfast {

namespace {

// ---- tuning constants ------------------------------------------------------------------------

constexpr int kThreads = 256;
constexpr int kUnroll = 4;                        // items in flight per thread (element kernel)
constexpr int64_t kSmemBytes = 48 * 1024;         // dynamic shared memory without an opt-in
constexpr int64_t kReplicaBytes = 32 * 1024;      // replicate int32 counters while they fit
constexpr int kMaxReplicas = 8;
constexpr int64_t kMaxBlockItems = int64_t(1) << 30;  // per block: int32 counters stay exact
constexpr int64_t kMaxTotal = int64_t(1) << 60;   // N * C limit (grid <= 2^30 blocks)
constexpr int64_t kMaxClasses = int64_t(1) << 30;  // per-thread bad counters stay below 2^32
constexpr int64_t kMinSharedItems = 2048;         // shared counters: items per block at least
constexpr int kConvertThreads = 256;
constexpr double kTwo63 = 9223372036854775808.0;
constexpr double kTwo64 = 18446744073709551616.0;
constexpr double kTwoM64 = 5.42101086242752217003726400434970855712890625e-20;  // 2^-64

enum AccMode : int32_t { kAccGlobal = 0, kAccShared = 1 };

// Everything the kernels need; passed by value.
struct KP {
  const void* predictions;
  const void* labels;
  const void* weights;   // null: weight_scalar for every row
  int32_t weights_f32;   // weights are float32 (else float64)
  int32_t label_mode;    // PRLabelMode
  int32_t prob_mode;     // PRProbMode
  int32_t half_rounding;
  double weight_scalar;
  int64_t N, C, T;
  int64_t cells;         // C * T * 2; also the trash slot of the shared counters
  int64_t total;         // N * C
  int64_t step_q, step_r;  // (grid * kThreads) / C and % C: the (row, class) step
  float tm1f;
  double tm1d;
  int32_t acc;           // AccMode
  int32_t replicas;      // shared int32 counter copies (power of two, >= 1)
  int32_t shift;         // log2(replicas)
  int32_t pad_;
  int64_t* counts;                 // unweighted out [C, T, 2]
  unsigned long long* acc128;      // weighted scratch [cells][2]: low word, high word
  int64_t* bad;                    // [kNumBadKinds]
};

// ---- element types ---------------------------------------------------------------------------

// Predictions: stored type and value type (float for the float32 family, exactly the CPU's
// Pred<P>::load), bucket exactly as Pred<P>::bucket.
template <typename P>
struct PredT;
template <>
struct PredT<float> {
  using raw = float;
  using V = float;
  __device__ static V value(raw x) { return x; }
  __device__ static int64_t bucket(V v, const KP& k) { return pr_bucket_f32(v, k.tm1f); }
};
template <>
struct PredT<double> {
  using raw = double;
  using V = double;
  __device__ static V value(raw x) { return x; }
  __device__ static int64_t bucket(V v, const KP& k) { return pr_bucket_f64(v, k.tm1d); }
};
template <>
struct PredT<half_bits> {
  using raw = uint16_t;
  using V = float;
  // Hardware binary16 -> binary32: exact, the same value as half_to_float.
  __device__ static V value(raw x) { return __half2float(__ushort_as_half(x)); }
  __device__ static int64_t bucket(V v, const KP& k) { return pr_bucket_f16(v, k.tm1f, k.half_rounding != 0); }
};
template <>
struct PredT<bf16_bits> {
  using raw = uint16_t;
  using V = float;
  __device__ static V value(raw x) { return __uint_as_float((uint32_t)x << 16); }
  __device__ static int64_t bucket(V v, const KP& k) { return pr_bucket_f16(v, k.tm1f, k.half_rounding != 0); }
};

// Labels: 0/1 value (-1 when neither) and class index (-1 when not a valid index), exactly
// as the CPU's Lab<L>.
template <typename L>
struct LabT {
  using raw = L;
  __device__ static int bit(raw v) { return v == raw(0) ? 0 : (v == raw(1) ? 1 : -1); }
  __device__ static int64_t index(raw v) {
    if constexpr (std::is_integral<L>::value) {
      const int64_t k = (int64_t)v;
      return k >= 0 ? k : -1;
    } else {
      const double d = (double)v;
      if (!(d >= 0 && d < 9.2e18)) return -1;
      const int64_t k = (int64_t)d;
      return (double)k == d ? k : -1;
    }
  }
};
template <>
struct LabT<bool> {
  using raw = uint8_t;  // read the byte: any non-zero byte is true
  __device__ static int bit(raw v) { return v != 0; }
  __device__ static int64_t index(raw v) { return v != 0; }
};

// ---- helpers ---------------------------------------------------------------------------------

__device__ __forceinline__ double dinf() { return __longlong_as_double(0x7FF0000000000000LL); }

__device__ __forceinline__ double load_weight(const KP& k, int64_t r) {
  if (k.weights == nullptr) return k.weight_scalar;
  return k.weights_f32 ? (double)static_cast<const float*>(k.weights)[r] : static_cast<const double*>(k.weights)[r];
}

// Exact 128-bit fixed point of a weight: w = hi + lo * 2^-64 (lo truncated below 2^-64).
// False (bad weight) unless 0 <= w < 2^63: NaN, negative, infinite and huge weights.
__device__ __forceinline__ bool split_weight(double w, unsigned long long* lo, unsigned long long* hi) {
  if (!(w >= 0.0 && w < kTwo63)) return false;
  const unsigned long long h = __double2ull_rz(w);  // floor: w >= 0
  const double f = w - __ull2double_rn(h);          // exact: the fractional part of w
  *hi = h;
  *lo = __double2ull_rz(f * kTwo64);                // exact product < 2^64, truncated
  return true;
}

// cell (low word, high word) += (lo, hi) as 128-bit unsigned integers; works on shared or
// global memory. A carry goes to the high word exactly when the low-word add wraps.
__device__ __forceinline__ void add128(unsigned long long* cell, unsigned long long lo, unsigned long long hi) {
  if (lo != 0) {
    const unsigned long long old = atomicAdd(cell, lo);
    if (old + lo < old) ++hi;
  }
  if (hi != 0) atomicAdd(cell + 1, hi);
}

// (hi * 2^64 + lo) * 2^-64, correctly rounded to float64 (round to nearest even).
__device__ __forceinline__ double fixed_to_double(unsigned long long hi, unsigned long long lo) {
  if (hi == 0) return __ull2double_rn(lo) * kTwoM64;  // scaling by 2^-64 is exact (>= 2^-64)
  const int n = 64 - __clzll((long long)hi);          // significant bits of hi, 1..64
  unsigned long long m;
  if (n == 64) {
    m = hi | (lo != 0 ? 1ull : 0ull);
  } else {
    // The top 64 bits of the 128-bit value; bit 0 (far below float64's rounding position)
    // is or-ed with a sticky bit for whatever was shifted out, so ties round correctly.
    m = (hi << (64 - n)) | (lo >> n) | ((lo & ((1ull << n) - 1)) != 0 ? 1ull : 0ull);
  }
  // value = m * 2^(n - 64); 2^(n - 64) with n - 64 in [-63, 0] is a normal double.
  const double scale = __longlong_as_double((long long)(1023 + n - 64) << 52);
  return __ull2double_rn(m) * scale;
}

// Per-thread bad counts. A thread sees at most (items per block) / 256 + 1 items (element
// kernel: <= 2^22 + 1) or that many rows' worth plus one row of C <= 2^30 classes (softmax
// kernel): always below 2^32.
struct BadCounts {
  uint32_t n[kBadWeight + 1];
};

// Each warp adds its non-zero counts to `bad` (summed in 64 bits); every lane of the warp
// must call it.
__device__ __forceinline__ void flush_bad(const BadCounts& b, int64_t* bad) {
#pragma unroll
  for (int i = 0; i <= kBadWeight; ++i) {
    unsigned long long s = b.n[i];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xFFFFFFFFu, s, o);
    if ((threadIdx.x & 31) == 0 && s != 0) atomicAdd(reinterpret_cast<unsigned long long*>(bad + i), s);
  }
}

// Zero `bytes` (a multiple of 4) of shared memory; the caller puts a barrier after it.
__device__ __forceinline__ void zero_shared(unsigned char* smem, int bytes) {
  uint32_t* w = reinterpret_cast<uint32_t*>(smem);
  for (int i = threadIdx.x; i < bytes / 4; i += blockDim.x) w[i] = 0;
}

// Adds a block's shared counters to the output. Barrier first (all of the block's shared
// atomics done); block-uniform (k.acc is a kernel parameter).
template <bool W>
__device__ __forceinline__ void flush_shared(const KP& k, unsigned char* smem) {
  __syncthreads();
  const int cells = (int)k.cells;  // shared only when cells < 12288
  if (!W) {
    const uint32_t* h = reinterpret_cast<const uint32_t*>(smem);
    const int R = k.replicas;
    for (int s = threadIdx.x; s < cells; s += blockDim.x) {
      unsigned long long sum = 0;
      for (int r = 0; r < R; ++r) sum += h[s * R + r];
      if (sum != 0) atomicAdd(reinterpret_cast<unsigned long long*>(k.counts + s), sum);
    }
  } else {
    const unsigned long long* h = reinterpret_cast<const unsigned long long*>(smem);
    for (int s = threadIdx.x; s < cells; s += blockDim.x) {
      const unsigned long long lo = h[2 * s], hi = h[2 * s + 1];
      if ((lo | hi) != 0) add128(k.acc128 + 2 * (int64_t)s, lo, hi);
    }
  }
}

// One counted item into its cell (slot == k.cells: skipped item). kWarpUniform: every lane
// of the warp calls this together (element kernel), so the global path can aggregate lanes
// that hit the same cell.
template <bool W, bool kWarpUniform>
__device__ __forceinline__ void accumulate(const KP& k, int64_t slot, unsigned long long lo, unsigned long long hi,
                                           unsigned char* smem, int copy) {
  if (!W) {
    if (k.acc == kAccShared) {
      // trash slot included: no branch
      atomicAdd(reinterpret_cast<uint32_t*>(smem) + (((int)slot << k.shift) + copy), 1u);
    } else if (kWarpUniform) {
      const unsigned m = __match_any_sync(0xFFFFFFFFu, (unsigned long long)slot);
      if (slot != k.cells && (int)(threadIdx.x & 31) == __ffs(m) - 1)
        atomicAdd(reinterpret_cast<unsigned long long*>(k.counts + slot), (unsigned long long)__popc(m));
    } else if (slot != k.cells) {
      atomicAdd(reinterpret_cast<unsigned long long*>(k.counts + slot), 1ull);
    }
  } else if (slot != k.cells) {
    unsigned long long* base =
        k.acc == kAccShared ? reinterpret_cast<unsigned long long*>(smem) : k.acc128;
    add128(base + 2 * slot, lo, hi);
  }
}

__device__ __forceinline__ int64_t cell_of(const KP& k, int64_t c, int64_t b, int pos) {
  b = b < k.T ? b : k.T - 1;  // never taken for p in [0, 1]; keeps memory safe regardless
  return (c * k.T + b) * 2 + pos;
}

// ---- element kernel (probabilities, sigmoid) -------------------------------------------------

// The cell of one item, or k.cells when it is skipped (bad values counted into `bad` in the
// CPU's order: weight, class index (both per row, counted by class 0), label, prediction).
template <typename P, typename L, bool W>
__device__ __forceinline__ int64_t element_slot(const KP& k, typename PredT<P>::raw xr, typename LabT<L>::raw lr,
                                                double w, int64_t c, BadCounts& bad, unsigned long long* lo,
                                                unsigned long long* hi) {
  using PT = PredT<P>;
  using V = typename PT::V;
  if (W && !split_weight(w, lo, hi)) {
    if (c == 0) bad.n[kBadWeight]++;
    return k.cells;
  }
  int pos;
  if (k.label_mode == kLabelIndex) {
    const int64_t idx = LabT<L>::index(lr);
    if (idx < 0 || idx >= k.C) {
      if (c == 0) bad.n[kBadClassIndex]++;
      return k.cells;
    }
    pos = c == idx;
  } else {
    pos = LabT<L>::bit(lr);
    if (pos < 0) {
      bad.n[kBadLabel]++;
      return k.cells;
    }
  }
  int64_t b;
  if (k.prob_mode == kProbabilities) {
    const V v = PT::value(xr);
    if (!(v >= V(0) && v <= V(1))) {
      // constant indices only: a run-time index would put the counters in local memory
      if (v != v)
        bad.n[kBadNaNPrediction]++;
      else
        bad.n[kBadPredictionRange]++;
      return k.cells;
    }
    b = PT::bucket(v, k);
  } else {  // kSigmoid
    const double v = (double)PT::value(xr);
    if (!isfinite(v)) {
      bad.n[kBadLogit]++;
      return k.cells;
    }
    b = pr_bucket_f64(1.0 / (1.0 + exp(-v)), k.tm1d);
  }
  return cell_of(k, c, b, pos);
}

template <typename P, typename L, bool W>
__global__ void __launch_bounds__(kThreads) element_kernel(const KP k) {
  using praw = typename PredT<P>::raw;
  using lraw = typename LabT<L>::raw;
  extern __shared__ __align__(16) unsigned char smem[];
  const int tid = threadIdx.x, lane = tid & 31;
  const bool shared = k.acc == kAccShared;
  if (shared) zero_shared(smem, W ? (int)((k.cells + 1) * 16) : (int)((k.cells + 1) * 4 * k.replicas));
  __syncthreads();
  const int copy = lane & (k.replicas - 1);

  const praw* x = static_cast<const praw*>(k.predictions);
  const lraw* lab = static_cast<const lraw*>(k.labels);
  const bool index = k.label_mode == kLabelIndex;
  BadCounts bad = {};
  const int64_t S = (int64_t)gridDim.x * kThreads;
  int64_t e = (int64_t)blockIdx.x * kThreads + tid;
  int64_t r = e / k.C, c = e - r * k.C;
  // e - lane is the warp's first item: the loop is warp-uniform (lanes hold consecutive
  // items), so every lane reaches the warp-wide aggregation in accumulate().
  while (e - lane < k.total) {
    praw xv[kUnroll];
    lraw lv[kUnroll];
    double wv[kUnroll];
    int64_t cv[kUnroll];
    bool ok[kUnroll];
#pragma unroll
    for (int j = 0; j < kUnroll; ++j) {
      ok[j] = e < k.total;
      cv[j] = c;
      xv[j] = praw();
      lv[j] = lraw();
      wv[j] = 0.0;
      if (ok[j]) {
        xv[j] = x[e];
        lv[j] = index ? lab[r] : lab[e];
        if (W) wv[j] = load_weight(k, r);
      }
      e += S;
      r += k.step_q;
      c += k.step_r;
      if (c >= k.C) {
        c -= k.C;
        ++r;
      }
    }
#pragma unroll
    for (int j = 0; j < kUnroll; ++j) {
      unsigned long long lo = 0, hi = 0;
      const int64_t slot = ok[j] ? element_slot<P, L, W>(k, xv[j], lv[j], wv[j], cv[j], bad, &lo, &hi) : k.cells;
      accumulate<W, true>(k, slot, lo, hi, smem, copy);
    }
  }
  if (shared) flush_shared<W>(k, smem);
  flush_bad(bad, k.bad);
}

// ---- softmax kernel --------------------------------------------------------------------------

// One thread per row, the CPU's block_rows for kSoftmax step by step.
template <typename P, typename L, bool W>
__global__ void __launch_bounds__(kThreads, 2) softmax_kernel(const KP k) {
  using PT = PredT<P>;
  using praw = typename PT::raw;
  using lraw = typename LabT<L>::raw;
  extern __shared__ __align__(16) unsigned char smem[];
  const int tid = threadIdx.x, lane = tid & 31;
  const bool shared = k.acc == kAccShared;
  if (shared) zero_shared(smem, W ? (int)((k.cells + 1) * 16) : (int)((k.cells + 1) * 4 * k.replicas));
  __syncthreads();
  const int copy = lane & (k.replicas - 1);

  const praw* x = static_cast<const praw*>(k.predictions);
  const lraw* lab = static_cast<const lraw*>(k.labels);
  const int64_t C = k.C;
  BadCounts bad = {};
  const int64_t S = (int64_t)gridDim.x * kThreads;
  for (int64_t r = (int64_t)blockIdx.x * kThreads + tid; r < k.N; r += S) {
    unsigned long long lo = 0, hi = 0;
    if (W && !split_weight(load_weight(k, r), &lo, &hi)) {
      bad.n[kBadWeight]++;
      continue;
    }
    int64_t idx = -1;
    if (k.label_mode == kLabelIndex) {
      idx = LabT<L>::index(lab[r]);
      if (idx < 0 || idx >= C) {
        bad.n[kBadClassIndex]++;
        continue;
      }
    }
    const praw* xr = x + r * C;
    double mx = -dinf();
    int64_t nonfinite = 0;
    for (int64_t c = 0; c < C; ++c) {
      const double v = (double)PT::value(xr[c]);
      if (!isfinite(v))
        nonfinite++;
      else
        mx = v > mx ? v : mx;
    }
    if (nonfinite) {
      bad.n[kBadLogit] += (uint32_t)nonfinite;
      continue;
    }
    double sum = 0.0;
    for (int64_t c = 0; c < C; ++c) sum += exp((double)PT::value(xr[c]) - mx);
    for (int64_t c = 0; c < C; ++c) {
      const int pos = idx >= 0 ? (c == idx) : LabT<L>::bit(lab[r * C + c]);
      if (pos < 0) {
        bad.n[kBadLabel]++;
        continue;
      }
      const double e = exp((double)PT::value(xr[c]) - mx);  // the CPU's row[c]
      accumulate<W, false>(k, cell_of(k, c, pr_bucket_f64(e / sum, k.tm1d), pos), lo, hi, smem, copy);
    }
  }
  if (shared) flush_shared<W>(k, smem);
  flush_bad(bad, k.bad);
}

// ---- weighted: fixed point -> float64 --------------------------------------------------------

__global__ void __launch_bounds__(kConvertThreads)
    convert_kernel(const unsigned long long* acc, double* wsums, int64_t cells) {
  const int64_t S = (int64_t)gridDim.x * kConvertThreads;
  for (int64_t s = (int64_t)blockIdx.x * kConvertThreads + threadIdx.x; s < cells; s += S) {
    const unsigned long long lo = acc[2 * s], hi = acc[2 * s + 1];
    if ((lo | hi) != 0) wsums[s] += fixed_to_double(hi, lo);
  }
}

// ---- host side -------------------------------------------------------------------------------

int fail(cudaError_t err, const char* where) {
  cuda_record_error((int)err, where);
  return kCudaError;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

template <typename P, typename L, bool W>
int launch(KP k, int sms, cudaStream_t stream) {
  const bool softmax = k.prob_mode == kSoftmax;
  void (*fn)(KP) = softmax ? softmax_kernel<P, L, W> : element_kernel<P, L, W>;

  // Accumulator: block-private shared counters when they fit, else global atomics.
  int64_t smem = 0;
  k.acc = kAccGlobal;
  k.replicas = 1;
  k.shift = 0;
  if (!W) {
    const int64_t one = (k.cells + 1) * 4;
    if (one <= kSmemBytes) {
      int R = kMaxReplicas, shift = 3;
      while (R > 1 && one * R > kReplicaBytes) {
        R >>= 1;
        --shift;
      }
      k.acc = kAccShared;
      k.replicas = R;
      k.shift = shift;
      smem = one * R;
    }
  } else {
    const int64_t one = (k.cells + 1) * 16;
    if (one <= kSmemBytes) {
      k.acc = kAccShared;
      smem = one;
    }
  }

  int per_sm = 0;
  cudaError_t err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, fn, kThreads, (size_t)smem);
  if (err != cudaSuccess) return fail(err, "pr_curve_cuda: cudaOccupancyMaxActiveBlocksPerMultiprocessor");
  const int64_t resident = (int64_t)sms * (per_sm > 0 ? per_sm : 1);
  int64_t grid;
  if (softmax) {
    grid = ceil_div(k.N, kThreads);
  } else {
    // Shared counters: enough items per block that the flush (one pass over the cells)
    // costs no more than the counting.
    const int64_t per_block =
        k.acc == kAccShared ? (k.cells > kMinSharedItems ? k.cells : kMinSharedItems) : (int64_t)kThreads * kUnroll;
    grid = ceil_div(k.total, per_block);
  }
  if (grid > resident) grid = resident;
  // No block handles more than kMaxBlockItems (+ one step) items: int32 counters are exact.
  const int64_t min_grid = ceil_div(k.total, kMaxBlockItems);
  if (grid < min_grid) grid = min_grid;
  if (grid < 1) grid = 1;
  const int64_t S = grid * kThreads;
  k.step_q = S / k.C;
  k.step_r = S % k.C;

  fn<<<(unsigned)grid, kThreads, (size_t)smem, stream>>>(k);
  err = cudaGetLastError();
  if (err != cudaSuccess) return fail(err, softmax ? "pr_curve_cuda: softmax kernel launch" : "pr_curve_cuda: kernel launch");
  return kOk;
}

template <typename P, bool W>
int launch_label(const KP& k, int32_t label_dtype, int sms, cudaStream_t stream) {
  switch (label_dtype) {
    case kBool: return launch<P, bool, W>(k, sms, stream);
    case kUInt8: return launch<P, uint8_t, W>(k, sms, stream);
    case kInt32: return launch<P, int32_t, W>(k, sms, stream);
    case kInt64: return launch<P, int64_t, W>(k, sms, stream);
    case kFloat32: return launch<P, float, W>(k, sms, stream);
    case kFloat64: return launch<P, double, W>(k, sms, stream);
    default: return kBadDType;
  }
}

template <bool W>
int launch_pred(const KP& k, int32_t pred_dtype, int32_t label_dtype, int sms, cudaStream_t stream) {
  switch (pred_dtype) {
    case kFloat16: return launch_label<half_bits, W>(k, label_dtype, sms, stream);
    case kBFloat16: return launch_label<bf16_bits, W>(k, label_dtype, sms, stream);
    case kFloat32: return launch_label<float, W>(k, label_dtype, sms, stream);
    case kFloat64: return launch_label<double, W>(k, label_dtype, sms, stream);
    default: return kBadDType;
  }
}

bool pred_dtype_ok(int32_t d) { return d == kFloat16 || d == kBFloat16 || d == kFloat32 || d == kFloat64; }
bool label_dtype_ok(int32_t d) {
  return d == kBool || d == kUInt8 || d == kInt32 || d == kInt64 || d == kFloat32 || d == kFloat64;
}

// C * T * 2, or -1 when the sizes are invalid or the product would overflow.
int64_t num_cells(const PRCurveParams& p) {
  if (p.num_classes < 1 || p.num_thresholds < 2 || p.num_thresholds > (int64_t(1) << 24)) return -1;
  if (p.num_classes > (INT64_MAX / 32) / (2 * p.num_thresholds)) return -1;
  return p.num_classes * p.num_thresholds * 2;
}

}  // namespace

int64_t pr_curve_cuda_scratch_bytes(const PRCurveParams& p) {
  const int64_t cells = num_cells(p);
  if (cells < 0) return -1;
  return p.wsums != nullptr ? cells * 2 * (int64_t)sizeof(unsigned long long) : 0;
}

int pr_curve_cuda(const PRCurveParams& p) {
  if (p.label_mode != kLabelMatrix && p.label_mode != kLabelIndex) return kBadMode;
  if (p.prob_mode < kProbabilities || p.prob_mode > kSigmoid) return kBadMode;
  if (!pred_dtype_ok(p.pred_dtype) || !label_dtype_ok(p.label_dtype)) return kBadDType;
  if (p.weights != nullptr && p.weight_dtype != kFloat32 && p.weight_dtype != kFloat64) return kBadDType;
  const int64_t cells = num_cells(p);
  if (cells < 0 || p.num_rows < 0) return kBadArgument;
  const bool weighted = p.wsums != nullptr;
  if (!p.bad || (!weighted && !p.counts)) return kBadArgument;
  if (p.num_rows > 0 && (!p.predictions || !p.labels)) return kBadArgument;
  if (p.num_classes > kMaxClasses || p.num_rows > kMaxTotal / p.num_classes) return kBadArgument;
  if (weighted) {
    if (!p.scratch || p.scratch_bytes < pr_curve_cuda_scratch_bytes(p) ||
        reinterpret_cast<uintptr_t>(p.scratch) % sizeof(unsigned long long) != 0)
      return kBadArgument;
  }
  if (p.num_rows == 0) return kOk;

  int dev = 0, sms = 0;
  cudaError_t err = cudaGetDevice(&dev);
  if (err != cudaSuccess) return fail(err, "pr_curve_cuda: cudaGetDevice");
  err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  if (err != cudaSuccess) return fail(err, "pr_curve_cuda: cudaDeviceGetAttribute");
  if (sms < 1) sms = 1;
  cudaStream_t stream = static_cast<cudaStream_t>(p.stream);

  KP k{};
  k.predictions = p.predictions;
  k.labels = p.labels;
  k.weights = p.weights;
  k.weights_f32 = p.weight_dtype == kFloat32;
  k.label_mode = p.label_mode;
  k.prob_mode = p.prob_mode;
  k.half_rounding = pr_half_rounding(p.num_thresholds);
  k.weight_scalar = p.weight_scalar;
  k.N = p.num_rows;
  k.C = p.num_classes;
  k.T = p.num_thresholds;
  k.cells = cells;
  k.total = p.num_rows * p.num_classes;
  k.tm1f = (float)(p.num_thresholds - 1);
  k.tm1d = (double)(p.num_thresholds - 1);
  k.counts = p.counts;
  k.acc128 = static_cast<unsigned long long*>(p.scratch);
  k.bad = p.bad;

  if (!weighted) return launch_pred<false>(k, p.pred_dtype, p.label_dtype, sms, stream);

  err = cudaMemsetAsync(p.scratch, 0, (size_t)cells * 2 * sizeof(unsigned long long), stream);
  if (err != cudaSuccess) return fail(err, "pr_curve_cuda: cudaMemsetAsync(scratch)");
  int st = launch_pred<true>(k, p.pred_dtype, p.label_dtype, sms, stream);
  if (st != kOk) return st;
  int64_t grid = ceil_div(cells, kConvertThreads);
  if (grid > (int64_t)sms * 8) grid = (int64_t)sms * 8;
  convert_kernel<<<(unsigned)grid, kConvertThreads, 0, stream>>>(k.acc128, p.wsums, cells);
  err = cudaGetLastError();
  if (err != cudaSuccess) return fail(err, "pr_curve_cuda: convert kernel launch");
  return kOk;
}

}  // namespace tbfast
