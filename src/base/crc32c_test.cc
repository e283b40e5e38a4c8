#include "base/crc32c.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

namespace ovbd {
namespace {

std::span<const uint8_t> Bytes(const char* s) {
  return {reinterpret_cast<const uint8_t*>(s), std::strlen(s)};
}

TEST(Crc32c, CheckValuesOfTheRawConvention) {
  EXPECT_EQ(Crc32c(Bytes("123456789")), 0x58E3FA20u);
  EXPECT_EQ(Crc32c(Bytes("123456789"), kZFileBlockCrcSeed), 0x3C9BD4E0u);
  EXPECT_EQ(Crc32c(Bytes("")), 0u);
  // The standard (conditioned) CRC-32C derives from the raw one.
  EXPECT_EQ(~Crc32cExtend(~0u, Bytes("123456789").data(), 9), 0xE3069283u);
}

TEST(Crc32c, PortableMatchesAcceleratedOnEveryLengthAndAlignment) {
  std::mt19937 rng(7);
  std::vector<uint8_t> data(5000);
  for (auto& b : data) b = static_cast<uint8_t>(rng());
  for (size_t start = 0; start < 9; start++) {
    for (size_t len : {0u, 1u, 7u, 8u, 9u, 63u, 64u, 255u, 4096u, 4990u}) {
      uint32_t seed = static_cast<uint32_t>(rng());
      EXPECT_EQ(Crc32cExtendPortable(seed, data.data() + start, len),
                Crc32cExtend(seed, data.data() + start, len))
          << "start " << start << " len " << len << " impl " << Crc32cImplementation();
    }
  }
}

TEST(Crc32c, ExtendingInPiecesEqualsOneShot) {
  std::vector<uint8_t> data(1000, 0xA5);
  uint32_t whole = Crc32c(data, 100007);
  uint32_t part = Crc32cExtend(100007, data.data(), 333);
  part = Crc32cExtend(part, data.data() + 333, 667);
  EXPECT_EQ(whole, part);
}

}  // namespace
}  // namespace ovbd
