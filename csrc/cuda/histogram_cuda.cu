// CUDA histogram kernels (semantics: csrc/histogram.h; the CPU twin they must match bucket for
// bucket: csrc/cpu/histogram_cpu.cpp).
//
// Passes, all enqueued on p.stream, no host sync and no allocation (scratch comes from the caller):
//  * kEdges:            zero counts -> float32 table kernel (a 32 KB shared-memory form of
//                       EdgeLookup::f32, when the edges allow it) -> count kernel (buckets +
//                       per-slice statistics) -> reduce kernel (per-tensor statistics and
//                       non-finite counts).
//  * kUniform:          zero counts -> count kernel -> reduce kernel.
//  * kUniformAuto:      zero counts -> statistics kernel (the count kernel without buckets)
//                       -> reduce kernel -> count kernel without statistics, which reads each
//                       tensor's range from the reduced statistics in device memory.
//
// Work unit: a slice of kSlice = kCudaChunk / 4 elements. Global slice s belongs to chunk s / 4,
// so tensor t owns slices [4 * off[t], 4 * off[t + 1]); the slices past a tensor's last element
// are empty. Each slice's statistics are computed by one block in a fixed order and written to
// their own scratch slot; the reduce kernel combines a tensor's slots in a fixed order. Float64
// sums therefore depend neither on the grid size nor on the run. Counts are integers, exact
// whatever the atomic order.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <type_traits>

#include "cuda/device_cuda.h"
#include "dispatch.h"
#include "histogram.h"

namespace tbfast {

namespace {

// ---- tuning constants ------------------------------------------------------------------------

constexpr int kThreads = 256;                   // count / statistics kernel block
constexpr int kWarps = kThreads / 32;
constexpr int kReduceThreads = 512;             // per-tensor statistics reduction block
constexpr int kReduceWarps = kReduceThreads / 32;
constexpr int kSlicesPerChunk = 4;
constexpr int kSlice = (int)(kCudaChunk / kSlicesPerChunk);  // 16384 elements
constexpr int kMaxReplicas = 8;                 // shared-memory histogram copies, by lane
constexpr int64_t kReplicaBytes = 32 * 1024;    // replicate while all copies fit in this
constexpr int64_t kSmemHistMaxBytes = 100 * 1024;  // one copy larger than this: global atomics
constexpr int kFlushEvery = INT32_MAX - kSlice;  // int32 smem counters never overflow
constexpr int64_t kMaxBins = INT32_MAX - 2;     // slots are int32 (num_bins + 2 of them)
constexpr int kMaxDevices = 64;
constexpr int64_t kBlockSmemTarget = 48 * 1024;  // float32 table + histogram copies: 4 blocks/SM
// Shared-memory float32 table (see ftab_kernel): keys = top 13 bits of the ordered bits (sign,
// exponent, 4 mantissa bits); entry = base << 20 | threshold's low 19 bits (or kFTabNone).
constexpr int kFTabBits = 13;
constexpr int kFTabSize = 1 << kFTabBits;             // 8192 entries, 32 KB
constexpr int kFTabShift = 32 - kFTabBits;            // ord >> 19 = key
constexpr int kFTabSub = 1 << (16 - kFTabBits);       // EdgeLookup::f32 keys per table key
constexpr uint32_t kFTabLow = (1u << kFTabShift) - 1;  // low 19 bits of ord
constexpr uint32_t kFTabNone = 1u << kFTabShift;       // threshold field of a key without one
constexpr uint32_t kFTabField = (1u << (kFTabShift + 1)) - 1;
constexpr int64_t kFTabMaxEdges = (1 << (32 - kFTabShift - 1)) - 1;  // base field: 12 bits
constexpr uint32_t kFTabInvalid = 0xFFFFFFFFu;  // threshold field > kFTabNone: not usable
constexpr int kDefaultDynSmem = 48 * 1024;      // dynamic smem allowed without an opt-in

// Resident blocks per SM that each count kernel's register allocation targets: 4 (64 registers)
// for the memory-bound ones; 2 for the equal-width ones, bound by a float64 division per element.
// sm_80's code for the edges kernel needs a few more than 64 registers (it spilled), so 3 there.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
#define TBF_EDGES_MIN_BLOCKS 3
#else
#define TBF_EDGES_MIN_BLOCKS 4
#endif

enum BinKind { kBinNone = 0, kBinEdges = 1, kBinUniform = 2 };
enum Path { kPathNone = 0, kPathF32 = 1, kPathF32Smem = 2, kPathEdges = 3, kPathUniform = 4 };

// ---- statistics records ----------------------------------------------------------------------

// Finite min, max, sum, sum of squares and non-finite counts of a slice (scratch), a thread,
// a warp or a tensor. 64 bytes, so a slice record is two 32-byte sectors.
struct alignas(16) Stats {
  double mn, mx, sum, sumsq;
  long long nan, pinf, ninf, pad;
};

__device__ __forceinline__ double dinf() { return __longlong_as_double(0x7FF0000000000000LL); }
__device__ __forceinline__ float finf() { return __int_as_float(0x7F800000); }

__device__ __forceinline__ Stats stats_identity() { return Stats{dinf(), -dinf(), 0.0, 0.0, 0, 0, 0, 0}; }

// a <- a combined with b (b's values come after a's: the order sums are taken in).
__device__ __forceinline__ void stats_merge(Stats& a, const Stats& b) {
  a.mn = fmin(a.mn, b.mn);
  a.mx = fmax(a.mx, b.mx);
  a.sum += b.sum;
  a.sumsq += b.sumsq;
  a.nan += b.nan;
  a.pinf += b.pinf;
  a.ninf += b.ninf;
}

// Fixed shuffle tree: lane 0 ends with lanes 0..31 combined, always in the same order.
__device__ __forceinline__ Stats warp_reduce(Stats a) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    Stats b;
    b.mn = __shfl_down_sync(0xFFFFFFFFu, a.mn, o);
    b.mx = __shfl_down_sync(0xFFFFFFFFu, a.mx, o);
    b.sum = __shfl_down_sync(0xFFFFFFFFu, a.sum, o);
    b.sumsq = __shfl_down_sync(0xFFFFFFFFu, a.sumsq, o);
    b.nan = __shfl_down_sync(0xFFFFFFFFu, a.nan, o);
    b.pinf = __shfl_down_sync(0xFFFFFFFFu, a.pinf, o);
    b.ninf = __shfl_down_sync(0xFFFFFFFFu, a.ninf, o);
    stats_merge(a, b);
  }
  return a;
}

// Block reduction in a fixed order; every thread must call it (it holds a barrier) and only
// thread 0's return value is the block's. `red` holds kW records; the caller makes sure nobody
// still reads it from a previous call (a barrier in between, or a second buffer).
template <int kW>
__device__ __forceinline__ Stats block_reduce(Stats a, Stats* red) {
  a = warp_reduce(a);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = a;
  __syncthreads();
  if (threadIdx.x == 0) {
    a = red[0];
    for (int w = 1; w < kW; ++w) stats_merge(a, red[w]);
  }
  return a;
}

// ---- element types ---------------------------------------------------------------------------

// How each dtype is stored and converted: float32-family types to float (exact), the others
// to double exactly as Load<T>::get does on the CPU. `raw` is the stored type (bool as a byte).
template <typename T>
struct Elem {  // integers
  using raw = T;
  static constexpr bool kF32 = false, kFloat = false;
  __device__ static double to_double(raw v) { return (double)v; }
};
template <>
struct Elem<bool> {
  using raw = uint8_t;
  static constexpr bool kF32 = false, kFloat = false;
  __device__ static double to_double(raw v) { return v ? 1.0 : 0.0; }
};
template <>
struct Elem<double> {
  using raw = double;
  static constexpr bool kF32 = false, kFloat = true;
  __device__ static double to_double(raw v) { return v; }
};
template <>
struct Elem<float> {
  using raw = float;
  static constexpr bool kF32 = true;
  __device__ static float to_float(raw v) { return v; }
};
template <>
struct Elem<half_bits> {
  using raw = uint16_t;
  static constexpr bool kF32 = true;
  // Hardware binary16 -> binary32: exact, the same value as half_to_float.
  __device__ static float to_float(raw v) { return __half2float(__ushort_as_half(v)); }
};
template <>
struct Elem<bf16_bits> {
  using raw = uint16_t;
  static constexpr bool kF32 = true;
  __device__ static float to_float(raw v) { return __uint_as_float((uint32_t)v << 16); }
};

// Per-thread accumulators of one slice. M: float for the float32 family (min/max of floats are
// the same values as min/max of their doubles), double otherwise.
template <typename M>
struct Acc {
  M mn, mx;
  double sum, sumsq;
  int nan, pinf, ninf;  // at most kSlice per slice
};

template <typename M>
__device__ __forceinline__ Acc<M> acc_identity() {
  return Acc<M>{(M)dinf(), (M)-dinf(), 0.0, 0.0, 0, 0, 0};
}

template <typename M>
__device__ __forceinline__ Stats acc_stats(const Acc<M>& a) {
  return Stats{(double)a.mn, (double)a.mx, a.sum, a.sumsq, a.nan, a.pinf, a.ninf, 0};
}

__device__ __forceinline__ float min_of(float a, float b) { return fminf(a, b); }
__device__ __forceinline__ float max_of(float a, float b) { return fmaxf(a, b); }
__device__ __forceinline__ double min_of(double a, double b) { return fmin(a, b); }
__device__ __forceinline__ double max_of(double a, double b) { return fmax(a, b); }

// Non-finite v (NaN, +Inf or -Inf) into its counter; the rare branch of the inner loop.
template <typename M, typename V>
__device__ __forceinline__ void count_nonfinite(V v, Acc<M>& a) {
  if (v != v)
    a.nan++;
  else if (v > 0)
    a.pinf++;
  else
    a.ninf++;
}

// ---- per-tensor binning context --------------------------------------------------------------

// Everything the inner loop needs about the current tensor; block-uniform, in registers.
struct Ctx {
  int32_t* hist;       // shared-memory histogram, this lane's copy; nullptr: global atomics
  int shift;           // log2(replicas): slot s of this lane's copy is hist[s << shift]
  int nb;              // num_bins
  int64_t* row;        // counts row of the tensor (global-atomics path)
  const unsigned long long* tab;  // EdgeLookup::f32
  const uint32_t* ftab;           // the float32 table in shared memory (see ftab_kernel)
  const EdgeKey* keys;            // EdgeLookup::keys
  const double* edges;
  double last_edge;
  double first, last;  // equal-width range
};

// Slots: 0 = below the range / non-finite, 1..nb = bins, nb + 1 = above the range.
__device__ __forceinline__ void add_slot(const Ctx& c, int slot, int n) {
  if (c.hist) {
    atomicAdd(c.hist + (slot << c.shift), n);
  } else if ((unsigned)(slot - 1) < (unsigned)c.nb) {
    atomicAdd(reinterpret_cast<unsigned long long*>(c.row + (slot - 1)), (unsigned long long)n);
  }
}

// Run-length compression of one thread's slots, in the order the thread meets its elements:
// one atomic per run of equal slots, so a warp on constant data (zeros, a constant tensor)
// issues a fraction of the atomics. The first run of a thread may add 0 to slot 0 (harmless).
struct Runs {
  int slot = 0, run = 0;
  __device__ __forceinline__ void push(const Ctx& c, int s) {
    if (s != slot) {
      add_slot(c, slot, run);
      slot = s;
      run = 1;
    } else {
      ++run;
    }
  }
  __device__ __forceinline__ void finish(const Ctx& c) {
    if (run) add_slot(c, slot, run);
  }
};

// ---- one element -----------------------------------------------------------------------------

// Statistics of one element into `a` (when kStats) and its slot (when kPath != kPathNone).
// Bucket rules, identical to the CPU:
//  * kPathF32: base + (ord >= threshold) from EdgeLookup::f32 (f32_slot, read through the
//    read-only cache), on the ordered bits of v + 0.0f (-0.0 -> +0.0).
//  * kPathF32Smem: the same slot from the shared-memory copy of ftab_kernel's table.
//  * kPathEdges: upper_bound(edges, v) - (v == last edge), from the EdgeKey table.
//  * kPathUniform: UniformBins::bucket(v) + 1 (numpy's formula and fix-up, float64).
template <typename T, int kPath, bool kStats, typename M>
__device__ __forceinline__ int element(typename Elem<T>::raw v, const Ctx& c, const UniformBins& u, Acc<M>& a) {
  using E = Elem<T>;
  if constexpr (E::kF32) {
    const float f = E::to_float(v);
    const bool fin = (__float_as_uint(f) & 0x7F800000u) != 0x7F800000u;
    if (kStats) {
      if (!fin) count_nonfinite(f, a);
      a.mn = min_of(a.mn, fin ? f : finf());
      a.mx = max_of(a.mx, fin ? f : -finf());
      const double d = fin ? (double)f : 0.0;
      a.sum += d;
      a.sumsq += d * d;
    }
    if constexpr (kPath == kPathF32) {
      const uint32_t ord = ordered_bits_f32(__float_as_uint(f + 0.0f));
      const unsigned long long e = __ldg(c.tab + (ord >> 16));
      return fin ? (int)(e >> 32) + (ord >= (uint32_t)e) : 0;
    } else if constexpr (kPath == kPathF32Smem) {
      const uint32_t ord = ordered_bits_f32(__float_as_uint(f + 0.0f));
      const uint32_t e = c.ftab[ord >> kFTabShift];
      return fin ? (int)(e >> (kFTabShift + 1)) + ((ord & kFTabLow) >= (e & kFTabField)) : 0;
    } else if constexpr (kPath == kPathEdges) {
      const double d = (double)f;
      return fin ? (int)(edges_upper_bound(d, c.edges, c.keys) - (d == c.last_edge)) : 0;
    } else if constexpr (kPath == kPathUniform) {
      return fin ? (int)u.bucket((double)f) + 1 : 0;
    } else {
      return 0;
    }
  } else {
    const double d = E::to_double(v);
    const bool fin = E::kFloat ? is_finite(d) : true;
    if (kStats) {
      if (E::kFloat && !fin) count_nonfinite(d, a);
      a.mn = min_of(a.mn, fin ? d : dinf());
      a.mx = max_of(a.mx, fin ? d : -dinf());
      const double z = fin ? d : 0.0;
      a.sum += z;
      a.sumsq += z * z;
    }
    if constexpr (kPath == kPathEdges || kPath == kPathF32 || kPath == kPathF32Smem) {
      return fin ? (int)(edges_upper_bound(d, c.edges, c.keys) - (d == c.last_edge)) : 0;
    } else if constexpr (kPath == kPathUniform) {
      return fin ? (int)u.bucket(d) + 1 : 0;
    } else {
      return 0;
    }
  }
}

// ---- one slice -------------------------------------------------------------------------------

// Elements [begin, begin + n) of one tensor, n <= kSlice, by the whole block. The 16-byte
// aligned middle is read as uint4 vectors: per step a thread loads kNV vectors (vector
// v0 + k * kThreads, k < kNV: each load instruction is coalesced across the warp), holding
// kEPT = 16 elements (8 for 8-byte types) and buckets them, adding runs of equal slots. The
// unaligned head and tail (< 16 bytes each) and the last partial step go element or vector at a
// time. Element order within a thread is fixed, so the thread's sums are too.
template <typename T, int kPath, bool kStats>
__device__ __forceinline__ Stats run_slice(const void* data, int64_t begin, int n, const Ctx& c) {
  using E = Elem<T>;
  using raw = typename E::raw;
  using M = typename std::conditional<E::kF32, float, double>::type;
  constexpr int kVec = 16 / (int)sizeof(raw);              // elements per 16-byte vector
  // Vectors per thread and step: 64 bytes in flight for the memory-bound paths (float32 table,
  // statistics only), less for the float64 bucket paths, which are bound by arithmetic instead
  // (the equal-width one by a float64 division per element).
  constexpr int kMaxNV = kPath == kPathF32 || kPath == kPathF32Smem || kPath == kPathNone ? 4
                        : kPath == kPathEdges                                           ? 2
                                                                                        : 1;
  constexpr int kNV = (int)sizeof(raw) < kMaxNV ? (int)sizeof(raw) : kMaxNV;
  constexpr int kEPT = kNV * kVec;                           // elements per thread and step
  constexpr int kStep = kNV * kThreads;                      // vectors per block and step
  const int tid = threadIdx.x;
  const raw* x = static_cast<const raw*>(data) + begin;
  const UniformBins u(c.first, c.last, c.nb);
  Acc<M> a = acc_identity<M>();

  const uintptr_t addr = reinterpret_cast<uintptr_t>(x);
  // Elements before the first 16-byte boundary; all of them if elements are not even
  // naturally aligned (then no vector load is legal).
  const int head = (addr % sizeof(raw)) ? n : min(n, (int)(((16u - (unsigned)(addr & 15u)) & 15u) / sizeof(raw)));
  const int nvec = (n - head) / kVec;
  const int tail = head + nvec * kVec;

  Runs runs;
  for (int i = tid; i < head; i += kThreads) {
    const int s = element<T, kPath, kStats>(x[i], c, u, a);
    if (kPath != kPathNone) runs.push(c, s);
  }

  const uint4* xv = reinterpret_cast<const uint4*>(x + head);
  const int full = nvec - nvec % kStep;
  for (int v0 = tid; v0 < full; v0 += kStep) {
    uint4 r[kNV];
#pragma unroll
    for (int k = 0; k < kNV; ++k) r[k] = __ldcs(xv + v0 + k * kThreads);
    raw e[kEPT];
    memcpy(e, r, sizeof r);
#pragma unroll
    for (int j = 0; j < kEPT; ++j) {
      const int s = element<T, kPath, kStats>(e[j], c, u, a);
      if (kPath != kPathNone) runs.push(c, s);
    }
  }
  for (int v = full + tid; v < nvec; v += kThreads) {
    const uint4 r = __ldcs(xv + v);
    raw e[kVec];
    memcpy(e, &r, sizeof r);
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
      const int s = element<T, kPath, kStats>(e[j], c, u, a);
      if (kPath != kPathNone) runs.push(c, s);
    }
  }

  for (int i = tail + tid; i < n; i += kThreads) {
    const int s = element<T, kPath, kStats>(x[i], c, u, a);
    if (kPath != kPathNone) runs.push(c, s);
  }
  if (kPath != kPathNone) runs.finish(c);
  return acc_stats(a);
}

// The bucket path of one dtype: the integer-only float32 table for the float32 family when the
// edges allow it (f32_ok; its shared-memory form when the block holds it), else the generic
// double path of the kernel's bin kind.
template <typename T, int kBin, bool kStats>
__device__ __forceinline__ Stats slice_of(const void* data, int64_t begin, int n, const Ctx& c, bool f32_ok) {
  if constexpr (kBin == kBinEdges && Elem<T>::kF32) {
    if (f32_ok) {
      if (c.ftab) return run_slice<T, kPathF32Smem, kStats>(data, begin, n, c);
      return run_slice<T, kPathF32, kStats>(data, begin, n, c);
    }
  }
  constexpr int kPath = kBin == kBinEdges ? kPathEdges : kBin == kBinUniform ? kPathUniform : kPathNone;
  return run_slice<T, kPath, kStats>(data, begin, n, c);
}

// ---- count / statistics kernel ---------------------------------------------------------------

struct KParams {
  int32_t num_tensors, num_slices;  // both < 2^31 (checked on the host)
  int64_t num_bins;
  const uint64_t* data;
  const int64_t* numels;
  const int32_t* dtypes;
  const int64_t* chunk_offsets;
  const double* edges;
  const EdgeLookup* lookup;
  const double* ranges;
  int64_t* counts;
  double* stats;
  int64_t* nonfinite;
  Stats* partials;        // scratch: [num_slices]
  uint32_t* ftab;         // scratch: [kFTabSize] (kEdges with few enough edges), else nullptr
  int32_t replicas;       // shared-memory histogram copies (power of two); 0: global atomics
  int32_t replica_shift;  // log2(replicas)
  int32_t auto_range;     // kBinUniform: range from stats (kUniformAuto), else from ranges
};

// Tensor owning global chunk `chunk`: the last t with off[t] <= chunk.
__device__ __forceinline__ int find_tensor(const int64_t* off, int num_tensors, int chunk) {
  int lo = 0, hi = num_tensors - 1;
  while (lo < hi) {
    const int mid = (int)(((unsigned)lo + (unsigned)hi + 1u) >> 1);
    if (off[mid] <= chunk)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

template <int kBin>
__device__ __forceinline__ Ctx make_ctx(const KParams& p, int t, int32_t* hist, const uint32_t* ftab) {
  Ctx c;
  c.hist = hist;
  c.ftab = ftab;
  c.shift = p.replica_shift;
  c.nb = (int)p.num_bins;
  c.row = p.counts + (int64_t)t * p.num_bins;
  c.tab = nullptr;
  c.keys = nullptr;
  c.edges = nullptr;
  c.last_edge = 0.0;
  c.first = 0.0;
  c.last = 1.0;
  if (kBin == kBinEdges) {
    c.tab = reinterpret_cast<const unsigned long long*>(p.lookup->f32);
    c.keys = p.lookup->keys;
    c.edges = p.edges;
    c.last_edge = p.edges[p.num_bins];
  } else if (kBin == kBinUniform) {
    if (p.auto_range)
      auto_range(p.stats[(int64_t)t * kStatsPerTensor], p.stats[(int64_t)t * kStatsPerTensor + 1], &c.first, &c.last);
    else {
      c.first = p.ranges[2 * (int64_t)t];
      c.last = p.ranges[2 * (int64_t)t + 1];
    }
  }
  return c;
}

// Adds the block's shared-memory histogram (all copies) to tensor t's counts row, one 64-bit
// atomic per non-zero bin, and zeroes it for the next tensor. Barriers before (all atomics of
// the block done) and after (zeroes visible before anyone accumulates again); block-uniform.
__device__ __forceinline__ void flush(int32_t* hist, const KParams& p, int t) {
  __syncthreads();
  const int R = p.replicas, slots = (int)p.num_bins + 2, nb = (int)p.num_bins;
  int64_t* row = p.counts + (int64_t)t * p.num_bins;
  for (int i = threadIdx.x; i < slots; i += kThreads) {
    long long sum = 0;
    for (int r = 0; r < R; ++r) {
      sum += hist[i * R + r];
      hist[i * R + r] = 0;
    }
    if (sum != 0 && i >= 1 && i <= nb)
      atomicAdd(reinterpret_cast<unsigned long long*>(row + (i - 1)), (unsigned long long)sum);
  }
  __syncthreads();
}

// Count kernel (kBin != kBinNone) and statistics kernel (kBin == kBinNone, kStats).
// Work split: a grid of a few waves of persistent blocks; block b takes the contiguous global
// slices [b * S / G, (b + 1) * S / G), so it meets few tensor boundaries (each one costs a
// flush of its histogram). For every slice the whole block reads the slice's elements (see
// run_slice) into a block-private histogram in dynamic shared memory: num_bins + 2 int32 slots
// (slot 0 below the first edge / non-finite, num_bins + 1 above the last, so the inner loop does
// not branch on the range), replicated `replicas` times and interleaved (slot s, copy r at
// s * R + r; lane l uses copy l % R) so that lanes hitting one bin spread over R words. When
// the block moves to another tensor, finishes, or its int32 counters could overflow, it flushes
// to the global int64 counts. With too many bins for shared memory (replicas == 0) the lanes
// add straight to the global counts. For kEdges with a valid float32 table, the block first
// copies ftab_kernel's 32 KB table into the front of its dynamic shared memory, so the
// float32 family buckets with shared-memory loads only. When kStats, the block reduces each
// slice's statistics in a fixed order (shuffle tree, then warps in order) into the slice's
// scratch record; the record buffers alternate between slices so one barrier per slice suffices.
template <int kBin, bool kStats>
__global__ void __launch_bounds__(kThreads, kBin == kBinUniform ? 2 : kBin == kBinEdges ? TBF_EDGES_MIN_BLOCKS : 4)
    count_kernel(const KParams p) {
  extern __shared__ __align__(16) int32_t dyn[];  // [float32 table if with_ftab][histogram]
  __shared__ Stats red[2][kWarps];
  const int tid = threadIdx.x;
  const bool f32_ok = kBin == kBinEdges && p.lookup->f32_ok != 0;
  const bool with_ftab = kBin == kBinEdges && f32_ok && p.ftab != nullptr;
  int32_t* hist = dyn + (with_ftab ? kFTabSize : 0);
  const uint32_t* ftab = nullptr;
  if (with_ftab) {
    // Copy the float32 table into shared memory; one invalid entry (a key with two
    // thresholds) and the block keeps to EdgeLookup::f32 in global memory.
    uint4* dst = reinterpret_cast<uint4*>(dyn);
    const uint4* src = reinterpret_cast<const uint4*>(p.ftab);
    int bad = 0;
    for (int i = tid; i < kFTabSize / 4; i += kThreads) {
      const uint4 v = src[i];
      dst[i] = v;
      bad |= (v.x & kFTabField) > kFTabNone || (v.y & kFTabField) > kFTabNone || (v.z & kFTabField) > kFTabNone ||
             (v.w & kFTabField) > kFTabNone;
    }
    if (!__syncthreads_or(bad)) ftab = reinterpret_cast<const uint32_t*>(dyn);
  }
  const bool smem = kBin != kBinNone && p.replicas > 0;
  if (smem) {
    const int words = ((int)p.num_bins + 2) * p.replicas;
    for (int i = tid; i < words; i += kThreads) hist[i] = 0;
  }
  __syncthreads();
  int32_t* mine = smem ? hist + ((tid & 31) & (p.replicas - 1)) : nullptr;

  const int s_begin = (int)((int64_t)blockIdx.x * p.num_slices / gridDim.x);
  const int s_end = (int)(((int64_t)blockIdx.x + 1) * p.num_slices / gridDim.x);
  int t = find_tensor(p.chunk_offsets, p.num_tensors, s_begin / kSlicesPerChunk);
  int cur = t;
  Ctx c = make_ctx<kBin>(p, t, mine, ftab);
  const void* data = reinterpret_cast<const void*>(p.data[t]);
  int64_t numel = p.numels[t];
  int32_t dtype = p.dtypes[t];
  int pending = 0;  // elements in the shared histogram since its last flush (<= INT32_MAX)
  int parity = 0;

  for (int s = s_begin; s < s_end; ++s) {
    const int chunk = s / kSlicesPerChunk;
    while (t + 1 < p.num_tensors && chunk >= p.chunk_offsets[t + 1]) ++t;
    if (smem && (t != cur || pending > kFlushEvery)) {
      flush(hist, p, cur);
      pending = 0;
    }
    if (t != cur) {
      cur = t;
      c = make_ctx<kBin>(p, t, mine, ftab);
      data = reinterpret_cast<const void*>(p.data[t]);
      numel = p.numels[t];
      dtype = p.dtypes[t];
    }
    const int64_t begin = (chunk - p.chunk_offsets[t]) * kCudaChunk + (int64_t)(s % kSlicesPerChunk) * kSlice;
    const int n = begin >= 0 && begin < numel ? (int)min((int64_t)kSlice, numel - begin) : 0;
    Stats st = stats_identity();
    if (n > 0) {
      TBF_DTYPE_SWITCH(dtype, scalar_t, st = (slice_of<scalar_t, kBin, kStats>(data, begin, n, c, f32_ok)));
      pending += n;
    }
    if (kStats) {
      st = block_reduce<kWarps>(st, red[parity]);
      if (tid == 0) p.partials[s] = st;
      parity ^= 1;
    }
  }
  if (smem) flush(hist, p, cur);
}

// ---- shared-memory float32 table ----------------------------------------------------------------

// EdgeLookup::f32 is keyed by the top 16 bits of a float's ordered bits (512 KB): gathered at
// random through L1 it costs about one cache line per element. When every 13-bit key (8
// consecutive 16-bit keys: a sixteenth of an octave, ratio at most 17/16, under the default
// edges' 1.1) holds at most one threshold, the same slots come from an 8192-entry table that
// fits shared memory: slot = base + (ord >= threshold), base = the first 16-bit key's base, and
// since the threshold shares ord's top 13 bits only the low 19 bits are compared. Entry =
// base << 20 | the threshold's low 19 bits (kFTabNone: no threshold, above every 19-bit value).
// kFTabInvalid marks a key whose 16-bit entries do not have that form (two thresholds, a base
// beyond 12 bits); the count kernel then uses EdgeLookup::f32 itself.
// Work split: one thread per table key, reading its 8 consecutive entries (64 bytes).
__global__ void __launch_bounds__(kThreads) ftab_kernel(const EdgeLookup* lookup, uint32_t* ftab) {
  const int k = blockIdx.x * kThreads + threadIdx.x;
  if (k >= kFTabSize) return;
  const unsigned long long* f = reinterpret_cast<const unsigned long long*>(lookup->f32) + k * kFTabSub;
  const uint32_t base = (uint32_t)(f[0] >> 32);
  uint32_t seen = 0, thr = 0;
  bool ok = true;
  for (int j = 0; j < kFTabSub; ++j) {
    const unsigned long long e = f[j];
    ok = ok && (uint32_t)(e >> 32) == base + seen;  // base = thresholds below this 16-bit key
    if ((uint32_t)e != 0xFFFFFFFFu) {
      thr = (uint32_t)e;
      ok = ok && (thr >> kFTabShift) == (uint32_t)k;
      ++seen;
    }
  }
  ok = ok && seen <= 1 && base + seen <= (uint32_t)kFTabMaxEdges;
  ftab[k] = ok ? (base << (kFTabShift + 1)) | (seen ? (thr & kFTabLow) : kFTabNone) : kFTabInvalid;
}

// ---- per-tensor statistics reduction ---------------------------------------------------------

// One block per tensor (grid-stride over tensors): thread i combines the tensor's slice records
// i, i + kReduceThreads, ... in order, then the block combines the threads in a fixed tree, so
// the float64 sums are the same on every run. Writes stats [T, 4] and nonfinite [T, 3] in full
// (a tensor without finite values gets min +inf, max -inf, sums 0).
__global__ void __launch_bounds__(kReduceThreads) reduce_kernel(const KParams p) {
  __shared__ Stats red[kReduceWarps];
  for (int64_t t = blockIdx.x; t < p.num_tensors; t += gridDim.x) {
    const int64_t s0 = max((int64_t)0, p.chunk_offsets[t] * kSlicesPerChunk);
    const int64_t s1 = min((int64_t)p.num_slices, p.chunk_offsets[t + 1] * kSlicesPerChunk);
    Stats a = stats_identity();
#pragma unroll 4
    for (int64_t s = s0 + threadIdx.x; s < s1; s += kReduceThreads) stats_merge(a, p.partials[s]);
    a = block_reduce<kReduceWarps>(a, red);
    if (threadIdx.x == 0) {
      double* st = p.stats + t * kStatsPerTensor;
      int64_t* nf = p.nonfinite + t * kNonFinitePerTensor;
      st[0] = a.mn;
      st[1] = a.mx;
      st[2] = a.sum;
      st[3] = a.sumsq;
      nf[0] = a.nan;
      nf[1] = a.pinf;
      nf[2] = a.ninf;
    }
    __syncthreads();  // red is reused by the next tensor
  }
}

// ---- host side -------------------------------------------------------------------------------

int fail(cudaError_t err, const char* where) {
  cuda_record_error((int)err, where);
  return kCudaError;
}

// Per-device facts, queried once (attribute queries do not synchronise).
struct DeviceInfo {
  bool ready;
  int sms;
  int optin_smem;     // max shared memory per block with the opt-in
  int dyn_limit[4];   // dynamic shared-memory limit set so far, per count-kernel variant
  int static_smem[4];  // static shared memory of each count-kernel variant (-1: not queried)
};

std::mutex g_device_mutex;
DeviceInfo g_devices[kMaxDevices];

template <int kBin, bool kStats>
constexpr int variant() {
  return kBin == kBinEdges ? 0 : kBin == kBinNone ? 1 : kStats ? 2 : 3;
}

// Shared-memory facts for one count-kernel variant on the current device; raises the kernel's
// dynamic shared-memory limit to `need` bytes if asked (once per device and variant: the limit
// is set to the device maximum the first time more than 48 KB is needed).
template <int kBin, bool kStats>
int kernel_smem(int dev, int need, int* sms, int* max_dyn) {
  const void* fn = reinterpret_cast<const void*>(count_kernel<kBin, kStats>);
  const int v = variant<kBin, kStats>();
  DeviceInfo local{};
  std::unique_lock<std::mutex> lock(g_device_mutex);
  DeviceInfo& d = dev >= 0 && dev < kMaxDevices ? g_devices[dev] : local;
  if (!d.ready) {
    cudaError_t err = cudaDeviceGetAttribute(&d.sms, cudaDevAttrMultiProcessorCount, dev);
    if (err == cudaSuccess) err = cudaDeviceGetAttribute(&d.optin_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    if (err != cudaSuccess) return fail(err, "histogram_cuda: cudaDeviceGetAttribute");
    for (int i = 0; i < 4; ++i) {
      d.dyn_limit[i] = -1;  // set with the kernel's static size: the default is 48 KB minus it
      d.static_smem[i] = -1;
    }
    d.ready = true;
  }
  if (d.static_smem[v] < 0) {
    cudaFuncAttributes attr;
    cudaError_t err = cudaFuncGetAttributes(&attr, fn);
    if (err != cudaSuccess) return fail(err, "histogram_cuda: cudaFuncGetAttributes");
    d.static_smem[v] = (int)attr.sharedSizeBytes;
  }
  // Without an opt-in a block may use 48 KB of shared memory in all, static included.
  if (d.dyn_limit[v] < 0) d.dyn_limit[v] = kDefaultDynSmem - d.static_smem[v];
  *sms = d.sms;
  *max_dyn = d.optin_smem - d.static_smem[v];
  if (need > d.dyn_limit[v]) {
    if (need > *max_dyn) return kBadArgument;
    cudaError_t err = cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, *max_dyn);
    if (err != cudaSuccess) return fail(err, "histogram_cuda: cudaFuncSetAttribute");
    d.dyn_limit[v] = *max_dyn;
  }
  return kOk;
}

// Shared-memory copies of the histogram: as many (up to kMaxReplicas) as fit in kReplicaBytes
// and, next to `table` bytes of float32 table, in kBlockSmemTarget; at least one while one fits;
// 0 (global atomics) when even one copy exceeds kSmemHistMaxBytes or the device's limit.
int choose_replicas(int64_t num_bins, int table, int max_dyn, int* shift) {
  const int64_t one = (num_bins + 2) * (int64_t)sizeof(int32_t);
  *shift = 0;
  if (one > kSmemHistMaxBytes || one > max_dyn - table) return 0;
  int r = kMaxReplicas;
  while (r > 1 && (one * r > kReplicaBytes || table + one * r > kBlockSmemTarget)) r >>= 1;
  while ((1 << *shift) < r) ++*shift;
  return r;
}

// Enqueues one count/statistics kernel: grid = SMs x resident blocks per SM (a persistent wave),
// at most one block per slice.
template <int kBin, bool kStats>
int launch_count(KParams kp, int dev, cudaStream_t stream) {
  int sms = 0, max_dyn = 0;
  int st = kernel_smem<kBin, kStats>(dev, 0, &sms, &max_dyn);
  if (st != kOk) return st;
  const int table = kBin == kBinEdges && kp.ftab ? kFTabSize * (int)sizeof(uint32_t) : 0;
  int smem = table;
  kp.replicas = 0;
  kp.replica_shift = 0;
  if (kBin != kBinNone) {
    kp.replicas = choose_replicas(kp.num_bins, table, max_dyn, &kp.replica_shift);
    smem = table + (int)((kp.num_bins + 2) * kp.replicas * (int64_t)sizeof(int32_t));
  }
  st = kernel_smem<kBin, kStats>(dev, smem, &sms, &max_dyn);  // opts in when smem + static > 48 KB
  if (st != kOk) return st;
  auto fn = count_kernel<kBin, kStats>;
  int per_sm = 0;
  cudaError_t err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, fn, kThreads, smem);
  if (err != cudaSuccess) return fail(err, "histogram_cuda: cudaOccupancyMaxActiveBlocksPerMultiprocessor");
  const int64_t waves = (int64_t)sms * (per_sm > 0 ? per_sm : 1);
  const unsigned grid = (unsigned)(kp.num_slices < waves ? kp.num_slices : waves);
  fn<<<grid, kThreads, smem, stream>>>(kp);
  err = cudaGetLastError();
  if (err != cudaSuccess)
    return fail(err, kBin == kBinNone ? "histogram_cuda: statistics kernel launch"
                                      : "histogram_cuda: count kernel launch");
  return kOk;
}

int launch_reduce(const KParams& kp, cudaStream_t stream) {
  const int64_t grid = kp.num_tensors < (int64_t(1) << 20) ? kp.num_tensors : (int64_t(1) << 20);
  reduce_kernel<<<(unsigned)grid, kReduceThreads, 0, stream>>>(kp);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return fail(err, "histogram_cuda: statistics reduce kernel launch");
  return kOk;
}

int launch_ftab(const KParams& kp, cudaStream_t stream) {
  ftab_kernel<<<kFTabSize / kThreads, kThreads, 0, stream>>>(kp.lookup, kp.ftab);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return fail(err, "histogram_cuda: float32 table kernel launch");
  return kOk;
}

// Scratch layout: [num_chunks * kSlicesPerChunk slice records][kEdges: kFTabSize uint32 table].
int64_t ftab_offset(const HistogramParams& p) { return p.num_chunks * kSlicesPerChunk * (int64_t)sizeof(Stats); }

}  // namespace

int64_t histogram_cuda_scratch_bytes(const HistogramParams& p) {
  if (p.num_chunks <= 0) return 0;
  return ftab_offset(p) + (p.mode == kEdges ? kFTabSize * (int64_t)sizeof(uint32_t) : 0);
}

int histogram_cuda(const HistogramParams& p) {
  if (p.mode < kEdges || p.mode > kUniformAuto) return kBadMode;
  if (p.num_tensors < 1 || p.num_chunks < 1 || p.num_bins < 1 || p.num_bins > kMaxBins) return kBadArgument;
  if (p.num_tensors > INT64_MAX / p.num_bins / (int64_t)sizeof(int64_t)) return kBadArgument;
  if (p.num_tensors > INT32_MAX || p.num_chunks > INT32_MAX / kSlicesPerChunk) return kBadArgument;
  if (!p.data || !p.numels || !p.dtypes || !p.chunk_offsets || !p.counts || !p.stats || !p.nonfinite || !p.scratch)
    return kBadArgument;
  if (p.mode == kEdges && (!p.edges || !p.lookup)) return kBadArgument;
  if (p.mode == kUniform && !p.ranges) return kBadArgument;
  if (p.scratch_bytes < histogram_cuda_scratch_bytes(p) || reinterpret_cast<uintptr_t>(p.scratch) % alignof(Stats))
    return kBadArgument;

  int dev = 0;
  cudaError_t err = cudaGetDevice(&dev);
  if (err != cudaSuccess) return fail(err, "histogram_cuda: cudaGetDevice");
  cudaStream_t stream = static_cast<cudaStream_t>(p.stream);

  KParams kp{};
  kp.num_tensors = (int32_t)p.num_tensors;
  kp.num_slices = (int32_t)(p.num_chunks * kSlicesPerChunk);
  kp.num_bins = p.num_bins;
  kp.data = p.data;
  kp.numels = p.numels;
  kp.dtypes = p.dtypes;
  kp.chunk_offsets = p.chunk_offsets;
  kp.edges = p.edges;
  kp.lookup = p.lookup;
  kp.ranges = p.ranges;
  kp.counts = p.counts;
  kp.stats = p.stats;
  kp.nonfinite = p.nonfinite;
  kp.partials = static_cast<Stats*>(p.scratch);
  kp.ftab = p.mode == kEdges && p.num_bins + 1 <= kFTabMaxEdges
                ? reinterpret_cast<uint32_t*>(static_cast<char*>(p.scratch) + ftab_offset(p))
                : nullptr;
  kp.auto_range = p.mode == kUniformAuto;

  err = cudaMemsetAsync(p.counts, 0, (size_t)(p.num_tensors * p.num_bins) * sizeof(int64_t), stream);
  if (err != cudaSuccess) return fail(err, "histogram_cuda: cudaMemsetAsync(counts)");

  int st = kOk;
  switch (p.mode) {
    case kEdges:
      if (kp.ftab) st = launch_ftab(kp, stream);
      if (st == kOk) st = launch_count<kBinEdges, true>(kp, dev, stream);
      if (st == kOk) st = launch_reduce(kp, stream);
      break;
    case kUniform:
      st = launch_count<kBinUniform, true>(kp, dev, stream);
      if (st == kOk) st = launch_reduce(kp, stream);
      break;
    default:  // kUniformAuto: statistics first, then counts over the ranges they give
      st = launch_count<kBinNone, true>(kp, dev, stream);
      if (st == kOk) st = launch_reduce(kp, stream);
      if (st == kOk) st = launch_count<kBinUniform, false>(kp, dev, stream);
      break;
  }
  return st;
}

}  // namespace tbfast
