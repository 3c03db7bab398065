// PR-curve op: params struct and the bucket math shared by the CPU and CUDA kernels.
//
// Semantics are torch.utils.tensorboard's compute_curve (spec 1.5): a prediction p in
// [0, 1] goes to bucket floor(p * (T-1)), with the product rounded in the prediction's own
// precision, as NumPy does after make_np:
//  * float32: p * float32(T-1) rounded to float32;
//  * float64 (and integer predictions, whose values are 0 or 1): in float64;
//  * float16 and bfloat16 (torch turns bf16 into fp16 first): when T-1 <= 2048, so that
//    T-1 is exact in float16, the exact float32 product rounded to float16 (NumPy's
//    float16 multiply); for larger T float16 cannot tell the thresholds apart (torch
//    drops every sample once T-1 overflows float16), and the float32 product is used.
// Column i of the curve counts the samples with bucket >= i, so the kernel only fills
// per-bucket counts: out[c][b][pos], pos = 1 for a positive label, 0 for a negative one.
// The reverse cumulative sums and ratios are done by the caller on the small result.
//
// Multi-class (C > 1): predictions [N, C] row-major. Labels are either a 0/1 matrix
// [N, C] (one-hot or multi-label, kLabelMatrix) or class indices [N] (kLabelIndex).
// Logits: kSoftmax (per row: max, sum of exp, then exp(x - max) / sum, in float64) or
// kSigmoid (1 / (1 + exp(-x)), float64); the probability is bucketed in float64.
//
// Bad values are never bucketed; they are counted per kind into `bad` so that the caller
// can raise later without a host sync on the update path.
#pragma once
#include <cstdint>

#include "common.h"

namespace tbfast {

enum PRLabelMode : int32_t { kLabelMatrix = 0, kLabelIndex = 1 };
enum PRProbMode : int32_t { kProbabilities = 0, kSoftmax = 1, kSigmoid = 2 };

// Kinds of bad values; must match BAD_KINDS in tbfast/pr_curve.py.
enum PRBadKind : int32_t {
  kBadNaNPrediction = 0,    // NaN probability
  kBadPredictionRange = 1,  // probability outside [0, 1]
  kBadLogit = 2,            // NaN or infinite logit
  kBadLabel = 3,            // 0/1 label that is neither 0 nor 1
  kBadClassIndex = 4,       // class index outside [0, C)
  kBadWeight = 5,           // negative, NaN or infinite weight
  kNumBadKinds = 8,         // slots reserved in the state
};

// Rows per block. Weighted sums are added to the output block by block in row order, with
// a sequential sum inside each block: exactly np.histogram's order (it bincounts blocks of
// 65536 values and adds them up), so weighted float64 results equal torch's bit for bit.
constexpr int64_t kPRBlockRows = int64_t(1) << 16;

struct PRCurveParams {
  const void* predictions;  // [N, C] row-major (C = 1 for a binary curve)
  int32_t pred_dtype;       // kFloat16, kBFloat16, kFloat32 or kFloat64
  const void* labels;       // kLabelMatrix: [N, C]; kLabelIndex: [N]
  int32_t label_dtype;      // kBool, kUInt8, kInt32, kInt64, kFloat32, kFloat64
  const void* weights;      // [N] per row, or null: every row weighs weight_scalar
  int32_t weight_dtype;     // kFloat32 or kFloat64
  double weight_scalar;
  int64_t num_rows;         // N
  int64_t num_classes;      // C
  int64_t num_thresholds;   // T, 2 <= T <= 2^24
  int32_t label_mode;       // PRLabelMode
  int32_t prob_mode;        // PRProbMode
  int64_t* counts;          // unweighted out, added to: [C, T, 2] int64 (null when weighted)
  double* wsums;            // weighted out, added to: [C, T, 2] float64 (null when unweighted)
  int64_t* bad;             // out, added to: [kNumBadKinds]
  int32_t num_threads;      // CPU only
  // CUDA only: all pointers above are device pointers of one GPU -----------------------
  void* scratch;            // device scratch of pr_curve_cuda_scratch_bytes(p) bytes (caller-allocated)
  int64_t scratch_bytes;
  void* stream;             // cudaStream_t everything is enqueued on
};

// True when 16-bit float predictions round the product to float16 (torch's NumPy path).
TBF_HD bool pr_half_rounding(int64_t num_thresholds) { return num_thresholds - 1 <= 2048; }

// Round a non-negative finite float to float16 precision (11 significant bits, ties to
// even); valid for x >= 2^-14 (float16 normals). Smaller x is handled by the caller.
TBF_HD float round_to_half_precision(float x) {
  uint32_t b;
  memcpy(&b, &x, sizeof b);
  b = (b + 0x0FFFu + ((b >> 13) & 1u)) & ~0x1FFFu;
  float r;
  memcpy(&r, &b, sizeof r);
  return r;
}

// Buckets of a probability p already known to be in [0, 1]. The product is >= 0, so the
// truncating cast is floor.
TBF_HD int64_t pr_bucket_f64(double p, double tm1) { return (int64_t)(p * tm1); }
TBF_HD int64_t pr_bucket_f32(float p, float tm1) { return (int64_t)(p * tm1); }
// p is the exact float value of a float16 (or bfloat16) prediction.
TBF_HD int64_t pr_bucket_f16(float p, float tm1, bool half_rounding) {
  float x = p * tm1;  // exact when half_rounding: 11 x 11 significant bits
  if (!half_rounding) return (int64_t)x;
  if (x < 6.103515625e-05f) return 0;  // below 2^-14: rounds to < 1 in float16
  return (int64_t)round_to_half_precision(x);
}

// CPU entry point (csrc/cpu/pr_curve_cpu.cpp): 0, or 1 for an invalid dtype/mode.
int pr_curve_cpu(const PRCurveParams& p);

// CUDA entry points (csrc/cuda/pr_curve_cuda.cu). pr_curve_cuda enqueues on p.stream and
// returns a Status without waiting for the device. It ADDS into counts (unweighted) or
// wsums (weighted) and bad, like the CPU kernel. Weighted sums are deterministic run to
// run: each call accumulates its weights exactly as 128-bit unsigned fixed point (units
// of 2^-64, integer atomics, so the order of additions does not matter) in scratch, then
// adds each cell's exact sum, rounded once to float64, into wsums. Weights must be finite
// and >= 0 (others are counted as bad); weights at or above 2^63 are counted as bad too.
int64_t pr_curve_cuda_scratch_bytes(const PRCurveParams& p);
int pr_curve_cuda(const PRCurveParams& p);

}  // namespace tbfast
