// Binding for the CPU PR-curve kernel. Check, fill the params struct, run without the GIL.
#include "bindings/registry.h"
#include "pr_curve.h"

// (predictions, pred_dtype, labels, label_dtype, weights, weight_dtype, weight_scalar,
//  num_rows, num_classes, num_thresholds, label_mode, prob_mode, counts, wsums, bad,
//  num_threads); pointers as ints, 0 for null.
static PyObject* pr_curve(PyObject*, PyObject* args) {
  tbfast::PRCurveParams p{};
  unsigned long long predictions, labels, weights, counts, wsums, bad;
  int pred_dtype, label_dtype, weight_dtype, label_mode, prob_mode, num_threads;
  double weight_scalar;
  long long num_rows, num_classes, num_thresholds;
  if (!PyArg_ParseTuple(args, "KiKiKidLLLiiKKKi", &predictions, &pred_dtype, &labels, &label_dtype, &weights,
                        &weight_dtype, &weight_scalar, &num_rows, &num_classes, &num_thresholds, &label_mode,
                        &prob_mode, &counts, &wsums, &bad, &num_threads))
    return nullptr;
  p.predictions = tbf_ptr<const void>(predictions);
  p.pred_dtype = pred_dtype;
  p.labels = tbf_ptr<const void>(labels);
  p.label_dtype = label_dtype;
  p.weights = tbf_ptr<const void>(weights);
  p.weight_dtype = weight_dtype;
  p.weight_scalar = weight_scalar;
  p.num_rows = num_rows;
  p.num_classes = num_classes;
  p.num_thresholds = num_thresholds;
  p.label_mode = label_mode;
  p.prob_mode = prob_mode;
  p.counts = tbf_ptr<int64_t>(counts);
  p.wsums = tbf_ptr<double>(wsums);
  p.bad = tbf_ptr<int64_t>(bad);
  p.num_threads = num_threads;
  int err;
  Py_BEGIN_ALLOW_THREADS err = tbfast::pr_curve_cpu(p);
  Py_END_ALLOW_THREADS if (err) {
    PyErr_SetString(PyExc_ValueError, "pr_curve: invalid dtype code, mode or size");
    return nullptr;
  }
  Py_RETURN_NONE;
}

TBF_REGISTER("pr_curve", pr_curve, "PR-curve bucket counts; see csrc/pr_curve.h");
