// One conformance suite run against every RandomRWFile implementation (principle 9).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <thread>
#include <utility>

#include "ovbd/io.h"
#include "testutil.h"

namespace ovbd {
namespace {

using testing::MakeData;
using testing::TempDir;

struct Factory {
  const char* name;
  std::function<std::unique_ptr<RandomRWFile>(const TempDir&)> make;
};

class RWFileConformance : public ::testing::TestWithParam<Factory> {
 protected:
  TempDir dir_;
};

TEST_P(RWFileConformance, WriteReadExtendTruncate) {
  auto f = GetParam().make(dir_);
  EXPECT_EQ(f->Size(), 0u);
  auto data = MakeData(1, 10000);
  ASSERT_TRUE(f->WriteAt(100, data).ok());
  EXPECT_EQ(f->Size(), 10100u);
  std::vector<uint8_t> got(10000);
  ASSERT_TRUE(f->ReadAt(100, got).ok());
  EXPECT_EQ(got, data);
  std::vector<uint8_t> head(100, 0xFF);
  ASSERT_TRUE(f->ReadAt(0, head).ok());
  EXPECT_EQ(head, std::vector<uint8_t>(100, 0));  // the gap reads as zeros
  ASSERT_TRUE(f->Truncate(50).ok());
  EXPECT_EQ(f->Size(), 50u);
  ASSERT_TRUE(f->Sync().ok());
}

TEST_P(RWFileConformance, ReadPastEndIsOutOfRange) {
  auto f = GetParam().make(dir_);
  ASSERT_TRUE(f->WriteAt(0, MakeData(2, 512)).ok());
  std::vector<uint8_t> buf(513);
  Status s = f->ReadAt(0, buf);
  EXPECT_EQ(s.code(), Code::kOutOfRange);
  std::vector<uint8_t> one(1);
  EXPECT_EQ(f->ReadAt(512, one).code(), Code::kOutOfRange);
  EXPECT_TRUE(f->ReadAt(512, std::span<uint8_t>()).ok());
}

TEST_P(RWFileConformance, TrimReadsZerosAndKeepsSize) {
  auto f = GetParam().make(dir_);
  ASSERT_TRUE(f->WriteAt(0, MakeData(3, 16384)).ok());
  ASSERT_TRUE(f->Trim(4096, 8192).ok());
  EXPECT_EQ(f->Size(), 16384u);
  std::vector<uint8_t> got(8192, 0xFF);
  ASSERT_TRUE(f->ReadAt(4096, got).ok());
  EXPECT_EQ(got, std::vector<uint8_t>(8192, 0));
}

TEST_P(RWFileConformance, ConcurrentReadsSeeWrittenData) {
  auto f = GetParam().make(dir_);
  auto data = MakeData(4, 1 << 20);
  ASSERT_TRUE(f->WriteAt(0, data).ok());
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int t = 0; t < 4; t++) {
    threads.emplace_back([&, t] {
      std::vector<uint8_t> buf(4096);
      for (int i = 0; i < 200; i++) {
        uint64_t off = static_cast<uint64_t>((t * 7919 + i * 104729) % ((1 << 20) - 4096));
        if (!f->ReadAt(off, buf).ok() || !std::equal(buf.begin(), buf.end(), data.begin() + static_cast<long>(off))) bad++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
}

INSTANTIATE_TEST_SUITE_P(
    All, RWFileConformance,
    ::testing::Values(
        Factory{"posix",
                [](const TempDir& d) {
                  auto r = OpenRandomRWFile(d.Join("f"), {.create = true, .exclusive = true});
                  EXPECT_TRUE(r.ok()) << r.status().ToString();
                  return std::move(r).value();
                }},
        Factory{"mem", [](const TempDir&) { return NewMemFile("mem"); }},
        Factory{"fault", [](const TempDir&) {
                  return std::unique_ptr<RandomRWFile>(new FaultInjectionFile(NewMemFile("mem")));
                }}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(PosixFile, OpenMissingNamesThePath) {
  auto r = OpenReadableFile("/nonexistent/ovbd-file");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsNotFound());
  EXPECT_NE(r.status().message().find("/nonexistent/ovbd-file"), std::string::npos);
}

// Reserve allocates past the end without moving it or changing a byte; Truncate(Size()) frees it.
TEST(PosixFile, ReserveAllocatesPastTheEndAndTruncateToTheSizeFreesIt) {
  TempDir dir;
  const std::string path = dir.path() + "/reserved";
  RWOpenOptions create;
  create.create = true;
  auto f = OpenRandomRWFile(path, create);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  const std::vector<uint8_t> data = MakeData(9, 4096);
  ASSERT_TRUE((*f)->WriteAt(0, data).ok());
  const auto allocated = [&] {
    struct stat st {};
    EXPECT_EQ(::stat(path.c_str(), &st), 0);
    return static_cast<uint64_t>(st.st_blocks) * 512;
  };
  ASSERT_TRUE((*f)->Reserve(4096, 8 << 20).ok());
  EXPECT_EQ((*f)->Size(), 4096u);
  EXPECT_GE(allocated(), 4096u + (8 << 20));
  std::vector<uint8_t> got(4096);
  ASSERT_TRUE((*f)->ReadAt(0, got).ok());
  EXPECT_EQ(got, data);
  ASSERT_TRUE((*f)->Truncate((*f)->Size()).ok());
  EXPECT_LE(allocated(), 8192u);
  EXPECT_EQ((*f)->Size(), 4096u);
}

TEST(PosixFile, WritableFileAppendsRewritesAndRefusesOverwrite) {
  TempDir dir;
  std::string path = dir.Join("out");
  {
    auto w = CreateWritableFile(path, false);
    ASSERT_TRUE(w.ok());
    auto big = MakeData(5, 3 << 20);
    ASSERT_TRUE((*w)->Append(MakeData(6, 10)).ok());
    ASSERT_TRUE((*w)->Append(big).ok());
    EXPECT_EQ((*w)->Position(), 10u + (3 << 20));
    EXPECT_TRUE((*w)->Seekable());
    std::vector<uint8_t> patch = {1, 2, 3};
    ASSERT_TRUE((*w)->Rewrite(0, patch).ok());
    ASSERT_TRUE((*w)->Close().ok());
    auto bytes = testing::ReadFileBytes(path);
    ASSERT_EQ(bytes.size(), 10u + (3 << 20));
    EXPECT_EQ(bytes[0], 1);
    EXPECT_EQ(bytes[2], 3);
    EXPECT_TRUE(std::equal(big.begin(), big.end(), bytes.begin() + 10));
  }
  auto again = CreateWritableFile(path, false);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), Code::kAlreadyExists);
}

TEST(SliceFile, PresentsARangeAndChecksBounds) {
  std::shared_ptr<const ReadableFile> base = NewMemReadableFile("base", MakeData(7, 1000));
  auto slice = NewSliceFile(base, 100, 200);
  ASSERT_TRUE(slice.ok());
  EXPECT_EQ((*slice)->Size(), 200u);
  std::vector<uint8_t> a(50), b(50);
  ASSERT_TRUE((*slice)->ReadAt(10, a).ok());
  ASSERT_TRUE(base->ReadAt(110, b).ok());
  EXPECT_EQ(a, b);
  std::vector<uint8_t> c(11);
  EXPECT_FALSE((*slice)->ReadAt(190, c).ok());
  EXPECT_FALSE(NewSliceFile(base, 900, 101).ok());
}

// Remembers the ranges it was asked to invalidate; says a reread may differ.
class InvalidateRecorder final : public ReadableFile {
 public:
  Status ReadAt(uint64_t, std::span<uint8_t> buf) const override {
    std::fill(buf.begin(), buf.end(), 0);
    return Status::OK();
  }
  uint64_t Size() const override { return 1000; }
  const std::string& Name() const override { return name_; }
  bool Invalidate(uint64_t offset, uint64_t length) const override {
    ranges.emplace_back(offset, length);
    return true;
  }
  mutable std::vector<std::pair<uint64_t, uint64_t>> ranges;

 private:
  std::string name_ = "recorder";
};

TEST(ReadableFile, InvalidateIsPointlessForLocalFiles) {
  TempDir dir;
  EXPECT_FALSE(NewMemReadableFile("m", MakeData(1, 100))->Invalidate(0, 100));
  auto rw = NewMemFile("rw");
  EXPECT_FALSE(rw->Invalidate(0, 1));
  ASSERT_TRUE(WriteFileAtomically(dir.Join("f"), MakeData(2, 100)).ok());
  auto posix = OpenReadableFile(dir.Join("f"));
  ASSERT_TRUE(posix.ok());
  EXPECT_FALSE((*posix)->Invalidate(0, 100));
}

TEST(SliceFile, ForwardsInvalidateInTheBaseFileOffsets) {
  auto base = std::make_shared<InvalidateRecorder>();
  auto slice = NewSliceFile(base, 100, 200);
  ASSERT_TRUE(slice.ok());
  EXPECT_TRUE((*slice)->Invalidate(10, 50));
  EXPECT_TRUE((*slice)->Invalidate(150, 500));  // clipped to the slice
  EXPECT_FALSE((*slice)->Invalidate(200, 10));  // past the slice: nothing asked
  using R = std::pair<uint64_t, uint64_t>;
  EXPECT_EQ(base->ranges, (std::vector<R>{{110, 50}, {250, 50}}));
}

TEST(CopyFile, CopiesWithProgress) {
  auto data = MakeData(8, 2500000);
  auto in = NewMemReadableFile("in", data);
  auto storage = std::make_shared<MemStorage>();
  auto out = NewMemWritableFile("out", storage);
  uint64_t last = 0;
  ASSERT_TRUE(CopyFile(*in, out.get(), [&](uint64_t done, uint64_t total) {
                EXPECT_EQ(total, data.size());
                EXPECT_GT(done, last);
                last = done;
              }).ok());
  EXPECT_EQ(last, data.size());
  EXPECT_EQ(storage->bytes, data);
}

}  // namespace
}  // namespace ovbd
