// CRC-32C on the CPU: SSE4.2 crc32 instruction when the CPU has it (chosen at run time,
// so the module still loads on CPUs without it), else slicing-by-8 tables. Single-threaded:
// records are small, and a hardware CRC runs at several GB/s on one core.
#include <array>
#include <cstring>

#include "crc32c.h"

#if defined(__x86_64__) || defined(__i386__)
#include <nmmintrin.h>
#define TBF_CRC_X86 1
#endif

namespace tbfast {

namespace {

constexpr uint32_t kPoly = 0x82F63B78u;  // reflected Castagnoli polynomial

// table[k][b]: CRC of byte b followed by k zero bytes (slicing-by-8).
using Tables = std::array<std::array<uint32_t, 256>, 8>;

constexpr Tables make_tables() {
  Tables t{};
  for (uint32_t b = 0; b < 256; ++b) {
    uint32_t c = b;
    for (int i = 0; i < 8; ++i) c = (c >> 1) ^ ((c & 1u) ? kPoly : 0u);
    t[0][b] = c;
  }
  for (int k = 1; k < 8; ++k)
    for (uint32_t b = 0; b < 256; ++b) t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xFFu];
  return t;
}

constexpr Tables kTables = make_tables();

inline uint64_t load_le64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  return v;
}

// `c` is the raw (un-inverted) register in both kernels below.
uint32_t crc_software(uint32_t c, const uint8_t* p, size_t n) {
  const auto& t = kTables;
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t v = load_le64(p) ^ c;
    c = t[7][v & 0xFF] ^ t[6][(v >> 8) & 0xFF] ^ t[5][(v >> 16) & 0xFF] ^ t[4][(v >> 24) & 0xFF] ^
        t[3][(v >> 32) & 0xFF] ^ t[2][(v >> 40) & 0xFF] ^ t[1][(v >> 48) & 0xFF] ^ t[0][v >> 56];
  }
  for (; n; --n, ++p) c = (c >> 8) ^ t[0][(c ^ *p) & 0xFF];
  return c;
}

#ifdef TBF_CRC_X86
__attribute__((target("sse4.2"))) uint32_t crc_hardware(uint32_t c, const uint8_t* p, size_t n) {
  // Byte steps up to 8-byte alignment, then 8 bytes per instruction, then the tail.
  for (; n && (reinterpret_cast<uintptr_t>(p) & 7u); --n, ++p) c = _mm_crc32_u8(c, *p);
#if defined(__x86_64__)
  uint64_t c64 = c;
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c64 = _mm_crc32_u64(c64, v);
  }
  c = static_cast<uint32_t>(c64);
#endif
  for (; n >= 4; n -= 4, p += 4) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    c = _mm_crc32_u32(c, v);
  }
  for (; n; --n, ++p) c = _mm_crc32_u8(c, *p);
  return c;
}

bool detect_hardware() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("sse4.2");
}
#else
uint32_t crc_hardware(uint32_t c, const uint8_t* p, size_t n) { return crc_software(c, p, n); }
bool detect_hardware() { return false; }
#endif

}  // namespace

bool crc32c_hardware_available() {
  static const bool has = detect_hardware();
  return has;
}

uint32_t crc32c_extend(uint32_t crc, const uint8_t* data, size_t n, int32_t impl) {
  bool hw = impl == kCrcHardware || (impl == kCrcAuto && crc32c_hardware_available());
  uint32_t c = ~crc;
  c = hw ? crc_hardware(c, data, n) : crc_software(c, data, n);
  return ~c;
}

}  // namespace tbfast
