// Bindings for the CPU image grid kernels. Check, fill the params struct, run without the GIL.
#include "bindings/registry.h"
#include "image_grid.h"

// Keywords shared by both functions = ImageGridParams fields.
static bool parse(PyObject* args, PyObject* kw, tbfast::ImageGridParams* p) {
  static const char* kwlist[] = {"num_images", "data", "strides", "dtype", "channels", "out_channels", "height",
                                 "width", "cols", "rows", "padding", "out_height", "out_width", "out_row_stride",
                                 "pad_byte", "norm", "lo", "hi", "ranges", "out", "num_threads", nullptr};
  long long n, channels, out_channels, height, width, cols, rows, padding, out_height, out_width, stride;
  unsigned long long data, strides, ranges, out;
  int dtype, pad_byte, norm, num_threads;
  double lo, hi;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "$LKKiLLLLLLLLLLiiddKKi", (char**)kwlist, &n, &data, &strides, &dtype, &channels, &out_channels, &height,
                        &width, &cols, &rows, &padding, &out_height, &out_width, &stride, &pad_byte, &norm, &lo, &hi,
                        &ranges, &out, &num_threads))
    return false;
  if (n < 1 || !data || !strides || !out || height < 1 || width < 1 || cols < 1 || rows < 1 || padding < 0 ||
      out_height < 1 || out_width < 1 || stride < out_width * out_channels || num_threads < 1 || pad_byte < 0 ||
      pad_byte > 255 || cols * rows < n) {
    tbfast::tbf_bad("image_grid", "inconsistent grid parameters");
    return false;
  }
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

template <typename F>
static PyObject* run(F&& kernel, const char* what) {
  int st = tbfast::tbf_run([&] { return kernel() ? (int)tbfast::kBadArgument : (int)tbfast::kOk; });
  if (st) return tbfast::tbf_raise(st, what);
  Py_RETURN_NONE;
}

static PyObject* image_ranges(PyObject*, PyObject* args, PyObject* kw) {
  tbfast::ImageGridParams p{};
  if (!parse(args, kw, &p)) return nullptr;
  return run([&] { return tbfast::image_ranges_cpu(p); }, "image_ranges");
}

static PyObject* image_grid(PyObject*, PyObject* args, PyObject* kw) {
  tbfast::ImageGridParams p{};
  if (!parse(args, kw, &p)) return nullptr;
  return run([&] { return tbfast::image_grid_cpu(p); }, "image_grid");
}

TBF_REGISTER("image_ranges", image_ranges, "per-image finite min/max; see csrc/image_grid.h");
TBF_REGISTER("image_grid", image_grid, "fused make_grid + uint8 conversion; see csrc/image_grid.h");
