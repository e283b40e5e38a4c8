#include "zfile/jump_table.h"

#include <gtest/gtest.h>

#include "base/coding.h"

namespace ovbd::zfile {
namespace {

std::vector<uint8_t> Encode(const std::vector<uint32_t>& entries) {
  std::vector<uint8_t> raw(entries.size() * 4);
  for (size_t i = 0; i < entries.size(); i++) EncodeLE32(&raw[4 * i], entries[i]);
  return raw;
}

JumpTable::Limits LimitsFor(const std::vector<uint32_t>& entries, uint32_t min = 5, uint32_t max = 70000) {
  JumpTable::Limits l;
  l.first_offset = 512;
  l.min_entry = min;
  l.max_entry = max;
  l.end_offset = 512;
  for (uint32_t e : entries) l.end_offset += e;
  return l;
}

TEST(ZFileJumpTable, OffsetsAcrossGroups) {
  std::vector<uint32_t> entries;
  for (uint32_t i = 0; i < 3000; i++) entries.push_back(5 + (i * 7919) % 66000);  // some > 64 KiB
  auto t = JumpTable::Build(Encode(entries), LimitsFor(entries));
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  ASSERT_EQ(t->count(), entries.size());
  uint64_t off = 512;
  for (size_t i = 0; i < entries.size(); i++) {
    ASSERT_EQ(t->Offset(i), off) << i;
    ASSERT_EQ(t->EntrySize(i), entries[i]) << i;
    off += entries[i];
  }
  EXPECT_EQ(t->Offset(entries.size()), off);
}

TEST(ZFileJumpTable, ExactGroupMultipleAndEmpty) {
  std::vector<uint32_t> entries(1024, 4100);
  auto t = JumpTable::Build(Encode(entries), LimitsFor(entries));
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->Offset(1024), 512u + 1024u * 4100u);
  auto e = JumpTable::Build({}, LimitsFor({}));
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->count(), 0u);
  EXPECT_EQ(e->Offset(0), 512u);
}

TEST(ZFileJumpTable, RejectsSmallEntries) {
  std::vector<uint32_t> entries = {100, 4, 100};
  auto t = JumpTable::Build(Encode(entries), LimitsFor(entries));
  ASSERT_TRUE(t.status().IsCorruption());
  EXPECT_NE(t.status().message().find("entry 1"), std::string::npos) << t.status().message();
  entries = {100, 0};
  EXPECT_TRUE(JumpTable::Build(Encode(entries), LimitsFor(entries, 1)).status().IsCorruption());
}

TEST(ZFileJumpTable, RejectsTooLargeEntries) {
  std::vector<uint32_t> entries = {100, 70001};
  EXPECT_TRUE(JumpTable::Build(Encode(entries), LimitsFor(entries)).status().IsCorruption());
  entries = {100, 0xFFFFFFFF};
  EXPECT_TRUE(JumpTable::Build(Encode(entries), LimitsFor(entries)).status().IsCorruption());
}

TEST(ZFileJumpTable, RejectsSumMismatch) {
  std::vector<uint32_t> entries = {100, 200, 300};
  auto l = LimitsFor(entries);
  l.end_offset += 1;
  EXPECT_TRUE(JumpTable::Build(Encode(entries), l).status().IsCorruption());
  l.end_offset -= 2;
  EXPECT_TRUE(JumpTable::Build(Encode(entries), l).status().IsCorruption());
}

TEST(ZFileJumpTable, RejectsBadLimits) {
  JumpTable::Limits l;
  l.max_entry = 1u << 22;
  EXPECT_EQ(JumpTable::Build({}, l).status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace ovbd::zfile
