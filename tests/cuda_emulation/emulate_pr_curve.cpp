// csrc/cuda/pr_curve_cuda.cu (converted by convert.py, run on cuda_sim.h) against the CPU kernel
// csrc/cpu/pr_curve_cpu.cpp on random configurations: every prediction / label dtype, binary and
// multi-class, label matrix and class indices, probabilities / softmax / sigmoid, weighted
// (scalar, float32, float64 weights) and unweighted, shared and global counters, bad values.
// Counts and bad counts must be equal. Weighted sums: with a scalar weight, exactly the kernel's
// contract (start + the exact sum of the weights truncated to multiples of 2^-64, rounded once);
// always within the float64 error bound of the CPU's sums; and bit-identical between two CUDA runs
// on different emulated devices (grid sizes) and schedules. Every call must enqueue on the given
// stream only, without synchronising or allocating.
//
//   emulate_pr_curve [--iters N] [--seed S] [-v]     exit status 1 on any mismatch
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cuda_sim.h"
#include "cuda/device_cuda.h"
#include "pr_curve.h"

using namespace tbfast;

static std::mt19937_64 rng;
static double U() { return std::uniform_real_distribution<double>(0, 1)(rng); }
static int64_t RI(int64_t a, int64_t b) { return std::uniform_int_distribution<int64_t>(a, b)(rng); }
template <typename T>
static T pick(std::initializer_list<T> v) {
  return v.begin()[RI(0, (int64_t)v.size() - 1)];
}

static uint16_t f2h(float f) {
  _Float16 h = (_Float16)f;
  uint16_t b;
  memcpy(&b, &h, 2);
  return b;
}
static uint16_t f2bf(float f) {
  uint32_t b;
  memcpy(&b, &f, 4);
  if ((b & 0x7fffffff) > 0x7f800000) return 0x7fc0;
  b += 0x7fff + ((b >> 16) & 1);
  return (uint16_t)(b >> 16);
}
static int dsize(int d) {
  return d == kBool || d == kUInt8 ? 1 : d == kFloat16 || d == kBFloat16 ? 2 : d == kInt32 || d == kFloat32 ? 4 : 8;
}

// n * w, w truncated to a multiple of 2^-64 (as the kernel splits weights), rounded once to
// float64 (nearest, ties to even): the CUDA kernel's contribution of n items of weight w.
static double fixed_times(int64_t n, double w) {
  const unsigned long long hi = (unsigned long long)w;
  const unsigned long long lo = (unsigned long long)std::ldexp(w - (double)hi, 64);
  unsigned __int128 v = ((unsigned __int128)hi << 64 | lo) * (unsigned __int128)n;  // units of 2^-64
  if (v == 0) return 0.0;
  int bits = 0;
  for (unsigned __int128 t = v; t; t >>= 1) ++bits;
  int shift = bits > 53 ? bits - 53 : 0;
  unsigned __int128 m = v >> shift;
  if (shift) {
    const unsigned __int128 rest = v & (((unsigned __int128)1 << shift) - 1);
    const unsigned __int128 half = (unsigned __int128)1 << (shift - 1);
    if (rest > half || (rest == half && (m & 1))) ++m;
  }
  return std::ldexp((double)(unsigned long long)m, shift - 64);  // m <= 2^53: exact
}

int main(int argc, char** argv) {
  sim::Args args = sim::parse_args(argc, argv, 60);
  rng.seed(args.seed);
  sim::set_seed(args.seed);
  // Emulated devices: SM counts and resident blocks per SM (grid = a persistent wave of them).
  sim::cfg().devices = {{1, 1, 48 * 1024, 232448, 233472, 2048, 9, 0},
                        {2, 2, 48 * 1024, 232448, 233472, 2048, 9, 0},
                        {3, 2, 48 * 1024, 166912, 167936, 2048, 8, 0},
                        {2, 4, 48 * 1024, 101376, 102400, 1536, 8, 6}};
  const int ndev = (int)sim::cfg().devices.size();
  cudaStream_t stream;
  cudaStreamCreate(&stream);
  int fails = 0;
  for (long it = 0; it < args.iters; ++it) {
    const int dev = (int)RI(0, ndev - 1);
    const int pd = pick<int>({kFloat16, kBFloat16, kFloat32, kFloat64});
    const int ld = pick<int>({kBool, kUInt8, kInt32, kInt64, kFloat32, kFloat64});
    const int64_t C = pick<int64_t>({1, 1, 1, 2, 3, 7, 10, 33, 200});
    int64_t T = pick<int64_t>({2, 3, 11, 127, 128, 1000, 2049, 2050, 5000, 1 << 14, 1 << 20});
    if (C * T > (1 << 21)) T = 127;
    int lm = RI(0, 1) ? kLabelIndex : kLabelMatrix;
    if (ld == kBool && lm == kLabelIndex && C > 2) lm = kLabelMatrix;
    const int pm = pick<int>({kProbabilities, kProbabilities, kSoftmax, kSigmoid});
    const bool weighted = RI(0, 2) == 0;
    const int wmode = (int)RI(0, 2);  // 0 scalar, 1 float32, 2 float64
    int64_t N = pick<int64_t>({0, 1, 5, 100, 1000, 3000, 20000});
    if (N * C > 40000) N = 40000 / C;
    const double badp = pick<double>({0.0, 0.0, 0.01, 0.2});
    const int64_t E = N * C, L = lm == kLabelIndex ? N : E;
    char ctx[512];
    snprintf(ctx, sizeof ctx,
             "emulate_pr_curve --seed %llu: iteration %ld: pred_dtype=%d label_dtype=%d C=%ld T=%ld N=%ld "
             "label_mode=%d prob_mode=%d weighted=%d weight_mode=%d bad_fraction=%.2f device=%d",
             (unsigned long long)args.seed, it, pd, ld, (long)C, (long)T, (long)N, lm, pm, (int)weighted, wmode, badp,
             dev);
    sim::set_context(ctx);

    std::vector<uint8_t> pred((size_t)std::max<int64_t>(E, 1) * 8), lab((size_t)std::max<int64_t>(L, 1) * 8);
    std::vector<float> w32((size_t)std::max<int64_t>(N, 1));
    std::vector<double> w64((size_t)std::max<int64_t>(N, 1));
    for (int64_t e = 0; e < E; ++e) {
      double v;
      if (pm == kProbabilities) {
        const double r = U();
        if (r < 0.1)
          v = (double)RI(0, T - 1) / (double)(T - 1);  // on a threshold
        else if (r < 0.15)
          v = (double)RI(0, 1);
        else
          v = U();
      } else {
        v = (U() - 0.5) * 20.0;
      }
      if (U() < badp) v = pick<double>({NAN, -0.0, -1e-30, -0.5, 1.0000001, 2.0, INFINITY, -INFINITY});
      switch (pd) {
        case kFloat16: { uint16_t h = f2h((float)v); memcpy(&pred[2 * e], &h, 2); break; }
        case kBFloat16: { uint16_t h = f2bf((float)v); memcpy(&pred[2 * e], &h, 2); break; }
        case kFloat32: { float f = (float)v; memcpy(&pred[4 * e], &f, 4); break; }
        default: memcpy(&pred[8 * e], &v, 8);
      }
    }
    for (int64_t i = 0; i < L; ++i) {
      double v = lm == kLabelIndex ? (double)RI(0, C - 1) : (double)RI(0, 1);
      if (U() < badp) v = pick<double>({-1, 2, (double)C, 0.5, NAN, 255, -0.0});
      switch (ld) {
        case kBool: { uint8_t b = (v != v || v < 0) ? 1 : (uint8_t)((int)v != 0); memcpy(&lab[i], &b, 1); break; }
        case kUInt8: { uint8_t b = (v != v || v < 0) ? 200 : (uint8_t)v; memcpy(&lab[i], &b, 1); break; }
        case kInt32: { int32_t b = (v != v) ? 7 : (int32_t)v; memcpy(&lab[4 * i], &b, 4); break; }
        case kInt64: { int64_t b = (v != v) ? -9 : (int64_t)v; memcpy(&lab[8 * i], &b, 8); break; }
        case kFloat32: { float b = (float)v; memcpy(&lab[4 * i], &b, 4); break; }
        default: memcpy(&lab[8 * i], &v, 8);
      }
    }
    for (int64_t r = 0; r < N; ++r) {
      double w = U() * std::pow(2.0, (double)RI(-20, 20));
      if (U() < 0.05) w = 0.0;
      if (U() < 0.02) w = std::ldexp(1.0, -70) * (1 + U());  // finer than 2^-64: truncated
      // (weights >= 2^63 are bad on CUDA only, as csrc/pr_curve.h documents: not generated)
      if (U() < badp) w = pick<double>({-1.0, NAN, INFINITY, -0.0, -INFINITY, -1e-300});
      w32[(size_t)r] = (float)w;
      w64[(size_t)r] = wmode == 1 ? (double)w32[(size_t)r] : w;
    }
    const double wscalar = U() < 0.1 ? (badp > 0 ? -1.0 : 0.5) : U() * 3;
    const int64_t cells = C * T * 2;

    PRCurveParams p{};
    p.pred_dtype = pd;
    p.label_dtype = ld;
    p.weight_dtype = wmode == 1 ? kFloat32 : kFloat64;
    p.weight_scalar = wscalar;
    p.num_rows = N;
    p.num_classes = C;
    p.num_thresholds = T;
    p.label_mode = lm;
    p.prob_mode = pm;
    p.num_threads = 2;
    // the outputs are added to: start from arbitrary values
    std::vector<int64_t> c0((size_t)cells), b0(kNumBadKinds);
    std::vector<double> s0((size_t)cells);
    for (int64_t j = 0; j < cells; ++j) {
      c0[(size_t)j] = RI(0, 5);
      s0[(size_t)j] = (double)RI(0, 3) * 0.25;
    }
    for (auto& b : b0) b = RI(0, 2);

    // CPU reference, on host memory
    std::vector<int64_t> c_cpu = c0, b_cpu = b0;
    std::vector<double> s_cpu = s0;
    PRCurveParams h = p;
    h.predictions = pred.data();
    h.labels = lab.data();
    h.weights = weighted && wmode ? (wmode == 1 ? (const void*)w32.data() : (const void*)w64.data()) : nullptr;
    h.counts = weighted ? nullptr : c_cpu.data();
    h.wsums = weighted ? s_cpu.data() : nullptr;
    h.bad = b_cpu.data();
    const int rc_cpu = pr_curve_cpu(h);
    // Items per cell (bad weights aside): the unweighted CPU kernel on the same data. Used for the
    // error bound of the CPU's float64 sums and for the exact expected CUDA sums.
    std::vector<int64_t> n_cell((size_t)cells, 0), n_bad(kNumBadKinds, 0);
    int rc_cnt = 0;
    if (weighted) {
      PRCurveParams hc = h;
      hc.weights = nullptr;
      hc.wsums = nullptr;
      hc.counts = n_cell.data();
      hc.bad = n_bad.data();
      rc_cnt = pr_curve_cpu(hc);
    }

    // CUDA, on emulated device memory (inputs at element-aligned offsets, like tensor views)
    const int ps = dsize(pd), ls = dsize(ld);
    sim::DeviceArray<uint8_t> d_pred((size_t)E * ps, "predictions", 256, (size_t)(ps * RI(0, 3)) % 256);
    sim::DeviceArray<uint8_t> d_lab((size_t)L * ls, "labels", 256, (size_t)(ls * RI(0, 3)) % 256);
    sim::copy_to_device(d_pred.ptr, pred.data(), (size_t)E * ps);
    sim::copy_to_device(d_lab.ptr, lab.data(), (size_t)L * ls);
    sim::DeviceArray<float> d_w32(w32, "weights (float32)");
    sim::DeviceArray<double> d_w64(w64, "weights (float64)");
    sim::DeviceArray<int64_t> d_counts((size_t)cells, "counts");
    sim::DeviceArray<double> d_wsums((size_t)cells, "wsums");
    sim::DeviceArray<int64_t> d_bad(kNumBadKinds, "bad");
    PRCurveParams q = p;
    q.predictions = d_pred.ptr;
    q.labels = d_lab.ptr;
    q.weights = h.weights ? (wmode == 1 ? (const void*)d_w32.ptr : (const void*)d_w64.ptr) : nullptr;
    q.counts = weighted ? nullptr : d_counts.ptr;
    q.wsums = weighted ? d_wsums.ptr : nullptr;
    q.bad = d_bad.ptr;
    q.stream = stream;
    const int64_t sbytes = pr_curve_cuda_scratch_bytes(q);
    sim::DeviceArray<uint8_t> d_scratch((size_t)std::max<int64_t>(sbytes, 1), "scratch", 512, 0, 0x5A);
    q.scratch = d_scratch.ptr;
    q.scratch_bytes = sbytes;

    std::vector<int64_t> c_gpu[2], b_gpu[2];
    std::vector<double> s_gpu[2];
    int rc_gpu[2] = {0, 0};
    std::string contract[2];
    for (int run = 0; run < (weighted ? 2 : 1); ++run) {
      const int d = run == 0 ? dev : (dev + 1 + (int)RI(0, ndev - 2)) % ndev;
      cudaSetDevice(d);
      sim::set_seed(args.seed * 1000003 + (uint64_t)it * 2 + (uint64_t)run);
      d_counts.upload(c0);
      d_wsums.upload(s0);
      d_bad.upload(b0);
      d_scratch.fill_bytes(0x5A + run);
      const sim::Counters before = sim::counters();
      const size_t log0 = sim::stream_log().size();
      rc_gpu[run] = pr_curve_cuda(q);
      contract[run] = sim::check_async_contract(before, log0, stream);
      c_gpu[run] = d_counts.download();
      s_gpu[run] = d_wsums.download();
      b_gpu[run] = d_bad.download();
    }

    // scalar weight in [0, 2^63): every counted item of a cell adds the same truncated weight
    const bool exact_scalar = weighted && wmode == 0 && wscalar >= 0 && wscalar < 9223372036854775808.0;
    bool ok = rc_cpu == 0 && rc_cnt == 0 && rc_gpu[0] == 0 && contract[0].empty();
    std::string why;
    if (rc_gpu[0] == kCudaError) why += std::string(" cuda error: ") + cuda_last_error_message();
    if (!contract[0].empty()) why += " contract: " + contract[0];
    int64_t cdiff = 0, sdiff = 0, bdiff = 0;
    double maxrel = 0;
    for (int j = 0; j < kNumBadKinds; ++j) bdiff += b_cpu[(size_t)j] != b_gpu[0][(size_t)j];
    for (int64_t j = 0; j < cells; ++j) {
      if (!weighted && c_cpu[(size_t)j] != c_gpu[0][(size_t)j]) {
        if (cdiff < 3)
          printf("  cell %ld (class %ld, bucket %ld, pos %ld): counts cpu=%ld cuda=%ld\n", (long)j, (long)(j / (2 * T)),
                 (long)(j / 2 % T), (long)(j % 2), (long)c_cpu[(size_t)j], (long)c_gpu[0][(size_t)j]);
        cdiff++;
      }
      const double a = s_cpu[(size_t)j], b = s_gpu[0][(size_t)j];
      if (!weighted) continue;
      if (exact_scalar) {
        // CUDA: start + (n * w truncated to a multiple of 2^-64, rounded once): exactly this.
        const double e = s0[(size_t)j] + fixed_times(n_cell[(size_t)j], wscalar);
        if (memcmp(&e, &b, sizeof e) != 0) {
          if (sdiff < 3) printf("  cell %ld (%ld items of weight %.17g): wsums exact=%.17g cuda=%.17g\n", (long)j,
                                (long)n_cell[(size_t)j], wscalar, e, b);
          sdiff++;
          continue;
        }
      }
      if (!(a == b)) {
        // CPU: float64 additions (np.histogram's order), within n * 2^-53 relative of the exact
        // sum; CUDA: the exact sum of the weights truncated to multiples of 2^-64, rounded once.
        const double n = (double)n_cell[(size_t)j];
        const double tol = (n + 2) * std::ldexp(1.0, -52) * (std::fabs(s0[(size_t)j]) + std::fabs(b)) +
                           (n + 1) * std::ldexp(1.0, -64);
        maxrel = std::max(maxrel, std::fabs(a - b) / std::max(std::fabs(a), 1e-300));
        if (!(std::fabs(a - b) <= tol)) {
          if (sdiff < 3) printf("  cell %ld (%ld items): wsums cpu=%.17g cuda=%.17g\n", (long)j, (long)n, a, b);
          sdiff++;
        }
      }
    }
    if (weighted) {
      ok &= rc_gpu[1] == 0 && contract[1].empty();
      if (!contract[1].empty()) why += " second run contract: " + contract[1];
      int64_t nondet = 0;
      for (int64_t j = 0; j < cells; ++j)
        nondet += memcmp(&s_gpu[0][(size_t)j], &s_gpu[1][(size_t)j], sizeof(double)) != 0;
      for (int j = 0; j < kNumBadKinds; ++j) nondet += b_gpu[0][(size_t)j] != b_gpu[1][(size_t)j];
      if (nondet) why += " weighted sums/bad differ between two CUDA runs in " + std::to_string(nondet) + " cells";
      ok &= nondet == 0;
    }
    ok &= cdiff == 0 && sdiff == 0 && bdiff == 0;
    if (!ok || args.verbose)
      printf("%s %s: rc cpu=%d cuda=%d/%d, count cells differing %ld, sum cells differing %ld (max rel %.2e), "
             "bad cpu=[%ld %ld %ld %ld %ld %ld] cuda=[%ld %ld %ld %ld %ld %ld]%s\n",
             ok ? "ok  " : "FAIL", ctx, rc_cpu, rc_gpu[0], rc_gpu[1], (long)cdiff, (long)sdiff, maxrel,
             (long)b_cpu[0], (long)b_cpu[1], (long)b_cpu[2], (long)b_cpu[3], (long)b_cpu[4], (long)b_cpu[5],
             (long)b_gpu[0][0], (long)b_gpu[0][1], (long)b_gpu[0][2], (long)b_gpu[0][3], (long)b_gpu[0][4],
             (long)b_gpu[0][5], why.c_str());
    fails += !ok;
  }
  sim::set_context("");
  const sim::Counters& c = sim::counters();
  printf("emulate_pr_curve: %ld configurations, %d failed; %lld launches, %lld context switches, %lld atomics\n",
         args.iters, fails, c.launches, c.switches, c.atomics);
  return fails != 0;
}
