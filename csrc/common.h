// Definitions shared by every kernel, CPU and CUDA: dtype codes, scalar conversion,
// and the HOST_DEVICE marker for math that both paths use (so CPU tests exercise it).
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define TBF_HD __host__ __device__ __forceinline__
#else
#define TBF_HD inline
#endif

namespace tbfast {

// Dtype codes. Must match tbfast/_dtypes.py (DTYPE_CODES); tests check both sides.
enum DType : int32_t {
  kBool = 0,
  kUInt8 = 1,
  kInt8 = 2,
  kInt16 = 3,
  kInt32 = 4,
  kInt64 = 5,
  kFloat16 = 6,
  kBFloat16 = 7,
  kFloat32 = 8,
  kFloat64 = 9,
  kUInt16 = 10,
  kUInt32 = 11,
  kUInt64 = 12,
  kNumDTypes = 13,
};

// Bytes per element of a valid DType code.
TBF_HD int64_t dtype_bytes(int32_t d) {
  switch (d) {
    case kBool: case kUInt8: case kInt8: return 1;
    case kInt16: case kFloat16: case kBFloat16: case kUInt16: return 2;
    case kInt32: case kFloat32: case kUInt32: return 4;
    default: return 8;
  }
}

// Status codes every native entry point returns (0 = success). Exported to Python by
// the module's constants(); tbfast/_native.py turns each into its exception.
enum Status : int32_t {
  kOk = 0,
  kBadDType = 1,        // a dtype code outside DType
  kBadMode = 2,         // a mode/enum argument outside its enum
  kBadArgument = 3,     // a size, count or pointer that the params struct forbids
  kOutOfMemory = 4,     // std::bad_alloc (scratch, tables)
  kThreadError = 5,     // std::system_error from thread creation
  kInternal = 6,        // any other C++ exception
  kCudaError = 7,       // a CUDA runtime call failed; see the module's last_cuda_error()
};

// Storage types for the two 16-bit floats: raw bits, converted on load.
struct half_bits { uint16_t bits; };
struct bf16_bits { uint16_t bits; };

TBF_HD float bits_to_float(uint32_t b) {
  float f;
  memcpy(&f, &b, sizeof f);
  return f;
}

TBF_HD uint64_t double_to_bits(double d) {
  uint64_t b;
  memcpy(&b, &d, sizeof b);
  return b;
}

// IEEE binary16 -> binary32, exact for every input (subnormals, inf, NaN included).
TBF_HD float half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t man = h & 0x3FFu;
  uint32_t bits;
  if (exp == 0x1Fu) {
    bits = sign | 0x7F800000u | (man << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112u) << 23) | (man << 13);
  } else if (man == 0) {
    bits = sign;
  } else {
    // Subnormal half: renormalise.
    int e = -1;
    do {
      e++;
      man <<= 1;
    } while ((man & 0x400u) == 0);
    bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3FFu) << 13);
  }
  return bits_to_float(bits);
}

TBF_HD float bf16_to_float(uint16_t b) { return bits_to_float((uint32_t)b << 16); }

// Load element i of a typed buffer as double (the precision torch's path bins in).
template <typename T>
struct Load {
  TBF_HD static double get(const T* p, int64_t i) { return (double)p[i]; }
};
template <>
struct Load<bool> {
  TBF_HD static double get(const bool* p, int64_t i) { return p[i] ? 1.0 : 0.0; }
};
template <>
struct Load<half_bits> {
  TBF_HD static double get(const half_bits* p, int64_t i) { return (double)half_to_float(p[i].bits); }
};
template <>
struct Load<bf16_bits> {
  TBF_HD static double get(const bf16_bits* p, int64_t i) { return (double)bf16_to_float(p[i].bits); }
};

}  // namespace tbfast
