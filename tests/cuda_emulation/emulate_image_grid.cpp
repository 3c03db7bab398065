// csrc/cuda/image_grid_cuda.cu (converted by convert.py, run on cuda_sim.h) against the CPU kernels
// csrc/cpu/image_grid_cpu.cpp on random configurations: all 13 dtypes, 1/3/4 channels (gray
// repeated to RGB), NCHW / NHWC / flipped (negative strides) / strided layouts, every
// normalisation (none, one range, per image, data range reduced on the device), NaN / Inf /
// -0.0, images without a finite value, padding, canvases with a row stride wider than the
// pixels. The canvas must be byte-identical (bytes outside the pixels untouched) and the device
// ranges equal to image_ranges_cpu's.
//
//   emulate_image_grid [--iters N] [--seed S] [-v]     exit status 1 on any mismatch
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cuda_sim.h"
#include "cuda/device_cuda.h"
#include "image_grid.h"

using namespace tbfast;

static std::mt19937_64 rng;
static double U() { return std::uniform_real_distribution<double>(0, 1)(rng); }
static int64_t RI(int64_t a, int64_t b) { return std::uniform_int_distribution<int64_t>(a, b)(rng); }
template <typename T>
static T pick(std::initializer_list<T> v) {
  return v.begin()[RI(0, (int64_t)v.size() - 1)];
}
static const int kSize[] = {1, 1, 1, 2, 4, 8, 2, 2, 4, 8, 2, 4, 8};

template <typename T>
static void put(uint8_t* p, double v) {
  T t = (T)v;
  memcpy(p, &t, sizeof t);
}

int main(int argc, char** argv) {
  sim::Args args = sim::parse_args(argc, argv, 60);
  rng.seed(args.seed);
  sim::set_seed(args.seed);
  sim::cfg().devices = {{1, 1, 48 * 1024, 232448, 233472, 2048, 9, 0},
                        {2, 2, 48 * 1024, 232448, 233472, 2048, 9, 0},
                        {3, 1, 48 * 1024, 166912, 167936, 2048, 8, 0}};
  cudaStream_t stream;
  cudaStreamCreate(&stream);
  int fails = 0;
  for (long it = 0; it < args.iters; ++it) {
    const int dev = (int)RI(0, (int64_t)sim::cfg().devices.size() - 1);
    const int dt = (int)RI(0, kNumDTypes - 1);
    const bool large = RI(0, 9) == 0;  // images of several range work items (bands of ~16 K elements)
    const int64_t N = large ? RI(1, 2) : RI(1, 7), Cin = pick<int64_t>({1, 3, 4});
    const int64_t Cout = (Cin == 1 && RI(0, 1)) ? 3 : Cin;
    int64_t H = RI(1, 20);
    const int64_t W = large ? pick<int64_t>({1, 129, 1000}) : pick<int64_t>({1, 3, 17, 40, 300});
    if (W == 300) H = RI(1, 3);
    if (large) H = (16384 + RI(-2, 2) + RI(0, 2) * 16384) / W + RI(0, 1);
    const int64_t cols = RI(1, 4), rows = (N + cols - 1) / cols + RI(0, 1), pad = RI(0, 3);
    const int norm = (int)RI(0, 3);
    const int layout = (int)RI(0, 3);  // 0 NCHW, 1 NHWC, 2 H and W flipped (negative strides), 3 every other element
    const double badp = RI(0, 1) ? 0.0 : 0.05;
    const int es = kSize[dt];
    const double scale = U() < 0.5 ? 1.0 : 1000.0;
    char ctx[512];
    snprintf(ctx, sizeof ctx,
             "emulate_image_grid --seed %llu: iteration %ld: dtype=%d N=%ld C=%ld->%ld H=%ld W=%ld cols=%ld rows=%ld "
             "pad=%ld norm=%d layout=%d bad_fraction=%.2f scale=%g device=%d",
             (unsigned long long)args.seed, it, dt, (long)N, (long)Cin, (long)Cout, (long)H, (long)W, (long)cols,
             (long)rows, (long)pad, norm, layout, badp, scale, dev);
    sim::set_context(ctx);

    // Each image in its own buffer (host copy for the CPU, device copy for CUDA); element 0 of
    // the image is at `origin` so that negative strides stay inside.
    std::vector<std::vector<uint8_t>> host(N);
    std::vector<sim::DeviceArray<uint8_t>> devbuf;
    std::vector<uint64_t> hptr(N), dptr(N);
    std::vector<int64_t> strides(3 * N);
    for (int64_t k = 0; k < N; ++k) {
      const int64_t mult = layout == 3 ? 2 : 1;
      const int64_t n = Cin * H * W * mult;
      host[k].assign((size_t)n * es, 0);
      int64_t sc, sh, sw, origin = 0;
      if (layout == 1) {
        sc = 1; sw = Cin; sh = W * Cin;
      } else if (layout == 2) {
        sc = H * W; sh = -W; sw = -1; origin = (H - 1) * W + (W - 1);
      } else if (layout == 3) {
        sc = H * W * 2; sh = W * 2; sw = 2;
      } else {
        sc = H * W; sh = W; sw = 1;
      }
      strides[3 * k] = sc;
      strides[3 * k + 1] = sh;
      strides[3 * k + 2] = sw;
      const bool empty = RI(0, 9) == 0;  // no finite value (floats)
      for (int64_t i = 0; i < n; ++i) {
        double v;
        if (dt >= kFloat16 && dt <= kFloat64) {
          v = (U() * 2 - 0.5) * scale;
          if (U() < badp || empty) v = pick<double>({NAN, INFINITY, -INFINITY});
          if (U() < 0.02) v = -0.0;
        } else if (dt == kBool) {
          v = (double)RI(0, 1);
        } else if (dt == kUInt8) {
          v = (double)RI(0, 255);
        } else if (dt == kInt8) {
          v = (double)RI(-128, 127);
        } else if (dt == kInt64 || dt == kUInt64 || dt == kUInt32) {
          v = (double)RI(0, (int64_t)1 << 40) * (RI(0, 1) ? 1 : 123457);
        } else if (dt == kUInt16) {
          v = (double)RI(0, 65535);
        } else {
          v = (double)RI(-1000, 1000);
        }
        uint8_t* d = host[k].data() + i * es;
        switch (dt) {
          case kBool: put<uint8_t>(d, v); break;
          case kUInt8: put<uint8_t>(d, v); break;
          case kInt8: put<int8_t>(d, v); break;
          case kInt16: put<int16_t>(d, v); break;
          case kInt32: put<int32_t>(d, v); break;
          case kInt64: put<int64_t>(d, v); break;
          case kFloat16: { _Float16 h = (_Float16)v; memcpy(d, &h, 2); break; }
          case kBFloat16: {
            float f = (float)v;
            uint32_t b;
            memcpy(&b, &f, 4);
            uint16_t h = (uint16_t)(b >> 16);
            memcpy(d, &h, 2);
            break;
          }
          case kFloat32: put<float>(d, v); break;
          case kFloat64: put<double>(d, v); break;
          case kUInt16: put<uint16_t>(d, v); break;
          case kUInt32: put<uint32_t>(d, std::fmod(v, 4294967296.0)); break;
          case kUInt64: put<uint64_t>(d, v); break;
        }
      }
      devbuf.emplace_back(host[k], "image " + std::to_string(k), 256, (size_t)(es * RI(0, 3)) % 256);
      hptr[k] = (uint64_t)(host[k].data() + origin * es);
      dptr[k] = (uint64_t)(devbuf.back().ptr + origin * es);
    }
    const int64_t OH = rows * (H + pad) + pad, OW = cols * (W + pad) + pad;
    const int64_t stride = OW * Cout + RI(0, 1) * 3;
    ImageGridParams p{};
    p.num_images = N;
    p.dtype = dt;
    p.channels = Cin;
    p.out_channels = Cout;
    p.height = H;
    p.width = W;
    p.cols = cols;
    p.rows = rows;
    p.padding = pad;
    p.out_height = OH;
    p.out_width = OW;
    p.out_row_stride = stride;
    p.pad_byte = (uint8_t)RI(0, 255);
    p.num_threads = 2;
    p.lo = U() * 0.3 * scale;
    p.hi = p.lo + (RI(0, 4) == 0 ? 0.0 : U() * scale);

    // CPU: kNormDataRange is image_ranges_cpu, then the min/max over the images as one range
    // (what the Python layer does on the host).
    std::vector<double> r_cpu(2 * N, 7.0);
    std::vector<uint8_t> o_cpu((size_t)(OH * stride), 0x77);
    ImageGridParams c = p;
    c.data = hptr.data();
    c.strides = strides.data();
    c.out = o_cpu.data();
    c.ranges = r_cpu.data();
    int rc_cpu = 0;
    if (norm == kNormNone || norm == kNormRange) {
      c.norm = norm;
    } else {
      rc_cpu |= image_ranges_cpu(c);
      if (norm == kNormPerImage) {
        c.norm = kNormPerImage;
      } else {
        double lo = INFINITY, hi = -INFINITY;
        for (int64_t k = 0; k < N; ++k) {
          lo = std::min(lo, r_cpu[2 * k]);
          hi = std::max(hi, r_cpu[2 * k + 1]);
        }
        if (!(lo <= hi)) {
          lo = 0;
          hi = 1;
        }
        c.norm = kNormRange;
        c.lo = lo;
        c.hi = hi;
      }
    }
    rc_cpu |= image_grid_cpu(c);

    // CUDA on device memory
    sim::DeviceArray<uint64_t> d_ptrs(dptr, "image pointers");
    sim::DeviceArray<int64_t> d_strides(strides, "strides");
    sim::DeviceArray<double> d_ranges(std::vector<double>(2 * N, 9.0), "ranges");
    sim::DeviceArray<uint8_t> d_out(std::vector<uint8_t>((size_t)(OH * stride), 0x77), "canvas");
    ImageGridParams g = p;
    g.data = d_ptrs.ptr;
    g.strides = d_strides.ptr;
    g.ranges = d_ranges.ptr;
    g.out = d_out.ptr;
    g.norm = norm;
    g.stream = stream;
    cudaSetDevice(dev);
    const sim::Counters before = sim::counters();
    const size_t log0 = sim::stream_log().size();
    const int rc_gpu = image_grid_cuda(g);
    const std::string contract = sim::check_async_contract(before, log0, stream);
    const std::vector<uint8_t> o_gpu = d_out.download();
    const std::vector<double> r_gpu = d_ranges.download();

    int64_t bdiff = 0, rdiff = 0, first = -1;
    for (size_t i = 0; i < o_cpu.size(); ++i)
      if (o_cpu[i] != o_gpu[i]) {
        if (first < 0) first = (int64_t)i;
        bdiff++;
      }
    if (norm >= kNormPerImage)
      for (int64_t i = 0; i < 2 * N; ++i) rdiff += !(r_cpu[i] == r_gpu[i]);
    const bool ok = rc_cpu == 0 && rc_gpu == 0 && bdiff == 0 && rdiff == 0 && contract.empty();
    std::string why;
    if (rc_gpu == kCudaError) why += std::string(" cuda error: ") + cuda_last_error_message();
    if (!contract.empty()) why += " contract: " + contract;
    if (first >= 0) {
      char b[160];
      snprintf(b, sizeof b, " first differing byte: row %ld, byte %ld: cpu=%d cuda=%d", (long)(first / stride),
               (long)(first % stride), o_cpu[(size_t)first], o_gpu[(size_t)first]);
      why += b;
    }
    if (!ok || args.verbose)
      printf("%s %s: rc cpu=%d cuda=%d, canvas bytes differing %ld, ranges differing %ld%s\n", ok ? "ok  " : "FAIL", ctx,
             rc_cpu, rc_gpu, (long)bdiff, (long)rdiff, why.c_str());
    fails += !ok;
  }
  sim::set_context("");
  const sim::Counters& c = sim::counters();
  printf("emulate_image_grid: %ld configurations, %d failed; %lld launches, %lld context switches, %lld atomics\n",
         args.iters, fails, c.launches, c.switches, c.atomics);
  return fails != 0;
}
