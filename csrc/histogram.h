// Histogram op: params struct and the bucket math shared by the CPU and CUDA kernels.
//
// Semantics are NumPy's np.histogram on float64 values, which is what
// torch.utils.tensorboard runs (spec 1.3): bin i is [e_i, e_{i+1}), the last bin is closed,
// values outside [e_0, e_last] are dropped. Non-finite values are never bucketed; they are
// counted (NaN, +Inf, -Inf) and left out of min/max/sum/sum_squares.
//
// Two bucket modes:
//  * kEdges: any increasing edge list (TensorBoard's default 1549 edges included). The
//    bucket is upper_bound(edges, x) - 1, found in O(1) for the default edges: a lookup
//    table keyed by the top 16 bits of the order-preserving image of the double
//    (sign, exponent, 4 mantissa bits) holds, per key, the number of edges below the
//    key's sub-interval and the edges inside it. The default edges' ratio 1.1 exceeds a
//    sub-interval's 2^(1/16), so a key holds at most one edge and the bucket is
//    `base + (x >= edge)`: one load and one compare. Keys with more edges (dense user
//    edges) binary-search only those.
//  * kUniform / kUniformAuto: n equal-width bins over [first, last], NumPy-exact: the
//    same float64 formula as numpy's uniform path, then its one-step fix-up against the
//    np.linspace edges (computed here with numpy's own formula). kUniformAuto takes
//    [first, last] from the finite min/max in `stats`, widened by 0.5 when equal, the way
//    numpy does for bins=int.
#pragma once
#include <cstdint>

#include "common.h"

namespace tbfast {

enum HistMode : int32_t { kEdges = 0, kUniform = 1, kUniformAuto = 2 };

constexpr int kLookupBits = 16;
constexpr int64_t kLookupSize = int64_t(1) << kLookupBits;  // table has kLookupSize + 1 entries
constexpr int kStatsPerTensor = 4;      // finite min, max, sum, sum of squares
constexpr int kNonFinitePerTensor = 3;  // NaN, +Inf, -Inf counts

// One lookup entry: `base` edges lie below the key's sub-interval and `count` inside it,
// the first of which is `edge` (+inf when count is 0).
struct EdgeKey {
  double edge;
  int32_t base, count;
};

// Everything derived from one edge list, built once by build_edge_lookup and reused.
//  * keys: the double lookup above, for every input dtype.
//  * f32: the same idea keyed by the top 16 bits of a float32's order-preserving bits
//    (sign, exponent, 7 mantissa bits: sub-intervals of ratio 2^(1/128)), over float32
//    thresholds: for a float32 v, v >= e <=> v >= (smallest float32 >= e), and the closed
//    last bin is folded in by using the smallest float32 > the last edge as its
//    threshold. Entry = (slot base << 32) | ordered bits of the one threshold inside the
//    key (0xFFFFFFFF: none), so slot = base + (ord >= threshold). Valid only when every
//    key holds at most one threshold (f32_ok), true for the default edges. Keys of
//    NaN/Inf patterns map to slot 0 (dropped).
//  * f64 (CPU only; appended so that the fields above keep their offsets): the f32 idea
//    for doubles, keyed like `keys` by the top 16 bits of the ordered bits. Thresholds are
//    the edges (canonical +0.0), the last one replaced by the next double above it (the
//    closed last bin). Entry = (low 48 bits of the threshold's ordered bits << 16) | B with
//    B = base + 1 when the key holds a threshold (low bits 0 and B = base when it holds
//    none), so slot + 1 = B + (((ord << 16) | 0xFFFF) >= entry): integer ops only (see
//    csrc/cpu/histogram_cpu.cpp). Valid only when every key holds at most one threshold and B fits 16 bits
//    (f64_ok), true for the default edges. Keys of NaN/Inf patterns give slot 0.
//  * h16 (CPU only, appended too): for 16-bit floats, the slot of every float16 (row 0)
//    and bfloat16 (row 1) bit pattern straight away (0 for NaN/Inf), from the f32 table.
//    Valid when f32_ok and the slots fit 16 bits (h16_ok).
//  * geo_ok (CPU only, appended): the edges are exactly TensorBoard's default edges, whose
//    float32 slots the AVX-512 kernel computes arithmetically (csrc/cpu/histogram_cpu.cpp).
struct EdgeLookup {
  EdgeKey keys[kLookupSize];
  uint64_t f32[kLookupSize];
  uint32_t f32_ok;
  uint32_t reserved;
  uint64_t f64[kLookupSize];
  uint32_t f64_ok;
  uint32_t h16_ok;
  uint16_t h16[2][kLookupSize];
  uint32_t geo_ok;  // CPU only: the edges are TensorBoard's default edges, and f32_ok
  uint32_t reserved2;
};


// Order-preserving map of float32 bits to uint32 (-0.0 canonicalised by the caller).
TBF_HD uint32_t ordered_bits_f32(uint32_t b) { return b ^ ((uint32_t)((int32_t)b >> 31) | 0x80000000u); }

// Slot (bucket + 1; 0 and num_bins + 1 are "dropped") of a finite float32 from its
// ordered bits: base + (v >= the key's threshold).
TBF_HD int64_t f32_slot(uint32_t ord, const uint64_t* f32) {
  uint64_t e = f32[ord >> 16];
  return (int64_t)(e >> 32) + (ord >= (uint32_t)e);
}

// One params struct for every device. Pointers live in the job's memory space: host
// memory for the CPU kernels, device memory of one GPU for the CUDA kernels (the
// per-tensor arrays included). Every output is fully written by the kernels (no
// zeroing needed by the caller).
struct HistogramParams {
  int64_t num_tensors;
  const uint64_t* data;   // [num_tensors] element-0 addresses
  const int64_t* numels;  // [num_tensors]
  const int32_t* dtypes;  // [num_tensors] DType codes
  int32_t mode;           // HistMode
  int64_t num_bins;
  const double* edges;    // kEdges: [num_bins + 1], shared by all tensors
  const EdgeLookup* lookup;  // kEdges: from build_edge_lookup
  const double* ranges;   // kUniform: [num_tensors, 2] first, last
  int64_t* counts;        // out: [num_tensors, num_bins]
  double* stats;          // out (in for the CPU's kUniformAuto count pass): [num_tensors, kStatsPerTensor]
  int64_t* nonfinite;     // out: [num_tensors, kNonFinitePerTensor]
  int32_t num_threads;    // CPU only
  // CUDA only ---------------------------------------------------------------------------
  const int64_t* chunk_offsets;  // [num_tensors + 1]: tensor t owns chunks [off[t], off[t+1]) of kCudaChunk elements
  int64_t num_chunks;            // chunk_offsets[num_tensors]
  void* scratch;                 // device scratch of histogram_cuda_scratch_bytes(p) bytes (caller-allocated, stream-ordered)
  int64_t scratch_bytes;
  void* stream;                  // cudaStream_t the whole computation is enqueued on; never the NULL stream by default
};

// Elements per CUDA work item: chunk_offsets is built with this (exported to Python).
constexpr int64_t kCudaChunk = int64_t(1) << 16;

// Order-preserving map of a double to uint64 (negative values reversed); -0.0 must be
// canonicalised to +0.0 by the caller since the two compare equal.
TBF_HD uint64_t ordered_bits(double x) {
  uint64_t b = double_to_bits(x);
  return (b >> 63) ? ~b : (b | (uint64_t(1) << 63));
}

TBF_HD int64_t lookup_key(double x) { return (int64_t)(ordered_bits(x + 0.0) >> (64 - kLookupBits)); }

TBF_HD bool is_finite(double x) { return (double_to_bits(x) & 0x7FF0000000000000ull) != 0x7FF0000000000000ull; }

// upper_bound(edges, x) for finite x: the number of edges <= x.
TBF_HD int64_t edges_upper_bound(double x, const double* edges, const EdgeKey* lookup) {
  const EdgeKey e = lookup[lookup_key(x)];
  if (e.count <= 1) return e.base + (x >= e.edge);
  int64_t lo = e.base, hi = (int64_t)e.base + e.count;
  while (lo < hi) {
    int64_t mid = (lo + hi) >> 1;
    if (edges[mid] <= x)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

// Bucket of finite x among `num_edges` increasing edges, or -1 if outside (NumPy rules:
// [e_i, e_i+1), the last bin closed).
TBF_HD int64_t edges_bucket(double x, const double* edges, int64_t num_edges, const EdgeKey* lookup) {
  int64_t ub = edges_upper_bound(x, edges, lookup);
  if (ub == 0) return -1;
  if (ub == num_edges) return x == edges[num_edges - 1] ? num_edges - 2 : -1;
  return ub - 1;
}

// numpy.linspace(first, last, n + 1)[i] is edge(i) below (numpy >= 1.20 formula:
// i * step + first, the last edge set to `last`, and the step == 0 branch for ranges that
// underflow). numpy's bins=int path buckets with ((x - first) / (last - first)) * n
// truncated, then one fix-up step against those edges; so does bucket().
// The same bucket rule with the per-range constants computed once.
struct UniformBins {
  double first, last, denom, step;
  int64_t n;
  TBF_HD UniformBins(double first_, double last_, int64_t n_)
      : first(first_), last(last_), denom(last_ - first_), step((last_ - first_) / (double)n_), n(n_) {}
  TBF_HD double edge(int64_t i) const {
    if (i == n) return last;
    if (step == 0.0) return ((double)i / (double)n) * denom + first;
    return (double)i * step + first;
  }
  // Bucket of finite x, or -1 when outside [first, last] (numpy's uniform path).
  TBF_HD int64_t bucket(double x) const {
    if (!(x >= first && x <= last)) return -1;
    double f = ((x - first) / denom) * (double)n;
    // Clamp before the cast: a zero-width range gives NaN/inf, and casting those is
    // undefined. Such ranges are rejected by the caller (numpy raises too); the clamp only
    // keeps memory safe.
    int64_t idx = f >= 0.0 && f <= (double)n ? (int64_t)f : 0;
    if (idx == n) idx -= 1;
    if (x < edge(idx)) idx -= 1;
    if (idx != n - 1 && x >= edge(idx + 1)) idx += 1;
    return idx < 0 ? 0 : idx;
  }
};

// numpy's bins=int range rule: equal min/max are widened by 0.5 on each side.
TBF_HD void auto_range(double mn, double mx, double* first, double* last) {
  if (!(mn <= mx)) {  // no finite values: numpy's empty-input range
    *first = 0.0;
    *last = 1.0;
    return;
  }
  if (mn == mx) {
    mn -= 0.5;
    mx += 0.5;
  }
  *first = mn;
  *last = mx;
}


// CPU entry points (csrc/cpu/histogram_cpu.cpp). Both return a Status.
// histogram_stats: stats + nonfinite only. histogram_count: buckets, and stats +
// nonfinite too when with_stats (one pass for kEdges/kUniform).
int histogram_stats_cpu(const HistogramParams& p);
int histogram_count_cpu(const HistogramParams& p, bool with_stats);
// Fill the lookup tables for `num_edges` increasing edges.
void build_edge_lookup(const double* edges, int64_t num_edges, EdgeLookup* lookup);

// CUDA entry points (csrc/cuda/histogram_cuda.cu). histogram_cuda enqueues everything on
// p.stream (stats, the range for kUniformAuto read from device memory, counts) and
// returns without waiting for the device: a Status, kCudaError with the error kept for
// last_cuda_error(). Scratch: bytes the caller must allocate on the device for p.
int64_t histogram_cuda_scratch_bytes(const HistogramParams& p);
int histogram_cuda(const HistogramParams& p);

}  // namespace tbfast
