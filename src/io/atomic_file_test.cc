// AtomicFile: nothing is named PATH before Commit(); Sync is called iff options.sync, and before
// the file is closed and moved; a PATH that appeared meanwhile is never replaced without `replace`.
#include <gtest/gtest.h>

#include <filesystem>

#include "ovbd/io.h"
#include "testutil.h"

namespace ovbd {
namespace {

using testing::MakeData;
using testing::ReadFileBytes;
using testing::TempDir;
using testing::WriteFileBytes;

// Passes everything to `base` and logs the calls that matter for durability, in order.
class LoggingFile : public WritableFile {
 public:
  LoggingFile(std::unique_ptr<WritableFile> base, std::string* log) : base_(std::move(base)), log_(log) {}
  Status Append(std::span<const uint8_t> data) override { return base_->Append(data); }
  uint64_t Position() const override { return base_->Position(); }
  bool Seekable() const override { return base_->Seekable(); }
  Status Rewrite(uint64_t offset, std::span<const uint8_t> data) override { return base_->Rewrite(offset, data); }
  Status Sync() override {
    *log_ += "sync ";
    return base_->Sync();
  }
  Status Close() override {
    *log_ += "close ";
    return base_->Close();
  }
  const std::string& Name() const override { return base_->Name(); }

 private:
  std::unique_ptr<WritableFile> base_;
  std::string* log_;
};

std::unique_ptr<AtomicFile> Logged(const std::string& path, const AtomicFileOptions& o, std::string* log) {
  const std::string temp = path + o.temp_suffix;
  auto file = CreateWritableFile(temp, /*overwrite=*/true);
  EXPECT_TRUE(file.ok()) << file.status().ToString();
  return AtomicFile::Adopt(path, temp, std::make_unique<LoggingFile>(std::move(file).value(), log), o);
}

TEST(AtomicFile, SyncedCommitSyncsOnceBeforeClosing) {
  TempDir dir;
  const std::string path = dir.Join("out");
  std::string log;
  AtomicFileOptions o;
  o.sync = true;
  auto f = Logged(path, o, &log);
  auto bytes = MakeData(1, 3 << 20);
  ASSERT_TRUE(f->file()->Append(bytes).ok());
  EXPECT_FALSE(std::filesystem::exists(path));
  ASSERT_TRUE(f->Commit().ok());
  EXPECT_EQ(log, "sync close ");
  EXPECT_EQ(ReadFileBytes(path), bytes);
  EXPECT_FALSE(std::filesystem::exists(path + o.temp_suffix));
}

TEST(AtomicFile, UnsyncedCommitNeverSyncs) {
  TempDir dir;
  const std::string path = dir.Join("out");
  std::string log;
  AtomicFileOptions o;
  o.sync = false;
  auto f = Logged(path, o, &log);
  auto bytes = MakeData(2, 100000);
  ASSERT_TRUE(f->file()->Append(bytes).ok());
  ASSERT_TRUE(f->Commit().ok());
  EXPECT_EQ(log, "close ");
  EXPECT_EQ(ReadFileBytes(path), bytes);
}

TEST(AtomicFile, DestroyedWithoutCommitLeavesNothing) {
  TempDir dir;
  const std::string path = dir.Join("out");
  {
    auto f = AtomicFile::Create(path, {});
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE((*f)->file()->Append(MakeData(3, 4096)).ok());
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST(AtomicFile, ReplacesUnlessTold) {
  TempDir dir;
  const std::string path = dir.Join("out");
  WriteFileBytes(path, {1, 2, 3});
  AtomicFileOptions keep;
  keep.replace = false;
  EXPECT_EQ(AtomicFile::Create(path, keep).status().code(), Code::kAlreadyExists);
  ASSERT_TRUE(WriteFileAtomically(path, std::vector<uint8_t>{4, 5}).ok());  // replace by default
  EXPECT_EQ(ReadFileBytes(path), (std::vector<uint8_t>{4, 5}));
}

TEST(AtomicFile, NeverReplacesAPathThatAppearedMeanwhile) {
  TempDir dir;
  const std::string path = dir.Join("out");
  AtomicFileOptions keep;
  keep.replace = false;
  keep.temp_suffix = ".part";
  auto f = AtomicFile::Create(path, keep);
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->file()->Append(MakeData(4, 512)).ok());
  WriteFileBytes(path, {9});  // someone else's file
  EXPECT_EQ((*f)->Commit().code(), Code::kAlreadyExists);
  f->reset();
  EXPECT_EQ(ReadFileBytes(path), std::vector<uint8_t>{9});
  EXPECT_FALSE(std::filesystem::exists(path + ".part"));
}

TEST(AtomicFile, ErrorsNameTheFile) {
  TempDir dir;
  auto f = AtomicFile::Create(dir.Join("no/such/dir/out"), {});
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("no/such/dir/out.tmp"), std::string::npos) << f.status().ToString();
  EXPECT_TRUE(SyncParentDirectory(dir.Join("x")).ok());
  EXPECT_FALSE(SyncParentDirectory(dir.Join("missing/x")).ok());
}

}  // namespace
}  // namespace ovbd
