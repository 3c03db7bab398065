// Bindings for the CUDA PR-curve kernel (csrc/cuda/pr_curve_cuda.cu). Check, fill the params
// struct, enqueue without the GIL (nothing waits for the device).
#include "bindings/params.h"
#include "cuda/device_cuda.h"
#include "pr_curve.h"

// The size checks shared by both functions; nullptr when they pass, else the message.
static const char* check_sizes(long long num_rows, long long num_classes, long long num_thresholds) {
  if (num_rows < 0 || num_classes < 1 || num_thresholds < 2 || num_thresholds > (1 << 24))
    return "need num_rows >= 0, num_classes >= 1, 2 <= num_thresholds <= 2^24";
  return nullptr;
}

// Keywords = PRCurveParams fields (CUDA ones included); pointers as ints, 0 for null. Every
// pointer is a device pointer of the current device; stream is a cudaStream_t handle.
static PyObject* pr_curve_cuda(PyObject*, PyObject* args, PyObject* kw) {
  static const char* kwlist[] = {"predictions", "pred_dtype", "labels", "label_dtype", "weights", "weight_dtype",
                                 "weight_scalar", "num_rows", "num_classes", "num_thresholds", "label_mode",
                                 "prob_mode", "counts", "wsums", "bad", "scratch", "scratch_bytes", "stream",
                                 "device", nullptr};
  tbfast::PRCurveParams p{};
  tbfast::PRArgs a{};
  unsigned long long scratch, stream;
  int device;
  long long scratch_bytes;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "$KiKiKidLLLiiKKKKLKi", (char**)kwlist, &a.predictions, &a.pred_dtype,
                                   &a.labels, &a.label_dtype, &a.weights, &a.weight_dtype, &a.weight_scalar,
                                   &a.num_rows, &a.num_classes, &a.num_thresholds, &a.label_mode, &a.prob_mode,
                                   &a.counts, &a.wsums, &a.bad, &scratch, &scratch_bytes, &stream, &device))
    return nullptr;
  const char* op = "pr_curve_cuda";
  if (const char* why = check_sizes(a.num_rows, a.num_classes, a.num_thresholds)) return tbfast::tbf_bad(op, why);
  if (!tbfast::fill_pr_curve(op, a, p)) return nullptr;
  p.num_threads = 1;
  p.scratch = tbf_ptr<void>(scratch);
  p.scratch_bytes = scratch_bytes;
  p.stream = tbf_ptr<void>(stream);
  const long long need = tbfast::pr_curve_cuda_scratch_bytes(p);
  if (need < 0) return tbfast::tbf_bad(op, "num_classes * num_thresholds is too large");
  if (scratch_bytes < need || (need > 0 && !scratch))
    return tbfast::tbf_bad(op, "scratch is smaller than pr_curve_cuda_scratch_bytes()");
  int st = tbfast::tbf_run([&] { return tbfast::cuda_on_device(device, [&] { return tbfast::pr_curve_cuda(p); }); });
  if (st) return tbfast::tbf_raise(st, op, st == tbfast::kCudaError ? tbfast::cuda_last_error_message() : nullptr);
  Py_RETURN_NONE;
}

// Device scratch bytes pr_curve_cuda needs (0 when unweighted: weighted says whether wsums
// will be passed).
static PyObject* pr_curve_cuda_scratch_bytes(PyObject*, PyObject* args, PyObject* kw) {
  static const char* kwlist[] = {"num_rows", "num_classes", "num_thresholds", "weighted", nullptr};
  long long num_rows, num_classes, num_thresholds;
  int weighted;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "$LLLp", (char**)kwlist, &num_rows, &num_classes, &num_thresholds,
                                   &weighted))
    return nullptr;
  const char* op = "pr_curve_cuda_scratch_bytes";
  if (const char* why = check_sizes(num_rows, num_classes, num_thresholds)) return tbfast::tbf_bad(op, why);
  tbfast::PRCurveParams p{};
  p.num_rows = num_rows;
  p.num_classes = num_classes;
  p.num_thresholds = num_thresholds;
  // Only whether wsums is null matters to the size; it is never dereferenced here.
  static double weighted_tag;
  p.wsums = weighted ? &weighted_tag : nullptr;
  const long long need = tbfast::pr_curve_cuda_scratch_bytes(p);
  if (need < 0) return tbfast::tbf_bad(op, "num_classes * num_thresholds is too large");
  return PyLong_FromLongLong(need);
}

TBF_REGISTER("pr_curve_cuda", pr_curve_cuda, "PR-curve bucket counts on a CUDA stream; see csrc/pr_curve.h");
TBF_REGISTER("pr_curve_cuda_scratch_bytes", pr_curve_cuda_scratch_bytes,
             "device scratch bytes pr_curve_cuda needs (num_rows, num_classes, num_thresholds, weighted)");
