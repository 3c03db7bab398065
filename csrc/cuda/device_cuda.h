// Host-callable CUDA runtime helpers (no CUDA types in this header, so g++ can include it).
#pragma once

namespace tbfast {
int cuda_device_count(int* count);
int cuda_versions(int* runtime, int* driver);
const char* cuda_error_string(int code);
int cuda_probe(void* stream, int* result);
}  // namespace tbfast
