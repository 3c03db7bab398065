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
// Every variant's counts are checked against the scalar table's.
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
