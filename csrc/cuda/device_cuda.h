// Host-callable CUDA runtime helpers (no CUDA types in this header, so g++ can include it).
#pragma once

namespace tbfast {
int cuda_device_count(int* count);
int cuda_versions(int* runtime, int* driver);
const char* cuda_error_string(int code);
int cuda_probe(void* stream, int* result);
// Message of the last CUDA error an entry point recorded with cuda_record_error (per
// thread), "" if none; entry points return kCudaError after recording it.
const char* cuda_last_error_message();
void cuda_record_error(int code, const char* where);
}  // namespace tbfast
