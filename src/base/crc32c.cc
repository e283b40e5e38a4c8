#include "base/crc32c.h"

#include <array>

#ifdef OVBD_HAVE_ISAL
#include <isa-l/crc.h>
#endif

namespace ovbd {
namespace {

// Slicing-by-8 tables for the reflected polynomial 0x82F63B78.
struct Tables {
  std::array<std::array<uint32_t, 256>, 8> t{};
  Tables() {
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t c = i;
      for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
      for (size_t s = 1; s < 8; s++) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFF];
    }
  }
};

const Tables& GetTables() {
  static const Tables tables;
  return tables;
}

}  // namespace

uint32_t Crc32cExtendPortable(uint32_t crc, const uint8_t* data, size_t n) {
  const auto& t = GetTables().t;
  while (n >= 8) {
    uint32_t lo = crc ^ (static_cast<uint32_t>(data[0]) | static_cast<uint32_t>(data[1]) << 8 |
                         static_cast<uint32_t>(data[2]) << 16 | static_cast<uint32_t>(data[3]) << 24);
    crc = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^
          t[3][data[4]] ^ t[2][data[5]] ^ t[1][data[6]] ^ t[0][data[7]];
    data += 8;
    n -= 8;
  }
  while (n-- > 0) crc = t[0][(crc ^ *data++) & 0xFF] ^ (crc >> 8);
  return crc;
}

uint32_t Crc32cExtend(uint32_t crc, const uint8_t* data, size_t n) {
#ifdef OVBD_HAVE_ISAL
  // ISA-L's crc32_iscsi uses the raw convention (no inversion), dispatching to SSE4.2/PCLMUL
  // code when the CPU has it. It takes an int length, so feed it in chunks.
  while (n > 0) {
    size_t chunk = n > (1u << 30) ? (1u << 30) : n;
    crc = crc32_iscsi(const_cast<uint8_t*>(data), static_cast<int>(chunk), crc);
    data += chunk;
    n -= chunk;
  }
  return crc;
#else
  return Crc32cExtendPortable(crc, data, n);
#endif
}

const char* Crc32cImplementation() {
#ifdef OVBD_HAVE_ISAL
  return "isa-l";
#else
  return "portable";
#endif
}

}  // namespace ovbd
