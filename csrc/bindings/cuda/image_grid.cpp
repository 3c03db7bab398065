// Binding for the CUDA image grid kernel (csrc/cuda/image_grid_cuda.cu). Check, fill the
// params struct, enqueue without the GIL (nothing waits for the device).
#include "bindings/registry.h"
#include "cuda/device_cuda.h"
#include "image_grid.h"

// Keywords = ImageGridParams fields (the CPU binding's, stream instead of num_threads);
// data, strides, ranges and out are device pointers, stream a cudaStream_t handle.
static PyObject* image_grid_cuda(PyObject*, PyObject* args, PyObject* kw) {
  static const char* kwlist[] = {"num_images", "data", "strides", "dtype", "channels", "out_channels", "height",
                                 "width", "cols", "rows", "padding", "out_height", "out_width", "out_row_stride",
                                 "pad_byte", "norm", "lo", "hi", "ranges", "out", "stream", "device", nullptr};
  long long n, channels, out_channels, height, width, cols, rows, padding, out_height, out_width, stride;
  unsigned long long data, strides, ranges, out, stream;
  int dtype, pad_byte, norm, device;
  double lo, hi;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "$LKKiLLLLLLLLLLiiddKKKi", (char**)kwlist, &n, &data, &strides, &dtype,
                                   &channels, &out_channels, &height, &width, &cols, &rows, &padding, &out_height,
                                   &out_width, &stride, &pad_byte, &norm, &lo, &hi, &ranges, &out, &stream, &device))
    return nullptr;
  const char* op = "image_grid_cuda";
  if (n < 1 || !data || !strides || !out || height < 1 || width < 1 || cols < 1 || rows < 1 || padding < 0 ||
      out_height < 1 || out_width < 1 || stride < out_width * out_channels || pad_byte < 0 || pad_byte > 255 ||
      cols * rows < n)
    return tbfast::tbf_bad(op, "inconsistent grid parameters");
  if (norm < tbfast::kNormNone || norm > tbfast::kNormDataRange) return tbfast::tbf_raise(tbfast::kBadMode, op);
  if ((norm == tbfast::kNormPerImage || norm == tbfast::kNormDataRange) && !ranges)
    return tbfast::tbf_bad(op, "ranges is required for per-image and data-range normalisation");
  tbfast::ImageGridParams p{};
  p.num_images = n;
  p.data = tbf_ptr<const uint64_t>(data);
  p.strides = tbf_ptr<const int64_t>(strides);
  p.dtype = dtype;
  p.channels = channels;
  p.out_channels = out_channels;
  p.height = height;
  p.width = width;
  p.cols = cols;
  p.rows = rows;
  p.padding = padding;
  p.out_height = out_height;
  p.out_width = out_width;
  p.out_row_stride = stride;
  p.pad_byte = (uint8_t)pad_byte;
  p.norm = norm;
  p.lo = lo;
  p.hi = hi;
  p.ranges = tbf_ptr<double>(ranges);
  p.out = tbf_ptr<uint8_t>(out);
  p.num_threads = 1;
  p.stream = tbf_ptr<void>(stream);
  int st = tbfast::tbf_run([&] { return tbfast::cuda_on_device(device, [&] { return tbfast::image_grid_cuda(p); }); });
  if (st) return tbfast::tbf_raise(st, op, st == tbfast::kCudaError ? tbfast::cuda_last_error_message() : nullptr);
  Py_RETURN_NONE;
}

TBF_REGISTER("image_grid_cuda", image_grid_cuda,
             "fused make_grid + uint8 conversion on a CUDA stream; see csrc/image_grid.h");
