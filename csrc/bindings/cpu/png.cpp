// Bindings for the CPU PNG row filter. Check, fill the params struct, run without the GIL.
#include "bindings/registry.h"
#include "png.h"

// (in, height, row_bytes, in_row_stride, bpp, filter, out, num_threads)
static PyObject* png_filter(PyObject*, PyObject* args) {
  tbfast::PngFilterParams p{};
  unsigned long long in, out;
  long long height, row_bytes, stride, bpp;
  int filter, num_threads;
  if (!PyArg_ParseTuple(args, "KLLLLiKi", &in, &height, &row_bytes, &stride, &bpp, &filter, &out, &num_threads))
    return nullptr;
  p.in = tbf_ptr<const uint8_t>(in);
  p.height = height;
  p.row_bytes = row_bytes;
  p.in_row_stride = stride;
  p.bpp = bpp;
  p.filter = filter;
  p.out = tbf_ptr<uint8_t>(out);
  p.num_threads = num_threads;
  int err;
  Py_BEGIN_ALLOW_THREADS err = tbfast::png_filter_cpu(p);
  Py_END_ALLOW_THREADS if (err) {
    PyErr_SetString(PyExc_ValueError, "png_filter: invalid filter type or sizes");
    return nullptr;
  }
  Py_RETURN_NONE;
}

TBF_REGISTER("png_filter", png_filter, "PNG row filtering (adaptive or fixed); see csrc/png.h");

// (in, height, row_bytes, in_row_stride, bpp, filter, level, head, tail, num_threads) -> bytes:
// head, the IDAT chunks of the filtered rows, tail.
static PyObject* png_encode(PyObject*, PyObject* args) {
  tbfast::PngEncodeParams p{};
  unsigned long long in;
  long long height, row_bytes, stride, bpp;
  int filter, level, num_threads;
  Py_buffer head, tail;
  if (!PyArg_ParseTuple(args, "KLLLLiiy*y*i", &in, &height, &row_bytes, &stride, &bpp, &filter, &level, &head, &tail,
                        &num_threads))
    return nullptr;
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
  int err = 1;
  if (out) {
    p.out = reinterpret_cast<uint8_t*>(PyBytes_AS_STRING(out));
    Py_BEGIN_ALLOW_THREADS err = tbfast::png_encode_cpu(p);
    Py_END_ALLOW_THREADS
  }
  PyBuffer_Release(&head);
  PyBuffer_Release(&tail);
  if (!out) return nullptr;
  if (err) {
    Py_DECREF(out);
    PyErr_SetString(PyExc_ValueError, "png_encode: invalid filter type, level or sizes");
    return nullptr;
  }
  if (_PyBytes_Resize(&out, (Py_ssize_t)used) < 0) return nullptr;
  return out;
}

TBF_REGISTER("png_encode", png_encode, "Native PNG encoder: filter + fast deflate + IDAT chunks; see csrc/png.h");
