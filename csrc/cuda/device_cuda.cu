// CUDA runtime probe: device count, runtime/driver versions and a one-thread kernel
// launch on a caller-given stream. It proves the nvcc build wiring and lets Python ask
// "is there a usable device?" without torch.
#include <cuda_runtime.h>

#include <cstdio>

#include "cuda/device_cuda.h"

namespace tbfast {

namespace {
__global__ void probe_kernel(int* out) { *out = 42; }
}  // namespace

int cuda_device_count(int* count) {
  *count = 0;
  cudaError_t err = cudaGetDeviceCount(count);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device / no driver" error
    *count = 0;
  }
  return (int)err;
}

int cuda_versions(int* runtime, int* driver) {
  *runtime = 0;
  *driver = 0;
  cudaRuntimeGetVersion(runtime);
  return (int)cudaDriverGetVersion(driver);
}

const char* cuda_error_string(int code) { return cudaGetErrorString((cudaError_t)code); }

namespace {
thread_local char last_error[256] = "";
}  // namespace

const char* cuda_last_error_message() { return last_error; }

void cuda_record_error(int code, const char* where) {
  snprintf(last_error, sizeof last_error, "%s: %s (cudaError %d)", where, cudaGetErrorString((cudaError_t)code), code);
}

int cuda_set_device(int device) {
  int current = -1;
  if (cudaGetDevice(&current) == cudaSuccess && current == device) return 0;
  return (int)cudaSetDevice(device);
}

int cuda_probe(void* stream, int* result) {
  int* d = nullptr;
  cudaError_t err = cudaMalloc(&d, sizeof(int));
  if (err != cudaSuccess) return (int)err;
  cudaStream_t s = (cudaStream_t)stream;
  probe_kernel<<<1, 1, 0, s>>>(d);
  err = cudaMemcpyAsync(result, d, sizeof(int), cudaMemcpyDeviceToHost, s);
  if (err == cudaSuccess) err = cudaStreamSynchronize(s);
  cudaFree(d);
  return (int)err;
}

}  // namespace tbfast
