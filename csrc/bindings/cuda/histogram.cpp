// Bindings for the CUDA histogram kernels (csrc/cuda/histogram_cuda.cu): parse keywords, check
// the params struct, enqueue on the caller's stream without the GIL, raise the Status (a CUDA
// error carries last_cuda_error()'s text). Every pointer is a device address of one GPU.
#include "bindings/params.h"
#include "cuda/device_cuda.h"
#include "histogram.h"

namespace {

// The checks histogram_cuda_scratch_bytes needs: nullptr when fine, else the message.
const char* check_sizes(long long num_tensors, long long num_chunks, long long num_bins) {
  if (num_tensors < 1) return "num_tensors < 1";
  if (num_chunks < 1) return "num_chunks < 1";
  if (num_bins < 1) return "num_bins < 1";
  return nullptr;
}

bool valid_mode(int mode) { return mode >= tbfast::kEdges && mode <= tbfast::kUniformAuto; }

}  // namespace

static PyObject* scratch_bytes(PyObject*, PyObject* args, PyObject* kw) {
  static const char* kwlist[] = {"num_tensors", "num_chunks", "num_bins", "mode", nullptr};
  long long num_tensors, num_chunks, num_bins;
  int mode;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "$LLLi", (char**)kwlist, &num_tensors, &num_chunks, &num_bins, &mode))
    return nullptr;
  const char* op = "histogram_cuda_scratch_bytes";
  if (const char* why = check_sizes(num_tensors, num_chunks, num_bins)) return tbfast::tbf_bad(op, why);
  if (!valid_mode(mode)) return tbfast::tbf_raise(tbfast::kBadMode, op);
  tbfast::HistogramParams p{};
  p.num_tensors = num_tensors;
  p.num_chunks = num_chunks;
  p.num_bins = num_bins;
  p.mode = mode;
  return PyLong_FromLongLong(tbfast::histogram_cuda_scratch_bytes(p));
}

static PyObject* histogram_cuda(PyObject*, PyObject* args, PyObject* kw) {
  static const char* kwlist[] = {"num_tensors", "data", "numels", "dtypes", "chunk_offsets", "num_chunks", "mode",
                                 "num_bins", "edges", "lookup", "ranges", "counts", "stats", "nonfinite", "scratch",
                                 "scratch_bytes", "stream", "device", nullptr};
  long long num_tensors, num_chunks, num_bins, scratch_bytes;
  unsigned long long data, numels, dtypes, chunk_offsets, edges, lookup, ranges, counts, stats, nonfinite, scratch,
      stream;
  int mode, device;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "$LKKKKLiLKKKKKKKLKi", (char**)kwlist, &num_tensors, &data, &numels,
                                   &dtypes, &chunk_offsets, &num_chunks, &mode, &num_bins, &edges, &lookup, &ranges,
                                   &counts, &stats, &nonfinite, &scratch, &scratch_bytes, &stream, &device))
    return nullptr;
  const char* op = "histogram_cuda";
  if (const char* why = check_sizes(num_tensors, num_chunks, num_bins)) return tbfast::tbf_bad(op, why);
  if (!valid_mode(mode)) return tbfast::tbf_raise(tbfast::kBadMode, op);
  if (!data || !numels || !dtypes || !chunk_offsets)
    return tbfast::tbf_bad(op, "data, numels, dtypes and chunk_offsets are required");
  if (!counts || !stats || !nonfinite) return tbfast::tbf_bad(op, "counts, stats and nonfinite are required");
  if (mode == tbfast::kEdges && (!edges || !lookup)) return tbfast::tbf_bad(op, "edges mode needs edges and lookup");
  if (mode == tbfast::kUniform && !ranges) return tbfast::tbf_bad(op, "uniform mode needs ranges");
  if (num_bins > 0x7FFFFFFDLL) return tbfast::tbf_bad(op, "num_bins > 2^31 - 3");
  if (num_tensors > 0x7FFFFFFFLL || num_chunks > 0x7FFFFFFFLL / 4)
    return tbfast::tbf_bad(op, "num_tensors or num_chunks too large for one launch");
  tbfast::HistogramParams p{};
  tbfast::fill_histogram(p, num_tensors, data, numels, dtypes, mode, num_bins, edges, lookup, ranges, counts, stats,
                         nonfinite);
  p.num_threads = 1;
  p.chunk_offsets = tbf_ptr<const int64_t>(chunk_offsets);
  p.num_chunks = num_chunks;
  p.scratch = tbf_ptr<void>(scratch);
  p.scratch_bytes = scratch_bytes;
  p.stream = tbf_ptr<void>(stream);
  if (!scratch) return tbfast::tbf_bad(op, "scratch is required");
  if (scratch_bytes < tbfast::histogram_cuda_scratch_bytes(p))
    return tbfast::tbf_bad(op, "scratch_bytes < histogram_cuda_scratch_bytes(...)");
  if (scratch % 16) return tbfast::tbf_bad(op, "scratch is not 16-byte aligned");
  int st = tbfast::tbf_run([&] { return tbfast::cuda_on_device(device, [&] { return tbfast::histogram_cuda(p); }); });
  if (st == tbfast::kCudaError) return tbfast::tbf_raise(st, op, tbfast::cuda_last_error_message());
  if (st) return tbfast::tbf_raise(st, op);
  Py_RETURN_NONE;
}

TBF_REGISTER("histogram_cuda_scratch_bytes", scratch_bytes,
             "(*, num_tensors, num_chunks, num_bins, mode) -> device scratch bytes histogram_cuda needs");
TBF_REGISTER("histogram_cuda", histogram_cuda,
             "(*, num_tensors, data, numels, dtypes, chunk_offsets, num_chunks, mode, num_bins, edges, lookup, "
             "ranges, counts, stats, nonfinite, scratch, scratch_bytes, stream): multi-tensor histogram enqueued on "
             "`stream` (device pointers; keywords = csrc/histogram.h HistogramParams fields)");
