// CPU histogram kernels (see csrc/histogram.h for the semantics).
//
// Work split: every tensor is cut into fixed chunks of kChunk elements; the chunks of all
// tensors form one work list that threads take from an atomic counter. A thread buckets a
// chunk into its private scratch histogram, then adds the touched range of bins into the
// tensor's row with integer atomics (exact and order-free). Each chunk's float statistics
// go to their own slot and are reduced per tensor in chunk order afterwards, so sums are
// deterministic whatever the number of threads.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "cpu/parallel.h"
#include "dispatch.h"
#include "histogram.h"

namespace tbfast {

namespace {

constexpr int64_t kChunk = int64_t(1) << 16;

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
// memory location.
struct Scratch {
  std::vector<int64_t> slots;
};

std::vector<Chunk> make_chunks(const HistogramParams& p) {
  std::vector<Chunk> chunks;
  for (int64_t t = 0; t < p.num_tensors; ++t)
    for (int64_t b = 0; b < p.numels[t]; b += kChunk) chunks.push_back({t, b, std::min(b + kChunk, p.numels[t])});
  return chunks;
}

// Slot of finite v among the edges: upper_bound(edges, v), with v == last edge moved
// into the last (closed) bin.
struct EdgesSlot {
  const double* edges;
  const EdgeKey* lookup;
  double last;
  TBF_HD int64_t operator()(double v) const { return edges_upper_bound(v, edges, lookup) - (v == last); }
};

struct UniformSlot {
  UniformBins bins;
  TBF_HD int64_t operator()(double v) const { return bins.bucket(v) + 1; }
};

// Finite statistics of a chunk, branch-free: non-finite values are replaced by neutral
// elements. Four independent accumulators per sum keep the loop pipelined; their
// combination order is fixed, so results do not depend on threads.
template <typename T>
ChunkStats chunk_stats(const T* x, int64_t begin, int64_t end) {
  const double inf = std::numeric_limits<double>::infinity();
  double mn[4] = {inf, inf, inf, inf}, mx[4] = {-inf, -inf, -inf, -inf};
  double s[4] = {0, 0, 0, 0}, q[4] = {0, 0, 0, 0};
  int64_t nan = 0, pinf = 0, ninf = 0;
  auto one = [&](double v, int j) {
    bool fin = is_finite(v);
    double z = fin ? v : 0.0;
    mn[j] = std::min(mn[j], fin ? v : inf);
    mx[j] = std::max(mx[j], fin ? v : -inf);
    s[j] += z;
    q[j] += z * z;
    nan += v != v;
    pinf += v == inf;
    ninf += v == -inf;
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

// Bucket counts of a chunk's finite values into the scratch slots (two interleaved
// counters per slot, see Scratch).
template <typename T, typename SlotFn>
void chunk_count(const T* x, int64_t begin, int64_t end, int64_t* slots, SlotFn slot) {
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

void flush(Scratch& sc, int64_t* row, int64_t num_bins) {
  int64_t* slots = sc.slots.data() + 2;  // skip slot 0
  for (int64_t b = 0; b < num_bins; ++b) {
    int64_t c = slots[2 * b] + slots[2 * b + 1];
    if (c) {
      __atomic_fetch_add(&row[b], c, __ATOMIC_RELAXED);
      slots[2 * b] = slots[2 * b + 1] = 0;
    }
  }
}

void reduce_stats(const HistogramParams& p, const std::vector<Chunk>& chunks, const std::vector<ChunkStats>& cs) {
  for (int64_t t = 0; t < p.num_tensors; ++t) {
    double* st = p.stats + t * kStatsPerTensor;
    int64_t* nf = p.nonfinite + t * kNonFinitePerTensor;
    st[0] = std::numeric_limits<double>::infinity();
    st[1] = -st[0];
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
  if (with_stats) *out = chunk_stats<T>(x, c.begin, c.end);
  if (p.counts == nullptr) return;
  int64_t* slots = sc.slots.data();
  if (p.mode == kEdges) {
    chunk_count(x, c.begin, c.end, slots, EdgesSlot{p.edges, p.lookup, p.edges[p.num_bins]});
  } else {
    double first, last;
    if (p.mode == kUniformAuto) {
      const double* st = p.stats + c.tensor * kStatsPerTensor;
      auto_range(st[0], st[1], &first, &last);
    } else {
      first = p.ranges[2 * c.tensor];
      last = p.ranges[2 * c.tensor + 1];
    }
    chunk_count(x, c.begin, c.end, slots, UniformSlot{UniformBins(first, last, p.num_bins)});
  }
  flush(sc, p.counts + c.tensor * p.num_bins, p.num_bins);
}

int run(const HistogramParams& p, bool with_stats, bool with_counts) {
  for (int64_t t = 0; t < p.num_tensors; ++t)
    if (p.dtypes[t] < 0 || p.dtypes[t] >= kNumDTypes) return 1;
  if (with_counts && p.mode == kUniformAuto && with_stats) return 2;  // needs the stats first
  std::vector<Chunk> chunks = make_chunks(p);
  std::vector<ChunkStats> cs(with_stats ? chunks.size() : 0);
  int nt = std::max(1, (int)p.num_threads);
  std::vector<Scratch> scratch(nt);
  if (with_counts)
    for (auto& s : scratch) s.slots.assign(2 * (p.num_bins + 2), 0);
  HistogramParams q = p;
  if (!with_counts) q.counts = nullptr;
  parallel_items((int64_t)chunks.size(), nt, [&](int64_t i, int tid) {
    const Chunk& c = chunks[i];
    ChunkStats* out = with_stats ? &cs[i] : nullptr;
    TBF_DTYPE_SWITCH(q.dtypes[c.tensor], scalar_t,
                     run_chunk<scalar_t>(q, c, scratch[tid], with_stats, out));
  });
  if (with_stats) reduce_stats(p, chunks, cs);
  return 0;
}

}  // namespace

void build_edge_lookup(const double* edges, int64_t num_edges, EdgeKey* lookup) {
  int64_t e = 0;
  for (int64_t k = 0; k < kLookupSize; ++k) {
    while (e < num_edges && lookup_key(edges[e]) < k) ++e;
    int64_t f = e;
    while (f < num_edges && lookup_key(edges[f]) == k) ++f;
    lookup[k].base = (int32_t)e;
    lookup[k].count = (int32_t)(f - e);
    lookup[k].edge = f > e ? edges[e] : std::numeric_limits<double>::infinity();
  }
}

int histogram_stats_cpu(const HistogramParams& p) { return run(p, true, false); }

int histogram_count_cpu(const HistogramParams& p, bool with_stats) { return run(p, with_stats, true); }

}  // namespace tbfast
