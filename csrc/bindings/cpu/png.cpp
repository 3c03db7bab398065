// Bindings for the CPU PNG row filter. Check, fill the params struct, run without the GIL.
#include "bindings/registry.h"
#include "image_grid.h"

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

TBF_REGISTER("png_filter", png_filter, "PNG row filtering (adaptive or fixed); see csrc/image_grid.h");
