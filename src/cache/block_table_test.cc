// The block table encoding: round trips and every way an entry or header can be broken.
#include "cache/block_table.h"

#include <gtest/gtest.h>

namespace ovbd::cache {
namespace {

TEST(BlockTable, HeaderRoundTrip) {
  HeaderBytes b = EncodeHeader({65536, 123456789012ull});
  Result<TableHeader> h = DecodeHeader(b);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_EQ(h->block_size, 65536u);
  EXPECT_EQ(h->source_size, 123456789012ull);
}

TEST(BlockTable, RejectHeaderWithAnyByteFlipped) {
  HeaderBytes good = EncodeHeader({4096, 1 << 20});
  for (size_t i = 0; i < good.size(); i++) {
    HeaderBytes b = good;
    b[i] ^= 0x40;
    EXPECT_TRUE(DecodeHeader(b).status().IsCorruption()) << "byte " << i;
  }
}

TEST(BlockTable, EntryRoundTripAndAbsent) {
  EntryBytes b = EncodeEntry(7, {4096, 0xDEADBEEF});
  Result<TableEntry> e = DecodeEntry(7, 4096, b);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->length, 4096u);
  EXPECT_EQ(e->crc, 0xDEADBEEFu);
  EntryBytes zero{};
  EXPECT_EQ(EncodeEntry(7, {0, 0}), zero);
  ASSERT_TRUE(DecodeEntry(7, 4096, zero).ok());
  EXPECT_EQ(DecodeEntry(7, 4096, zero)->length, 0u);
}

TEST(BlockTable, RejectBrokenEntries) {
  EntryBytes good = EncodeEntry(3, {1000, 42});
  EXPECT_TRUE(DecodeEntry(4, 1000, good).status().IsCorruption());  // misplaced
  EXPECT_TRUE(DecodeEntry(3, 999, good).status().IsCorruption());   // wrong length
  for (size_t i = 0; i < good.size(); i++) {
    EntryBytes b = good;
    b[i] ^= 1;
    EXPECT_TRUE(DecodeEntry(3, 1000, b).status().IsCorruption()) << "byte " << i;
  }
  EntryBytes torn = good;  // only the first 8 bytes reached the disk
  std::fill(torn.begin() + 8, torn.end(), 0);
  EXPECT_TRUE(DecodeEntry(3, 1000, torn).status().IsCorruption());
}

TEST(BlockTable, BlockCrcDependsOnContent) {
  std::vector<uint8_t> a(4096, 0), b(4096, 0);
  b[4095] = 1;
  EXPECT_NE(BlockCrc(a), BlockCrc(b));
  EXPECT_EQ(EntryOffset(0), kTableHeaderSize);
  EXPECT_EQ(EntryOffset(2), kTableHeaderSize + 2 * kTableEntrySize);
}

}  // namespace
}  // namespace ovbd::cache
