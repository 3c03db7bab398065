// Image grid op: params structs and the pixel math shared by the CPU and CUDA kernels.
//
// Semantics (spec sections 1.6 and 2): torchvision's make_grid layout and normalisation,
// followed by torch.utils.tensorboard's conversion to uint8, in one pass:
//   * normalisation (optional): clamp(v, lo, hi), then (v - lo) / max(hi - lo, 1e-5),
//     in float32 for 16/32-bit floats and integers, in float64 for float64 inputs
//     (the divisor is always formed in double, as torchvision does in Python, then
//     rounded to the compute type);
//   * conversion: float32(v) * 255.0f, clip to [0, 255], truncate. uint8 input without
//     normalisation is copied unchanged (torch's scale factor 1). NaN becomes 0.
// The layout (cells, padding, canvas size, pad byte) is decided by the Python layer and
// only followed here; the kernels trust their inputs.
//
// PNG encoding of the canvas (filtering, deflate) is the png op: csrc/png.h.
#pragma once
#include <cstdint>

#include "common.h"

namespace tbfast {

// ---------------------------------------------------------------- image grid ------------

enum GridNorm : int32_t {
  kNormNone = 0,      // plain conversion
  kNormRange = 1,     // one [lo, hi] for every image (value_range, or the batch min/max)
  kNormPerImage = 2,  // [lo, hi] per image, read from `ranges`
  kNormDataRange = 3, // CUDA only: one [lo, hi] = finite min/max over every image, reduced from
                      // `ranges` on the device ([0, 1] when nothing is finite)
};

struct ImageGridParams {
  int64_t num_images;      // N >= 1
  const uint64_t* data;    // [N] address of element (c=0, y=0, x=0) of each image
  const int64_t* strides;  // [N, 3] element strides of C, H, W (any sign)
  int32_t dtype;           // DType code, the same for every image
  int64_t channels;        // C of the input: 1, 3 or 4
  int64_t out_channels;    // C of the canvas: channels, or 3 for 1 (gray repeated to RGB)
  int64_t height, width;   // H, W of every image
  int64_t cols, rows;      // cells per canvas row (xmaps) and canvas rows of cells (ymaps)
  int64_t padding;         // pixels around and between cells
  int64_t out_height;      // rows * (H + padding) + padding
  int64_t out_width;       // cols * (W + padding) + padding
  int64_t out_row_stride;  // bytes between canvas rows (>= out_width * out_channels)
  uint8_t pad_byte;        // canvas value outside the images, already converted
  int32_t norm;            // GridNorm
  double lo, hi;           // kNormRange
  double* ranges;          // [N, 2] finite min/max per image, (inf, -inf) if none: written
                           // by image_ranges_cpu, read by kNormPerImage
  uint8_t* out;            // [out_height, out_row_stride]
  int32_t num_threads;     // CPU only
  void* stream;            // CUDA only: cudaStream_t; data/strides/ranges/out are device pointers
};

// Bytes per output pixel value: torch's `.astype(float32) * 255` is done by the caller;
// this clips to [0, 255] and truncates (NaN -> 0, as NumPy's cast gives on x86).
TBF_HD uint8_t clip_truncate(float y) {
  float c = y > 0.0f ? y : 0.0f;  // NaN fails the test: 0
  c = c < 255.0f ? c : 255.0f;
  return (uint8_t)(int32_t)c;  // branch-free, so CPU loops vectorise
}

TBF_HD uint8_t convert_plain(float v) { return clip_truncate(v * 255.0f); }

// torchvision's norm_ip for one value: clamp_(lo, hi), sub_(lo), div_(d), in float32.
TBF_HD float normalize_f32(float v, float lo, float hi, float d) {
  float c = v < lo ? lo : v;  // NaN stays NaN (torch's clamp propagates it)
  c = c > hi ? hi : c;
  return (c - lo) / d;
}

TBF_HD double normalize_f64(double v, double lo, double hi, double d) {
  double c = v < lo ? lo : v;
  c = c > hi ? hi : c;
  return (c - lo) / d;
}

// torchvision's divisor max(high - low, 1e-5), formed in double.
TBF_HD double norm_divisor(double lo, double hi) {
  double d = hi - lo;
  return d > 1e-5 ? d : 1e-5;
}

// Range used for normalisation when an image (or the batch) has no finite value.
TBF_HD void empty_range(double* lo, double* hi) {
  *lo = 0.0;
  *hi = 1.0;
}

// Cell (image index, row inside the image) of canvas row r; image < 0 for a padding row.
TBF_HD void grid_row(const ImageGridParams& p, int64_t r, int64_t* band, int64_t* iy) {
  int64_t rr = r - p.padding;
  if (rr < 0) {
    *band = -1;
    return;
  }
  int64_t cell_h = p.height + p.padding;
  *band = rr / cell_h;
  *iy = rr - *band * cell_h;
  if (*iy >= p.height) *band = -1;
}

// CPU entry points (csrc/cpu/image_grid_cpu.cpp); 0 or an error code.
// image_ranges_cpu: finite min/max of each image into p.ranges (in the compute type;
// (inf, -inf) for an image with no finite value).
int image_ranges_cpu(const ImageGridParams& p);
// image_grid_cpu: the canvas. For kNormRange the caller sets lo/hi (from ranges if needed).
int image_grid_cpu(const ImageGridParams& p);

// CUDA entry point (csrc/cuda/image_grid_cuda.cu): enqueues on p.stream, never waits.
// kNormPerImage and kNormDataRange first compute `ranges` on the device (an image with no
// finite value normalises with [0, 1]), then the canvas kernel reads them from device
// memory; kNormNone / kNormRange need no ranges. Every canvas byte is written.
int image_grid_cuda(const ImageGridParams& p);

}  // namespace tbfast
