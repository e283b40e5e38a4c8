#include <gtest/gtest.h>

#include "ovbd/io.h"
#include "testutil.h"

namespace ovbd {
namespace {

using testing::MakeData;

std::vector<uint8_t> Contents(const std::shared_ptr<MemStorage>& s) { return s->bytes; }

TEST(FaultInjectionFile, DropUnsyncedWritesRestoresLastSync) {
  auto disk = std::make_shared<MemStorage>();
  FaultInjectionFile f(NewMemFile("disk", disk));
  auto a = MakeData(1, 8192);
  ASSERT_TRUE(f.WriteAt(0, a).ok());
  ASSERT_TRUE(f.Sync().ok());
  auto synced = Contents(disk);
  ASSERT_TRUE(f.WriteAt(4096, MakeData(2, 8192)).ok());  // overwrite + extend
  ASSERT_TRUE(f.WriteAt(0, MakeData(3, 512)).ok());
  ASSERT_TRUE(f.Truncate(100).ok());
  EXPECT_EQ(f.UnsyncedWriteCount(), 3u);
  ASSERT_TRUE(f.DropUnsyncedWrites().ok());
  EXPECT_EQ(Contents(disk), synced);
  EXPECT_EQ(f.UnsyncedWriteCount(), 0u);
}

TEST(FaultInjectionFile, TornLastWriteKeepsAPrefix) {
  auto disk = std::make_shared<MemStorage>();
  FaultInjectionFile f(NewMemFile("disk", disk));
  ASSERT_TRUE(f.WriteAt(0, MakeData(1, 4096)).ok());
  ASSERT_TRUE(f.Sync().ok());
  auto rec = MakeData(2, 16);
  ASSERT_TRUE(f.WriteAt(4096, rec).ok());  // an appended 16-byte record
  ASSERT_TRUE(f.DropUnsyncedWrites(5).ok());
  ASSERT_EQ(disk->bytes.size(), 4096u + 5);
  EXPECT_TRUE(std::equal(rec.begin(), rec.begin() + 5, disk->bytes.begin() + 4096));
}

TEST(FaultInjectionFile, TornPrefixSurvivesUndoOfOlderExtendingWrites) {
  auto disk = std::make_shared<MemStorage>();
  FaultInjectionFile f(NewMemFile("disk", disk));
  ASSERT_TRUE(f.WriteAt(0, MakeData(1, 4096)).ok());
  ASSERT_TRUE(f.Sync().ok());
  ASSERT_TRUE(f.WriteAt(4096, MakeData(2, 16)).ok());  // unsynced, extends the file
  auto rec = MakeData(3, 16);
  ASSERT_TRUE(f.WriteAt(4112, rec).ok());  // the newest record, torn after 7 bytes
  ASSERT_TRUE(f.DropUnsyncedWrites(7).ok());
  ASSERT_EQ(disk->bytes.size(), 4112u + 7);
  EXPECT_TRUE(std::equal(rec.begin(), rec.begin() + 7, disk->bytes.begin() + 4112));
}

TEST(FaultInjectionFile, InjectedErrorsFireOnce) {
  FaultInjectionFile f(NewMemFile("disk"));
  ASSERT_TRUE(f.WriteAt(0, MakeData(1, 1024)).ok());
  std::vector<uint8_t> buf(16);
  f.FailNthRead(2);
  EXPECT_TRUE(f.ReadAt(0, buf).ok());
  EXPECT_EQ(f.ReadAt(0, buf).code(), Code::kIOError);
  EXPECT_TRUE(f.ReadAt(0, buf).ok());
  f.FailNthWrite(1);
  EXPECT_EQ(f.WriteAt(0, buf).code(), Code::kIOError);
  EXPECT_TRUE(f.WriteAt(0, buf).ok());
  f.FailNthSync(1);
  EXPECT_EQ(f.Sync().code(), Code::kIOError);
  EXPECT_TRUE(f.Sync().ok());
}

TEST(FaultInjectionFile, ForwardsInvalidate) {
  FaultInjectionFile f(NewMemFile("m"));
  EXPECT_FALSE(f.Invalidate(0, 10));  // a memory file: rereading is pointless
}

TEST(FaultInjectionFile, FlipsAByteOnRead) {
  auto data = MakeData(9, 1000);
  FaultInjectionFile f(NewMemFile("disk"));
  ASSERT_TRUE(f.WriteAt(0, data).ok());
  f.FlipByteOnRead(500, 0x01);
  std::vector<uint8_t> buf(100);
  ASSERT_TRUE(f.ReadAt(450, buf).ok());
  EXPECT_EQ(buf[50], data[500] ^ 0x01);
  EXPECT_EQ(buf[49], data[499]);
  ASSERT_TRUE(f.ReadAt(0, buf).ok());  // does not cover 500
  EXPECT_TRUE(std::equal(buf.begin(), buf.end(), data.begin()));
}

}  // namespace
}  // namespace ovbd
