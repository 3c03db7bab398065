// The error bound behind the AVX-512 computed slots of csrc/cpu/histogram_cpu.cpp
// (f32_chunk_geo512, d_chunk_geo512): over every positive float32 pattern whose
// t = log_1.1(x / 1e-12) lies in [-3, 780] (the default edges' range), the largest
// |t computed - t exact|. The kernels take an edge's exact table slot when t lies within
// kGeoEps = 4e-4 of an integer, so they need this bound (plus 1.3e-6 for the double
// path's mantissa truncation) below kGeoEps. Measured: 9.61e-05 (pattern 0x608ac229).
//
//   g++ -O2 benchmarks/micro/geo_log_error.cpp -o /tmp/geo_log_error && /tmp/geo_log_error   (~35 s)
//
// It repeats geo_log()'s coefficients and the kernels' float32 arithmetic in scalar code
// (fmaf is the same correctly rounded fused multiply-add as _mm512_fmadd_ps): a
// standalone program cannot link the kernel's internals.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>

int main() {
  float q0[32], q1[32], q2[32];
  const double pi = 3.14159265358979323846;
  for (int j = 0; j < 32; ++j) {  // interpolation at the 3 Chebyshev nodes of [1 + j/32, 1 + (j+1)/32)
    double a = 1 + j / 32.0, b = a + 1 / 32.0, xs[3], ys[3];
    for (int k = 0; k < 3; ++k) {
      xs[k] = (a + b) / 2 + (b - a) / 2 * std::cos((2 * k + 1) * pi / 6);
      ys[k] = std::log2(xs[k]);
    }
    double d01 = (ys[1] - ys[0]) / (xs[1] - xs[0]), d12 = (ys[2] - ys[1]) / (xs[2] - xs[1]);
    double d012 = (d12 - d01) / (xs[2] - xs[0]);
    q2[j] = (float)d012;
    q1[j] = (float)(d01 - d012 * (xs[0] + xs[1]));
    q0[j] = (float)(ys[0] - d01 * xs[0] + d012 * xs[0] * xs[1]);
  }
  const float c1 = (float)(1.0 / std::log2(1.1));
  const float c0 = (float)(-std::log2(1e-12) / std::log2(1.1)) - 127.0f * c1;
  const long double ln11 = logl(1.1L);
  double worst = 0;
  uint32_t worst_bits = 0;
  for (uint32_t e = 80; e <= 200; ++e) {  // every exponent field whose t can reach [-3, 780]
    for (uint32_t mb = 0; mb < (1u << 23); ++mb) {
      const uint32_t a = (e << 23) | mb, mbits = mb | 0x3F800000u;
      float x, m;
      memcpy(&x, &a, 4);
      memcpy(&m, &mbits, 4);
      const int j = (int)((a >> 18) & 31);
      const float l2 = fmaf(fmaf(q2[j], m, q1[j]), m, q0[j]);
      const float t = fmaf((float)e + l2, c1, c0);
      const long double exact = logl((long double)x / 1e-12L) / ln11;
      if (exact < -3 || exact > 780) continue;
      const double err = (double)fabsl((long double)t - exact);
      if (err > worst) {
        worst = err;
        worst_bits = a;
      }
    }
  }
  printf("max |t computed - t exact| = %.3g (float32 pattern 0x%08x); kGeoEps = 4e-4\n", worst, worst_bits);
  return worst < 4e-4 - 1.3e-6 ? 0 : 1;
}
