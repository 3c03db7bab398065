// Bindings for the CPU PNG row filter. Check, fill the params struct, run without the GIL.
#include "bindings/registry.h"
#include "png.h"

static bool check_filter_args(const char* op, unsigned long long in, long long height, long long row_bytes,
                              long long stride, long long bpp, int num_threads) {
  if (!in || height < 1 || row_bytes < 1 || stride < row_bytes || bpp < 1 || bpp > 8 || num_threads < 1) {
    tbfast::tbf_bad(op, "need data, height >= 1, row_bytes >= 1, in_row_stride >= row_bytes, 1 <= bpp <= 8, "
                        "num_threads >= 1");
    return false;
  }
  return true;
}

static PyObject* png_filter(PyObject*, PyObject* args, PyObject* kw) {
  static const char* kwlist[] = {"data", "height", "row_bytes", "in_row_stride", "bpp", "filter", "out",
                                 "num_threads", nullptr};
  tbfast::PngFilterParams p{};
  unsigned long long in, out;
  long long height, row_bytes, stride, bpp;
  int filter, num_threads;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "$KLLLLiKi", (char**)kwlist, &in, &height, &row_bytes, &stride, &bpp,
                                   &filter, &out, &num_threads))
    return nullptr;
  if (!check_filter_args("png_filter", in, height, row_bytes, stride, bpp, num_threads)) return nullptr;
  if (!out) return tbfast::tbf_bad("png_filter", "out is required");
  p.in = tbf_ptr<const uint8_t>(in);
  p.height = height;
  p.row_bytes = row_bytes;
  p.in_row_stride = stride;
  p.bpp = bpp;
  p.filter = filter;
  p.out = tbf_ptr<uint8_t>(out);
  p.num_threads = num_threads;
  int st = tbfast::tbf_run([&] { return tbfast::png_filter_cpu(p) ? (int)tbfast::kBadMode : (int)tbfast::kOk; });
  if (st) return tbfast::tbf_raise(st, "png_filter");
  Py_RETURN_NONE;
}

TBF_REGISTER("png_filter", png_filter, "PNG row filtering (adaptive or fixed); see csrc/png.h");

// -> bytes: head, the IDAT chunks of the filtered rows, tail.
static PyObject* png_encode(PyObject*, PyObject* args, PyObject* kw) {
  static const char* kwlist[] = {"data", "height", "row_bytes", "in_row_stride", "bpp", "filter", "level", "head",
                                 "tail", "num_threads", nullptr};
  tbfast::PngEncodeParams p{};
  unsigned long long in;
  long long height, row_bytes, stride, bpp;
  int filter, level, num_threads;
  Py_buffer head, tail;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "$KLLLLiiy*y*i", (char**)kwlist, &in, &height, &row_bytes, &stride,
                                   &bpp, &filter, &level, &head, &tail, &num_threads))
    return nullptr;
  if (!check_filter_args("png_encode", in, height, row_bytes, stride, bpp, num_threads)) {
    PyBuffer_Release(&head);
    PyBuffer_Release(&tail);
    return nullptr;
  }
  p.filter.in = tbf_ptr<const uint8_t>(in);
  p.filter.height = height;
  p.filter.row_bytes = row_bytes;
  p.filter.in_row_stride = stride;
  p.filter.bpp = bpp;
  p.filter.filter = filter;
  p.filter.num_threads = num_threads;
  p.level = level;
  p.head = static_cast<const uint8_t*>(head.buf);
  p.head_len = head.len;
  p.tail = static_cast<const uint8_t*>(tail.buf);
  p.tail_len = tail.len;
  int64_t used = 0;
  p.out_len = &used;
  PyObject* out = PyBytes_FromStringAndSize(nullptr, (Py_ssize_t)tbfast::png_encode_bound(p));
  int st = tbfast::kOk;
  if (out) {
    p.out = reinterpret_cast<uint8_t*>(PyBytes_AS_STRING(out));
    st = tbfast::tbf_run([&] { return tbfast::png_encode_cpu(p) ? (int)tbfast::kBadMode : (int)tbfast::kOk; });
  }
  PyBuffer_Release(&head);
  PyBuffer_Release(&tail);
  if (!out) return nullptr;
  if (st) {
    Py_DECREF(out);
    return tbfast::tbf_raise(st, "png_encode");
  }
  if (_PyBytes_Resize(&out, (Py_ssize_t)used) < 0) return nullptr;
  return out;
}

TBF_REGISTER("png_encode", png_encode, "Native PNG encoder: filter + fast deflate + IDAT chunks; see csrc/png.h");
