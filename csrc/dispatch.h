// The one place where a runtime dtype code becomes a compile-time type.
// Usage: TBF_DTYPE_SWITCH(code, scalar_t, { kernel<scalar_t>(...); });
#pragma once
#include "common.h"

#define TBF_DTYPE_CASE(CODE, TYPE, NAME, ...) \
  case CODE: {                                \
    using NAME = TYPE;                        \
    __VA_ARGS__;                              \
    break;                                    \
  }

#define TBF_DTYPE_SWITCH(code, NAME, ...)                                   \
  switch (code) {                                                           \
    TBF_DTYPE_CASE(::tbfast::kBool, bool, NAME, __VA_ARGS__)                \
    TBF_DTYPE_CASE(::tbfast::kUInt8, uint8_t, NAME, __VA_ARGS__)            \
    TBF_DTYPE_CASE(::tbfast::kInt8, int8_t, NAME, __VA_ARGS__)              \
    TBF_DTYPE_CASE(::tbfast::kInt16, int16_t, NAME, __VA_ARGS__)            \
    TBF_DTYPE_CASE(::tbfast::kInt32, int32_t, NAME, __VA_ARGS__)            \
    TBF_DTYPE_CASE(::tbfast::kInt64, int64_t, NAME, __VA_ARGS__)            \
    TBF_DTYPE_CASE(::tbfast::kFloat16, ::tbfast::half_bits, NAME, __VA_ARGS__) \
    TBF_DTYPE_CASE(::tbfast::kBFloat16, ::tbfast::bf16_bits, NAME, __VA_ARGS__) \
    TBF_DTYPE_CASE(::tbfast::kFloat32, float, NAME, __VA_ARGS__)            \
    TBF_DTYPE_CASE(::tbfast::kFloat64, double, NAME, __VA_ARGS__)           \
    TBF_DTYPE_CASE(::tbfast::kUInt16, uint16_t, NAME, __VA_ARGS__)          \
    TBF_DTYPE_CASE(::tbfast::kUInt32, uint32_t, NAME, __VA_ARGS__)          \
    TBF_DTYPE_CASE(::tbfast::kUInt64, uint64_t, NAME, __VA_ARGS__)          \
    default:                                                                \
      break;                                                                \
  }
