// Binding for the CPU PR-curve kernel. Check, fill the params struct, run without the GIL.
#include <cstdio>

#include "bindings/registry.h"
#include "pr_curve.h"

// Keywords = PRCurveParams fields; pointers as ints, 0 for null.
static PyObject* pr_curve(PyObject*, PyObject* args, PyObject* kw) {
  static const char* kwlist[] = {"predictions", "pred_dtype", "labels", "label_dtype", "weights", "weight_dtype",
                                 "weight_scalar", "num_rows", "num_classes", "num_thresholds", "label_mode",
                                 "prob_mode", "counts", "wsums", "bad", "num_threads", nullptr};
  tbfast::PRCurveParams p{};
  unsigned long long predictions, labels, weights, counts, wsums, bad;
  int pred_dtype, label_dtype, weight_dtype, label_mode, prob_mode, num_threads;
  double weight_scalar;
  long long num_rows, num_classes, num_thresholds;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "$KiKiKidLLLiiKKKi", (char**)kwlist, &predictions, &pred_dtype, &labels, &label_dtype, &weights,
                        &weight_dtype, &weight_scalar, &num_rows, &num_classes, &num_thresholds, &label_mode,
                        &prob_mode, &counts, &wsums, &bad, &num_threads))
    return nullptr;
  const char* op = "pr_curve";
  if (num_rows < 0 || num_classes < 1 || num_thresholds < 2 || num_thresholds > (1 << 24) || num_threads < 1)
    return tbfast::tbf_bad(op, "need num_rows >= 0, num_classes >= 1, 2 <= num_thresholds <= 2^24, num_threads >= 1");
  if (num_rows > 0 && (!predictions || !labels)) return tbfast::tbf_bad(op, "predictions and labels are required");
  if (!bad || (!counts && !wsums)) return tbfast::tbf_bad(op, "bad and one of counts / wsums are required");
  if (label_mode < tbfast::kLabelMatrix || label_mode > tbfast::kLabelIndex || prob_mode < tbfast::kProbabilities ||
      prob_mode > tbfast::kSigmoid)
    return tbfast::tbf_raise(tbfast::kBadMode, op);
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
  int st = tbfast::tbf_run([&] { return tbfast::pr_curve_cpu(p) ? (int)tbfast::kBadDType : (int)tbfast::kOk; });
  if (st == tbfast::kOutOfMemory) {
    char detail[160];
    snprintf(detail, sizeof detail, "one thread's counters for %lld classes x %lld thresholds need %.1f MiB",
             num_classes, num_thresholds, 16.0 * (double)num_classes * (double)num_thresholds / (1 << 20));
    return tbfast::tbf_raise(st, op, detail);
  }
  if (st) return tbfast::tbf_raise(st, op);
  Py_RETURN_NONE;
}

TBF_REGISTER("pr_curve", pr_curve, "PR-curve bucket counts; see csrc/pr_curve.h");
