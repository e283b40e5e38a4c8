// Explicit little-endian encoding at the I/O boundary. On-disk structures are never cast from
// bytes: each field is decoded from its offset with these helpers (see docs/format/).
#pragma once

#include <cstdint>
#include <cstring>

namespace ovbd {

inline void EncodeLE16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
inline void EncodeLE32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline void EncodeLE64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline uint16_t DecodeLE16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}
inline uint32_t DecodeLE32(const uint8_t* p) {
  // Compilers turn this into one load on little-endian targets.
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
inline uint64_t DecodeLE64(const uint8_t* p) {
  return static_cast<uint64_t>(DecodeLE32(p)) | (static_cast<uint64_t>(DecodeLE32(p + 4)) << 32);
}

}  // namespace ovbd
