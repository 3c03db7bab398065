// csrc/cuda/histogram_cuda.cu (converted by convert.py, run on cuda_sim.h) against the CPU kernels
// csrc/cpu/histogram_cpu.cpp on random configurations.
//
// The device-side arrays are built exactly as tbfast/histogram.py `_native_cuda` builds them: one
// packed int64 table [pointers T | numels T | chunk offsets T+1 (kCudaChunk elements per chunk) |
// dtypes as int32, padded to an even count | ranges 2T (UNIFORM)], the edges and the EdgeLookup
// from build_edge_lookup as device constants, the outputs as one packed int64 buffer [counts T*B |
// stats 4T | nonfinite 3T | numel T] (the numel words must stay untouched), a scratch of
// histogram_cuda_scratch_bytes, all poisoned before the call ("every output is fully written").
// The CPU side runs as `_native_cpu` does (statistics pass first except for EDGES).
//
// Covered: all 13 dtypes (one per call or mixed), every mode (TensorBoard's default edges, user
// edges incl. duplicates, infinities and dense clusters, equal-width bins with per-tensor ranges,
// equal-width bins over the data's range), bin counts from 1 to beyond what fits in shared
// memory, NaN / +-Inf / +-0 / subnormals, values on edges and one ulp (of the dtype) around them,
// tiny tensors, many tensors of mixed sizes in one call, sizes around multiples of the CUDA chunk
// (65536) and slice (16384), data pointers at every element offset (unaligned heads / tails of the
// vector loads), emulated devices with different SM counts, occupancy and opt-in shared memory.
//
// Checks: counts equal (CUDA vs CPU); nonfinite and finite min / max equal to an independent
// reference (both kernels); sums and sums of squares within the float64 error bound of a long
// double reference (both kernels); every CUDA run repeated on another emulated device (another
// grid) with another schedule must give bit-identical results, sums included.
//
// The first iterations are directed configurations (kDirected: shared-memory limits, chunk
// boundaries, the global-atomics paths), the rest random.
//
//   emulate_histogram [--iters N] [--seed S] [-v] [--lenient-smem-default]
//   exit status 1 on any mismatch
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cuda_sim.h"
#include "cuda/device_cuda.h"
#include "histogram.h"

using namespace tbfast;

static std::mt19937_64 rng;
static double U() { return std::uniform_real_distribution<double>(0, 1)(rng); }
static int64_t RI(int64_t a, int64_t b) { return std::uniform_int_distribution<int64_t>(a, b)(rng); }
static uint64_t RU() { return rng(); }
template <typename T>
static T pick(std::initializer_list<T> v) {
  return v.begin()[RI(0, (int64_t)v.size() - 1)];
}

static const int kSize[kNumDTypes] = {1, 1, 1, 2, 4, 8, 2, 2, 4, 8, 2, 4, 8};
static const char* kName[kNumDTypes] = {"bool",    "uint8",    "int8",    "int16",  "int32",  "int64", "float16",
                                        "bfloat16", "float32", "float64", "uint16", "uint32", "uint64"};
static bool is_float(int dt) { return dt == kFloat16 || dt == kBFloat16 || dt == kFloat32 || dt == kFloat64; }

// ---- values ------------------------------------------------------------------------------------

static uint16_t f2h(double v) {
  _Float16 h = (_Float16)(float)v;  // float first: what torch's .half() of a float32 does
  if (std::fabs(v) < 65520.0 || v != v) h = (_Float16)v;
  uint16_t b;
  memcpy(&b, &h, 2);
  return b;
}
static uint16_t f2bf(double v) {
  float f = (float)v;
  uint32_t b;
  memcpy(&b, &f, 4);
  if ((b & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((b >> 16) | 0x40u);
  b += 0x7fffu + ((b >> 16) & 1u);
  return (uint16_t)(b >> 16);
}

// The value as the kernels see it (Load<T>::get).
static double load(int dt, const uint8_t* p) {
  switch (dt) {
    case kBool: return *p ? 1.0 : 0.0;
    case kUInt8: return (double)*p;
    case kInt8: { int8_t v; memcpy(&v, p, 1); return (double)v; }
    case kInt16: { int16_t v; memcpy(&v, p, 2); return (double)v; }
    case kInt32: { int32_t v; memcpy(&v, p, 4); return (double)v; }
    case kInt64: { int64_t v; memcpy(&v, p, 8); return (double)v; }
    case kUInt16: { uint16_t v; memcpy(&v, p, 2); return (double)v; }
    case kUInt32: { uint32_t v; memcpy(&v, p, 4); return (double)v; }
    case kUInt64: { uint64_t v; memcpy(&v, p, 8); return (double)v; }
    case kFloat16: { _Float16 v; memcpy(&v, p, 2); return (double)v; }
    case kBFloat16: {
      uint16_t v;
      memcpy(&v, p, 2);
      const uint32_t b = (uint32_t)v << 16;
      float f;
      memcpy(&f, &b, 4);
      return f;
    }
    case kFloat32: { float v; memcpy(&v, p, 4); return (double)v; }
    default: { double v; memcpy(&v, p, 8); return v; }
  }
}

// A float value stored in dtype dt; `nudge` moves it by that many units of its bit pattern
// (neighbouring representable values).
static void store_float(int dt, uint8_t* p, double v, int nudge) {
  switch (dt) {
    case kFloat16: { uint16_t b = (uint16_t)(f2h(v) + nudge); memcpy(p, &b, 2); break; }
    case kBFloat16: { uint16_t b = (uint16_t)(f2bf(v) + nudge); memcpy(p, &b, 2); break; }
    case kFloat32: { float f = (float)v; uint32_t b; memcpy(&b, &f, 4); b += (uint32_t)nudge; memcpy(p, &b, 4); break; }
    default: { uint64_t b; memcpy(&b, &v, 8); b += (uint64_t)(int64_t)nudge; memcpy(p, &b, 8); break; }
  }
}

// An integer of dtype dt near v (clamped into the dtype's range), +- nudge.
static void store_int(int dt, uint8_t* p, long double v, int nudge) {
  long double lo, hi;
  switch (dt) {
    case kBool: lo = 0; hi = 1; break;
    case kUInt8: lo = 0; hi = 255; break;
    case kInt8: lo = -128; hi = 127; break;
    case kInt16: lo = -32768; hi = 32767; break;
    case kUInt16: lo = 0; hi = 65535; break;
    case kInt32: lo = -2147483648.0L; hi = 2147483647.0L; break;
    case kUInt32: lo = 0; hi = 4294967295.0L; break;
    case kInt64: lo = -9223372036854775808.0L; hi = 9223372036854775807.0L; break;
    default: lo = 0; hi = 18446744073709551615.0L; break;
  }
  if (v != v) v = 0;
  v = floorl(v) + nudge;
  v = v < lo ? lo : v > hi ? hi : v;
  switch (dt) {
    case kBool: case kUInt8: { uint8_t x = (uint8_t)v; memcpy(p, &x, 1); break; }
    case kInt8: { int8_t x = (int8_t)v; memcpy(p, &x, 1); break; }
    case kInt16: { int16_t x = (int16_t)v; memcpy(p, &x, 2); break; }
    case kUInt16: { uint16_t x = (uint16_t)v; memcpy(p, &x, 2); break; }
    case kInt32: { int32_t x = (int32_t)v; memcpy(p, &x, 4); break; }
    case kUInt32: { uint32_t x = (uint32_t)v; memcpy(p, &x, 4); break; }
    case kInt64: { int64_t x = v >= 9223372036854775807.0L ? INT64_MAX : (int64_t)v; memcpy(p, &x, 8); break; }
    default: { uint64_t x = v >= 18446744073709551615.0L ? UINT64_MAX : (uint64_t)v; memcpy(p, &x, 8); break; }
  }
}

// tbfast/histogram.py _default_edges: v = 1e-12, times 1.1 while v < 1e20, mirrored, plus 0.
static std::vector<double> default_edges() {
  std::vector<double> pos;
  for (double v = 1e-12; v < 1e20; v *= 1.1) pos.push_back(v);
  std::vector<double> e;
  for (size_t i = pos.size(); i-- > 0;) e.push_back(-pos[i]);
  e.push_back(0.0);
  for (double v : pos) e.push_back(v);
  return e;
}

struct Tensor {
  int dtype;
  int64_t n;
  size_t offset;  // bytes after a 512-byte boundary (a view into a torch allocation)
  std::vector<uint8_t> bytes;
};

// Fills one tensor. `targets`: values worth hitting exactly (edges, range ends); `lo`, `hi`: the
// interesting range of values.
static void fill(Tensor& t, const std::vector<double>& targets, double lo, double hi, int style) {
  const int dt = t.dtype, es = kSize[dt];
  t.bytes.assign((size_t)std::max<int64_t>(t.n, 1) * es, 0);
  const double p_special = style == 1 ? 0.3 : style == 2 ? 0.0 : 0.03;
  const bool constant = style == 3;  // one value repeated (runs of one bin)
  double cval = targets.empty() ? 1.0 : targets[(size_t)RI(0, (int64_t)targets.size() - 1)];
  for (int64_t i = 0; i < t.n; ++i) {
    uint8_t* p = t.bytes.data() + i * es;
    const double r = U();
    if (is_float(dt)) {
      double v;
      int nudge = 0;
      if (constant) {
        v = cval;
      } else if (r < p_special) {
        v = pick<double>({NAN, -NAN, INFINITY, -INFINITY, 0.0, -0.0, 4.9406564584124654e-324, -2.2250738585072014e-308,
                          1.401298464324817e-45, 5.960464477539063e-08, 3.4028234663852886e+38, -65504.0, 1e300,
                          -1e150, 1e-310});
        if (dt != kFloat64 && std::fabs(v) > 1e39) v = v > 0 ? INFINITY : -INFINITY;
      } else if (r < 0.45 && !targets.empty()) {
        v = targets[(size_t)RI(0, (int64_t)targets.size() - 1)];
        nudge = (int)RI(-2, 2);
      } else if (r < 0.6) {
        // log-uniform magnitudes, both signs
        v = std::pow(10.0, -14.0 + U() * 36.0) * (RI(0, 1) ? 1 : -1);
      } else {
        v = lo + (hi - lo) * (U() * 1.2 - 0.1);
      }
      store_float(dt, p, v, nudge);
      // Sums must not overflow in one order and not in another: finite values stay below 1e150
      // (squares below 1e300) or are +-1e300 (squares always overflow).
      const double got = load(dt, p);
      if (std::isfinite(got) && std::fabs(got) > 1e150 && std::fabs(got) != 1e300)
        store_float(dt, p, std::copysign(std::fabs(got) > 1e250 ? 1e300 : 1e150, got), 0);
    } else {
      if (constant) {
        store_int(dt, p, (long double)cval, 0);
      } else if (r < 0.05) {
        store_int(dt, p, pick<long double>({-1e30L, 1e30L, 0.0L, -1.0L, 1.0L}), (int)RI(-1, 1));  // extremes, 0, +-1
      } else if (r < 0.45 && !targets.empty()) {
        store_int(dt, p, (long double)targets[(size_t)RI(0, (int64_t)targets.size() - 1)], (int)RI(-1, 1));
      } else if (r < 0.55 && (dt == kInt64 || dt == kUInt64)) {
        uint64_t b = RU() >> RI(0, 20);  // beyond 2^53: conversions round
        memcpy(p, &b, 8);
        if (dt == kInt64 && RI(0, 1)) {
          int64_t s;
          memcpy(&s, p, 8);
          s = -s;
          memcpy(p, &s, 8);
        }
      } else {
        store_int(dt, p, (long double)(lo + (hi - lo) * (U() * 1.2 - 0.1)), 0);
      }
    }
  }
}

// ---- directed configurations (the first iterations), then random ones -------------------------

// -1: drawn at random. mode_pick: 0 default edges, 2 user edges, 3 uniform, 4 uniform auto.
struct Directed {
  int mode_pick, edges_kind;
  int64_t num_edges_or_bins;
  int shape;  // 0..5 few tensors, 6..7 many, 8..9 chunk boundaries
  int dtype;
  int64_t numel;
  int device;
  const char* why;
};
static const Directed kDirected[] = {
    // the count kernel's dynamic shared memory just below / at 48 KiB: float32 table (32 KiB) +
    // 4 copies of 1002 slots = 48800 bytes, + 2 copies of 2048 slots = 49152 bytes
    {2, 0, 1000, 0, kUInt8, 4097, 0, "user edges, 1000 bins: table + histogram copies just under 48 KiB"},
    {2, 0, 2046, 0, kFloat16, 16385, 2, "user edges, 2046 bins: table + histogram copies = 48 KiB"},
    {0, -1, -1, 8, kFloat32, kCudaChunk + 3, 0, "default edges, chunk + 3 float32"},
    {0, -1, -1, 8, kFloat64, kCudaChunk - 3, 3, "default edges, chunk - 3 float64"},
    {2, 5, 20000, 0, kFloat32, 5000, 0, "20000 bins: shared-memory histogram past 48 KiB (opt-in)"},
    {2, 5, 25100, 0, kInt32, 5000, 0, "25100 bins: one histogram copy of 100408 bytes, fits the H100 opt-in"},
    {2, 5, 25100, 0, kInt32, 5000, 3, "25100 bins: does not fit a 99 KiB opt-in: global atomics"},
    {3, -1, 30000, 0, kInt64, 5000, 1, "30000 equal-width bins: global atomics"},
    {4, -1, -1, 6, -1, -1, 2, "uniform auto, many tensors of mixed dtypes"},
};
static const int kNumDirected = (int)(sizeof kDirected / sizeof kDirected[0]);

// ---- one configuration -------------------------------------------------------------------------

struct Result {
  std::vector<int64_t> counts, nonfinite;
  std::vector<double> stats;
  int rc = 0;
  std::string why;
};

static bool same_bits(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

int main(int argc, char** argv) {
  sim::Args args = sim::parse_args(argc, argv, 40);
  rng.seed(args.seed);
  sim::set_seed(args.seed);
  // Emulated devices (the kernel caches per-device facts, so each keeps its properties): SMs,
  // resident blocks per SM (occupancy cap), 48 KiB, opt-in shared memory per block and per SM,
  // threads per SM, compute capability of H100, sm_86, A100, sm_89 (every GPU tbfast builds for
  // has at least 99 KiB of opt-in shared memory).
  sim::cfg().devices = {{2, 2, 48 * 1024, 232448, 233472, 2048, 9, 0},
                        {1, 1, 48 * 1024, 101376, 102400, 1536, 8, 6},
                        {3, 4, 48 * 1024, 166912, 167936, 2048, 8, 0},
                        {2, 3, 48 * 1024, 101376, 102400, 1536, 8, 9}};
  const int ndev = (int)sim::cfg().devices.size();
  cudaStream_t stream;
  cudaStreamCreate(&stream);
  const std::vector<double> tb_edges = default_edges();
  int fails = 0;
  long long elements = 0;

  for (long it = 0; it < args.iters; ++it) {
    const Directed* dir = it < kNumDirected ? &kDirected[it] : nullptr;
    // -- bins --
    int mode_pick = (int)RI(0, 5);  // 0, 1: default edges; 2: user edges; 3: uniform; 4, 5: uniform auto
    if (dir) mode_pick = dir->mode_pick;
    int mode;
    int64_t B;
    std::vector<double> edges;
    std::string bins_desc;
    if (mode_pick <= 1) {
      mode = kEdges;
      edges = tb_edges;
      bins_desc = "default edges";
    } else if (mode_pick == 2) {
      mode = kEdges;
      int kind = (int)RI(0, 5);
      int64_t n = kind == 5 ? pick<int64_t>({4095, 4096, 20000, 25100, 30000})
                            : pick<int64_t>({1, 2, 3, 10, 100, 1000, 2046, 3000});
      if (dir) {
        kind = dir->edges_kind;
        n = dir->num_edges_or_bins;
      }
      const double a = pick<double>({0.0, -1.0, -1e6, 1e-3, -7.25}), w = pick<double>({1.0, 10.0, 1e-6, 1e8, 255.0});
      for (int64_t i = 0; i <= n; ++i) edges.push_back(a + w * (double)i / (double)n);
      if (kind == 1) {  // random increasing, with duplicates
        for (auto& e : edges) e = a + w * U();
        std::sort(edges.begin(), edges.end());
        for (size_t i = 1; i < edges.size(); ++i)
          if (U() < 0.05) edges[i] = edges[i - 1];
      } else if (kind == 2) {  // dense cluster around 1.0 (several thresholds in one float32 / table key)
        const double step = pick<double>({1e-7, 1e-9, 3e-8});
        for (int64_t i = 0; i <= n; ++i) edges[(size_t)i] = 1.0 + (double)(i - n / 2) * step;
      } else if (kind == 3) {  // infinite outer edges (allowed by _resolve_bins)
        edges.front() = -INFINITY;
        if (RI(0, 1)) edges.back() = INFINITY;
      } else if (kind == 4) {  // integer edges, values on them
        const double step = std::max(1.0, std::floor(w / (double)n));
        for (int64_t i = 0; i <= n; ++i) edges[(size_t)i] = std::floor(a) + (double)i * step;
      }
      char b[96];
      snprintf(b, sizeof b, "user edges kind %d (%ld edges, %g..%g)", kind, (long)edges.size(), edges.front(),
               edges.back());
      bins_desc = b;
    } else {
      mode = mode_pick == 3 ? kUniform : kUniformAuto;
      bins_desc = mode == kUniform ? "uniform with ranges" : "uniform over the data's range";
    }
    if (mode == kEdges) {
      B = (int64_t)edges.size() - 1;
    } else {
      B = pick<int64_t>({1, 2, 7, 10, 30, 100, 1000, 1000, 20000, 30000});
      if (dir && dir->num_edges_or_bins > 0) B = dir->num_edges_or_bins;
    }

    // -- tensors --
    // 0..5: a few tensors; 6, 7: many small ones; 8, 9: sizes around chunk boundaries
    const int shape = dir ? dir->shape : (int)RI(0, 9);
    int64_t T = shape <= 5 ? RI(1, 4) : shape <= 7 ? RI(10, 40) : RI(1, 3);
    if (dir && dir->numel >= 0) T = 1;
    const bool one_dtype = dir ? dir->dtype >= 0 : RI(0, 2) != 0;
    const int dt0 = dir && dir->dtype >= 0 ? dir->dtype : (int)RI(0, kNumDTypes - 1);
    std::vector<Tensor> ts((size_t)T);
    int64_t total = 0;
    for (auto& t : ts) {
      t.dtype = one_dtype ? dt0 : (int)RI(0, kNumDTypes - 1);
      if (shape <= 5)
        t.n = pick<int64_t>(
            {1, 2, 3, 5, 15, 16, 17, 31, 33, 100, 255, 257, 1000, 4095, 4097, 16383, 16384, 16385, 20000});
      else if (shape <= 7)
        t.n = RI(0, 9) == 0 ? 0 : pick<int64_t>({1, 2, 3, 7, 8, 9, 64, 100, 500, 2000});
      else
        t.n = pick<int64_t>({kCudaChunk - 3, kCudaChunk - 1, kCudaChunk, kCudaChunk + 1, kCudaChunk + 3,
                             3 * (kCudaChunk / 4) + 1, 2 * kCudaChunk + 2});
      if (B > 10000) t.n = std::min<int64_t>(t.n, 5000);  // global atomics: keep it short
      if (dir && dir->numel >= 0) t.n = dir->numel;
      t.offset = RI(0, 2) == 0 ? (size_t)(kSize[t.dtype] * RI(1, 7)) : 0;
      total += t.n;
    }
    if (total == 0) ts[0].n = 1;

    // -- ranges (uniform) and values --
    std::vector<double> ranges;
    for (int64_t k = 0; k < T; ++k) {
      double lo, hi, first = 0, last = 1;
      std::vector<double> targets;
      if (mode == kEdges) {
        lo = std::isfinite(edges.front()) ? edges.front() : -1e6;
        hi = std::isfinite(edges.back()) ? edges.back() : 1e6;
        for (int j = 0; j < 64; ++j) targets.push_back(edges[(size_t)RI(0, B)]);
        targets.push_back(edges.front());
        targets.push_back(edges.back());
        if (edges.size() == tb_edges.size()) {  // default edges: the whole float range matters
          lo = -1e3;
          hi = 1e3;
        }
      } else {
        const int rk = (int)RI(0, 6);
        if (rk == 0) { first = -1.0; last = 1.0; }
        else if (rk == 1) { first = 0.0; last = pick<double>({255.0, 1.0, 1e-300, 3e-310}); }
        else if (rk == 2) { first = -1e300; last = 1e300; }
        else if (rk == 3) { first = -0.0; last = 1e-3; }
        else if (rk == 4) { first = (double)RI(-1000, 1000); last = first + (double)RI(1, 5000); }
        else {
          first = (U() - 0.5) * std::pow(10.0, (double)RI(-5, 9));
          last = first + U() * std::pow(10.0, (double)RI(-5, 9)) + 1e-300;
        }
        if (!(first < last)) last = std::nextafter(first, INFINITY);
        ranges.push_back(first);
        ranges.push_back(last);
        UniformBins u(first, last, B);
        for (int j = 0; j < 64; ++j) targets.push_back(u.edge(RI(0, B)));
        lo = first;
        hi = last;
      }
      const int style = (int)RI(0, 9) == 0 ? 1 : RI(0, 9) == 0 ? 3 : RI(0, 4) == 0 ? 2 : 0;
      fill(ts[(size_t)k], targets, lo, hi, style);
      elements += ts[(size_t)k].n;
    }
    if (mode == kUniformAuto && RI(0, 3) == 0)  // constant tensors: numpy's widened range
      for (auto& t : ts) fill(t, {pick<double>({0.0, 1.0, -3.5, 1e10})}, 0, 1, 3);

    const int dev = dir ? dir->device : (int)RI(0, ndev - 1);
    std::string dtypes;
    for (auto& t : ts)
      dtypes += std::string(dtypes.empty() ? "" : ",") + kName[t.dtype] + ":" + std::to_string(t.n) +
                (t.offset ? "+" + std::to_string(t.offset) : "");
    char ctx[1024];
    snprintf(ctx, sizeof ctx,
             "emulate_histogram --seed %llu: iteration %ld%s%s%s: mode=%d (%s) bins=%ld T=%ld device=%d tensors=[%s]",
             (unsigned long long)args.seed, it, dir ? " (directed: " : "", dir ? dir->why : "", dir ? ")" : "", mode,
             bins_desc.c_str(), (long)B, (long)T, dev,
             dtypes.size() > 600 ? (dtypes.substr(0, 600) + "...").c_str() : dtypes.c_str());
    sim::set_context(ctx);

    // -- independent reference: nonfinite, min, max, sum of |x|, sum of squares --
    std::vector<double> ref_mn((size_t)T, INFINITY), ref_mx((size_t)T, -INFINITY);
    std::vector<double> ref_abs((size_t)T, 0), ref_sq((size_t)T, 0);
    std::vector<long double> ref_sum((size_t)T, 0);
    std::vector<int64_t> ref_nf((size_t)(3 * T), 0);
    for (int64_t k = 0; k < T; ++k) {
      const Tensor& t = ts[(size_t)k];
      long double sa = 0, sq = 0;
      for (int64_t i = 0; i < t.n; ++i) {
        const double v = load(t.dtype, t.bytes.data() + i * kSize[t.dtype]);
        if (v != v) { ref_nf[(size_t)(3 * k)]++; continue; }
        if (v == INFINITY) { ref_nf[(size_t)(3 * k + 1)]++; continue; }
        if (v == -INFINITY) { ref_nf[(size_t)(3 * k + 2)]++; continue; }
        ref_mn[(size_t)k] = std::min(ref_mn[(size_t)k], v);
        ref_mx[(size_t)k] = std::max(ref_mx[(size_t)k], v);
        ref_sum[(size_t)k] += v;
        sa += std::fabs((long double)v);
        sq += (long double)v * v;
      }
      ref_abs[(size_t)k] = (double)sa;
      ref_sq[(size_t)k] = (double)sq;
    }

    // -- CPU: as _native_cpu --
    std::unique_ptr<EdgeLookup> lookup(new EdgeLookup());
    if (mode == kEdges) build_edge_lookup(edges.data(), (int64_t)edges.size(), lookup.get());
    std::vector<uint64_t> hptr((size_t)T);
    std::vector<int64_t> numels((size_t)T);
    std::vector<int32_t> codes((size_t)T);
    for (int64_t k = 0; k < T; ++k) {
      hptr[(size_t)k] = (uint64_t)ts[(size_t)k].bytes.data();
      numels[(size_t)k] = ts[(size_t)k].n;
      codes[(size_t)k] = ts[(size_t)k].dtype;
    }
    Result cpu;
    cpu.counts.assign((size_t)(T * B), -7);
    cpu.stats.assign((size_t)(4 * T), -7.0);
    cpu.nonfinite.assign((size_t)(3 * T), -7);
    {
      HistogramParams h{};
      h.num_tensors = T;
      h.data = hptr.data();
      h.numels = numels.data();
      h.dtypes = codes.data();
      h.mode = mode;
      h.num_bins = B;
      h.edges = mode == kEdges ? edges.data() : nullptr;
      h.lookup = mode == kEdges ? lookup.get() : nullptr;
      h.ranges = mode == kUniform ? ranges.data() : nullptr;
      h.counts = cpu.counts.data();
      h.stats = cpu.stats.data();
      h.nonfinite = cpu.nonfinite.data();
      h.num_threads = 2;
      if (mode != kEdges) {
        cpu.rc = histogram_stats_cpu(h);
        if (!cpu.rc) cpu.rc = histogram_count_cpu(h, false);
      } else {
        cpu.rc = histogram_count_cpu(h, true);
      }
    }

    // -- CUDA: as _native_cuda --
    std::vector<sim::DeviceArray<uint8_t>> dbuf;
    std::vector<int64_t> offsets((size_t)T + 1, 0);
    for (int64_t k = 0; k < T; ++k)
      offsets[(size_t)k + 1] = offsets[(size_t)k] + (numels[(size_t)k] + kCudaChunk - 1) / kCudaChunk;
    const int64_t num_chunks = offsets[(size_t)T];
    std::vector<int32_t> codes_padded((size_t)(T + (T & 1)), 0);
    for (int64_t k = 0; k < T; ++k) codes_padded[(size_t)k] = codes[(size_t)k];
    std::vector<int64_t> table;
    for (int64_t k = 0; k < T; ++k) {
      const Tensor& t = ts[(size_t)k];
      const size_t nbytes = (size_t)t.n * kSize[t.dtype];
      dbuf.emplace_back(nbytes, "tensor " + std::to_string(k) + " (" + kName[t.dtype] + ")", 512, t.offset);
      sim::copy_to_device(dbuf.back().ptr, t.bytes.data(), nbytes);
      table.push_back((int64_t)(uintptr_t)dbuf.back().ptr);
    }
    table.insert(table.end(), numels.begin(), numels.end());
    table.insert(table.end(), offsets.begin(), offsets.end());
    {
      std::vector<int64_t> words(codes_padded.size() / 2);
      memcpy(words.data(), codes_padded.data(), codes_padded.size() * 4);
      table.insert(table.end(), words.begin(), words.end());
    }
    if (mode == kUniform) {
      std::vector<int64_t> words(ranges.size());
      memcpy(words.data(), ranges.data(), ranges.size() * 8);
      table.insert(table.end(), words.begin(), words.end());
    }
    sim::DeviceArray<int64_t> d_meta(table, "descriptor table", 512);
    const uintptr_t base = (uintptr_t)d_meta.ptr;
    sim::DeviceArray<double> d_edges, d_lookup_words;
    sim::DeviceArray<uint8_t> d_lookup;
    if (mode == kEdges) {
      d_edges = sim::DeviceArray<double>(edges, "edges", 512);
      d_lookup = sim::DeviceArray<uint8_t>(sizeof(EdgeLookup), "EdgeLookup", 512);
      sim::copy_to_device(d_lookup.ptr, lookup.get(), sizeof(EdgeLookup));
    }
    const int64_t words = T * B + 4 * T + 3 * T + T;
    sim::DeviceArray<int64_t> d_out((size_t)words, "packed output", 512);
    HistogramParams q{};
    q.num_tensors = T;
    q.num_chunks = num_chunks;
    q.num_bins = B;
    q.mode = mode;
    const int64_t nbytes = histogram_cuda_scratch_bytes(q);  // what the binding computes
    sim::DeviceArray<uint8_t> d_scratch((size_t)std::max<int64_t>(1, nbytes), "scratch", 512);
    q.data = reinterpret_cast<const uint64_t*>(base);
    q.numels = reinterpret_cast<const int64_t*>(base + 8 * T);
    q.chunk_offsets = reinterpret_cast<const int64_t*>(base + 16 * T);
    q.dtypes = reinterpret_cast<const int32_t*>(base + 8 * (3 * T + 1));
    q.ranges = mode == kUniform
                   ? reinterpret_cast<const double*>(base + 8 * (3 * T + 1 + (int64_t)codes_padded.size() / 2))
                   : nullptr;
    q.edges = mode == kEdges ? d_edges.ptr : nullptr;
    q.lookup = mode == kEdges ? reinterpret_cast<const EdgeLookup*>(d_lookup.ptr) : nullptr;
    q.counts = d_out.ptr;
    q.stats = reinterpret_cast<double*>(d_out.ptr + T * B);
    q.nonfinite = d_out.ptr + T * B + 4 * T;
    q.num_threads = 1;
    q.scratch = d_scratch.ptr;
    q.scratch_bytes = nbytes;
    q.stream = stream;

    Result gpu[2];
    int devs[2] = {dev, (dev + 1 + (int)RI(0, ndev - 2)) % ndev};
    for (int run = 0; run < 2; ++run) {
      Result& g = gpu[run];
      cudaSetDevice(devs[run]);
      sim::set_seed(args.seed * 1000003 + (uint64_t)it * 2 + (uint64_t)run);
      d_out.fill_bytes(run ? 0xA7 : 0x5C);  // poison: every output must be written
      d_scratch.fill_bytes(run ? 0x3E : 0xC1);
      const sim::Counters before = sim::counters();
      const size_t log0 = sim::stream_log().size();
      g.rc = histogram_cuda(q);
      g.why = sim::check_async_contract(before, log0, stream);
      if (g.rc == kCudaError) g.why += std::string(" cuda error: ") + cuda_last_error_message();
      const std::vector<int64_t> out = d_out.download();
      g.counts.assign(out.begin(), out.begin() + T * B);
      g.stats.resize((size_t)(4 * T));
      memcpy(g.stats.data(), out.data() + T * B, (size_t)(4 * T) * 8);
      g.nonfinite.assign(out.begin() + T * B + 4 * T, out.begin() + T * B + 7 * T);
      int64_t poison;
      memset(&poison, run ? 0xA7 : 0x5C, 8);
      for (int64_t k = 0; k < T; ++k)
        if (out[(size_t)(T * B + 7 * T + k)] != poison) {
          g.why += " wrote into the packed buffer's numel words";
          break;
        }
    }

    // -- compare --
    std::string why;
    auto note = [&](const char* fmt, auto... a) {
      if (why.size() > 1500) return;
      char b[320];
      snprintf(b, sizeof b, fmt, a...);
      why += "\n    ";
      why += b;
    };
    if (cpu.rc != 0) note("CPU kernel returned %d", cpu.rc);
    for (int run = 0; run < 2; ++run) {
      if (gpu[run].rc != 0) note("CUDA run %d (device %d) returned %d", run, devs[run], gpu[run].rc);
      if (!gpu[run].why.empty()) note("CUDA run %d (device %d): %s", run, devs[run], gpu[run].why.c_str());
    }
    const Result& g = gpu[0];
    for (int64_t k = 0; k < T && cpu.rc == 0 && g.rc == 0; ++k) {
      const int64_t n = ts[(size_t)k].n;
      int64_t nd = 0, first = -1;
      for (int64_t b = 0; b < B; ++b)
        if (cpu.counts[(size_t)(k * B + b)] != g.counts[(size_t)(k * B + b)]) {
          if (first < 0) first = b;
          nd++;
        }
      if (nd) {
        const int64_t b = first;
        note("tensor %ld (%s, %ld elements): %ld bins differ, first bin %ld [%.17g, %.17g): cpu=%ld cuda=%ld", (long)k,
             kName[ts[(size_t)k].dtype], (long)n, (long)nd, (long)b,
             mode == kEdges ? edges[(size_t)b] : (double)b, mode == kEdges ? edges[(size_t)b + 1] : (double)b + 1,
             (long)cpu.counts[(size_t)(k * B + b)], (long)g.counts[(size_t)(k * B + b)]);
      }
      for (int j = 0; j < 3; ++j) {
        const int64_t r = ref_nf[(size_t)(3 * k + j)];
        if (cpu.nonfinite[(size_t)(3 * k + j)] != r || g.nonfinite[(size_t)(3 * k + j)] != r)
          note("tensor %ld: nonfinite[%d] expected %ld cpu=%ld cuda=%ld", (long)k, j, (long)r,
               (long)cpu.nonfinite[(size_t)(3 * k + j)], (long)g.nonfinite[(size_t)(3 * k + j)]);
      }
      const double* cs = &cpu.stats[(size_t)(4 * k)];
      const double* gs = &g.stats[(size_t)(4 * k)];
      if (!(cs[0] == ref_mn[(size_t)k] && gs[0] == ref_mn[(size_t)k]))
        note("tensor %ld: min expected %.17g cpu=%.17g cuda=%.17g", (long)k, ref_mn[(size_t)k], cs[0], gs[0]);
      if (!(cs[1] == ref_mx[(size_t)k] && gs[1] == ref_mx[(size_t)k]))
        note("tensor %ld: max expected %.17g cpu=%.17g cuda=%.17g", (long)k, ref_mx[(size_t)k], cs[1], gs[1]);
      // float64 sums in any order: within (n - 1) * 2^-53 * sum|x| of the exact sum (with slack
      // for the reference's own rounding); sums of squares likewise relative to themselves.
      const double eps = std::ldexp(1.0, -53) * (double)(n + 2) * 1.01;
      const double es = eps * ref_abs[(size_t)k] + 1e-300, eq = 2 * eps * ref_sq[(size_t)k] + 1e-300;
      const double rs = (double)ref_sum[(size_t)k];
      auto close = [](double a, double r, double tol) { return a == r || std::fabs(a - r) <= tol; };
      if (!close(cs[2], rs, es) || !close(gs[2], rs, es))
        note("tensor %ld: sum expected %.17g (+- %.3g) cpu=%.17g cuda=%.17g", (long)k, rs, es, cs[2], gs[2]);
      if (!close(cs[3], ref_sq[(size_t)k], eq) || !close(gs[3], ref_sq[(size_t)k], eq))
        note("tensor %ld: sum of squares expected %.17g (+- %.3g) cpu=%.17g cuda=%.17g", (long)k, ref_sq[(size_t)k], eq,
             cs[3], gs[3]);
    }
    if (gpu[1].rc == 0 && g.rc == 0) {
      int64_t nd = 0;
      for (size_t i = 0; i < g.counts.size(); ++i) nd += g.counts[i] != gpu[1].counts[i];
      for (size_t i = 0; i < g.nonfinite.size(); ++i) nd += g.nonfinite[i] != gpu[1].nonfinite[i];
      for (size_t i = 0; i < g.stats.size(); ++i)
        if (!same_bits(g.stats[i], gpu[1].stats[i])) {
          if (nd < 1000)
            note("stats[%zu] (tensor %zu, field %zu) differ between CUDA runs on devices %d and %d: %.17g vs %.17g", i,
                 i / 4, i % 4, devs[0], devs[1], g.stats[i], gpu[1].stats[i]);
          nd += 1000;
        }
      if (nd)
        note("CUDA results differ between two runs (devices %d and %d, other schedules): %ld values", devs[0], devs[1],
             (long)nd);
    }
    const bool ok = why.empty();
    if (!ok || args.verbose) printf("%s %s%s\n", ok ? "ok  " : "FAIL", ctx, why.c_str());
    fflush(stdout);
    fails += !ok;
  }
  sim::set_context("");
  const sim::Counters& c = sim::counters();
  printf("emulate_histogram: %ld configurations, %d failed; %lld elements, %lld launches, %lld context switches, "
         "%lld atomics\n",
         args.iters, fails, elements, c.launches, c.switches, c.atomics);
  return fails != 0;
}
