// Binding for the CPU PR-curve kernel. Check, fill the params struct, run without the GIL.
#include <cstdio>

#include "bindings/params.h"

// Keywords = PRCurveParams fields; pointers as ints, 0 for null.
static PyObject* pr_curve(PyObject*, PyObject* args, PyObject* kw) {
  static const char* kwlist[] = {"predictions", "pred_dtype", "labels", "label_dtype", "weights", "weight_dtype",
                                 "weight_scalar", "num_rows", "num_classes", "num_thresholds", "label_mode",
                                 "prob_mode", "counts", "wsums", "bad", "num_threads", nullptr};
  tbfast::PRCurveParams p{};
  tbfast::PRArgs a{};
  int num_threads;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "$KiKiKidLLLiiKKKi", (char**)kwlist, &a.predictions, &a.pred_dtype,
                                   &a.labels, &a.label_dtype, &a.weights, &a.weight_dtype, &a.weight_scalar,
                                   &a.num_rows, &a.num_classes, &a.num_thresholds, &a.label_mode, &a.prob_mode,
                                   &a.counts, &a.wsums, &a.bad, &num_threads))
    return nullptr;
  const char* op = "pr_curve";
  if (a.num_rows < 0 || a.num_classes < 1 || a.num_thresholds < 2 || a.num_thresholds > (1 << 24) || num_threads < 1)
    return tbfast::tbf_bad(op, "need num_rows >= 0, num_classes >= 1, 2 <= num_thresholds <= 2^24, num_threads >= 1");
  if (!tbfast::fill_pr_curve(op, a, p)) return nullptr;
  p.num_threads = num_threads;
  int st = tbfast::tbf_run([&] { return tbfast::pr_curve_cpu(p) ? (int)tbfast::kBadDType : (int)tbfast::kOk; });
  if (st == tbfast::kOutOfMemory) {
    char detail[160];
    snprintf(detail, sizeof detail, "one thread's counters for %lld classes x %lld thresholds need %.1f MiB",
             a.num_classes, a.num_thresholds, 16.0 * (double)a.num_classes * (double)a.num_thresholds / (1 << 20));
    return tbfast::tbf_raise(st, op, detail);
  }
  if (st) return tbfast::tbf_raise(st, op);
  Py_RETURN_NONE;
}

TBF_REGISTER("pr_curve", pr_curve, "PR-curve bucket counts; see csrc/pr_curve.h");
