// Host-callable CUDA runtime helpers (no CUDA types in this header, so g++ can include it).
#pragma once
#include "common.h"

namespace tbfast {
int cuda_device_count(int* count);
int cuda_versions(int* runtime, int* driver);
const char* cuda_error_string(int code);
int cuda_probe(void* stream, int* result);
// Message of the last CUDA error an entry point recorded with cuda_record_error (per
// thread), "" if none; entry points return kCudaError after recording it.
const char* cuda_last_error_message();
void cuda_record_error(int code, const char* where);
// Makes `device` this thread's current device of tbfast's (statically linked) CUDA runtime,
// whose current device is its own, not torch's; 0 or a cudaError code.
int cuda_set_device(int device);

// Runs fn() (returning a Status) with `device` current; kCudaError if it cannot be selected.
template <typename F>
int cuda_on_device(int device, F&& fn) {
  int err = cuda_set_device(device);
  if (err) {
    cuda_record_error(err, "cudaSetDevice");
    return kCudaError;
  }
  return fn();
}
}  // namespace tbfast
