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

// Per-thread scratch: bins plus the range touched since the last flush.
struct Scratch {
  std::vector<int64_t> bins;
  int64_t lo = std::numeric_limits<int64_t>::max(), hi = -1;
};

std::vector<Chunk> make_chunks(const HistogramParams& p) {
  std::vector<Chunk> chunks;
  for (int64_t t = 0; t < p.num_tensors; ++t)
    for (int64_t b = 0; b < p.numels[t]; b += kChunk) chunks.push_back({t, b, std::min(b + kChunk, p.numels[t])});
  return chunks;
}

// Statistics of the finite values of one chunk. Four independent accumulators per sum
// keep the loop pipelined; their combination order is fixed.
template <typename T>
ChunkStats chunk_stats(const T* x, int64_t begin, int64_t end) {
  double mn = std::numeric_limits<double>::infinity(), mx = -mn;
  double s[4] = {0, 0, 0, 0}, q[4] = {0, 0, 0, 0};
  int64_t nan = 0, pinf = 0, ninf = 0;
  int64_t i = begin;
  for (; i + 4 <= end; i += 4) {
    for (int j = 0; j < 4; ++j) {
      double v = Load<T>::get(x, i + j);
      if (is_finite(v)) {
        mn = v < mn ? v : mn;
        mx = v > mx ? v : mx;
        s[j] += v;
        q[j] += v * v;
      } else if (v != v) {
        nan++;
      } else if (v > 0) {
        pinf++;
      } else {
        ninf++;
      }
    }
  }
  for (; i < end; ++i) {
    double v = Load<T>::get(x, i);
    if (is_finite(v)) {
      mn = v < mn ? v : mn;
      mx = v > mx ? v : mx;
      s[0] += v;
      q[0] += v * v;
    } else if (v != v) {
      nan++;
    } else if (v > 0) {
      pinf++;
    } else {
      ninf++;
    }
  }
  return {mn, mx, (s[0] + s[1]) + (s[2] + s[3]), (q[0] + q[1]) + (q[2] + q[3]), nan, pinf, ninf};
}

template <typename T, typename BucketFn>
void chunk_count(const T* x, int64_t begin, int64_t end, Scratch& sc, BucketFn bucket) {
  int64_t* bins = sc.bins.data();
  int64_t lo = sc.lo, hi = sc.hi;
  for (int64_t i = begin; i < end; ++i) {
    double v = Load<T>::get(x, i);
    if (!is_finite(v)) continue;
    int64_t b = bucket(v);
    if (b < 0) continue;
    bins[b]++;
    lo = b < lo ? b : lo;
    hi = b > hi ? b : hi;
  }
  sc.lo = lo;
  sc.hi = hi;
}

void flush(Scratch& sc, int64_t* row) {
  for (int64_t b = sc.lo; b <= sc.hi; ++b) {
    if (sc.bins[b]) {
      __atomic_fetch_add(&row[b], sc.bins[b], __ATOMIC_RELAXED);
      sc.bins[b] = 0;
    }
  }
  sc.lo = std::numeric_limits<int64_t>::max();
  sc.hi = -1;
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
  int64_t* row = p.counts + c.tensor * p.num_bins;
  if (p.mode == kEdges) {
    const double* edges = p.edges;
    const int32_t* lookup = p.lookup;
    int64_t ne = p.num_bins + 1;
    chunk_count<T>(x, c.begin, c.end, sc, [=](double v) { return edges_bucket(v, edges, ne, lookup); });
  } else {
    double first, last;
    if (p.mode == kUniformAuto) {
      const double* st = p.stats + c.tensor * kStatsPerTensor;
      auto_range(st[0], st[1], &first, &last);
    } else {
      first = p.ranges[2 * c.tensor];
      last = p.ranges[2 * c.tensor + 1];
    }
    int64_t n = p.num_bins;
    chunk_count<T>(x, c.begin, c.end, sc, [=](double v) { return uniform_bucket(v, first, last, n); });
  }
  flush(sc, row);
}

int run(const HistogramParams& p, bool with_stats, bool with_counts) {
  for (int64_t t = 0; t < p.num_tensors; ++t)
    if (p.dtypes[t] < 0 || p.dtypes[t] >= kNumDTypes) return 1;
  std::vector<Chunk> chunks = make_chunks(p);
  std::vector<ChunkStats> cs(with_stats ? chunks.size() : 0);
  int nt = std::max(1, (int)p.num_threads);
  std::vector<Scratch> scratch(nt);
  if (with_counts)
    for (auto& s : scratch) s.bins.assign(p.num_bins, 0);
  HistogramParams q = p;
  if (!with_counts) q.counts = nullptr;
  parallel_items((int64_t)chunks.size(), nt, [&](int64_t i, int tid) {
    const Chunk& c = chunks[i];
    ChunkStats* out = with_stats ? &cs[i] : nullptr;
    TBF_DTYPE_SWITCH(q.dtypes[c.tensor], scalar_t, run_chunk<scalar_t>(q, c, scratch[tid], with_stats, out));
  });
  if (with_stats) reduce_stats(p, chunks, cs);
  return 0;
}

}  // namespace

void build_edge_lookup(const double* edges, int64_t num_edges, int32_t* lookup) {
  // lookup[k] = number of edges whose key is < k, i.e. edges below sub-interval k.
  int64_t e = 0;
  for (int64_t k = 0; k <= kLookupSize; ++k) {
    while (e < num_edges && lookup_key(edges[e]) < k) ++e;
    lookup[k] = (int32_t)e;
  }
}

int histogram_stats_cpu(const HistogramParams& p) { return run(p, true, false); }

int histogram_count_cpu(const HistogramParams& p, bool with_stats) { return run(p, with_stats, true); }

}  // namespace tbfast
