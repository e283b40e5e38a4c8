// SwitchableFile: reads follow the switch; a replacement of another size is refused.
#include "io/switchable_file.h"

#include <gtest/gtest.h>

#include <vector>

namespace ovbd {
namespace {

std::shared_ptr<const ReadableFile> Filled(const std::string& name, size_t size, uint8_t byte) {
  return std::shared_ptr<const ReadableFile>(NewMemReadableFile(name, std::vector<uint8_t>(size, byte)));
}

TEST(SwitchableFile, ReadsFollowTheSwitchAndNameStays) {
  SwitchableFile f(Filled("remote", 4096, 0xaa));
  std::vector<uint8_t> buf(16);
  ASSERT_TRUE(f.ReadAt(100, buf).ok());
  EXPECT_EQ(buf[0], 0xaa);
  EXPECT_FALSE(f.switched());
  ASSERT_TRUE(f.Switch(Filled("local", 4096, 0xbb)).ok());
  EXPECT_TRUE(f.switched());
  ASSERT_TRUE(f.ReadAt(100, buf).ok());
  EXPECT_EQ(buf[0], 0xbb);
  EXPECT_EQ(f.Name(), "remote");
  EXPECT_EQ(f.Size(), 4096u);
}

TEST(SwitchableFile, RejectsAnotherSize) {
  SwitchableFile f(Filled("remote", 4096, 0xaa));
  Status s = f.Switch(Filled("short", 4095, 0xbb));
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_FALSE(f.switched());
  std::vector<uint8_t> buf(1);
  ASSERT_TRUE(f.ReadAt(0, buf).ok());
  EXPECT_EQ(buf[0], 0xaa);
}

}  // namespace
}  // namespace ovbd
