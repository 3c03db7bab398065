// Microbenchmark of the loops a default-edges histogram can be built from, one thread,
// 2.5e7 normal values: the evidence behind the README's "CPU floor" paragraph.
//
//   g++ -O3 -march=native benchmarks/micro/histogram_loops.cpp -o /tmp/histogram_loops && /tmp/histogram_loops
//
// Rows (best of 5, ns per element):
//   read          AVX2 float32 sum: reading the data once
//   f32 table     what csrc/cpu/histogram_cpu.cpp does for float32 (counting only): ordered
//                 bits in AVX2, then per element one 64-bit table load, a compare and an
//                 increment
//   f32 gather    the same lookup with AVX2 / AVX-512 gathers of a packed 32-bit table
//   increments    incrementing precomputed slots: the floor of any bucket-counting loop
//   bf16 table    bfloat16 through a slot table of all 65536 patterns
//   bf16 pattern  bfloat16 counted per bit pattern (the pattern path)
//   f32 arith512  the float32 slot computed arithmetically in AVX-512 (log2 polynomial, the
//                 exact table only near an edge); "histogram_loops N all" also checks it on
//                 all 2^32 float32 patterns
//   f32 top-K bits  float32 counted per top-K bits pattern, exact fix-up for the patterns
//                 that straddle an edge
//   f32 geo512+stats  what the kernel ships for the default edges (with its statistics): the
//                 arithmetic slot with a quadratic register-table log2, increments trailing the
//                 SIMD work by 128 elements; "all" checks it on every float32 pattern too
// Every variant's counts are checked against the scalar table's. Measured on the 2-core
// AVX-512 EPYC VM (idle): table 0.54 ns, arith512 0.74 ns (0.82 with the slots taken from
// registers instead of a store and reloads), top-K 0.78-1.18 ns, increments alone 0.27 ns:
// neither float32 alternative beats the table loop.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

static uint32_t ordered(float f) {
  uint32_t b;
  memcpy(&b, &f, 4);
  return b ^ ((uint32_t)((int32_t)b >> 31) | 0x80000000u);
}
static float from_ordered(uint32_t o) {
  uint32_t b = (o & 0x80000000u) ? (o ^ 0x80000000u) : ~o;
  float f;
  memcpy(&f, &b, 4);
  return f;
}
static float ceil_f32(double e) {
  float f = (float)e;
  if ((double)f < e) f = std::nextafter(f, INFINITY);
  return f + 0.0f;
}

template <typename F>
static void row(const char* name, size_t n, F f) {
  double best = 1e9;
  for (int r = 0; r < 5; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  printf("%-14s %8.2f ms  %.3f ns/element\n", name, best * 1e3, best * 1e9 / n);
}

int main(int argc, char** argv) {
  const size_t n = argc > 1 ? strtoul(argv[1], nullptr, 10) / 16 * 16 : 25000000;
  // TensorBoard's default edges (spec 1.2), and per 16-bit key of the ordered float32 bits:
  // the slots below it and the one threshold inside it (the default edges have at most one).
  std::vector<double> pos;
  for (double v = 1e-12; v < 1e20; v *= 1.1) pos.push_back(v);
  std::vector<double> edges;
  for (auto it = pos.rbegin(); it != pos.rend(); ++it) edges.push_back(-*it);
  edges.push_back(0.0);
  edges.insert(edges.end(), pos.begin(), pos.end());
  const int ne = (int)edges.size(), nb = ne + 1;
  std::vector<uint32_t> thr(ne);
  for (int i = 0; i < ne; ++i) thr[i] = ordered(ceil_f32(edges[i]));
  std::vector<uint64_t> tab(65536);
  std::vector<uint32_t> tab32(65536);
  for (uint32_t k = 0; k < 65536; ++k) {
    float lo = from_ordered(k << 16);
    if (std::isnan(lo) || std::isinf(lo)) {
      tab[k] = 0xFFFFFFFFull;
      tab32[k] = 0x10000;
      continue;
    }
    uint64_t hi = (uint64_t)(k + 1) << 16;
    int64_t base = std::lower_bound(thr.begin(), thr.end(), k << 16) - thr.begin();
    int64_t end = hi > 0xFFFFFFFFu ? ne : std::lower_bound(thr.begin(), thr.end(), (uint32_t)hi) - thr.begin();
    tab[k] = ((uint64_t)base << 32) | (end > base ? thr[base] : 0xFFFFFFFFu);
    tab32[k] = ((uint32_t)base << 17) | (end > base ? (thr[base] & 0xFFFF) : 0x10000);
  }

  std::vector<float> x(n);
  std::mt19937 gen(1);
  std::normal_distribution<float> normal;
  for (auto& v : x) v = normal(gen);
  std::vector<uint16_t> xb(n);
  for (size_t i = 0; i < n; ++i) {
    uint32_t b;
    memcpy(&b, &x[i], 4);
    xb[i] = (uint16_t)(b >> 16);  // truncated to bfloat16: any 16-bit data will do here
  }

  volatile float sink;
  row("read", n, [&] {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0;
    for (size_t i = 0; i < n; i += 16) {
      s0 = _mm256_add_ps(s0, _mm256_loadu_ps(&x[i]));
      s1 = _mm256_add_ps(s1, _mm256_loadu_ps(&x[i + 8]));
    }
    float o[8];
    _mm256_storeu_ps(o, _mm256_add_ps(s0, s1));
    sink = o[0];
  });

  const __m256i sign = _mm256_set1_epi32((int)0x80000000u);
  std::vector<int32_t> ref(2 * (nb + 2)), got(2 * (nb + 2));
  row("f32 table", n, [&] {
    std::fill(ref.begin(), ref.end(), 0);
    alignas(32) uint32_t ord[8];
    for (size_t i = 0; i < n; i += 8) {
      __m256i b = _mm256_castps_si256(_mm256_add_ps(_mm256_loadu_ps(&x[i]), _mm256_setzero_ps()));
      _mm256_store_si256((__m256i*)ord, _mm256_xor_si256(b, _mm256_or_si256(_mm256_srai_epi32(b, 31), sign)));
      for (int j = 0; j < 8; ++j) {
        uint64_t e = tab[ord[j] >> 16];
        ref[2 * ((int64_t)(e >> 32) + (ord[j] >= (uint32_t)e)) + (j & 1)]++;
      }
    }
  });
  auto check = [&](const char* name) {
    if (got != ref) printf("  %s: counts differ\n", name);
  };
  row("f32 gather256", n, [&] {
    std::fill(got.begin(), got.end(), 0);
    const __m256i lo16 = _mm256_set1_epi32(0xFFFF), lo17 = _mm256_set1_epi32(0x1FFFF), one = _mm256_set1_epi32(1);
    const __m256i alt = _mm256_set_epi32(1, 0, 1, 0, 1, 0, 1, 0);
    alignas(32) int32_t idx[8];
    for (size_t i = 0; i < n; i += 8) {
      __m256i b = _mm256_castps_si256(_mm256_add_ps(_mm256_loadu_ps(&x[i]), _mm256_setzero_ps()));
      __m256i o = _mm256_xor_si256(b, _mm256_or_si256(_mm256_srai_epi32(b, 31), sign));
      __m256i e = _mm256_i32gather_epi32((const int*)tab32.data(), _mm256_srli_epi32(o, 16), 4);
      __m256i below = _mm256_cmpgt_epi32(_mm256_and_si256(e, lo17), _mm256_and_si256(o, lo16));
      __m256i slot = _mm256_sub_epi32(_mm256_add_epi32(_mm256_srli_epi32(e, 17), one), _mm256_and_si256(below, one));
      _mm256_store_si256((__m256i*)idx, _mm256_add_epi32(_mm256_add_epi32(slot, slot), alt));
      for (int j = 0; j < 8; ++j) got[idx[j]]++;
    }
  });
  check("f32 gather256");
#ifdef __AVX512F__
  row("f32 gather512", n, [&] {
    std::fill(got.begin(), got.end(), 0);
    const __m512i sign16 = _mm512_set1_epi32((int)0x80000000u), lo16 = _mm512_set1_epi32(0xFFFF);
    const __m512i lo17 = _mm512_set1_epi32(0x1FFFF), one = _mm512_set1_epi32(1);
    const __m512i alt = _mm512_set_epi32(1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0);
    alignas(64) int32_t idx[16];
    for (size_t i = 0; i < n; i += 16) {
      __m512i b = _mm512_castps_si512(_mm512_add_ps(_mm512_loadu_ps(&x[i]), _mm512_setzero_ps()));
      __m512i o = _mm512_xor_si512(b, _mm512_or_si512(_mm512_srai_epi32(b, 31), sign16));
      __m512i e = _mm512_i32gather_epi32(_mm512_srli_epi32(o, 16), (const int*)tab32.data(), 4);
      __mmask16 ge = _mm512_cmpge_epi32_mask(_mm512_and_si512(o, lo16), _mm512_and_si512(e, lo17));
      __m512i base = _mm512_srli_epi32(e, 17);
      __m512i slot = _mm512_mask_add_epi32(base, ge, base, one);
      _mm512_store_si512(idx, _mm512_add_epi32(_mm512_add_epi32(slot, slot), alt));
      for (int j = 0; j < 16; ++j) got[idx[j]]++;
    }
  });
  check("f32 gather512");
#endif
#ifdef __AVX512F__
  // Arithmetic slot: t = log_1.1(|x| / 1e-12) from getexp/getmant and a degree-7 log2
  // polynomial; slot = N+2+floor(t) (x >= 0) or N-1-floor(t) (x < 0), floor clamped to
  // [-1, N-1]; lanes whose t is within EPS of an integer take the exact table slot. With
  // EPS = 4e-4 it is exact on every float32 pattern (checked exhaustively when run as
  // "histogram_loops N all": 2^32 patterns in blocks against the table).
  const int N = (int)pos.size();
  const float C1 = (float)(1.0 / std::log2(1.1)), C0 = (float)(-std::log2(1e-12) / std::log2(1.1)), EPS = 4e-4f;
  const float P[8] = {5.849626826e-01f, 9.617961682e-01f, -3.206247770e-01f, 1.425188283e-01f,
                      -7.068622482e-02f, 3.753276062e-02f, -2.482560661e-02f, 1.459848930e-02f};  // log2(1.5+u)
  auto table_slot = [&](uint32_t o) {
    uint64_t e = tab[o >> 16];
    return (int32_t)((int64_t)(e >> 32) + (o >= (uint32_t)e));
  };
  // "histogram_loops N all": kernel(xs, count, slots) against the table on every float32
  // pattern, in blocks of 2^20. fold_dropped: the kernel may put a dropped value (NaN/Inf,
  // beyond the outer edges) in either dropped slot, 0 or nb - 1 (above the last edge).
  auto exhaustive = [&](const char* name, auto kernel, bool fold_dropped) {
    if (argc <= 2) return;
    size_t bad = 0;
    std::vector<float> blk(1 << 20);
    std::vector<int32_t> g(2 * (nb + 2)), r(2 * (nb + 2));
    const int top = 2 * (nb - 1);
    for (uint64_t b0 = 0; b0 < (1ull << 32); b0 += blk.size()) {
      for (size_t j = 0; j < blk.size(); ++j) {
        uint32_t w = (uint32_t)(b0 + j);
        memcpy(&blk[j], &w, 4);
      }
      std::fill(g.begin(), g.end(), 0);
      kernel(blk.data(), blk.size(), g.data());
      std::fill(r.begin(), r.end(), 0);
      for (size_t j = 0; j < blk.size(); ++j) {
        float v = blk[j] + 0.0f;
        r[2 * (std::isfinite(v) ? table_slot(ordered(v)) : 0) + (j & 1)]++;
      }
      if (fold_dropped)
        for (auto* h : {&g, &r}) {
          (*h)[0] += (*h)[1] + (*h)[top] + (*h)[top + 1];
          (*h)[1] = (*h)[top] = (*h)[top + 1] = 0;
        }
      bad += g != r;
    }
    printf("  %s exhaustive over 2^32 patterns: %zu of 4096 blocks differ\n", name, bad);
  };
  size_t fixups = 0;
  auto arith = [&](const float* xs, size_t cnt, int32_t* slots) {
    const __m512 c1 = _mm512_set1_ps(C1), c0 = _mm512_set1_ps(C0), half = _mm512_set1_ps(1.5f);
    const __m512 eps = _mm512_set1_ps(EPS), one_m = _mm512_set1_ps(1.0f - EPS);
    const __m512 lo = _mm512_set1_ps(-1.0f), hi = _mm512_set1_ps((float)(N - 1));
    const __m512i posb = _mm512_set1_epi32(N + 2), negb = _mm512_set1_epi32(N - 1);
    const __m512i alt = _mm512_set_epi32(1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0);
    const __m512i expm = _mm512_set1_epi32(0x7F800000), sgn = _mm512_set1_epi32((int)0x80000000u);
    alignas(64) int32_t idx[16];
    alignas(64) uint32_t ordb[16];
    for (size_t i = 0; i < cnt; i += 16) {
      __m512 v = _mm512_add_ps(_mm512_loadu_ps(xs + i), _mm512_setzero_ps());
      __m512 a = _mm512_abs_ps(v);
      __m512 u = _mm512_sub_ps(_mm512_getmant_ps(a, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_zero), half);
      __m512 p = _mm512_set1_ps(P[7]);
      for (int k = 6; k >= 0; --k) p = _mm512_fmadd_ps(p, u, _mm512_set1_ps(P[k]));
      __m512 t = _mm512_fmadd_ps(_mm512_add_ps(_mm512_getexp_ps(a), p), c1, c0);
      __m512 fl = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
      __m512 fr = _mm512_sub_ps(t, fl);
      __mmask16 near = _mm512_cmp_ps_mask(fr, eps, _CMP_LT_OQ) | _mm512_cmp_ps_mask(fr, one_m, _CMP_GT_OQ);
      __m512i k = _mm512_cvttps_epi32(_mm512_min_ps(_mm512_max_ps(fl, lo), hi));
      __m512i bits = _mm512_castps_si512(v);
      __mmask16 neg = _mm512_movepi32_mask(bits);
      __m512i s = _mm512_mask_sub_epi32(_mm512_add_epi32(posb, k), neg, negb, k);
      __mmask16 nonfin = _mm512_cmpeq_epi32_mask(_mm512_and_si512(bits, expm), expm);
      s = _mm512_maskz_mov_epi32(~nonfin, s);
      _mm512_store_si512(idx, _mm512_add_epi32(_mm512_add_epi32(s, s), alt));
      if (__mmask16 f = near & ~nonfin) {  // the exact slot where t is close to an edge
        fixups += __builtin_popcount(f);
        _mm512_store_si512(ordb, _mm512_xor_si512(bits, _mm512_or_si512(_mm512_srai_epi32(bits, 31), sgn)));
        for (; f; f &= f - 1) {
          int j = __builtin_ctz(f);
          idx[j] = 2 * table_slot(ordb[j]) + (j & 1);
        }
      }
      uint64_t w[8];  // two slots per load (memcpy: reading the int32 array as uint64_t would be UB)
      memcpy(w, idx, sizeof w);
      for (int j = 0; j < 8; ++j) {
        slots[(uint32_t)w[j]]++;
        slots[w[j] >> 32]++;
      }
    }
  };
  row("f32 arith512", n, [&] {
    std::fill(got.begin(), got.end(), 0);
    fixups = 0;
    arith(x.data(), n, got.data());
  });
  check("f32 arith512");
  printf("  (exact table slot for %.5f of the elements)\n", (double)fixups / n);
  exhaustive("f32 arith512", arith, false);  // non-finite values in slot 0, as the table

  // What csrc/cpu/histogram_cpu.cpp ships for the default edges (f32_chunk_geo512), with its
  // statistics: t from the exponent and a quadratic log2 of the mantissa on 32 intervals
  // (coefficients in registers, read by permutes), the exact table slot within EPS of an
  // integer t, slots buffered per block of 2048 and counted 128 elements behind the SIMD work.
  {
    alignas(64) float Q0[32], Q1[32], Q2[32];
    for (int j = 0; j < 32; ++j) {  // interpolation at the interval's 3 Chebyshev nodes
      double a = 1 + j / 32.0, b = a + 1 / 32.0, xs[3], ys[3];
      for (int q = 0; q < 3; ++q) {
        xs[q] = (a + b) / 2 + (b - a) / 2 * std::cos((2 * q + 1) * M_PI / 6);
        ys[q] = std::log2(xs[q]);
      }
      double d01 = (ys[1] - ys[0]) / (xs[1] - xs[0]), d012 = ((ys[2] - ys[1]) / (xs[2] - xs[1]) - d01) / (xs[2] - xs[0]);
      Q2[j] = (float)d012;
      Q1[j] = (float)(d01 - d012 * (xs[0] + xs[1]));
      Q0[j] = (float)(ys[0] - d01 * xs[0] + d012 * xs[0] * xs[1]);
    }
    const int B = 2048, LAG = 128;
    auto geo = [&](const float* xs, size_t cnt, int32_t* slots) {
      const __m512 q0a = _mm512_load_ps(Q0), q0b = _mm512_load_ps(Q0 + 16), q1a = _mm512_load_ps(Q1);
      const __m512 q1b = _mm512_load_ps(Q1 + 16), q2a = _mm512_load_ps(Q2), q2b = _mm512_load_ps(Q2 + 16);
      const __m512 c1 = _mm512_set1_ps(C1), c0 = _mm512_set1_ps(C0 - 127 * C1), eps = _mm512_set1_ps(EPS);
      const __m512i kmin = _mm512_set1_epi32(-1), kmax = _mm512_set1_epi32(N - 1);
      const __m512i posb = _mm512_set1_epi32(2 * (N + 2)), negb = _mm512_set1_epi32(2 * (N - 1));
      const __m512i absm = _mm512_set1_epi32(0x7FFFFFFF), mantm = _mm512_set1_epi32(0x007FFFFF);
      const __m512i one = _mm512_set1_epi32(0x3F800000);
      alignas(64) int32_t idx[B];
      __m512 mn = _mm512_set1_ps(INFINITY), mx = _mm512_set1_ps(-INFINITY);
      __m512d s0 = _mm512_setzero_pd(), s1 = s0, q0 = s0, q1 = s0;
      for (size_t b0 = 0; b0 < cnt; b0 += B) {  // cnt: a multiple of B here
        const float* xb = xs + b0;
        for (int k = 0; k < B; k += 16) {
          __m512 v = _mm512_loadu_ps(xb + k);
          __m512i bits = _mm512_castps_si512(_mm512_add_ps(v, _mm512_setzero_ps()));
          __m512i a = _mm512_and_si512(bits, absm);
          mn = _mm512_min_ps(v, mn);
          mx = _mm512_max_ps(v, mx);
          __m512d d0 = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
          __m512d d1 = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
          s0 = _mm512_add_pd(s0, d0);
          s1 = _mm512_add_pd(s1, d1);
          q0 = _mm512_fmadd_pd(d0, d0, q0);
          q1 = _mm512_fmadd_pd(d1, d1, q1);
          __m512 m = _mm512_castsi512_ps(_mm512_or_si512(_mm512_and_si512(a, mantm), one));
          __m512i j5 = _mm512_srli_epi32(a, 18);
          __m512 l2 = _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_permutex2var_ps(q2a, j5, q2b), m,
                                                      _mm512_permutex2var_ps(q1a, j5, q1b)),
                                      m, _mm512_permutex2var_ps(q0a, j5, q0b));
          __m512 t = _mm512_fmadd_ps(_mm512_add_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(a, 23)), l2), c1, c0);
          __m512i hi = _mm512_cvt_roundps_epi32(_mm512_add_ps(t, eps), _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
          __m512i lo = _mm512_cvt_roundps_epi32(_mm512_sub_ps(t, eps), _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
          __mmask16 near = _mm512_cmpneq_epi32_mask(hi, lo);
          __m512i k2 = _mm512_min_epi32(_mm512_max_epi32(lo, kmin), kmax);
          k2 = _mm512_add_epi32(k2, k2);
          _mm512_store_si512(idx + k, _mm512_mask_sub_epi32(_mm512_add_epi32(posb, k2), _mm512_movepi32_mask(bits),
                                                            negb, k2));
          for (; near; near &= near - 1) {
            const int j = __builtin_ctz(near);
            idx[k + j] = 2 * table_slot(ordered(xb[k + j] + 0.0f));
          }
          if (k >= LAG)
            for (int j = 0; j < 16; j += 2) {
              slots[idx[k - LAG + j]]++;
              slots[idx[k - LAG + j + 1] + 1]++;
            }
        }
        for (int k = B - LAG; k < B; k += 2) {
          slots[idx[k]]++;
          slots[idx[k + 1] + 1]++;
        }
      }
      sink = _mm512_reduce_add_ps(_mm512_add_ps(mn, mx)) +
             (float)_mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(s0, s1), _mm512_add_pd(q0, q1)));
    };
    const size_t nb2 = n / B * B;
    std::vector<int32_t> want(2 * (nb + 2));
    for (size_t i = 0; i < nb2; ++i) want[2 * table_slot(ordered(x[i] + 0.0f)) + (i & 1)]++;
    row("f32 geo512+stats", nb2, [&] {
      std::fill(got.begin(), got.end(), 0);
      geo(x.data(), nb2, got.data());
    });
    if (got != want) printf("  f32 geo512: counts differ\n");
    exhaustive("f32 geo512", geo, true);
  }
#endif

  // Counting per top-K bits of the ordered float32 (K = 16..19): one increment per element;
  // patterns that straddle an edge start their counter at 2^30 (a sentinel read by the
  // increment itself), and their elements at or above the edge are counted aside.
  for (int K : {16, 17, 18, 19}) {
    const int sh = 32 - K;
    const size_t P2 = size_t(1) << K;
    std::vector<uint32_t> init(P2, 0), pthr(P2, 0), cnt(P2), upper(P2);
    std::vector<int32_t> pbase(P2);
    for (size_t k = 0; k < P2; ++k) {
      uint32_t first = (uint32_t)(k << sh), last = first + ((1u << sh) - 1);
      int a = (int)(std::upper_bound(thr.begin(), thr.end(), first) - thr.begin());
      int b = (int)(std::upper_bound(thr.begin(), thr.end(), last) - thr.begin());
      pbase[k] = a;
      if (b > a) {
        init[k] = 0x40000000u;
        pthr[k] = thr[a];
      }
    }
    char name[32];
    snprintf(name, sizeof name, "f32 top-%d bits", K);
    row(name, n, [&] {
      memcpy(cnt.data(), init.data(), P2 * 4);
      std::fill(upper.begin(), upper.end(), 0);
      alignas(32) uint32_t ord[8];
      for (size_t i = 0; i < n; i += 8) {
        __m256i b = _mm256_castps_si256(_mm256_add_ps(_mm256_loadu_ps(&x[i]), _mm256_setzero_ps()));
        _mm256_store_si256((__m256i*)ord, _mm256_xor_si256(b, _mm256_or_si256(_mm256_srai_epi32(b, 31), sign)));
        for (int j = 0; j < 8; ++j) {
          uint32_t o = ord[j], k = o >> sh, c = cnt[k];
          cnt[k] = c + 1;
          if (__builtin_expect(c >> 30, 0)) upper[k] += (o >= pthr[k]);
        }
      }
    });
    std::vector<int64_t> want(nb + 2), have(nb + 2);
    for (int s2 = 0; s2 < nb + 2; ++s2) want[s2] = (int64_t)ref[2 * s2] + ref[2 * s2 + 1];
    for (size_t k = 0; k < P2; ++k) {
      int64_t c = cnt[k] & 0x3FFFFFFF;
      have[pbase[k]] += c - upper[k];
      if (upper[k]) have[pbase[k] + 1] += upper[k];
    }
    if (want != have) printf("  %s: counts differ\n", name);
  }

  std::vector<int32_t> pre(n);
  for (size_t i = 0; i < n; ++i) {
    uint32_t o = ordered(x[i] + 0.0f);
    uint64_t e = tab[o >> 16];
    pre[i] = (int32_t)(2 * ((int64_t)(e >> 32) + (o >= (uint32_t)e)) + (i & 1));
  }
  row("increments", n, [&] {
    std::fill(got.begin(), got.end(), 0);
    for (size_t i = 0; i < n; ++i) got[pre[i]]++;
  });
  check("increments");

  std::vector<uint16_t> h16(65536);
  for (uint32_t p = 0; p < 65536; ++p) {
    float v;
    uint32_t b = p << 16;
    memcpy(&v, &b, 4);
    uint32_t o = ordered(v + 0.0f);
    uint64_t e = tab[o >> 16];
    h16[p] = std::isfinite(v) ? (uint16_t)((e >> 32) + (o >= (uint32_t)e)) : 0;
  }
  std::vector<int32_t> slots16(2 * (nb + 2)), patterns(65536);
  row("bf16 table", n, [&] {
    std::fill(slots16.begin(), slots16.end(), 0);
    const uint64_t* w = (const uint64_t*)xb.data();
    for (size_t i = 0; i < n / 4; ++i) {
      uint64_t v = w[i];
      slots16[2 * h16[v & 0xFFFF]]++;
      slots16[2 * h16[(v >> 16) & 0xFFFF] + 1]++;
      slots16[2 * h16[(v >> 32) & 0xFFFF]]++;
      slots16[2 * h16[v >> 48] + 1]++;
    }
  });
  row("bf16 pattern", n, [&] {
    std::fill(patterns.begin(), patterns.end(), 0);
    const uint64_t* w = (const uint64_t*)xb.data();
    for (size_t i = 0; i < n / 4; ++i) {
      uint64_t v = w[i];
      patterns[v & 0xFFFF]++;
      patterns[(v >> 16) & 0xFFFF]++;
      patterns[(v >> 32) & 0xFFFF]++;
      patterns[v >> 48]++;
    }
  });
  std::vector<int64_t> a(nb + 2), b(nb + 2);
  for (int s = 0; s < nb + 2; ++s) a[s] = (int64_t)slots16[2 * s] + slots16[2 * s + 1];
  for (uint32_t p = 0; p < 65536; ++p) b[h16[p]] += patterns[p];
  if (a != b) printf("  bf16 pattern: counts differ\n");
  return 0;
}
