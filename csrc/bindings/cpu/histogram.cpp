// Bindings for the CPU histogram kernels: parse keywords, check the params struct, run
// without the GIL, raise the Status.
#include <cstdio>

#include "bindings/params.h"
#include "histogram.h"

TBF_CONSTANT("HIST_EDGES", tbfast::kEdges);
TBF_CONSTANT("HIST_UNIFORM", tbfast::kUniform);
TBF_CONSTANT("HIST_UNIFORM_AUTO", tbfast::kUniformAuto);
TBF_CONSTANT("HIST_STATS_PER_TENSOR", tbfast::kStatsPerTensor);
TBF_CONSTANT("HIST_NONFINITE_PER_TENSOR", tbfast::kNonFinitePerTensor);
TBF_CONSTANT("HIST_EDGE_LOOKUP_BYTES", sizeof(tbfast::EdgeLookup));
TBF_CONSTANT("HIST_CUDA_CHUNK", tbfast::kCudaChunk);

static PyObject* build_lookup(PyObject*, PyObject* args, PyObject* kw) {
  static const char* kwlist[] = {"edges", "num_edges", "lookup", "lookup_bytes", nullptr};
  unsigned long long edges, lookup;
  long long num_edges, lookup_bytes;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "$KLKL", (char**)kwlist, &edges, &num_edges, &lookup, &lookup_bytes))
    return nullptr;
  if (!edges || !lookup || num_edges < 2) return tbfast::tbf_bad("histogram_build_lookup", "need edges, >= 2 of them, and a table");
  if (lookup_bytes != (long long)sizeof(tbfast::EdgeLookup))
    return tbfast::tbf_bad("histogram_build_lookup", "lookup_bytes differs from sizeof(EdgeLookup)");
  int st = tbfast::tbf_run([&] {
    tbfast::build_edge_lookup(tbf_ptr<const double>(edges), num_edges, tbf_ptr<tbfast::EdgeLookup>(lookup));
    return (int)tbfast::kOk;
  });
  if (st) return tbfast::tbf_raise(st, "histogram_build_lookup");
  Py_RETURN_NONE;
}

static PyObject* histogram(PyObject*, PyObject* args, PyObject* kw) {
  static const char* kwlist[] = {"num_tensors", "data", "numels", "dtypes", "mode", "num_bins", "edges", "lookup",
                                 "ranges", "counts", "stats", "nonfinite", "stats_only", "with_stats",
                                 "num_threads", nullptr};
  tbfast::HistogramParams p{};
  long long num_tensors, num_bins;
  unsigned long long data, numels, dtypes, edges, lookup, ranges, counts, stats, nonfinite;
  int mode, stats_only, with_stats, num_threads;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "$LKKKiLKKKKKKppi", (char**)kwlist, &num_tensors, &data, &numels,
                                   &dtypes, &mode, &num_bins, &edges, &lookup, &ranges, &counts, &stats, &nonfinite,
                                   &stats_only, &with_stats, &num_threads))
    return nullptr;
  const char* op = "histogram";
  if (num_tensors < 0) return tbfast::tbf_bad(op, "num_tensors < 0");
  if (num_tensors > 0 && (!data || !numels || !dtypes || !stats || !nonfinite))
    return tbfast::tbf_bad(op, "data, numels, dtypes, stats and nonfinite are required");
  if (mode < tbfast::kEdges || mode > tbfast::kUniformAuto) return tbfast::tbf_raise(tbfast::kBadMode, op);
  if (!stats_only) {
    if (num_bins < 1) return tbfast::tbf_bad(op, "num_bins < 1");
    if (num_tensors > 0 && !counts) return tbfast::tbf_bad(op, "counts is required");
    if (mode == tbfast::kEdges && (!edges || !lookup)) return tbfast::tbf_bad(op, "edges mode needs edges and lookup");
    if (mode == tbfast::kUniform && !ranges) return tbfast::tbf_bad(op, "uniform mode needs ranges");
    if (mode == tbfast::kUniformAuto && with_stats)
      return tbfast::tbf_bad(op, "uniform-auto counts need the stats first (with_stats=False)");
  }
  if (num_threads < 1) return tbfast::tbf_bad(op, "num_threads < 1");
  tbfast::fill_histogram(p, num_tensors, data, numels, dtypes, mode, num_bins, edges, lookup, ranges, counts, stats,
                         nonfinite);
  p.num_threads = num_threads;
  int st = tbfast::tbf_run([&] {
    return stats_only ? tbfast::histogram_stats_cpu(p) : tbfast::histogram_count_cpu(p, with_stats);
  });
  if (st == tbfast::kOutOfMemory && !stats_only) {
    char detail[160];
    snprintf(detail, sizeof detail, "one thread's private histogram of %lld bins needs %.1f MiB; use fewer bins",
             num_bins, 8.0 * ((double)num_bins + 2.0) / (1 << 20));
    return tbfast::tbf_raise(st, op, detail);
  }
  if (st) return tbfast::tbf_raise(st, op);
  Py_RETURN_NONE;
}

TBF_REGISTER("histogram_build_lookup", build_lookup, "(*, edges, num_edges, lookup, lookup_bytes)");
TBF_REGISTER("histogram", histogram, "multi-tensor histogram; keywords = csrc/histogram.h HistogramParams fields");
