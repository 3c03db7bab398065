// Bindings for the CPU image grid kernels. Check, fill the params struct, run without the GIL.
#include "bindings/registry.h"
#include "image_grid.h"

// Argument order shared by both functions:
// (num_images, data, strides, dtype, channels, out_channels, height, width, cols, rows,
//  padding, out_height, out_width, out_row_stride, pad_byte, norm, lo, hi, ranges, out,
//  num_threads)
static bool parse(PyObject* args, tbfast::ImageGridParams* p) {
  long long n, channels, out_channels, height, width, cols, rows, padding, out_height, out_width, stride;
  unsigned long long data, strides, ranges, out;
  int dtype, pad_byte, norm, num_threads;
  double lo, hi;
  if (!PyArg_ParseTuple(args, "LKKiLLLLLLLLLLiiddKKi", &n, &data, &strides, &dtype, &channels, &out_channels, &height,
                        &width, &cols, &rows, &padding, &out_height, &out_width, &stride, &pad_byte, &norm, &lo, &hi,
                        &ranges, &out, &num_threads))
    return false;
  p->num_images = n;
  p->data = tbf_ptr<const uint64_t>(data);
  p->strides = tbf_ptr<const int64_t>(strides);
  p->dtype = dtype;
  p->channels = channels;
  p->out_channels = out_channels;
  p->height = height;
  p->width = width;
  p->cols = cols;
  p->rows = rows;
  p->padding = padding;
  p->out_height = out_height;
  p->out_width = out_width;
  p->out_row_stride = stride;
  p->pad_byte = (uint8_t)pad_byte;
  p->norm = norm;
  p->lo = lo;
  p->hi = hi;
  p->ranges = tbf_ptr<double>(ranges);
  p->out = tbf_ptr<uint8_t>(out);
  p->num_threads = num_threads;
  return true;
}

static PyObject* finish(int err, const char* what) {
  if (err) {
    PyErr_Format(PyExc_ValueError, "%s: invalid parameters (dtype, channels or sizes)", what);
    return nullptr;
  }
  Py_RETURN_NONE;
}

static PyObject* image_ranges(PyObject*, PyObject* args) {
  tbfast::ImageGridParams p{};
  if (!parse(args, &p)) return nullptr;
  int err;
  Py_BEGIN_ALLOW_THREADS err = tbfast::image_ranges_cpu(p);
  Py_END_ALLOW_THREADS return finish(err, "image_ranges");
}

static PyObject* image_grid(PyObject*, PyObject* args) {
  tbfast::ImageGridParams p{};
  if (!parse(args, &p)) return nullptr;
  int err;
  Py_BEGIN_ALLOW_THREADS err = tbfast::image_grid_cpu(p);
  Py_END_ALLOW_THREADS return finish(err, "image_grid");
}

TBF_REGISTER("image_ranges", image_ranges, "per-image finite min/max; see csrc/image_grid.h");
TBF_REGISTER("image_grid", image_grid, "fused make_grid + uint8 conversion; see csrc/image_grid.h");
