// Which SIMD code the CPU kernels may use: one decision per process, read once.
//
//   TBFAST_SIMD=off | avx2 | avx512   caps the level (for tests and benchmarks that compare
//                                     paths; unset: the best the CPU has)
//   TBFAST_DISABLE_SIMD=1             the same as TBFAST_SIMD=off (kept for old scripts)
//
// Every SIMD path computes exactly what the scalar definition next to it computes (tests
// compare the levels bit for bit), so the level changes speed only.
#pragma once
#include <cstdlib>
#include <cstring>

namespace tbfast {

enum SimdLevel : int { kSimdOff = 0, kSimdAvx2 = 1, kSimdAvx512 = 2 };

inline int simd_cap_from_env() {
  const char* off = getenv("TBFAST_DISABLE_SIMD");
  if (off && off[0] == '1') return kSimdOff;
  const char* cap = getenv("TBFAST_SIMD");
  if (!cap || !cap[0]) return kSimdAvx512;
  if (!strcmp(cap, "off")) return kSimdOff;
  if (!strcmp(cap, "avx2")) return kSimdAvx2;
  return kSimdAvx512;
}

inline int simd_level() {
  static const int level = [] {
    int cpu = kSimdOff;
#if defined(__x86_64__) || defined(__i386__)
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c") && __builtin_cpu_supports("fma")) {
      cpu = kSimdAvx2;
      if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
          __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
        cpu = kSimdAvx512;
    }
#endif
    int cap = simd_cap_from_env();
    return cpu < cap ? cpu : cap;
  }();
  return level;
}

}  // namespace tbfast
