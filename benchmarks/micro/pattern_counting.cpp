// Microbenchmark of 16-bit float counting designs, one thread: the evidence behind the
// README's "Why the 16-bit rows stay above 2.5x".
//
//   g++ -O2 -march=native benchmarks/micro/pattern_counting.cpp -o /tmp/pattern_counting && /tmp/pattern_counting
//
// Part 1, stores (keys uniform over 64 or 512 cache lines, in L1; ns per store):
//   store         one 32-bit store per key, to the key's line
//   store pairs   two stores to adjacent words of one line per key
//   increment     ++counter[key], one counter per line
// Part 2, per 16-bit pattern (2^25 normal values, bfloat16 and float16; ns per element):
//   pattern32     what csrc/cpu/histogram_cpu.cpp ships for bfloat16: one int32 counter per
//                 pattern
//   pattern16     uint16 counters, added into int32 ones every 65535 elements (no counter
//                 can overflow), all-zero lines skipped with AVX-512
//   pattern16 loop  the same without the adds (not a usable result: it shows their cost)
//   wrap16        uint16 counters without periodic adds: a counter that wraps to 0 counts
//                 one 65536 in a side table (a branch per element, never taken in practice)
//   pair-hot      one increment per two elements: a 64 KiB byte table maps each pattern to
//                 one of the 127 most frequent buckets of a sample (or "cold"); hot pairs
//                 increment a 128 x 128 uint16 table, groups of 4 with a cold element take
//                 the exact slot per element. Buckets: TensorBoard's default edges.
// Last, wrap16 on float16 data of wider range.
// Every variant's counts are checked against pattern32's. Measured on the 2-core AVX-512
// EPYC VM (idle): stores 0.26-0.29 ns, but 0.18 ns each when two go to one line; increments
// 0.25 ns over 64 lines, 0.30 over 512. bfloat16: pattern32 0.228, pattern16 0.233 (its
// loop 0.209: the adds take what the narrower counters save), wrap16 0.23-0.25, pair-hot 0.66-0.68
// (half the increments, but into a 32 KiB table: 512 lines, see part 1). float16: pattern32 0.35-0.37, pattern16 0.32, wrap16
// 0.26-0.27, pair-hot 0.69, against 0.30 for the shipped float32-kernel path. wrap16 on
// float16 depends on the data: 0.26-0.27 for normal values, 0.36 for a heavy-tailed
// ratio of normals and 0.42 for magnitudes log-uniform over 1e-7..1e2, where the counters
// in use leave L1; the shipped path costs 0.30 on any data, so float16 stays on it.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

using namespace std;

static double now() { return chrono::duration<double>(chrono::steady_clock::now().time_since_epoch()).count(); }

template <typename F>
static double best_ns(int64_t n, F&& f) {
  double best = 1e9;
  for (int r = 0; r < 5; ++r) {
    double t0 = now();
    f();
    best = min(best, now() - t0);
  }
  return best / (double)n * 1e9;
}

__attribute__((noinline)) void store1(const uint16_t* k, int64_t n, uint32_t* c) {
  for (int64_t i = 0; i < n; ++i) c[16 * k[i]] = (uint32_t)i;
}
__attribute__((noinline)) void store2(const uint16_t* k, int64_t n, uint32_t* c) {
  for (int64_t i = 0; i < n; ++i) {
    c[16 * k[i]] = (uint32_t)i;
    c[16 * k[i] + 1] = (uint32_t)i;
  }
}
template <typename C>
__attribute__((noinline)) void count(const uint16_t* h, int64_t b, int64_t e, C* pc) {
  int64_t i = b;
  for (; i + 4 <= e; i += 4) {
    uint64_t w;
    memcpy(&w, h + i, 8);
    pc[w & 0xFFFF]++;
    pc[(w >> 16) & 0xFFFF]++;
    pc[(w >> 32) & 0xFFFF]++;
    pc[w >> 48]++;
  }
  for (; i < e; ++i) pc[h[i]]++;
}
// uint16 counters; a counter that wraps to 0 counts one more 65536 in wraps[] (rare)
__attribute__((noinline)) void count_wrap(const uint16_t* h, int64_t n, uint16_t* pc, uint32_t* wraps) {
  auto one = [&](unsigned p) {
    if (__builtin_expect(++pc[p] == 0, 0)) wraps[p]++;
  };
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    uint64_t w;
    memcpy(&w, h + i, 8);
    one(w & 0xFFFF);
    one((w >> 16) & 0xFFFF);
    one((w >> 32) & 0xFFFF);
    one(w >> 48);
  }
  for (; i < n; ++i) one(h[i]);
}
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 false positive in the cast intrinsics
__attribute__((target("avx512f,avx512bw"), noinline)) void add16(uint16_t* c16, int32_t* c32) {
  for (int q = 0; q < 65536; q += 32) {
    __m512i v = _mm512_loadu_si512(c16 + q);
    if (!_mm512_test_epi16_mask(v, v)) continue;
    __m512i lo = _mm512_cvtepu16_epi32(_mm512_castsi512_si256(v));
    __m512i hi = _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(v, 1));
    _mm512_storeu_si512(c32 + q, _mm512_add_epi32(_mm512_loadu_si512(c32 + q), lo));
    _mm512_storeu_si512(c32 + q + 16, _mm512_add_epi32(_mm512_loadu_si512(c32 + q + 16), hi));
    _mm512_storeu_si512(c16 + q, _mm512_setzero_si512());
  }
}

static float bf16_value(uint16_t p) {
  uint32_t u = (uint32_t)p << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static uint16_t to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  u += 0x7FFF + ((u >> 16) & 1);
  return (uint16_t)(u >> 16);
}

// Slot of v among TensorBoard's default edges (+-1e-12 * 1.1^k), computed in double.
static int slot_of(float v) {
  if (!std::isfinite(v)) return 0;
  double a = fabs((double)v);
  int t = a < 1e-12 ? -1 : (int)floor(log(a / 1e-12) / log(1.1));
  t = min(t, 774);
  return v < 0 ? 775 - t : 777 + t;
}

static void part2(const char* name, const vector<uint16_t>& x, float (*value)(uint16_t)) {
  const int64_t n = (int64_t)x.size();
  const uint16_t* h = x.data();
  vector<int32_t> want(65536), c32(65536);
  vector<uint16_t> c16(65536);
  double t32 = best_ns(n, [&] {
    fill(want.begin(), want.end(), 0);
    count(h, 0, n, want.data());
  });
  double t16 = best_ns(n, [&] {
    fill(c32.begin(), c32.end(), 0);
    for (int64_t b = 0; b < n; b += 65535) {
      count(h, b, min(n, b + 65535), c16.data());
      add16(c16.data(), c32.data());
    }
  });
  bool ok16 = c32 == want;
  vector<uint32_t> wraps(65536);
  double twrap = best_ns(n, [&] {
    fill(c16.begin(), c16.end(), 0);
    fill(wraps.begin(), wraps.end(), 0);
    count_wrap(h, n, c16.data(), wraps.data());
  });
  bool okwrap = true;
  for (int p = 0; p < 65536; ++p) okwrap &= (int64_t)wraps[p] * 65536 + c16[p] == want[p];
  double t16loop = best_ns(n, [&] {
    for (int64_t b = 0; b < n; b += 65535) count(h, b, min(n, b + 65535), c16.data());
  });
  // pair-hot
  vector<uint16_t> slot(65536);
  for (int p = 0; p < 65536; ++p) slot[p] = (uint16_t)slot_of(value((uint16_t)p));
  const int kSlots = 1560;
  vector<int64_t> sample(kSlots);
  for (int64_t i = 0; i < n; i += 97) sample[slot[h[i]]]++;
  vector<int> order(kSlots);
  for (int s = 0; s < kSlots; ++s) order[s] = s;
  sort(order.begin(), order.end(), [&](int a, int b) { return sample[a] > sample[b]; });
  vector<uint8_t> hot_of_slot(kSlots, 0xFF), hot(65536);
  for (int k = 0; k < 127; ++k) hot_of_slot[order[k]] = (uint8_t)k;
  for (int p = 0; p < 65536; ++p) hot[p] = hot_of_slot[slot[p]];
  vector<uint16_t> pairs(128 * 128);
  vector<int64_t> slots(kSlots);
  double tpair = best_ns(n, [&] {
    fill(slots.begin(), slots.end(), 0);
    for (int64_t b = 0; b < n; b += 131070) {  // <= 65535 increments per pair cell
      const int64_t e = min(n, b + 131070);
      int64_t i = b;
      for (; i + 4 <= e; i += 4) {
        uint64_t w;
        memcpy(&w, h + i, 8);
        const unsigned p0 = w & 0xFFFF, p1 = (w >> 16) & 0xFFFF, p2 = (w >> 32) & 0xFFFF, p3 = w >> 48;
        const unsigned a0 = hot[p0], a1 = hot[p1], a2 = hot[p2], a3 = hot[p3];
        if (__builtin_expect(((a0 | a1 | a2 | a3) & 0x80) != 0, 0)) {
          slots[slot[p0]]++, slots[slot[p1]]++, slots[slot[p2]]++, slots[slot[p3]]++;
        } else {
          pairs[(a0 << 7) | a1]++;
          pairs[(a2 << 7) | a3]++;
        }
      }
      for (; i < e; ++i) slots[slot[h[i]]]++;
      for (int a = 0; a < 127; ++a)
        for (int c = 0; c < 127; ++c) {
          const uint16_t m = pairs[(a << 7) | c];
          slots[order[a]] += m;
          slots[order[c]] += m;
        }
      fill(pairs.begin(), pairs.end(), 0);
    }
  });
  vector<int64_t> want_slots(kSlots);
  for (int p = 0; p < 65536; ++p) want_slots[slot[p]] += want[p];
  bool okpair = slots == want_slots;
  int64_t cold = 0;
  for (int64_t i = 0; i < n; ++i) cold += hot[h[i]] == 0xFF;
  printf("%-9s pattern32 %.3f  pattern16 %.3f%s  pattern16 loop %.3f  wrap16 %.3f%s  pair-hot %.3f%s (cold %.2f%%)\n", name, t32, t16,
         ok16 ? "" : " WRONG", t16loop, twrap, okwrap ? "" : " WRONG", tpair, okpair ? "" : " WRONG", 100.0 * cold / n);
}

int main() {
  const int64_t n = int64_t(1) << 25;
  mt19937 gen(1);
  for (int lines : {64, 512}) {  // 4 KiB or 32 KiB of lines, all in L1
    vector<uint16_t> k(n);
    for (auto& v : k) v = (uint16_t)(gen() % lines);
    vector<uint32_t> c(16 * lines + 16);
    double s1 = best_ns(n, [&] { store1(k.data(), n, c.data()); });
    double s2 = best_ns(2 * n, [&] { store2(k.data(), n, c.data()); });
    for (auto& v : k) v = (uint16_t)(16 * v);  // one counter per line
    double inc = best_ns(n, [&] { count(k.data(), 0, n, c.data()); });
    printf("%3d lines store %.3f  store pairs %.3f  increment %.3f (ns per store)\n", lines, s1, s2, inc);
  }
  normal_distribution<float> nd;
  vector<float> f(n);
  for (auto& v : f) v = nd(gen);
  vector<uint16_t> x(n);
  for (int64_t i = 0; i < n; ++i) x[i] = to_bf16(f[i]);
  part2("bfloat16", x, bf16_value);
  for (int64_t i = 0; i < n; ++i) x[i] = _cvtss_sh(f[i], 0);
  part2("float16", x, [](uint16_t p) { return _cvtsh_ss(p); });
  // wrap16 on float16 data of wider range
  uniform_real_distribution<float> decades(-7.0f, 2.0f);
  vector<uint16_t> c16(65536);
  vector<uint32_t> wraps(65536);
  for (int d = 0; d < 2; ++d) {
    for (int64_t i = 0; i < n; ++i) {
      const float a = nd(gen), b = nd(gen);
      const float v = d == 0 ? 1e-3f * a / (fabsf(b) + 1e-3f) : copysignf(powf(10.0f, decades(gen)), a);
      x[i] = _cvtss_sh(v, 0);
    }
    double t = best_ns(n, [&] { count_wrap(x.data(), n, c16.data(), wraps.data()); });
    printf("float16   wrap16 %.3f on %s\n", t, d == 0 ? "a ratio of normals (heavy tails)" : "magnitudes log-uniform over 1e-7..1e2");
  }
}
