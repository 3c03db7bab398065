// Params-struct filling and checks shared by the CPU and CUDA bindings of an op, so each
// rule is written once (the device-specific checks stay in each binding).
#pragma once
#include "bindings/registry.h"
#include "histogram.h"
#include "pr_curve.h"

namespace tbfast {

// The HistogramParams fields every device has.
inline void fill_histogram(HistogramParams& p, long long num_tensors, unsigned long long data,
                           unsigned long long numels, unsigned long long dtypes, int mode, long long num_bins,
                           unsigned long long edges, unsigned long long lookup, unsigned long long ranges,
                           unsigned long long counts, unsigned long long stats, unsigned long long nonfinite) {
  p.num_tensors = num_tensors;
  p.data = tbf_ptr<const uint64_t>(data);
  p.numels = tbf_ptr<const int64_t>(numels);
  p.dtypes = tbf_ptr<const int32_t>(dtypes);
  p.mode = mode;
  p.num_bins = num_bins;
  p.edges = tbf_ptr<const double>(edges);
  p.lookup = tbf_ptr<const EdgeLookup>(lookup);
  p.ranges = tbf_ptr<const double>(ranges);
  p.counts = tbf_ptr<int64_t>(counts);
  p.stats = tbf_ptr<double>(stats);
  p.nonfinite = tbf_ptr<int64_t>(nonfinite);
}

// The PRCurveParams arguments every device has, as parsed from the keywords.
struct PRArgs {
  unsigned long long predictions, labels, weights, counts, wsums, bad;
  int pred_dtype, label_dtype, weight_dtype, label_mode, prob_mode;
  double weight_scalar;
  long long num_rows, num_classes, num_thresholds;
};

// Checks the pointers and modes PRCurveParams requires and fills its shared fields; false
// with a Python error set (ValueError) when one is invalid. Sizes are checked by the caller.
inline bool fill_pr_curve(const char* op, const PRArgs& a, PRCurveParams& p) {
  if (a.num_rows > 0 && (!a.predictions || !a.labels)) {
    tbf_bad(op, "predictions and labels are required");
    return false;
  }
  if (!a.bad || (!a.counts && !a.wsums)) {
    tbf_bad(op, "bad and one of counts / wsums are required");
    return false;
  }
  if (a.label_mode < kLabelMatrix || a.label_mode > kLabelIndex || a.prob_mode < kProbabilities ||
      a.prob_mode > kSigmoid) {
    tbf_raise(kBadMode, op);
    return false;
  }
  p.predictions = tbf_ptr<const void>(a.predictions);
  p.pred_dtype = a.pred_dtype;
  p.labels = tbf_ptr<const void>(a.labels);
  p.label_dtype = a.label_dtype;
  p.weights = tbf_ptr<const void>(a.weights);
  p.weight_dtype = a.weight_dtype;
  p.weight_scalar = a.weight_scalar;
  p.num_rows = a.num_rows;
  p.num_classes = a.num_classes;
  p.num_thresholds = a.num_thresholds;
  p.label_mode = a.label_mode;
  p.prob_mode = a.prob_mode;
  p.counts = tbf_ptr<int64_t>(a.counts);
  p.wsums = tbf_ptr<double>(a.wsums);
  p.bad = tbf_ptr<int64_t>(a.bad);
  return true;
}

}  // namespace tbfast
