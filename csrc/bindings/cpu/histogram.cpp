// Bindings for the CPU histogram kernels. Check, fill the params struct, run without the GIL.
#include "bindings/registry.h"
#include "histogram.h"

static PyObject* build_lookup(PyObject*, PyObject* args) {
  unsigned long long edges, lookup;
  long long num_edges;
  if (!PyArg_ParseTuple(args, "KLK", &edges, &num_edges, &lookup)) return nullptr;
  Py_BEGIN_ALLOW_THREADS tbfast::build_edge_lookup(tbf_ptr<const double>(edges), num_edges, tbf_ptr<tbfast::EdgeLookup>(lookup));
  Py_END_ALLOW_THREADS Py_RETURN_NONE;
}

// (num_tensors, data, numels, dtypes, mode, num_bins, edges, lookup, ranges,
//  counts, stats, nonfinite, stats_only, with_stats, num_threads)
static PyObject* histogram(PyObject*, PyObject* args) {
  tbfast::HistogramParams p{};
  long long num_tensors, num_bins;
  unsigned long long data, numels, dtypes, edges, lookup, ranges, counts, stats, nonfinite;
  int mode, stats_only, with_stats, num_threads;
  if (!PyArg_ParseTuple(args, "LKKKiLKKKKKKppi", &num_tensors, &data, &numels, &dtypes, &mode, &num_bins, &edges,
                        &lookup, &ranges, &counts, &stats, &nonfinite, &stats_only, &with_stats, &num_threads))
    return nullptr;
  p.num_tensors = num_tensors;
  p.data = tbf_ptr<const uint64_t>(data);
  p.numels = tbf_ptr<const int64_t>(numels);
  p.dtypes = tbf_ptr<const int32_t>(dtypes);
  p.mode = mode;
  p.num_bins = num_bins;
  p.edges = tbf_ptr<const double>(edges);
  p.lookup = tbf_ptr<const tbfast::EdgeLookup>(lookup);
  p.ranges = tbf_ptr<const double>(ranges);
  p.counts = tbf_ptr<int64_t>(counts);
  p.stats = tbf_ptr<double>(stats);
  p.nonfinite = tbf_ptr<int64_t>(nonfinite);
  p.num_threads = num_threads;
  int err;
  Py_BEGIN_ALLOW_THREADS err = stats_only ? tbfast::histogram_stats_cpu(p) : tbfast::histogram_count_cpu(p, with_stats);
  Py_END_ALLOW_THREADS if (err) {
    PyErr_SetString(PyExc_ValueError, "histogram: invalid dtype code");
    return nullptr;
  }
  Py_RETURN_NONE;
}

TBF_REGISTER("histogram_build_lookup", build_lookup, "(edges_ptr, num_edges, lookup_ptr)");
TBF_REGISTER("histogram", histogram, "multi-tensor histogram; see csrc/histogram.h");
