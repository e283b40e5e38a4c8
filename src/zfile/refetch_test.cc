// Refetch of compressed bytes that fail a check (include/ovbd/zfile.h "Refetch"): a source that
// returns a flipped byte for the first k reads covering it, as a cache over a registry that
// corrupted a transfer and then healed would after each Invalidate.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>

#include "ovbd/zfile.h"
#include "testutil.h"
#include "zfile/zfile_testing.h"

namespace ovbd::zfile {
namespace {

using ovbd::testing::MakeData;
using namespace ovbd::zfile::testing;

constexpr uint32_t kBs = 4096;

class FlakySource final : public ReadableFile {
 public:
  FlakySource(std::vector<uint8_t> bytes, bool may_differ) : bytes_(std::move(bytes)), may_differ_(may_differ) {}

  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) const override {
    if (offset > bytes_.size() || buf.size() > bytes_.size() - offset) return Status::OutOfRange("flaky");
    std::memcpy(buf.data(), bytes_.data() + offset, buf.size());
    if (bad_ >= offset && bad_ - offset < buf.size()) {
      if (reads_of_bad_++ < bad_reads_) buf[bad_ - offset] ^= 0x20;
    }
    return Status::OK();
  }
  uint64_t Size() const override { return bytes_.size(); }
  const std::string& Name() const override { return name_; }
  bool Invalidate(uint64_t offset, uint64_t length) const override {
    if (bad_ >= offset && bad_ - offset < length) invalidations_++;
    return may_differ_;
  }

  // The first `reads` reads covering byte `at` return it flipped.
  void Corrupt(uint64_t at, int reads) {
    bad_ = at;
    bad_reads_ = reads;
    reads_of_bad_ = 0;
    invalidations_ = 0;
  }
  int reads_of_bad() const { return reads_of_bad_; }
  int invalidations() const { return invalidations_; }

 private:
  std::vector<uint8_t> bytes_;
  bool may_differ_;
  std::string name_ = "flaky.zfile";
  uint64_t bad_ = ~0ull;
  int bad_reads_ = 0;
  mutable std::atomic<int> reads_of_bad_{0};
  mutable std::atomic<int> invalidations_{0};
};

struct Fixture {
  std::vector<uint8_t> data = MakeData(7, 12 * kBs + 300, "text");
  std::vector<uint8_t> z;
  Info info;
  Fixture() {
    Options o;
    o.block_size = kBs;
    z = BuildZFile(data, o, 0, &info);
  }
};

ReadOptions Fast() {
  ReadOptions o;
  o.backoff = std::chrono::milliseconds(1);
  return o;
}

std::unique_ptr<Reader> OpenOrDie(std::shared_ptr<FlakySource> src, ReadOptions o = Fast()) {
  auto r = Open(std::shared_ptr<const ReadableFile>(std::move(src)), o);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(r).value() : nullptr;
}

TEST(ZFileRefetch, BlockCrcMismatchIsRereadUntilTheSourceHeals) {
  Fixture fx;
  for (int k : {1, 2}) {
    auto src = std::make_shared<FlakySource>(fx.z, true);
    auto reader = OpenOrDie(src);
    ASSERT_NE(reader, nullptr);
    src->Corrupt(kHeaderTrailerSize + 5, k);  // inside block 0's entry
    std::vector<uint8_t> out(fx.data.size());
    Status s = reader->ReadAt(0, out);
    ASSERT_TRUE(s.ok()) << "k=" << k << " " << s.ToString();
    EXPECT_EQ(out, fx.data);
    EXPECT_EQ(src->reads_of_bad(), k + 1);
    EXPECT_EQ(src->invalidations(), k);
  }
}

TEST(ZFileRefetch, StillCorruptAfterTheLastAttemptNamesBlockOffsetCauseAndReads) {
  Fixture fx;
  auto src = std::make_shared<FlakySource>(fx.z, true);
  auto reader = OpenOrDie(src);
  ASSERT_NE(reader, nullptr);
  src->Corrupt(kHeaderTrailerSize + 5, 3);
  std::vector<uint8_t> out(2 * kBs);
  Status s = reader->ReadAt(0, out);
  EXPECT_EQ(s.code(), Code::kCorruption);
  for (const char* part : {"flaky.zfile", "block 0", "compressed offset 512", "CRC mismatch", "after 3 reads"}) {
    EXPECT_NE(s.message().find(part), std::string::npos) << part << ": " << s.message();
  }
  EXPECT_EQ(src->reads_of_bad(), 3);
  EXPECT_EQ(src->invalidations(), 3);  // dropped after the last read too: a later read refetches
  // A later read, once the source is healthy, succeeds: nothing sticks.
  EXPECT_TRUE(reader->ReadAt(0, out).ok());
  EXPECT_EQ(src->reads_of_bad(), 4);
}

TEST(ZFileRefetch, AttemptsAreConfigurable) {
  Fixture fx;
  auto src = std::make_shared<FlakySource>(fx.z, true);
  ReadOptions o = Fast();
  o.attempts = 5;
  auto reader = OpenOrDie(src, o);
  ASSERT_NE(reader, nullptr);
  src->Corrupt(kHeaderTrailerSize + 5, 4);
  std::vector<uint8_t> out(kBs);
  EXPECT_TRUE(reader->ReadAt(0, out).ok());
  EXPECT_EQ(src->reads_of_bad(), 5);
  o.attempts = 0;
  EXPECT_EQ(Open(std::shared_ptr<const ReadableFile>(src), o).status().code(), Code::kInvalidArgument);
}

TEST(ZFileRefetch, NoRereadWhenTheSourceSaysItIsPointless) {
  Fixture fx;
  auto src = std::make_shared<FlakySource>(fx.z, false);  // a local file
  auto reader = OpenOrDie(src);
  ASSERT_NE(reader, nullptr);
  src->Corrupt(kHeaderTrailerSize + 5, 1);
  std::vector<uint8_t> out(kBs);
  const auto start = std::chrono::steady_clock::now();
  Status s = reader->ReadAt(0, out);
  EXPECT_EQ(s.code(), Code::kCorruption);
  EXPECT_EQ(s.message().find("after"), std::string::npos) << s.message();
  EXPECT_EQ(src->reads_of_bad(), 1);
  EXPECT_EQ(src->invalidations(), 1);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(100));  // no backoff
}

TEST(ZFileRefetch, BackoffDoublesBetweenReads) {
  Fixture fx;
  auto src = std::make_shared<FlakySource>(fx.z, true);
  ReadOptions o;
  o.backoff = std::chrono::milliseconds(20);
  auto reader = OpenOrDie(src, o);
  ASSERT_NE(reader, nullptr);
  src->Corrupt(kHeaderTrailerSize + 5, 2);
  std::vector<uint8_t> out(kBs);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(reader->ReadAt(0, out).ok());
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(60));  // 20 + 40
}

TEST(ZFileRefetch, VerifyAllRereadsToo) {
  Fixture fx;
  auto src = std::make_shared<FlakySource>(fx.z, true);
  auto reader = OpenOrDie(src);
  ASSERT_NE(reader, nullptr);
  src->Corrupt(kHeaderTrailerSize + 5, 2);
  EXPECT_TRUE(reader->VerifyAll().ok());
  EXPECT_EQ(src->reads_of_bad(), 3);
}

// The jump table is checked at Open (its CRC, CALC_DIGEST): a corrupted copy is reread too.
TEST(ZFileRefetch, JumpTableCrcMismatchAtOpenIsReread) {
  Fixture fx;
  const uint64_t in_table = fx.info.index_offset + 2;
  {
    auto src = std::make_shared<FlakySource>(fx.z, true);
    src->Corrupt(in_table, 2);
    auto reader = OpenOrDie(src);
    ASSERT_NE(reader, nullptr);
    EXPECT_EQ(ReadAllOrFail(*reader), fx.data);
    EXPECT_EQ(src->reads_of_bad(), 3);
    EXPECT_EQ(src->invalidations(), 2);
  }
  {
    auto src = std::make_shared<FlakySource>(fx.z, true);
    src->Corrupt(in_table, 3);
    auto r = Open(std::shared_ptr<const ReadableFile>(src), Fast());
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Code::kCorruption);
    for (const char* part : {"flaky.zfile", "jump table", "CRC mismatch", "after 3 reads"}) {
      EXPECT_NE(r.status().message().find(part), std::string::npos) << part << ": " << r.status().message();
    }
    EXPECT_EQ(src->reads_of_bad(), 3);
  }
  {
    auto src = std::make_shared<FlakySource>(fx.z, false);
    src->Corrupt(in_table, 1);
    EXPECT_EQ(Open(std::shared_ptr<const ReadableFile>(src), Fast()).status().code(), Code::kCorruption);
    EXPECT_EQ(src->reads_of_bad(), 1);
  }
}

// The trailer's digest is checked at Open: reread likewise.
TEST(ZFileRefetch, TrailerDigestMismatchAtOpenIsReread) {
  Fixture fx;
  auto src = std::make_shared<FlakySource>(fx.z, true);
  src->Corrupt(TrailerOffset(fx.z) + 200, 1);  // a reserved byte: only the digest notices
  auto reader = OpenOrDie(src);
  ASSERT_NE(reader, nullptr);
  EXPECT_EQ(src->reads_of_bad(), 2);
  EXPECT_EQ(ReadAllOrFail(*reader), fx.data);
}

}  // namespace
}  // namespace ovbd::zfile
