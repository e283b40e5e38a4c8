// CRC32C as OverlayBD computes it: the reflected Castagnoli polynomial 0x82F63B78 with NO
// initial or final inversion (the raw CRC register). See docs/format/zfile.md, "Checksums".
//   Crc32c("123456789", seed 0)      == 0x58E3FA20
//   Crc32c("123456789", seed 100007) == 0x3C9BD4E0
// The standard CRC-32C is ~Crc32cExtend(~0u, data); it is not what the format stores.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace ovbd {

inline constexpr uint32_t kZFileBlockCrcSeed = 100007;  // NOI_WELL_KNOWN_PRIME

// Extends `crc` (a raw register value) over data. Uses the CPU's CRC instructions (via ISA-L)
// when available, a portable table otherwise. Thread-safe.
uint32_t Crc32cExtend(uint32_t crc, const uint8_t* data, size_t n);
inline uint32_t Crc32c(std::span<const uint8_t> data, uint32_t seed = 0) {
  return Crc32cExtend(seed, data.data(), data.size());
}
// The portable implementation, exposed so tests can compare it with the accelerated one.
uint32_t Crc32cExtendPortable(uint32_t crc, const uint8_t* data, size_t n);
// Name of the implementation Crc32cExtend uses ("isa-l" or "portable").
const char* Crc32cImplementation();

}  // namespace ovbd
