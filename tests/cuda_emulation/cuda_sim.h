// CUDA execution emulator: runs tbfast's real CUDA kernel sources (csrc/cuda/*.cu, rewritten by
// convert.py) on the CPU, so that the ordinary test suite checks them against the CPU kernels
// without a GPU.
//
// Execution model
//  * Every CUDA thread is a fiber (its own stack, guard page below and above); one OS thread runs
//    all of them, switching only at synchronisation points (__syncthreads*, warp intrinsics,
//    sometimes at atomics). The scheduler is seeded and picks, per launch, either a uniformly
//    random runnable fiber each time or the fiber of the warp with the highest random priority
//    (priorities redrawn at barriers: some warps run far ahead of others, PCT-style). The order of
//    threads between barriers, the order of blocks and the interleaving of the resident blocks
//    change from run to run: code that depends on an order the hardware does not promise (a
//    missing barrier, a shared buffer reused too early) shows up as wrong or non-deterministic
//    results.
//  * A launch keeps at most `resident` blocks alive at once (SMs x occupancy, capped), like the
//    hardware's block scheduler; the others wait for a free slot, in random order.
//  * __syncthreads / _count / _and / _or: a block barrier. Every thread of the block must reach
//    the same barrier call site; a barrier after a thread of the block exited, threads at two
//    different barriers, or a thread exiting while others wait are reported as errors (undefined
//    behaviour in CUDA).
//  * Warp intrinsics (__shfl*_sync, __ballot_sync, __any/__all_sync, __match_any/all_sync,
//    __reduce_*_sync, __syncwarp): every lane named in the mask must arrive at the same intrinsic
//    (same call site, same mask) before any of them continues; a lane not in its own mask, a
//    mask naming an exited or non-existent lane, different masks or call sites meeting, are
//    errors. A full mask therefore needs all 32 lanes: divergence is reported, never papered over.
//  * Deadlocks (runnable set empty while threads wait) are reported with what every waiting
//    thread waits for; a per-launch watchdog (SIGALRM) reports a spinning kernel.
//
// Memory model
//  * Device memory (cudaMalloc, sim::DeviceArray) lives in its own mappings with guard pages on
//    both sides, the buffer flush against the upper guard page (alignment permitting) and canary
//    bytes in the slack; it is PROT_NONE while no kernel runs, so host code touching device
//    memory faults. Out-of-bounds reads past a guard page fault, out-of-bounds writes into the
//    slack are found by the canary check after every launch. Faults are reported with the
//    allocation, the offset, the kernel, block and thread.
//  * Shared memory: every block gets fresh allocations (guarded, poisoned with a random non-zero
//    byte) for its dynamic shared memory and for each static __shared__ variable; limits (48 KiB
//    dynamic without cudaFuncSetAttribute, opt-in maximum per device, launch bounds) are checked
//    at launch and reported like the runtime would (launch error, sticky until
//    cudaGetLastError), plus a message on stderr.
//  * Atomics check natural alignment and that the address is device or shared memory; __ldg /
//    __ldcs & co. check alignment and that the address is device memory.
//  * Integer / float conversions that PTX defines (cvt.rzi saturation, NaN -> 0) are implemented
//    with PTX semantics; 16-bit floats use the compiler's _Float16 (IEEE, round to nearest even).
//
// What this cannot catch: the GPU's weak memory ordering (everything here is sequentially
// consistent and blocks only interleave at synchronisation points), races that need a thread to
// be pre-empted between two plain memory accesses, shared-memory bank conflicts, register
// pressure, occupancy and all performance, ulp-level differences of device math functions (exp,
// log, ... come from glibc), a kernel that reads host memory through a pointer it was never
// meant to have (host memory stays readable), and code under #ifdef __CUDA_ARCH__ (not compiled
// here; convert.py refuses it inside functions).
#pragma once
#if __cplusplus < 201703L
#error "cuda_sim.h needs C++17 or newer"
#endif

#include <math.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

// ---- what nvcc defines / keywords --------------------------------------------------------------

#ifndef __CUDACC__
#define __CUDACC__ 1
#endif
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
#define __grid_constant__
// convert.py rewrites every __shared__ declaration; anything left over does not compile.
#define __shared__ sim_error_unconverted_shared_declaration
#define __constant__ sim_error_constant_memory_is_not_emulated
#define __managed__ sim_error_managed_memory_is_not_emulated

// ---- vector types (CUDA's alignments) ----------------------------------------------------------

#define SIM_VEC(T, N, A1, A2, A3, A4)                                                        \
  struct alignas(A1) N##1 { T x; };                                                          \
  struct alignas(A2) N##2 { T x, y; };                                                       \
  struct alignas(A3) N##3 { T x, y, z; };                                                    \
  struct alignas(A4) N##4 { T x, y, z, w; };                                                 \
  inline N##1 make_##N##1(T x) { return N##1{x}; }                                           \
  inline N##2 make_##N##2(T x, T y) { return N##2{x, y}; }                                   \
  inline N##3 make_##N##3(T x, T y, T z) { return N##3{x, y, z}; }                           \
  inline N##4 make_##N##4(T x, T y, T z, T w) { return N##4{x, y, z, w}; }
SIM_VEC(signed char, char, 1, 2, 1, 4)
SIM_VEC(unsigned char, uchar, 1, 2, 1, 4)
SIM_VEC(short, short, 2, 4, 2, 8)
SIM_VEC(unsigned short, ushort, 2, 4, 2, 8)
SIM_VEC(int, int, 4, 8, 4, 16)
SIM_VEC(unsigned int, uint, 4, 8, 4, 16)
SIM_VEC(long, long, 8, 16, 8, 16)
SIM_VEC(unsigned long, ulong, 8, 16, 8, 16)
SIM_VEC(long long, longlong, 8, 16, 8, 16)
SIM_VEC(unsigned long long, ulonglong, 8, 16, 8, 16)
SIM_VEC(float, float, 4, 8, 4, 16)
SIM_VEC(double, double, 8, 16, 8, 16)
#undef SIM_VEC

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};

// Built-in variables: set by the scheduler whenever it switches to a CUDA thread.
inline uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
constexpr int warpSize = 32;

// ---- runtime types ----------------------------------------------------------------------------

enum cudaError {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInitializationError = 3,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDeviceFunction = 98,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchOutOfResources = 701,
  cudaErrorMisalignedAddress = 716,
  cudaErrorNotSupported = 801,
};
typedef enum cudaError cudaError_t;
struct CUstream_st {
  int id;
};
typedef CUstream_st* cudaStream_t;
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4
};
enum cudaDeviceAttr {
  cudaDevAttrMaxThreadsPerBlock = 1,
  cudaDevAttrMaxBlockDimX = 2,
  cudaDevAttrMaxGridDimX = 5,
  cudaDevAttrMaxSharedMemoryPerBlock = 8,
  cudaDevAttrWarpSize = 10,
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrL2CacheSize = 38,
  cudaDevAttrMaxThreadsPerMultiProcessor = 39,
  cudaDevAttrComputeCapabilityMajor = 75,
  cudaDevAttrComputeCapabilityMinor = 76,
  cudaDevAttrMaxSharedMemoryPerMultiprocessor = 81,
  cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
};
enum cudaFuncAttribute {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
  cudaFuncAttributePreferredSharedMemoryCarveout = 9,
};
struct cudaFuncAttributes {
  size_t sharedSizeBytes;
  size_t constSizeBytes;
  size_t localSizeBytes;
  int maxThreadsPerBlock;
  int numRegs;
  int ptxVersion;
  int binaryVersion;
  int cacheModeCA;
  int maxDynamicSharedSizeBytes;
  int preferredShmemCarveout;
};

namespace sim {

// ================================================================================================
// configuration, diagnostics
// ================================================================================================

// One emulated device. The histogram kernel caches per-device facts, so drivers vary these by
// switching devices (cudaSetDevice), not by editing a device in place.
struct DeviceProps {
  int sms;               // cudaDevAttrMultiProcessorCount
  int blocks_per_sm;     // occupancy cap reported by cudaOccupancyMaxActiveBlocksPerMultiprocessor
  int smem_per_block;    // 48 KiB: dynamic + static without the opt-in
  int smem_optin;        // cudaDevAttrMaxSharedMemoryPerBlockOptin
  int smem_per_sm;
  int threads_per_sm;
  int cc_major, cc_minor;
};

inline unsigned env_unsigned(const char* name, unsigned dflt) {
  const char* v = getenv(name);
  return v && *v ? (unsigned)strtoul(v, nullptr, 10) : dflt;
}

struct Config {
  std::vector<DeviceProps> devices{{2, 2, 48 * 1024, 232448, 233472, 2048, 9, 0}};
  uint64_t seed = 1;
  double atomic_yield = 0.02;  // probability that an atomic lets another thread run first
  int max_resident_blocks = 8;
  int max_resident_threads = 4096;
  unsigned watchdog_s = env_unsigned("CUDA_SIM_WATCHDOG_S", 120);  // per launch; 0: off
  int sched = (int)env_unsigned("CUDA_SIM_SCHED", 0);  // 0: a policy at random per launch, 1: uniform, 2: priority
  std::string context;         // the driver's current configuration, printed with every error
  bool lenient_default_smem = false;  // see default_max_dyn_smem
  bool trace = env_unsigned("CUDA_SIM_TRACE", 0) != 0;  // print every launch on stderr
};
inline Config& cfg() {
  static Config c;
  return c;
}
inline void set_context(const std::string& s) { cfg().context = s; }

// Call site of a barrier / warp intrinsic / atomic: a default argument `Site::here()`, whose own
// default arguments GCC evaluates where the outermost call is written (as std::source_location).
struct Site {
  const char* file;
  int line;
  static Site here(const char* f = __builtin_FILE(), int l = __builtin_LINE()) { return Site{f, l}; }
};
#define SIM_SITE_DEFAULT ::sim::Site::here()
inline bool same_site(const Site& a, const Site& b) { return a.line == b.line && strcmp(a.file, b.file) == 0; }

struct Counters {
  long long launches = 0, launch_errors = 0, memsets = 0, memcpys = 0, syncs = 0, allocs = 0, frees = 0;
  long long atomics = 0, switches = 0;
};
inline Counters& counters() {
  static Counters c;
  return c;
}
// Streams used by launches / async memory operations since the last clear (the drivers check
// that a call enqueues everything on the stream it was given).
inline std::vector<cudaStream_t>& stream_log() {
  static std::vector<cudaStream_t> v;
  return v;
}

inline void describe_position(FILE* f);

[[noreturn]] inline void vfatal(const char* fmt, va_list ap) {
  fflush(stdout);
  char buf[4096];
  vsnprintf(buf, sizeof buf, fmt, ap);
  fprintf(stderr, "\ncuda_sim: ERROR: %s\n", buf);
  describe_position(stderr);
  if (!cfg().context.empty()) fprintf(stderr, "cuda_sim: configuration: %s\n", cfg().context.c_str());
  fflush(stderr);
  signal(SIGABRT, SIG_DFL);
  abort();
}
[[noreturn]] __attribute__((format(printf, 1, 2))) inline void fatal(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfatal(fmt, ap);
}

inline cudaError_t& last_error() {
  static cudaError_t e = cudaSuccess;
  return e;
}
inline int& current_device() {
  static int d = 0;
  return d;
}
inline const DeviceProps& device_props(int dev) {
  if (dev < 0 || dev >= (int)cfg().devices.size()) fatal("device %d does not exist", dev);
  return cfg().devices[(size_t)dev];
}

inline std::mt19937_64& rng() {
  static std::mt19937_64 r(1);
  return r;
}
inline void set_seed(uint64_t s) {
  cfg().seed = s;
  rng().seed(s * 0x9E3779B97F4A7C15ull + 12345);
}

// ================================================================================================
// memory regions: device allocations, shared memory, fiber stacks
// ================================================================================================

enum RegionKind { kGlobal = 0, kShared = 1, kStack = 2 };

struct Region {
  char* map;
  size_t map_len;
  char* data;       // first byte after the lower guard page
  size_t data_len;  // whole pages between the guards
  char* user;
  size_t size;
  RegionKind kind;
  unsigned char canary;
  bool open;  // currently readable/writable
  long id;
  std::string label;
};

inline size_t page_size() {
  static size_t p = (size_t)sysconf(_SC_PAGESIZE);
  return p;
}
// Device and shared regions (looked up by atomics and loads); stacks separately.
inline std::map<uintptr_t, Region*>& regions() {
  static std::map<uintptr_t, Region*> m;
  return m;
}
inline std::map<uintptr_t, Region*>& stack_regions() {
  static std::map<uintptr_t, Region*> m;
  return m;
}
inline long g_region_ids = 0;

inline void install_signal_handlers();

inline Region* find_in(std::map<uintptr_t, Region*>& m, const void* p) {
  auto it = m.upper_bound((uintptr_t)p);
  if (it == m.begin()) return nullptr;
  --it;
  Region* r = it->second;
  return (const char*)p < r->map + r->map_len ? r : nullptr;
}
inline Region* find_region(const void* p) {
  Region* r = find_in(regions(), p);
  return r ? r : find_in(stack_regions(), p);
}

inline void region_protect(Region* r, bool open) {
  if (r->open == open) return;
  if (mprotect(r->data, r->data_len, open ? PROT_READ | PROT_WRITE : PROT_NONE) != 0) fatal("mprotect failed");
  r->open = open;
}

// size bytes at an address == offset (mod align), as close below the upper guard page as the
// alignment allows; slack bytes get a canary, the user bytes `fill` (when fill >= 0).
inline Region* region_alloc(size_t size, size_t align, size_t offset, RegionKind kind, const std::string& label,
                            int fill) {
  install_signal_handlers();
  if (align == 0 || (align & (align - 1))) fatal("region_alloc: alignment %zu is not a power of two", align);
  if (offset >= align) fatal("region_alloc: offset %zu >= alignment %zu", offset, align);
  const size_t P = page_size();
  const size_t data_len = ((size + align + offset + P - 1) / P) * P + (size == 0 ? P : 0);
  const size_t map_len = data_len + 2 * P;
  void* m = mmap(nullptr, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) fatal("mmap of %zu bytes failed (%s)", map_len, label.c_str());
  Region* r = new Region();
  r->map = (char*)m;
  r->map_len = map_len;
  r->data = r->map + P;
  r->data_len = data_len;
  uintptr_t end = (uintptr_t)(r->data + data_len);
  uintptr_t u = end - size;
  u = ((u - offset) & ~(uintptr_t)(align - 1)) + offset;
  if (u + size > end) u -= align;
  r->user = (char*)u;
  r->size = size;
  r->kind = kind;
  r->canary = (unsigned char)(0x5A ^ (g_region_ids * 37));
  if (r->canary == 0) r->canary = 0xA5;
  r->open = true;
  r->id = ++g_region_ids;
  r->label = label;
  if (kind != kStack) {
    memset(r->data, r->canary, (size_t)(r->user - r->data));
    memset(r->user + size, r->canary, (size_t)(r->data + data_len - (r->user + size)));
    if (fill >= 0) memset(r->user, fill, size);
  }
  mprotect(r->map, P, PROT_NONE);
  mprotect(r->data + data_len, P, PROT_NONE);
  (kind == kStack ? stack_regions() : regions())[(uintptr_t)r->map] = r;
  return r;
}

inline void region_check_canary(Region* r, const char* when) {
  if (r->kind == kStack) return;
  const bool was_open = r->open;
  region_protect(r, true);
  long below = -1, above = -1;
  for (char* p = r->data; p < r->user; ++p)
    if ((unsigned char)*p != r->canary) {
      below = (long)(r->user - p);
      break;
    }
  for (char* p = r->data + r->data_len - 1; p >= r->user + r->size; --p)
    if ((unsigned char)*p != r->canary) {
      above = (long)(p - (r->user + r->size));
      break;
    }
  region_protect(r, was_open);
  if (below >= 0)
    fatal("out-of-bounds write %s: %s #%ld (%zu bytes at %p) was written %ld byte(s) before its start", when,
          r->label.c_str(), r->id, r->size, (void*)r->user, below);
  if (above >= 0)
    fatal("out-of-bounds write %s: %s #%ld (%zu bytes at %p) was written up to %ld byte(s) past its end", when,
          r->label.c_str(), r->id, r->size, (void*)r->user, above + 1);
}

inline void region_free(Region* r) {
  (r->kind == kStack ? stack_regions() : regions()).erase((uintptr_t)r->map);
  munmap(r->map, r->map_len);
  delete r;
}

// All device allocations readable/writable (during a launch) or not (host code running).
inline void device_access(bool open) {
  for (auto& kv : regions())
    if (kv.second->kind == kGlobal) region_protect(kv.second, open);
}
inline void check_device_canaries(const char* when) {
  for (auto& kv : regions())
    if (kv.second->kind == kGlobal) region_check_canary(kv.second, when);
}

// The device allocation holding [p, p + n), or a fatal error naming `what`.
inline Region* device_range(const void* p, size_t n, const char* what) {
  Region* r = find_in(regions(), p);
  if (!r || r->kind != kGlobal) fatal("%s: %p is not device memory (host pointer passed as a device pointer?)", what, p);
  if ((const char*)p < r->user || (const char*)p + n > r->user + r->size)
    fatal("%s: [%p, +%zu) is outside device allocation %s #%ld [%p, +%zu)", what, p, n, r->label.c_str(), r->id,
          (void*)r->user, r->size);
  return r;
}

// ---- device memory API for drivers ---------------------------------------------------------------

// A device allocation of `bytes` at an address == offset (mod align): torch's caching allocator
// gives 512-byte aligned blocks; tensor views (x[1:]) start anywhere element-aligned.
inline void* device_alloc(size_t bytes, const std::string& label, size_t align = 256, size_t offset = 0,
                          int poison = 0xCB) {
  Region* r = region_alloc(bytes, align, offset, kGlobal, label, poison);
  region_protect(r, false);
  return r->user;
}
inline void device_free(void* p) {
  if (!p) return;
  Region* r = find_in(regions(), p);
  if (!r || r->kind != kGlobal || r->user != p) fatal("device_free(%p): not the start of a device allocation", p);
  region_check_canary(r, "(found when freeing it)");
  region_free(r);
}
inline void copy_to_device(void* dst, const void* src, size_t n) {
  if (!n) return;
  Region* r = device_range(dst, n, "copy to device");
  region_protect(r, true);
  memcpy(dst, src, n);
  region_protect(r, false);
}
inline void copy_from_device(void* dst, const void* src, size_t n) {
  if (!n) return;
  Region* r = device_range(src, n, "copy from device");
  region_protect(r, true);
  memcpy(dst, src, n);
  region_protect(r, false);
}
inline void device_memset(void* dst, int v, size_t n) {
  if (!n) return;
  Region* r = device_range(dst, n, "device memset");
  region_protect(r, true);
  memset(dst, v, n);
  region_protect(r, false);
}

template <typename T>
struct DeviceArray {
  T* ptr = nullptr;
  size_t n = 0;
  DeviceArray() = default;
  DeviceArray(size_t count, const std::string& label, size_t align = 256, size_t offset = 0, int poison = 0xCB)
      : ptr(static_cast<T*>(device_alloc(count * sizeof(T), label, align, offset, poison))), n(count) {}
  DeviceArray(const std::vector<T>& v, const std::string& label, size_t align = 256, size_t offset = 0)
      : DeviceArray(v.size(), label, align, offset) {
    upload(v);
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  DeviceArray(DeviceArray&& o) noexcept : ptr(o.ptr), n(o.n) { o.ptr = nullptr; }
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    std::swap(ptr, o.ptr);
    std::swap(n, o.n);
    return *this;
  }
  ~DeviceArray() { device_free(ptr); }
  void upload(const std::vector<T>& v) {
    if (v.size() != n) fatal("DeviceArray::upload: %zu elements into %zu", v.size(), n);
    copy_to_device(ptr, v.data(), n * sizeof(T));
  }
  std::vector<T> download() const {
    std::vector<T> v(n);
    copy_from_device(v.data(), ptr, n * sizeof(T));
    return v;
  }
  void fill_bytes(int b) { device_memset(ptr, b, n * sizeof(T)); }
};

// ================================================================================================
// fibers and the scheduler
// ================================================================================================

}  // namespace sim

extern "C" void sim_fiber_switch(void** save_sp, void* to_sp);
extern "C" void sim_fiber_main();

#if defined(__x86_64__)
// Saves the callee-saved registers on the current stack, stores the stack pointer in *save_sp,
// switches to to_sp and restores the registers saved there. Weak: both translation units that
// include this header define it.
asm(R"(
        .text
        .weak sim_fiber_switch
        .type sim_fiber_switch, @function
sim_fiber_switch:
        pushq %rbp
        pushq %rbx
        pushq %r12
        pushq %r13
        pushq %r14
        pushq %r15
        movq %rsp, (%rdi)
        movq %rsi, %rsp
        popq %r15
        popq %r14
        popq %r13
        popq %r12
        popq %rbx
        popq %rbp
        ret
        .size sim_fiber_switch, .-sim_fiber_switch
        .weak sim_fiber_trampoline
        .type sim_fiber_trampoline, @function
sim_fiber_trampoline:
        call sim_fiber_main@PLT
        ud2
        .size sim_fiber_trampoline, .-sim_fiber_trampoline
)");
extern "C" void sim_fiber_trampoline();
#endif

namespace sim {

enum FiberState { kRunnable = 0, kBlocked = 1, kDone = 2 };

struct Block;
struct Fiber {
  void* sp = nullptr;
#if !defined(__x86_64__)
  ucontext_t uc;
#endif
  Region* stack = nullptr;
  uint3 tid{};
  Block* block = nullptr;
  int linear = 0, warp = 0, lane = 0;
  FiberState state = kRunnable;
  uint64_t wake = 0;  // result of the collective the fiber waited in
  int wake_pred = 0;
  const char* wait_what = "";
  Site wait_site{"", 0};
};

enum WarpOp {
  kOpShflIdx,
  kOpShflUp,
  kOpShflDown,
  kOpShflXor,
  kOpBallot,
  kOpAny,
  kOpAll,
  kOpMatchAny,
  kOpMatchAll,
  kOpReduceAddU,
  kOpReduceAddI,
  kOpReduceMinU,
  kOpReduceMinI,
  kOpReduceMaxU,
  kOpReduceMaxI,
  kOpReduceAnd,
  kOpReduceOr,
  kOpReduceXor,
  kOpSyncWarp,
};
inline const char* op_name(int op) {
  static const char* n[] = {"__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync",
                            "__ballot_sync", "__any_sync", "__all_sync", "__match_any_sync",
                            "__match_all_sync", "__reduce_add_sync(unsigned)", "__reduce_add_sync(int)",
                            "__reduce_min_sync(unsigned)", "__reduce_min_sync(int)", "__reduce_max_sync(unsigned)",
                            "__reduce_max_sync(int)", "__reduce_and_sync", "__reduce_or_sync", "__reduce_xor_sync",
                            "__syncwarp"};
  return n[op];
}

struct WarpInst {
  unsigned mask = 0, arrived = 0;
  int op = 0;
  Site site{"", 0};
  uint64_t val[32];
  int arg[32];
  int width[32];
  Fiber* fib[32];
};
struct Warp {
  unsigned exists = 0, exited = 0;
  uint64_t prio = 0;  // scheduling priority (kSchedPriority)
  std::vector<WarpInst> pending;
};

struct Block {
  uint3 idx{};
  long linear = 0;
  int nthreads = 0, live = 0, exited = 0;
  std::vector<Fiber*> fibers;
  std::vector<Warp> warps;
  // barrier
  int bar_arrived = 0, bar_op = 0;
  Site bar_site{"", 0};
  long bar_count = 0;
  std::vector<Fiber*> bar_waiters;
  // shared memory
  Region* dyn = nullptr;
  std::vector<std::pair<int, Region*>> statics;
  size_t static_bytes = 0;
};

struct KernelInfo {
  const char* name = "";
  size_t static_smem = 0;
  int max_threads = 1024;
  std::map<int, int> max_dyn_smem;  // per device: cudaFuncAttributeMaxDynamicSharedMemorySize
};
inline std::map<const void*, KernelInfo>& kernels() {
  static std::map<const void*, KernelInfo> m;
  return m;
}
inline bool register_kernel(const void* fn, const char* name, size_t static_smem, int max_threads) {
  KernelInfo& k = kernels()[fn];
  k.name = name;
  k.static_smem = static_smem;
  k.max_threads = max_threads;
  return true;
}
// Instantiated from the first statement convert.py puts into every kernel body: registers the
// kernel's name, static shared memory and __launch_bounds__ before main().
template <auto F, const char* Name, size_t StaticSmem, int MaxThreads>
struct KernelReg {
  static const bool reg;
};
template <auto F, const char* Name, size_t StaticSmem, int MaxThreads>
const bool KernelReg<F, Name, StaticSmem, MaxThreads>::reg =
    ::sim::register_kernel(reinterpret_cast<const void*>(F), Name, StaticSmem, MaxThreads);

// Dynamic shared memory a kernel may use before cudaFuncSetAttribute raises its limit: 48 KiB
// minus its static shared memory (the block's total must stay within 48 KiB). A lenient emulator
// (Config::lenient_default_smem) allows 48 KiB of dynamic memory whatever the static part, which no
// GPU does; drivers offer it only to keep testing the rest of a kernel while that bug is open.
inline long default_max_dyn_smem(const DeviceProps& p, const KernelInfo& k) {
  return cfg().lenient_default_smem ? p.smem_per_block : p.smem_per_block - (long)k.static_smem;
}

inline KernelInfo* kernel_info(const void* fn) {
  auto it = kernels().find(fn);
  return it == kernels().end() ? nullptr : &it->second;
}

struct Launch {
  const void* fn = nullptr;
  KernelInfo* ki = nullptr;
  const char* pretty = nullptr;
  void (*invoke)(void*) = nullptr;
  void* ctx = nullptr;
  dim3 grid, block;
  size_t smem = 0;
  int poison = 0xCD;
};

inline Fiber* g_cur = nullptr;
inline Launch* g_launch = nullptr;
inline void* g_sched_sp = nullptr;
#if !defined(__x86_64__)
inline ucontext_t g_sched_uc;
#endif
// Scheduling policy of a launch (Config::sched picks one, or one at random per launch):
//  * kSchedUniform: the next thread is any runnable one, uniformly: fine-grained interleaving.
//  * kSchedPriority: every warp has a random priority, the runnable thread of the highest one runs
//    (lanes of a warp in random order); priorities are drawn again when a block barrier completes,
//    sometimes when a warp collective completes, and when a thread yields at an atomic. Some warps
//    run far ahead of others, as on a GPU where a warp stalls: a thread reading shared memory that
//    other warps may already have overwritten for the next round shows up (PCT-style scheduling).
enum Sched { kSchedMixed = 0, kSchedUniform = 1, kSchedPriority = 2 };

struct RunQueue {
  int policy = kSchedUniform;
  std::vector<Fiber*> any;                                // kSchedUniform
  std::vector<std::pair<uint64_t, Fiber*>> heap;          // kSchedPriority
  bool empty() const { return any.empty() && heap.empty(); }
  size_t size() const { return any.size() + heap.size(); }
  void push(Fiber* f);
  Fiber* pop();
};
inline RunQueue g_runq;
inline std::vector<Region*> g_stack_pool;
constexpr size_t kStackBytes = 256 * 1024;

inline void RunQueue::push(Fiber* f) {
  if (policy == kSchedPriority) {
    const uint64_t key = (f->block->warps[(size_t)f->warp].prio << 20) | (rng()() & 0xFFFFF);
    heap.emplace_back(key, f);
    std::push_heap(heap.begin(), heap.end());
  } else {
    any.push_back(f);
  }
}
inline Fiber* RunQueue::pop() {
  if (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end());
    Fiber* f = heap.back().second;
    heap.pop_back();
    return f;
  }
  const size_t k = (size_t)(rng()() % any.size());
  Fiber* f = any[k];
  any[k] = any.back();
  any.pop_back();
  return f;
}



inline void describe_position(FILE* f) {
  if (g_launch) {
    fprintf(f, "cuda_sim: in kernel %s, grid (%u,%u,%u) block (%u,%u,%u) dynamic smem %zu\n",
            g_launch->pretty ? g_launch->pretty : (g_launch->ki ? g_launch->ki->name : "?"), g_launch->grid.x,
            g_launch->grid.y, g_launch->grid.z, g_launch->block.x, g_launch->block.y, g_launch->block.z,
            g_launch->smem);
    if (g_cur)
      fprintf(f, "cuda_sim: executing blockIdx (%u,%u,%u) threadIdx (%u,%u,%u) (warp %d lane %d)\n",
              g_cur->block->idx.x, g_cur->block->idx.y, g_cur->block->idx.z, g_cur->tid.x, g_cur->tid.y,
              g_cur->tid.z, g_cur->warp, g_cur->lane);
  }
}

inline Fiber* in_kernel(const char* what) {
  if (!g_cur) fatal("%s called outside a kernel", what);
  return g_cur;
}

inline void switch_to_scheduler() {
  Fiber* f = g_cur;
  counters().switches++;
#if defined(__x86_64__)
  sim_fiber_switch(&f->sp, g_sched_sp);
#else
  swapcontext(&f->uc, &g_sched_uc);
#endif
}
inline void block_self(const char* what, Site s) {
  Fiber* f = g_cur;
  f->state = kBlocked;
  f->wait_what = what;
  f->wait_site = s;
  switch_to_scheduler();
}
inline void wake(Fiber* f) {
  f->state = kRunnable;
  g_runq.push(f);
}
inline void yield_self() {
  Fiber* f = g_cur;
  g_runq.push(f);
  switch_to_scheduler();
}
inline void new_priority(Warp& w) { w.prio = rng()() >> 20; }
// At atomics and fences: sometimes let other threads run first (under kSchedPriority the warp
// also gets a new priority, so that a thread spinning on an atomic lets the others progress).
inline void maybe_yield() {
  if (g_cur && cfg().atomic_yield > 0 &&
      std::uniform_real_distribution<double>(0.0, 1.0)(rng()) < cfg().atomic_yield) {
    new_priority(g_cur->block->warps[(size_t)g_cur->warp]);
    yield_self();
  }
}

// ---- block barrier ------------------------------------------------------------------------------

enum BarOp { kBarSync = 0, kBarCount = 1, kBarAnd = 2, kBarOr = 3 };
inline const char* bar_name(int op) {
  static const char* n[] = {"__syncthreads", "__syncthreads_count", "__syncthreads_and", "__syncthreads_or"};
  return n[op];
}

inline int block_barrier(int op, int pred, Site s) {
  Fiber* f = in_kernel(bar_name(op));
  Block* b = f->block;
  if (b->exited)
    fatal("%s at %s:%d after %d thread(s) of the block exited (undefined behaviour: the barrier is not reached by "
          "every thread of the block)",
          bar_name(op), s.file, s.line, b->exited);
  if (b->bar_arrived == 0) {
    b->bar_op = op;
    b->bar_site = s;
    b->bar_count = 0;
  } else if (b->bar_op != op || !same_site(b->bar_site, s)) {
    fatal("threads of one block wait at different barriers: %s at %s:%d and %s at %s:%d (divergent __syncthreads)",
          bar_name(b->bar_op), b->bar_site.file, b->bar_site.line, bar_name(op), s.file, s.line);
  }
  b->bar_count += pred != 0;
  if (++b->bar_arrived < b->nthreads) {
    b->bar_waiters.push_back(f);
    block_self(bar_name(op), s);
    return (int)f->wake;
  }
  const long n = b->bar_count;
  const int r = op == kBarCount ? (int)n : op == kBarAnd ? (n == b->nthreads) : op == kBarOr ? (n > 0) : 0;
  for (Warp& w : b->warps) new_priority(w);
  for (Fiber* w : b->bar_waiters) {
    w->wake = (uint64_t)r;
    wake(w);
  }
  b->bar_waiters.clear();
  b->bar_arrived = 0;
  yield_self();  // the last thread to arrive does not get to run first either
  return r;
}

// ---- warp collectives ---------------------------------------------------------------------------

inline uint64_t warp_finish_lane(const WarpInst& w, int lane, int* pred_out) {
  const int op = w.op;
  const uint64_t mine = w.val[lane];
  auto src_check = [&](int src) -> uint64_t {
    if (!(w.mask >> src & 1u))
      fatal("lane %d of %s (mask 0x%08x) at %s:%d reads lane %d, which is not in the mask (undefined value)", lane,
            op_name(op), w.mask, w.site.file, w.site.line, src);
    return w.val[src];
  };
  const int width = w.width[lane];
  const int seg = lane & ~(width - 1);
  switch (op) {
    case kOpShflIdx:
      return src_check(seg + (w.arg[lane] & (width - 1)));
    case kOpShflUp: {
      const int src = lane - w.arg[lane];
      return src < seg ? mine : src_check(src);
    }
    case kOpShflDown: {
      const int src = lane + w.arg[lane];
      return src >= seg + width ? mine : src_check(src);
    }
    case kOpShflXor: {
      const int src = lane ^ w.arg[lane];
      return src >= seg + width ? mine : src_check(src);
    }
    case kOpBallot:
    case kOpAny:
    case kOpAll: {
      unsigned m = 0;
      for (int i = 0; i < 32; ++i)
        if ((w.mask >> i & 1u) && w.val[i]) m |= 1u << i;
      return op == kOpBallot ? m : op == kOpAny ? (m != 0) : (m == w.mask);
    }
    case kOpMatchAny:
    case kOpMatchAll: {
      unsigned m = 0;
      for (int i = 0; i < 32; ++i)
        if ((w.mask >> i & 1u) && w.val[i] == mine) m |= 1u << i;
      if (op == kOpMatchAny) return m;
      if (pred_out) *pred_out = m == w.mask;
      return m == w.mask ? w.mask : 0;
    }
    case kOpSyncWarp:
      return 0;
    default: {
      uint64_t acc = 0;
      bool first = true;
      for (int i = 0; i < 32; ++i) {
        if (!(w.mask >> i & 1u)) continue;
        const uint32_t u = (uint32_t)w.val[i];
        const int32_t s = (int32_t)u;
        if (first) {
          acc = u;
          first = false;
          continue;
        }
        switch (op) {
          case kOpReduceAddU:
          case kOpReduceAddI: acc = (uint32_t)((uint32_t)acc + u); break;
          case kOpReduceMinU: acc = std::min((uint32_t)acc, u); break;
          case kOpReduceMaxU: acc = std::max((uint32_t)acc, u); break;
          case kOpReduceMinI: acc = (uint32_t)std::min((int32_t)(uint32_t)acc, s); break;
          case kOpReduceMaxI: acc = (uint32_t)std::max((int32_t)(uint32_t)acc, s); break;
          case kOpReduceAnd: acc &= u; break;
          case kOpReduceOr: acc |= u; break;
          case kOpReduceXor: acc ^= u; break;
        }
      }
      return acc;
    }
  }
}

inline uint64_t warp_collective(int op, unsigned mask, uint64_t value, int arg, int width, Site s,
                                int* pred_out = nullptr) {
  Fiber* f = in_kernel(op_name(op));
  Block* b = f->block;
  Warp& w = b->warps[f->warp];
  const unsigned bit = 1u << f->lane;
  if (!(mask & bit))
    fatal("%s at %s:%d: lane %d calls it with mask 0x%08x, which does not include the lane (undefined behaviour)",
          op_name(op), s.file, s.line, f->lane, mask);
  if (mask & ~w.exists)
    fatal("%s at %s:%d: mask 0x%08x names lanes that do not exist in this warp (lanes 0x%08x; block of %d threads)",
          op_name(op), s.file, s.line, mask, w.exists, b->nthreads);
  if (mask & w.exited)
    fatal("%s at %s:%d: mask 0x%08x names lanes that already exited (0x%08x): they can never arrive", op_name(op),
          s.file, s.line, mask, mask & w.exited);
  if (op <= kOpShflXor && (width < 1 || width > 32 || (width & (width - 1))))
    fatal("%s at %s:%d: width %d is not a power of two in [1, 32]", op_name(op), s.file, s.line, width);
  // The lane joins the pending call with its mask (lanes of other masks may be waiting in other
  // calls meanwhile, e.g. a 16-lane shuffle in one branch: those finish first, then their lanes
  // come here; if they never can, the scheduler reports the deadlock).
  WarpInst* inst = nullptr;
  for (WarpInst& p : w.pending)
    if (p.mask == mask && !(p.arrived & bit)) {
      inst = &p;
      break;
    }
  if (!inst) {
    w.pending.emplace_back();
    inst = &w.pending.back();
    inst->mask = mask;
    inst->op = op;
    inst->site = s;
  } else if (inst->op != op || (op != kOpSyncWarp && !same_site(inst->site, s))) {
    fatal("lanes of one warp meet at different warp-synchronous calls: %s at %s:%d (lanes 0x%08x) and %s at %s:%d "
          "(lane %d), mask 0x%08x (divergence)",
          op_name(inst->op), inst->site.file, inst->site.line, inst->arrived, op_name(op), s.file, s.line, f->lane,
          mask);
  }
  inst->val[f->lane] = value;
  inst->arg[f->lane] = arg;
  inst->width[f->lane] = width;
  inst->fib[f->lane] = f;
  inst->arrived |= bit;
  if (inst->arrived != mask) {
    block_self(op_name(op), s);
    if (pred_out) *pred_out = f->wake_pred;
    return f->wake;
  }
  WarpInst done = *inst;
  w.pending.erase(w.pending.begin() + (inst - w.pending.data()));
  if ((rng()() & 3) == 0) new_priority(w);
  uint64_t mine = 0;
  for (int l = 0; l < 32; ++l) {
    if (!(mask >> l & 1u)) continue;
    int pred = 0;
    const uint64_t r = warp_finish_lane(done, l, &pred);
    if (l == f->lane) {
      mine = r;
      if (pred_out) *pred_out = pred;
    } else {
      done.fib[l]->wake = r;
      done.fib[l]->wake_pred = pred;
      wake(done.fib[l]);
    }
  }
  yield_self();
  return mine;
}

// ---- fiber lifecycle ----------------------------------------------------------------------------

inline void fiber_exit() {
  Fiber* f = g_cur;
  Block* b = f->block;
  if (b->bar_arrived > 0)
    fatal("a thread exits while %d thread(s) of its block wait at %s (%s:%d): that barrier can never complete",
          b->bar_arrived, bar_name(b->bar_op), b->bar_site.file, b->bar_site.line);
  Warp& w = b->warps[f->warp];
  for (const WarpInst& p : w.pending)
    if (p.mask >> f->lane & 1u)
      fatal("lane %d exits while %s at %s:%d with mask 0x%08x waits for it (lanes 0x%08x arrived)", f->lane,
            op_name(p.op), p.site.file, p.site.line, p.mask, p.arrived);
  w.exited |= 1u << f->lane;
  b->exited++;
  f->state = kDone;
  switch_to_scheduler();
  fatal("a finished CUDA thread was resumed");
}

}  // namespace sim

extern "C" __attribute__((used, noinline)) inline void sim_fiber_main() {
  sim::g_launch->invoke(sim::g_launch->ctx);
  sim::fiber_exit();
}

namespace sim {

inline Region* stack_get() {
  if (!g_stack_pool.empty()) {
    Region* r = g_stack_pool.back();
    g_stack_pool.pop_back();
    return r;
  }
  return region_alloc(kStackBytes, 16, 0, kStack, "CUDA thread stack", -1);
}

inline void fiber_init(Fiber* f) {
  f->stack = stack_get();
  char* top = f->stack->user + f->stack->size;  // 16-byte aligned
#if defined(__x86_64__)
  void** sp = reinterpret_cast<void**>(top - 72);  // 6 registers + return address; see the asm
  for (int i = 0; i < 6; ++i) sp[i] = nullptr;
  sp[6] = reinterpret_cast<void*>(&sim_fiber_trampoline);
  f->sp = sp;
#else
  getcontext(&f->uc);
  f->uc.uc_stack.ss_sp = f->stack->user;
  f->uc.uc_stack.ss_size = f->stack->size;
  f->uc.uc_link = nullptr;
  makecontext(&f->uc, (void (*)())sim_fiber_main, 0);
#endif
}

inline void run_fiber(Fiber* f) {
  g_cur = f;
  threadIdx = f->tid;
  blockIdx = f->block->idx;
  counters().switches++;
#if defined(__x86_64__)
  sim_fiber_switch(&g_sched_sp, f->sp);
#else
  swapcontext(&g_sched_uc, &f->uc);
#endif
  g_cur = nullptr;
}

inline Block* block_start(Launch& L, long linear) {
  Block* b = new Block();
  const dim3 g = L.grid, bd = L.block;
  b->linear = linear;
  b->idx.x = (unsigned)(linear % g.x);
  b->idx.y = (unsigned)((linear / g.x) % g.y);
  b->idx.z = (unsigned)(linear / ((long)g.x * g.y));
  b->nthreads = (int)(bd.x * bd.y * bd.z);
  b->live = b->nthreads;
  b->warps.resize((size_t)(b->nthreads + 31) / 32);
  char label[96];
  snprintf(label, sizeof label, "dynamic shared memory of block (%u,%u,%u)", b->idx.x, b->idx.y, b->idx.z);
  b->dyn = region_alloc(L.smem, 16, 0, kShared, label, L.poison);
  b->fibers.resize((size_t)b->nthreads);
  for (int t = 0; t < b->nthreads; ++t) {
    Fiber* f = new Fiber();
    f->block = b;
    f->linear = t;
    f->tid.x = (unsigned)(t % bd.x);
    f->tid.y = (unsigned)((t / bd.x) % bd.y);
    f->tid.z = (unsigned)(t / (bd.x * bd.y));
    f->warp = t / 32;
    f->lane = t % 32;
    b->warps[(size_t)f->warp].exists |= 1u << f->lane;
    fiber_init(f);
    b->fibers[(size_t)t] = f;
  }
  for (Warp& w : b->warps) new_priority(w);
  for (Fiber* f : b->fibers) g_runq.push(f);
  return b;
}

inline void block_finish(Block* b) {
  char when[96];
  snprintf(when, sizeof when, "by block (%u,%u,%u)", b->idx.x, b->idx.y, b->idx.z);
  region_check_canary(b->dyn, when);
  region_free(b->dyn);
  for (auto& s : b->statics) {
    region_check_canary(s.second, when);
    region_free(s.second);
  }
  for (Fiber* f : b->fibers) delete f;
  delete b;
}

[[noreturn]] inline void report_deadlock(const std::vector<Block*>& live) {
  std::string msg = "deadlock: no CUDA thread can run, but some have not finished.";
  char line[512];
  for (Block* b : live) {
    if (!b) continue;
    snprintf(line, sizeof line, "\n  block (%u,%u,%u): %d of %d threads still alive", b->idx.x, b->idx.y, b->idx.z,
             b->live, b->nthreads);
    msg += line;
    if (b->bar_arrived) {
      snprintf(line, sizeof line, "; %d wait at %s (%s:%d)", b->bar_arrived, bar_name(b->bar_op), b->bar_site.file,
               b->bar_site.line);
      msg += line;
    }
    for (size_t wi = 0; wi < b->warps.size(); ++wi)
      for (const WarpInst& p : b->warps[wi].pending) {
        snprintf(line, sizeof line, "\n    warp %zu: %s at %s:%d, mask 0x%08x, arrived 0x%08x, exited 0x%08x", wi,
                 op_name(p.op), p.site.file, p.site.line, p.mask, p.arrived, b->warps[wi].exited);
        msg += line;
      }
  }
  fatal("%s", msg.c_str());
}

inline void on_watchdog(int) {
  const char m[] = "\ncuda_sim: ERROR: watchdog: a kernel launch ran longer than the watchdog allows (a thread "
                   "spinning on a condition another thread never sets?)\n";
  ssize_t ignored = write(2, m, sizeof m - 1);
  (void)ignored;
  describe_position(stderr);
  if (!cfg().context.empty()) fprintf(stderr, "cuda_sim: configuration: %s\n", cfg().context.c_str());
  fflush(stderr);
  signal(SIGABRT, SIG_DFL);
  abort();
}

inline void run_launch(Launch& L) {
  const long nblocks = (long)L.grid.x * L.grid.y * L.grid.z;
  const int threads = (int)(L.block.x * L.block.y * L.block.z);
  const DeviceProps& dp = device_props(current_device());
  long resident = std::min<long>(nblocks, std::min<long>((long)dp.sms * dp.blocks_per_sm, cfg().max_resident_blocks));
  resident = std::max<long>(1, std::min<long>(resident, cfg().max_resident_threads / std::max(1, threads)));
  // Block order: a random permutation (drawn lazily, so huge grids cost nothing up front).
  std::vector<long> order;
  const bool permute = nblocks <= (1 << 20);
  if (permute) {
    order.resize((size_t)nblocks);
    for (long i = 0; i < nblocks; ++i) order[(size_t)i] = i;
    std::shuffle(order.begin(), order.end(), rng());
  }
  g_runq.policy = cfg().sched == kSchedUniform || cfg().sched == kSchedPriority ? cfg().sched
                  : (rng()() & 1) ? kSchedPriority : kSchedUniform;
  long next = 0;
  std::vector<Block*> live;
  auto start_next = [&]() {
    Block* b = block_start(L, permute ? order[(size_t)next] : next);
    ++next;
    live.push_back(b);
  };
  for (long i = 0; i < resident; ++i) start_next();
  while (!g_runq.empty()) {
    Fiber* f = g_runq.pop();
    run_fiber(f);
    if (f->state == kDone) {
      g_stack_pool.push_back(f->stack);
      f->stack = nullptr;
      Block* b = f->block;
      if (--b->live == 0) {
        live.erase(std::find(live.begin(), live.end(), b));
        block_finish(b);
        if (next < nblocks) start_next();
      }
    }
  }
  if (!live.empty()) report_deadlock(live);
}

// ---- shared memory used by converted kernels ----------------------------------------------------

template <typename T>
inline T* dynamic_shared(size_t align) {
  Fiber* f = in_kernel("extern __shared__");
  char* p = f->block->dyn->user;
  if ((uintptr_t)p % align) fatal("dynamic shared memory is not %zu-byte aligned", align);
  return reinterpret_cast<T*>(p);
}

template <typename T, size_t Align = alignof(T)>
inline T& static_shared(int id, const char* name) {
  Fiber* f = in_kernel("__shared__");
  Block* b = f->block;
  for (auto& s : b->statics)
    if (s.first == id) return *reinterpret_cast<T*>(s.second->user);
  char label[160];
  snprintf(label, sizeof label, "__shared__ %s of block (%u,%u,%u)", name, b->idx.x, b->idx.y, b->idx.z);
  Region* r = region_alloc(sizeof(T), std::max<size_t>(Align, 16), 0, kShared, label, g_launch->poison);
  b->statics.emplace_back(id, r);
  b->static_bytes += sizeof(T);
  if (b->static_bytes > g_launch->ki->static_smem)
    fatal("static shared memory of the block (%zu bytes so far) exceeds what convert.py registered for the kernel "
          "(%zu)",
          b->static_bytes, g_launch->ki->static_smem);
  return *reinterpret_cast<T*>(r->user);
}

inline void kernel_enter(const char* pretty) {
  if (g_launch && !g_launch->pretty) g_launch->pretty = pretty;
}

// ---- memory checks for atomics and cache-hinted loads ---------------------------------------

inline void check_access(const void* p, size_t n, size_t align, const char* what, bool shared_ok, Site s) {
  if (!g_cur) fatal("%s called outside a kernel (at %s:%d)", what, s.file, s.line);
  if ((uintptr_t)p % align)
    fatal("%s at %s:%d on misaligned address %p (needs %zu-byte alignment): a GPU raises cudaErrorMisalignedAddress",
          what, s.file, s.line, p, align);
  Region* r = find_in(regions(), p);
  if (!r || (r->kind != kGlobal && !(shared_ok && r->kind == kShared)) || (const char*)p < r->user ||
      (const char*)p + n > r->user + r->size)
    fatal("%s at %s:%d on address %p, which is not inside %s (%s)", what, s.file, s.line, p,
          shared_ok ? "device or shared memory" : "device memory",
          r ? ("near " + r->label).c_str() : "no emulated allocation near it");
}

// ---- launch -------------------------------------------------------------------------------------

template <typename F, typename Tup>
struct LaunchCtx {
  F f;
  Tup args;
  static void invoke(void* p) {
    auto* c = static_cast<LaunchCtx*>(p);
    std::apply(c->f, c->args);
  }
};

inline cudaError_t launch_error(cudaError_t e, const char* kname, const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  fprintf(stderr, "cuda_sim: launch of %s fails (cudaError %d): %s\n", kname, (int)e, buf);
  if (!cfg().context.empty()) fprintf(stderr, "cuda_sim: configuration: %s\n", cfg().context.c_str());
  counters().launch_errors++;
  last_error() = e;
  return e;
}

template <typename F, typename... A>
inline void launch(F fn, dim3 grid, dim3 block, size_t smem, cudaStream_t stream, A&&... args) {
  static_assert(std::is_pointer<F>::value && std::is_function<typename std::remove_pointer<F>::type>::value,
                "a kernel launch needs a function");
  if (g_cur) fatal("kernel launch from device code (dynamic parallelism) is not emulated");
  const void* key = reinterpret_cast<const void*>(fn);
  KernelInfo* ki = kernel_info(key);
  if (!ki) fatal("launch of a function that is not a converted __global__ kernel");
  const DeviceProps& dp = device_props(current_device());
  const long threads = (long)block.x * block.y * block.z;
  if (threads < 1 || threads > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64) {
    launch_error(cudaErrorInvalidConfiguration, ki->name, "block (%u,%u,%u)", block.x, block.y, block.z);
    return;
  }
  if (grid.x < 1 || grid.y < 1 || grid.z < 1 || grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535) {
    launch_error(cudaErrorInvalidConfiguration, ki->name, "grid (%u,%u,%u)", grid.x, grid.y, grid.z);
    return;
  }
  if (threads > ki->max_threads) {
    launch_error(cudaErrorLaunchOutOfResources, ki->name, "%ld threads per block > __launch_bounds__ %d", threads,
                 ki->max_threads);
    return;
  }
  auto lim = ki->max_dyn_smem.find(current_device());
  const long max_dyn = lim == ki->max_dyn_smem.end() ? default_max_dyn_smem(dp, *ki) : lim->second;
  if ((long)smem > max_dyn) {
    launch_error(cudaErrorInvalidValue, ki->name,
                 "%zu bytes of dynamic shared memory > %ld allowed (%s; the kernel has %zu bytes of static shared "
                 "memory)",
                 smem, max_dyn,
                 lim == ki->max_dyn_smem.end()
                     ? "48 KiB minus static before cudaFuncSetAttribute(cudaFuncAttributeMaxDynamicSharedMemorySize)"
                     : "the limit set with cudaFuncSetAttribute",
                 ki->static_smem);
    return;
  }
  if ((long)(smem + ki->static_smem) > dp.smem_optin) {
    launch_error(cudaErrorInvalidValue, ki->name, "%zu dynamic + %zu static bytes of shared memory > device opt-in %d",
                 smem, ki->static_smem, dp.smem_optin);
    return;
  }
  counters().launches++;
  stream_log().push_back(stream);
  if (cfg().trace)
    fprintf(stderr, "cuda_sim: launch %s on device %d: grid (%u,%u,%u) block (%u,%u,%u) dynamic smem %zu, static %zu\n",
            ki->name, current_device(), grid.x, grid.y, grid.z, block.x, block.y, block.z, smem, ki->static_smem);
  using Tup = std::tuple<typename std::decay<A>::type...>;
  LaunchCtx<F, Tup> ctx{fn, Tup(std::forward<A>(args)...)};
  Launch L;
  L.fn = key;
  L.ki = ki;
  L.invoke = &LaunchCtx<F, Tup>::invoke;
  L.ctx = &ctx;
  L.grid = grid;
  L.block = block;
  L.smem = smem;
  static const int poisons[] = {0xCD, 0xFF, 0x7F, 0x80, 0x3C, 0xA5};
  L.poison = poisons[rng()() % 6];
  g_launch = &L;
  gridDim = grid;
  blockDim = block;
  device_access(true);
  if (cfg().watchdog_s) {
    signal(SIGALRM, on_watchdog);
    alarm(cfg().watchdog_s);
  }
  run_launch(L);
  if (cfg().watchdog_s) alarm(0);
  device_access(false);
  check_device_canaries("by the kernel");
  g_launch = nullptr;
}

// ---- fault reporting ----------------------------------------------------------------------------

inline void on_fault(int sig, siginfo_t* si, void*) {
  const char* a = static_cast<const char*>(si->si_addr);
  fflush(stdout);
  fprintf(stderr, "\ncuda_sim: ERROR: %s at address %p: ", sig == SIGSEGV ? "segmentation fault" : "bus error",
          (const void*)a);
  Region* r = find_region(a);
  if (!r) {
    fprintf(stderr, "not emulated device/shared memory (a host pointer, or an out-of-bounds access far away)\n");
  } else if (r->kind == kStack) {
    fprintf(stderr, "%s of a CUDA thread stack (stack overflow?)\n",
            a < r->data ? "guard page below" : "guard page above");
  } else if (a < r->data) {
    fprintf(stderr, "guard page below %s #%ld (%zu bytes at %p): out of bounds by %ld bytes before its start\n",
            r->label.c_str(), r->id, r->size, (void*)r->user, (long)(r->user - a));
  } else if (a >= r->data + r->data_len) {
    fprintf(stderr, "guard page above %s #%ld (%zu bytes at %p): %ld bytes past its end\n", r->label.c_str(), r->id,
            r->size, (void*)r->user, (long)(a - (r->user + r->size)));
  } else if (!r->open) {
    fprintf(stderr,
            "%s #%ld (%zu bytes at %p), offset %ld, touched while no kernel runs: host code dereferenced a device "
            "pointer\n",
            r->label.c_str(), r->id, r->size, (void*)r->user, (long)(a - r->user));
  } else {
    fprintf(stderr, "inside %s #%ld at offset %ld (unexpected)\n", r->label.c_str(), r->id, (long)(a - r->user));
  }
  describe_position(stderr);
  if (!cfg().context.empty()) fprintf(stderr, "cuda_sim: configuration: %s\n", cfg().context.c_str());
  fflush(stderr);
  signal(SIGABRT, SIG_DFL);
  abort();
}

}  // namespace sim

// UBSan (the kernel translation units are built with it) calls this before it aborts: say where.
extern "C" void __sanitizer_set_death_callback(void (*)(void)) __attribute__((weak));

namespace sim {

inline void on_sanitizer_death() {
  describe_position(stderr);
  if (!cfg().context.empty()) fprintf(stderr, "cuda_sim: configuration: %s\n", cfg().context.c_str());
  fflush(stderr);
}

inline void install_signal_handlers() {
  static bool done = false;
  if (done) return;
  done = true;
  if (__sanitizer_set_death_callback) __sanitizer_set_death_callback(on_sanitizer_death);
  static char altstack[256 * 1024];
  stack_t ss{};
  ss.ss_sp = altstack;
  ss.ss_size = sizeof altstack;
  sigaltstack(&ss, nullptr);
  struct sigaction sa {};
  sa.sa_sigaction = on_fault;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, nullptr);
  sigaction(SIGBUS, &sa, nullptr);
}

// ---- driver helpers -----------------------------------------------------------------------------

// "prog [iterations] [seed]" or "--iters N --seed S"; -v prints every configuration;
// --lenient-smem-default: see default_max_dyn_smem.
struct Args {
  long iters;
  uint64_t seed;
  bool verbose = false;
};
inline Args parse_args(int argc, char** argv, long default_iters) {
  Args a{default_iters, 1, false};
  int pos = 0;
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    if ((s == "--iters" || s == "-n") && i + 1 < argc) {
      a.iters = atol(argv[++i]);
    } else if ((s == "--seed" || s == "-s") && i + 1 < argc) {
      a.seed = strtoull(argv[++i], nullptr, 10);
    } else if (s == "-v" || s == "--verbose") {
      a.verbose = true;
    } else if (s == "--lenient-smem-default") {
      cfg().lenient_default_smem = true;
    } else if (!s.empty() && s[0] != '-') {
      if (pos == 0)
        a.iters = atol(s.c_str());
      else
        a.seed = strtoull(s.c_str(), nullptr, 10);
      ++pos;
    } else {
      fprintf(stderr, "usage: %s [--iters N] [--seed S] [-v] [--lenient-smem-default]\n", argv[0]);
      exit(2);
    }
  }
  return a;
}

// Checks that everything since `before` went to `stream`, with no synchronisation, allocation
// or launch error; returns a description of the first violation or "".
inline std::string check_async_contract(const Counters& before, size_t log_before, cudaStream_t stream) {
  const Counters& c = counters();
  char buf[256];
  if (c.launch_errors != before.launch_errors) return "a launch failed (see the cuda_sim message above)";
  if (c.syncs != before.syncs) {
    snprintf(buf, sizeof buf, "%lld host synchronisation(s)", c.syncs - before.syncs);
    return buf;
  }
  if (c.allocs != before.allocs || c.frees != before.frees) return "device memory allocated or freed";
  for (size_t i = log_before; i < stream_log().size(); ++i)
    if (stream_log()[i] != stream) {
      snprintf(buf, sizeof buf, "operation %zu went to stream %p instead of the given %p", i - log_before,
               (void*)stream_log()[i], (void*)stream);
      return buf;
    }
  return "";
}

}  // namespace sim

// ================================================================================================
// device-side API (global namespace, as CUDA has it)
// ================================================================================================

// ---- barriers and warp intrinsics ---------------------------------------------------------------

inline void __syncthreads(sim::Site s = SIM_SITE_DEFAULT) { sim::block_barrier(sim::kBarSync, 0, s); }
inline int __syncthreads_count(int p, sim::Site s = SIM_SITE_DEFAULT) {
  return sim::block_barrier(sim::kBarCount, p, s);
}
inline int __syncthreads_and(int p, sim::Site s = SIM_SITE_DEFAULT) { return sim::block_barrier(sim::kBarAnd, p, s); }
inline int __syncthreads_or(int p, sim::Site s = SIM_SITE_DEFAULT) { return sim::block_barrier(sim::kBarOr, p, s); }
inline void __syncwarp(unsigned mask = 0xFFFFFFFFu, sim::Site s = SIM_SITE_DEFAULT) {
  sim::warp_collective(sim::kOpSyncWarp, mask, 0, 0, 32, s);
}
inline void __threadfence() { sim::maybe_yield(); }
inline void __threadfence_block() {}
inline void __threadfence_system() { sim::maybe_yield(); }
unsigned __activemask() = delete;  // depends on the hardware's convergence: not emulated

struct __half {
  unsigned short __x;
};
struct __half2 {
  __half x, y;
};
struct __nv_bfloat16 {
  unsigned short __x;
};

namespace sim {
template <typename T>
struct is_shfl_type
    : std::integral_constant<bool, std::is_same<T, int>::value || std::is_same<T, unsigned int>::value ||
                                       std::is_same<T, long>::value || std::is_same<T, unsigned long>::value ||
                                       std::is_same<T, long long>::value ||
                                       std::is_same<T, unsigned long long>::value || std::is_same<T, float>::value ||
                                       std::is_same<T, double>::value || std::is_same<T, __half>::value ||
                                       std::is_same<T, __half2>::value ||
                                       std::is_same<T, __nv_bfloat16>::value> {};
template <typename T>
inline uint64_t to_bits(T v) {
  uint64_t b = 0;
  memcpy(&b, &v, sizeof v);
  return b;
}
template <typename T>
inline T from_bits(uint64_t b) {
  T v;
  memcpy(&v, &b, sizeof v);
  return v;
}
template <typename T>
inline T shfl(int op, unsigned mask, T v, int arg, int width, Site s) {
  static_assert(is_shfl_type<T>::value, "CUDA has no warp shuffle for this type");
  return from_bits<T>(warp_collective(op, mask, to_bits(v), arg, width, s));
}
}  // namespace sim

template <typename T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = warpSize, sim::Site s = SIM_SITE_DEFAULT) {
  return sim::shfl(sim::kOpShflIdx, mask, v, src, width, s);
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = warpSize, sim::Site s = SIM_SITE_DEFAULT) {
  return sim::shfl(sim::kOpShflUp, mask, v, (int)delta, width, s);
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = warpSize, sim::Site s = SIM_SITE_DEFAULT) {
  return sim::shfl(sim::kOpShflDown, mask, v, (int)delta, width, s);
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = warpSize, sim::Site s = SIM_SITE_DEFAULT) {
  return sim::shfl(sim::kOpShflXor, mask, v, lane_mask, width, s);
}
inline unsigned __ballot_sync(unsigned mask, int pred, sim::Site s = SIM_SITE_DEFAULT) {
  return (unsigned)sim::warp_collective(sim::kOpBallot, mask, pred != 0, 0, 32, s);
}
inline int __any_sync(unsigned mask, int pred, sim::Site s = SIM_SITE_DEFAULT) {
  return (int)sim::warp_collective(sim::kOpAny, mask, pred != 0, 0, 32, s);
}
inline int __all_sync(unsigned mask, int pred, sim::Site s = SIM_SITE_DEFAULT) {
  return (int)sim::warp_collective(sim::kOpAll, mask, pred != 0, 0, 32, s);
}
namespace sim {
template <typename T>
struct is_match_type
    : std::integral_constant<bool, std::is_same<T, int>::value || std::is_same<T, unsigned int>::value ||
                                       std::is_same<T, long>::value || std::is_same<T, unsigned long>::value ||
                                       std::is_same<T, long long>::value ||
                                       std::is_same<T, unsigned long long>::value || std::is_same<T, float>::value ||
                                       std::is_same<T, double>::value> {};
}  // namespace sim
template <typename T>
inline unsigned __match_any_sync(unsigned mask, T v, sim::Site s = SIM_SITE_DEFAULT) {
  static_assert(sim::is_match_type<T>::value, "CUDA has no __match_any_sync for this type");
  return (unsigned)sim::warp_collective(sim::kOpMatchAny, mask, sim::to_bits(v), 0, 32, s);
}
template <typename T>
inline unsigned __match_all_sync(unsigned mask, T v, int* pred, sim::Site s = SIM_SITE_DEFAULT) {
  static_assert(sim::is_match_type<T>::value, "CUDA has no __match_all_sync for this type");
  return (unsigned)sim::warp_collective(sim::kOpMatchAll, mask, sim::to_bits(v), 0, 32, s, pred);
}
inline unsigned __reduce_add_sync(unsigned mask, unsigned v, sim::Site s = SIM_SITE_DEFAULT) {
  return (unsigned)sim::warp_collective(sim::kOpReduceAddU, mask, v, 0, 32, s);
}
inline int __reduce_add_sync(unsigned mask, int v, sim::Site s = SIM_SITE_DEFAULT) {
  return (int)(unsigned)sim::warp_collective(sim::kOpReduceAddI, mask, (unsigned)v, 0, 32, s);
}
inline unsigned __reduce_min_sync(unsigned mask, unsigned v, sim::Site s = SIM_SITE_DEFAULT) {
  return (unsigned)sim::warp_collective(sim::kOpReduceMinU, mask, v, 0, 32, s);
}
inline int __reduce_min_sync(unsigned mask, int v, sim::Site s = SIM_SITE_DEFAULT) {
  return (int)(unsigned)sim::warp_collective(sim::kOpReduceMinI, mask, (unsigned)v, 0, 32, s);
}
inline unsigned __reduce_max_sync(unsigned mask, unsigned v, sim::Site s = SIM_SITE_DEFAULT) {
  return (unsigned)sim::warp_collective(sim::kOpReduceMaxU, mask, v, 0, 32, s);
}
inline int __reduce_max_sync(unsigned mask, int v, sim::Site s = SIM_SITE_DEFAULT) {
  return (int)(unsigned)sim::warp_collective(sim::kOpReduceMaxI, mask, (unsigned)v, 0, 32, s);
}
inline unsigned __reduce_and_sync(unsigned mask, unsigned v, sim::Site s = SIM_SITE_DEFAULT) {
  return (unsigned)sim::warp_collective(sim::kOpReduceAnd, mask, v, 0, 32, s);
}
inline unsigned __reduce_or_sync(unsigned mask, unsigned v, sim::Site s = SIM_SITE_DEFAULT) {
  return (unsigned)sim::warp_collective(sim::kOpReduceOr, mask, v, 0, 32, s);
}
inline unsigned __reduce_xor_sync(unsigned mask, unsigned v, sim::Site s = SIM_SITE_DEFAULT) {
  return (unsigned)sim::warp_collective(sim::kOpReduceXor, mask, v, 0, 32, s);
}

// ---- atomics: exactly CUDA's overloads (others do not compile, as with nvcc) ----------------------

namespace sim {
template <typename T, typename Fn>
inline T atomic_rmw(T* a, const char* what, Site s, Fn fn) {
  check_access(a, sizeof(T), sizeof(T), what, true, s);
  counters().atomics++;
  maybe_yield();
  T old = *a;  // one OS thread runs every CUDA thread: a read-modify-write without a switch is atomic
  *a = fn(old);
  return old;
}
}  // namespace sim

#define SIM_ATOMIC(NAME, T, EXPR)                                                               \
  inline T NAME(T* a, T v, sim::Site s = SIM_SITE_DEFAULT) {                                     \
    return sim::atomic_rmw(a, #NAME "(" #T ")", s, [&](T old) -> T { return (T)(EXPR); });       \
  }
SIM_ATOMIC(atomicAdd, int, old + v)
SIM_ATOMIC(atomicAdd, unsigned int, old + v)
SIM_ATOMIC(atomicAdd, unsigned long long, old + v)
SIM_ATOMIC(atomicAdd, float, old + v)
SIM_ATOMIC(atomicAdd, double, old + v)
SIM_ATOMIC(atomicSub, int, old - v)
SIM_ATOMIC(atomicSub, unsigned int, old - v)
SIM_ATOMIC(atomicExch, int, v)
SIM_ATOMIC(atomicExch, unsigned int, v)
SIM_ATOMIC(atomicExch, unsigned long long, v)
SIM_ATOMIC(atomicExch, float, v)
SIM_ATOMIC(atomicMin, int, v < old ? v : old)
SIM_ATOMIC(atomicMin, unsigned int, v < old ? v : old)
SIM_ATOMIC(atomicMin, long long, v < old ? v : old)
SIM_ATOMIC(atomicMin, unsigned long long, v < old ? v : old)
SIM_ATOMIC(atomicMax, int, v > old ? v : old)
SIM_ATOMIC(atomicMax, unsigned int, v > old ? v : old)
SIM_ATOMIC(atomicMax, long long, v > old ? v : old)
SIM_ATOMIC(atomicMax, unsigned long long, v > old ? v : old)
SIM_ATOMIC(atomicAnd, int, old & v)
SIM_ATOMIC(atomicAnd, unsigned int, old & v)
SIM_ATOMIC(atomicAnd, unsigned long long, old & v)
SIM_ATOMIC(atomicOr, int, old | v)
SIM_ATOMIC(atomicOr, unsigned int, old | v)
SIM_ATOMIC(atomicOr, unsigned long long, old | v)
SIM_ATOMIC(atomicXor, int, old ^ v)
SIM_ATOMIC(atomicXor, unsigned int, old ^ v)
SIM_ATOMIC(atomicXor, unsigned long long, old ^ v)
SIM_ATOMIC(atomicInc, unsigned int, old >= v ? 0u : old + 1u)
SIM_ATOMIC(atomicDec, unsigned int, (old == 0u || old > v) ? v : old - 1u)
#undef SIM_ATOMIC
#define SIM_ATOMIC_CAS(T)                                                                                  \
  inline T atomicCAS(T* a, T compare, T v, sim::Site s = SIM_SITE_DEFAULT) {                                \
    return sim::atomic_rmw(a, "atomicCAS(" #T ")", s, [&](T old) -> T { return old == compare ? v : old; }); \
  }
SIM_ATOMIC_CAS(int)
SIM_ATOMIC_CAS(unsigned int)
SIM_ATOMIC_CAS(unsigned long long)
SIM_ATOMIC_CAS(unsigned short)
#undef SIM_ATOMIC_CAS

// ---- cache-hinted loads / stores (global memory only) ---------------------------------------------

#define SIM_LOAD(NAME)                                                                  \
  template <typename T>                                                                 \
  inline T NAME(const T* p, sim::Site s = SIM_SITE_DEFAULT) {                            \
    static_assert(std::is_trivially_copyable<T>::value, #NAME " of a non-trivial type"); \
    sim::check_access(p, sizeof(T), alignof(T), #NAME, false, s);                        \
    return *p;                                                                          \
  }
SIM_LOAD(__ldg)
SIM_LOAD(__ldcg)
SIM_LOAD(__ldca)
SIM_LOAD(__ldcs)
SIM_LOAD(__ldlu)
SIM_LOAD(__ldcv)
#undef SIM_LOAD
#define SIM_STORE(NAME)                                                                  \
  template <typename T>                                                                  \
  inline void NAME(T* p, T v, sim::Site s = SIM_SITE_DEFAULT) {                           \
    static_assert(std::is_trivially_copyable<T>::value, #NAME " of a non-trivial type");  \
    sim::check_access(p, sizeof(T), alignof(T), #NAME, false, s);                         \
    *p = v;                                                                              \
  }
SIM_STORE(__stcg)
SIM_STORE(__stcs)
SIM_STORE(__stwt)
SIM_STORE(__stwb)
#undef SIM_STORE

// ---- integer / bit intrinsics -------------------------------------------------------------------

inline int __popc(unsigned int x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll((unsigned long long)x); }
inline unsigned int __brev(unsigned int x) {
  unsigned r = 0;
  for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
  return r;
}
inline unsigned long long __brevll(unsigned long long x) {
  unsigned long long r = 0;
  for (int i = 0; i < 64; ++i) r |= ((x >> i) & 1ull) << (63 - i);
  return r;
}
inline unsigned int __umulhi(unsigned int a, unsigned int b) { return (unsigned)(((unsigned long long)a * b) >> 32); }
inline int __mulhi(int a, int b) { return (int)(((long long)a * b) >> 32); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
inline long long __mul64hi(long long a, long long b) { return (long long)(((__int128)a * b) >> 64); }
inline unsigned int __funnelshift_l(unsigned lo, unsigned hi, unsigned shift) {
  const unsigned long long v = ((unsigned long long)hi << 32) | lo;
  return (unsigned)((v << (shift & 31)) >> 32);
}
inline unsigned int __funnelshift_r(unsigned lo, unsigned hi, unsigned shift) {
  const unsigned long long v = ((unsigned long long)hi << 32) | lo;
  return (unsigned)(v >> (shift & 31));
}
inline long long clock64() { return (long long)sim::counters().switches; }
inline void __nanosleep(unsigned) { sim::maybe_yield(); }

// min / max as CUDA's math headers overload them (mixed types do not compile here; nvcc would
// pick a promoted overload, so such a call is worth a look anyway).
#define SIM_MINMAX(T)                              \
  inline T min(T a, T b) { return a < b ? a : b; } \
  inline T max(T a, T b) { return a > b ? a : b; }
SIM_MINMAX(int)
SIM_MINMAX(unsigned int)
SIM_MINMAX(long)
SIM_MINMAX(unsigned long)
SIM_MINMAX(long long)
SIM_MINMAX(unsigned long long)
#undef SIM_MINMAX
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }

// ---- reinterpretation and conversions (PTX cvt semantics: round as named, saturate, NaN -> 0) ---

inline float __int_as_float(int b) { return sim::from_bits<float>((uint32_t)b); }
inline int __float_as_int(float f) { return (int)(uint32_t)sim::to_bits(f); }
inline float __uint_as_float(unsigned int b) { return sim::from_bits<float>(b); }
inline unsigned int __float_as_uint(float f) { return (uint32_t)sim::to_bits(f); }
inline double __longlong_as_double(long long b) { return sim::from_bits<double>((uint64_t)b); }
inline long long __double_as_longlong(double d) { return (long long)sim::to_bits(d); }
inline int __double2hiint(double d) { return (int)(uint32_t)(sim::to_bits(d) >> 32); }
inline int __double2loint(double d) { return (int)(uint32_t)sim::to_bits(d); }
inline double __hiloint2double(int hi, int lo) {
  return sim::from_bits<double>(((uint64_t)(uint32_t)hi << 32) | (uint32_t)lo);
}

namespace sim {
enum Round { kRN, kRZ, kRD, kRU };
inline long double round_as(long double x, Round r) {
  switch (r) {
    case kRN: return nearbyintl(x);  // default rounding mode: to nearest even
    case kRZ: return truncl(x);
    case kRD: return floorl(x);
    default: return ceill(x);
  }
}
template <typename I>
inline I cvt_int(double x, Round r) {
  if (x != x) return 0;
  const long double v = round_as((long double)x, r);
  if (v <= (long double)std::numeric_limits<I>::min()) return std::numeric_limits<I>::min();
  if (v >= (long double)std::numeric_limits<I>::max()) return std::numeric_limits<I>::max();
  return (I)v;
}
}  // namespace sim
#define SIM_CVT(SRC, DST, T)                                                                                     \
  inline T __##SRC##2##DST##_rn(SRC x) { return sim::cvt_int<T>((double)x, sim::kRN); }                        \
  inline T __##SRC##2##DST##_rz(SRC x) { return sim::cvt_int<T>((double)x, sim::kRZ); }                        \
  inline T __##SRC##2##DST##_rd(SRC x) { return sim::cvt_int<T>((double)x, sim::kRD); }                        \
  inline T __##SRC##2##DST##_ru(SRC x) { return sim::cvt_int<T>((double)x, sim::kRU); }
SIM_CVT(double, int, int)
SIM_CVT(double, uint, unsigned int)
SIM_CVT(double, ll, long long)
SIM_CVT(double, ull, unsigned long long)
SIM_CVT(float, int, int)
SIM_CVT(float, uint, unsigned int)
SIM_CVT(float, ll, long long)
SIM_CVT(float, ull, unsigned long long)
#undef SIM_CVT
// Integer -> double with the default rounding (to nearest even), which is what the compiler's
// conversions do; _rz etc. are not needed by the kernels and are left out.
inline double __ull2double_rn(unsigned long long v) { return (double)v; }
inline double __ll2double_rn(long long v) { return (double)v; }
inline double __int2double_rn(int v) { return (double)v; }
inline double __uint2double_rn(unsigned int v) { return (double)v; }
inline float __ull2float_rn(unsigned long long v) { return (float)v; }
inline float __ll2float_rn(long long v) { return (float)v; }
inline float __int2float_rn(int v) { return (float)v; }
inline float __uint2float_rn(unsigned int v) { return (float)v; }
inline float __double2float_rn(double v) { return (float)v; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
inline float __saturatef(float x) { return x != x ? 0.0f : x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x; }

// ---- 16-bit floats ------------------------------------------------------------------------------

inline __half __ushort_as_half(unsigned short b) { return __half{b}; }
inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline float __half2float(__half h) {
  _Float16 f;
  memcpy(&f, &h.__x, 2);
  return (float)f;  // exact
}
inline __half __float2half(float f) {
  _Float16 h = (_Float16)f;  // round to nearest even, as __float2half
  __half r;
  memcpy(&r.__x, &h, 2);
  return r;
}
inline __half __float2half_rn(float f) { return __float2half(f); }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short b) { return __nv_bfloat16{b}; }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.__x; }
inline float __bfloat162float(__nv_bfloat16 h) { return __uint_as_float((unsigned)h.__x << 16); }
inline __nv_bfloat16 __float2bfloat16(float f) {
  uint32_t b = __float_as_uint(f);
  if ((b & 0x7FFFFFFFu) > 0x7F800000u) return __nv_bfloat16{(unsigned short)((b >> 16) | 0x40u)};
  b += 0x7FFFu + ((b >> 16) & 1u);
  return __nv_bfloat16{(unsigned short)(b >> 16)};
}

// ---- math: the host library's functions under CUDA's names -----------------------------------------
using std::isfinite;
using std::isinf;
using std::isnan;
using std::signbit;

// ================================================================================================
// runtime API
// ================================================================================================

inline cudaError_t cudaGetLastError() {
  cudaError_t e = sim::last_error();
  sim::last_error() = cudaSuccess;
  return e;
}
inline cudaError_t cudaPeekAtLastError() { return sim::last_error(); }
inline const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
    case cudaErrorInvalidDeviceFunction: return "cudaErrorInvalidDeviceFunction";
    default: return "cudaError(emulated)";
  }
}
inline const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorInvalidDeviceFunction: return "invalid device function";
    default: return "emulated CUDA error";
  }
}
inline cudaError_t cudaGetDeviceCount(int* n) {
  *n = (int)sim::cfg().devices.size();
  return cudaSuccess;
}
inline cudaError_t cudaGetDevice(int* d) {
  *d = sim::current_device();
  return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int d) {
  if (d < 0 || d >= (int)sim::cfg().devices.size()) return sim::last_error() = cudaErrorInvalidDevice;
  sim::current_device() = d;
  return cudaSuccess;
}
inline cudaError_t cudaRuntimeGetVersion(int* v) {
  *v = 12040;
  return cudaSuccess;
}
inline cudaError_t cudaDriverGetVersion(int* v) {
  *v = 12040;
  return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int dev) {
  if (dev < 0 || dev >= (int)sim::cfg().devices.size()) return cudaErrorInvalidDevice;
  const sim::DeviceProps& p = sim::cfg().devices[(size_t)dev];
  switch (a) {
    case cudaDevAttrMaxThreadsPerBlock: *v = 1024; break;
    case cudaDevAttrMaxBlockDimX: *v = 1024; break;
    case cudaDevAttrMaxGridDimX: *v = 2147483647; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *v = p.smem_per_block; break;
    case cudaDevAttrWarpSize: *v = 32; break;
    case cudaDevAttrMultiProcessorCount: *v = p.sms; break;
    case cudaDevAttrL2CacheSize: *v = 50 << 20; break;
    case cudaDevAttrMaxThreadsPerMultiProcessor: *v = p.threads_per_sm; break;
    case cudaDevAttrComputeCapabilityMajor: *v = p.cc_major; break;
    case cudaDevAttrComputeCapabilityMinor: *v = p.cc_minor; break;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor: *v = p.smem_per_sm; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = p.smem_optin; break;
    default: sim::fatal("cudaDeviceGetAttribute: attribute %d is not emulated", (int)a);
  }
  return cudaSuccess;
}

inline cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attr, const void* fn) {
  sim::KernelInfo* k = sim::kernel_info(fn);
  if (!k) return sim::last_error() = cudaErrorInvalidDeviceFunction;
  const sim::DeviceProps& p = sim::device_props(sim::current_device());
  memset(attr, 0, sizeof *attr);
  attr->sharedSizeBytes = k->static_smem;
  attr->maxThreadsPerBlock = k->max_threads;
  auto lim = k->max_dyn_smem.find(sim::current_device());
  attr->maxDynamicSharedSizeBytes = lim == k->max_dyn_smem.end() ? (int)sim::default_max_dyn_smem(p, *k) : lim->second;
  attr->ptxVersion = attr->binaryVersion = p.cc_major * 10 + p.cc_minor;
  attr->preferredShmemCarveout = -1;
  return cudaSuccess;
}
template <typename T>
inline cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attr, T* fn) {
  return cudaFuncGetAttributes(attr, reinterpret_cast<const void*>(fn));
}
inline cudaError_t cudaFuncSetAttribute(const void* fn, cudaFuncAttribute a, int value) {
  sim::KernelInfo* k = sim::kernel_info(fn);
  if (!k) return sim::last_error() = cudaErrorInvalidDeviceFunction;
  if (a == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    const sim::DeviceProps& p = sim::device_props(sim::current_device());
    if (value < 0 || value + (long)k->static_smem > p.smem_optin) return sim::last_error() = cudaErrorInvalidValue;
    k->max_dyn_smem[sim::current_device()] = value;
    return cudaSuccess;
  }
  if (a == cudaFuncAttributePreferredSharedMemoryCarveout) return cudaSuccess;
  return sim::last_error() = cudaErrorInvalidValue;
}
template <typename T>
inline cudaError_t cudaFuncSetAttribute(T* fn, cudaFuncAttribute a, int value) {
  return cudaFuncSetAttribute(reinterpret_cast<const void*>(fn), a, value);
}
// Resident blocks per SM: the device's emulated cap, limited by threads and shared memory as the
// hardware would (0 when the configuration cannot launch at all).
inline cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* n, const void* fn, int block_size,
                                                                size_t dyn_smem) {
  sim::KernelInfo* k = sim::kernel_info(fn);
  if (!k) return sim::last_error() = cudaErrorInvalidDeviceFunction;
  const sim::DeviceProps& p = sim::device_props(sim::current_device());
  auto lim = k->max_dyn_smem.find(sim::current_device());
  const long max_dyn = lim == k->max_dyn_smem.end() ? sim::default_max_dyn_smem(p, *k) : lim->second;
  if (block_size < 1 || block_size > k->max_threads || (long)dyn_smem > max_dyn) {
    *n = 0;
    return cudaSuccess;
  }
  long r = p.blocks_per_sm;
  r = std::min<long>(r, p.threads_per_sm / (((long)block_size + 31) / 32 * 32));
  const long smem = (long)dyn_smem + (long)k->static_smem;
  if (smem > 0) r = std::min<long>(r, p.smem_per_sm / (smem + 1024));
  *n = (int)std::max<long>(r, 0);
  return cudaSuccess;
}
template <typename T>
inline cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* n, T* fn, int block_size, size_t dyn_smem) {
  return cudaOccupancyMaxActiveBlocksPerMultiprocessor(n, reinterpret_cast<const void*>(fn), block_size, dyn_smem);
}

inline cudaError_t cudaStreamCreate(cudaStream_t* s) {
  static int ids = 0;
  *s = new CUstream_st{++ids};
  return cudaSuccess;
}
inline cudaError_t cudaStreamDestroy(cudaStream_t s) {
  delete s;
  return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) {
  sim::counters().syncs++;
  return cudaSuccess;
}
inline cudaError_t cudaDeviceSynchronize() {
  sim::counters().syncs++;
  return cudaSuccess;
}
inline cudaError_t cudaMalloc(void** p, size_t n) {
  sim::counters().allocs++;
  *p = sim::device_alloc(n, "cudaMalloc", 256);
  return cudaSuccess;
}
template <typename T>
inline cudaError_t cudaMalloc(T** p, size_t n) {
  return cudaMalloc(reinterpret_cast<void**>(p), n);
}
inline cudaError_t cudaFree(void* p) {
  sim::counters().frees++;
  sim::device_free(p);
  return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t stream = nullptr) {
  sim::counters().memsets++;
  sim::stream_log().push_back(stream);
  sim::device_memset(p, v, n);
  return cudaSuccess;
}
inline cudaError_t cudaMemset(void* p, int v, size_t n) {
  sim::counters().syncs++;
  return cudaMemsetAsync(p, v, n, nullptr);
}
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t n, cudaMemcpyKind kind,
                                   cudaStream_t stream = nullptr) {
  sim::counters().memcpys++;
  sim::stream_log().push_back(stream);
  if (!n) return cudaSuccess;
  const bool dst_dev = sim::find_in(sim::regions(), dst) != nullptr;
  const bool src_dev = sim::find_in(sim::regions(), src) != nullptr;
  if (kind == cudaMemcpyDefault) kind = src_dev ? (dst_dev ? cudaMemcpyDeviceToDevice : cudaMemcpyDeviceToHost)
                                                : (dst_dev ? cudaMemcpyHostToDevice : cudaMemcpyHostToHost);
  switch (kind) {
    case cudaMemcpyHostToDevice: sim::copy_to_device(dst, src, n); break;
    case cudaMemcpyDeviceToHost: sim::copy_from_device(dst, src, n); break;
    case cudaMemcpyDeviceToDevice: {
      std::vector<char> tmp(n);
      sim::copy_from_device(tmp.data(), src, n);
      sim::copy_to_device(dst, tmp.data(), n);
      break;
    }
    default: memcpy(dst, src, n);
  }
  return cudaSuccess;
}
inline cudaError_t cudaMemcpy(void* dst, const void* src, size_t n, cudaMemcpyKind kind) {
  sim::counters().syncs++;
  return cudaMemcpyAsync(dst, src, n, kind, nullptr);
}
