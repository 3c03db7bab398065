// CRC-32C (Castagnoli): reflected polynomial 0x82F63B78, init and xorout 0xFFFFFFFF,
// as used by TFRecord framing (spec section 5). Check value: crc32c("123456789") =
// 0xE3069283.
#pragma once
#include <cstddef>
#include <cstdint>

namespace tbfast {

enum Crc32cImpl : int32_t { kCrcAuto = 0, kCrcSoftware = 1, kCrcHardware = 2 };

// Extends a finished CRC `crc` (0 for a fresh start) over data[0, n). `impl` picks the
// implementation; kCrcHardware must only be used when crc32c_hardware_available().
uint32_t crc32c_extend(uint32_t crc, const uint8_t* data, size_t n, int32_t impl = kCrcAuto);

// True when this CPU has SSE4.2 (the crc32 instruction).
bool crc32c_hardware_available();

// TFRecord / LevelDB mask: rotate right by 15, add a constant (mod 2^32).
inline uint32_t crc32c_mask(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u; }

inline uint32_t crc32c_unmask(uint32_t masked) {
  uint32_t rot = masked - 0xA282EAD8u;
  return (rot >> 17) | (rot << 15);
}

}  // namespace tbfast
