// VerifiedFile against an in-memory source that corrupts a chosen byte for its first k reads.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "base/hash.h"
#include "ovbd/digest_table.h"

namespace ovbd::remote {
namespace {

constexpr uint32_t kChunk = 4096;

std::vector<uint8_t> Pattern(size_t n) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; i++) v[i] = static_cast<uint8_t>(i * 7 + (i >> 9));
  return v;
}

// Serves `bytes`; the first `bad_reads` reads that cover `bad_offset` return it flipped.
// Optionally fails every read with `error`. Counts reads. Thread-safe.
class FlakySource : public ReadableFile {
 public:
  explicit FlakySource(std::vector<uint8_t> bytes) : bytes_(std::move(bytes)) {}
  void CorruptFirstReads(uint64_t offset, unsigned reads) {
    std::lock_guard lock(mu_);
    bad_offset_ = offset;
    bad_reads_ = reads;
  }
  void FailWith(Status s) {
    std::lock_guard lock(mu_);
    error_ = std::move(s);
  }
  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) const override {
    std::lock_guard lock(mu_);
    reads_.push_back({offset, buf.size()});
    if (!error_.ok()) return error_;
    if (offset > bytes_.size() || buf.size() > bytes_.size() - offset) return Status::OutOfRange("fake");
    std::copy_n(bytes_.begin() + offset, buf.size(), buf.begin());
    if (bad_reads_ > 0 && bad_offset_ >= offset && bad_offset_ < offset + buf.size()) {
      buf[bad_offset_ - offset] ^= 0x5A;
      bad_reads_--;
    }
    return Status::OK();
  }
  uint64_t Size() const override { return bytes_.size(); }
  const std::string& Name() const override { return name_; }
  void Prefetch(uint64_t offset, uint64_t length) const override {
    std::lock_guard lock(mu_);
    prefetches_.push_back({offset, length});
  }
  std::vector<std::pair<uint64_t, uint64_t>> Reads() const {
    std::lock_guard lock(mu_);
    return reads_;
  }
  std::vector<std::pair<uint64_t, uint64_t>> Prefetches() const {
    std::lock_guard lock(mu_);
    return prefetches_;
  }

 private:
  const std::vector<uint8_t> bytes_;
  const std::string name_ = "fake-source";
  mutable std::mutex mu_;
  uint64_t bad_offset_ = 0;
  mutable unsigned bad_reads_ = 0;
  Status error_;
  mutable std::vector<std::pair<uint64_t, uint64_t>> reads_;
  mutable std::vector<std::pair<uint64_t, uint64_t>> prefetches_;
};

struct Fixture {
  explicit Fixture(size_t size, VerifyOptions options = {3, std::chrono::milliseconds(0)})
      : bytes(Pattern(size)), source(std::make_shared<FlakySource>(bytes)),
        stats(std::make_shared<VerifyStats>()) {
    auto mem = NewMemReadableFile("blob", bytes);
    auto t = BuildDigestTable(*mem, kChunk);
    EXPECT_TRUE(t.ok());
    table = std::make_shared<DigestTable>(*t);
    auto f = NewVerifiedFile(source, table, "registry/blob@sha256:ab", options, stats);
    EXPECT_TRUE(f.ok()) << f.status().ToString();
    file = std::move(*f);
  }
  std::vector<uint8_t> Read(uint64_t offset, size_t n, Status* status) const {
    std::vector<uint8_t> out(n);
    *status = file->ReadAt(offset, out);
    return out;
  }
  std::vector<uint8_t> Expected(uint64_t offset, size_t n) const {
    return std::vector<uint8_t>(bytes.begin() + offset, bytes.begin() + offset + n);
  }

  std::vector<uint8_t> bytes;
  std::shared_ptr<FlakySource> source;
  std::shared_ptr<DigestTable> table;
  std::shared_ptr<VerifyStats> stats;
  std::unique_ptr<ReadableFile> file;
};

TEST(VerifiedFile, AlignedReadIsOneSourceReadIntoTheCallersBuffer) {
  Fixture f(10 * kChunk);
  Status s;
  EXPECT_EQ(f.Read(2 * kChunk, 3 * kChunk, &s), f.Expected(2 * kChunk, 3 * kChunk));
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_EQ(f.source->Reads().size(), 1u);
  EXPECT_EQ(f.source->Reads()[0], std::make_pair(uint64_t{2 * kChunk}, uint64_t{3 * kChunk}));
  EXPECT_EQ(f.stats->verified_chunks, 3u);
  EXPECT_EQ(f.stats->mismatches, 0u);
  EXPECT_EQ(f.file->Size(), 10u * kChunk);
  EXPECT_EQ(f.file->Name(), "registry/blob@sha256:ab");
}

TEST(VerifiedFile, UnalignedReadsAreWidenedToWholeChunks) {
  Fixture f(10 * kChunk);
  struct Case { uint64_t offset; size_t n; uint64_t begin, end; } cases[] = {
      {1, 10, 0, kChunk},                               // inside one chunk
      {kChunk - 1, 2, 0, 2 * kChunk},                   // crossing a boundary
      {3 * kChunk + 5, 4 * kChunk, 3 * kChunk, 8 * kChunk},
      {kChunk, 1, kChunk, 2 * kChunk},                  // aligned start, short
  };
  for (const auto& c : cases) {
    Status s;
    auto before = f.source->Reads().size();
    EXPECT_EQ(f.Read(c.offset, c.n, &s), f.Expected(c.offset, c.n)) << c.offset;
    ASSERT_TRUE(s.ok()) << s.ToString();
    auto reads = f.source->Reads();
    ASSERT_EQ(reads.size(), before + 1);
    EXPECT_EQ(reads.back(), std::make_pair(c.begin, c.end - c.begin)) << c.offset;
  }
}

TEST(VerifiedFile, LastPartialChunk) {
  const size_t size = 3 * kChunk + 100;
  Fixture f(size);
  Status s;
  EXPECT_EQ(f.Read(3 * kChunk + 10, 90, &s), f.Expected(3 * kChunk + 10, 90));
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(f.source->Reads().back(), std::make_pair(uint64_t{3 * kChunk}, uint64_t{100}));
  EXPECT_EQ(f.Read(3 * kChunk, 100, &s), f.Expected(3 * kChunk, 100));  // aligned, direct
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(f.Read(0, size, &s), f.bytes);
  ASSERT_TRUE(s.ok());
  f.source->CorruptFirstReads(size - 1, 5);
  f.Read(size - 1, 1, &s);
  EXPECT_EQ(s.code(), Code::kCorruption);
  EXPECT_NE(s.message().find("bytes [12288, 12388)"), std::string::npos) << s.message();
}

TEST(VerifiedFile, RangesPastTheEndAreOutOfRangeWithoutASourceRead) {
  Fixture f(2 * kChunk);
  Status s;
  f.Read(2 * kChunk - 1, 2, &s);
  EXPECT_EQ(s.code(), Code::kOutOfRange);
  f.Read(~0ull, 1, &s);
  EXPECT_EQ(s.code(), Code::kOutOfRange);
  EXPECT_TRUE(f.source->Reads().empty());
  f.Read(2 * kChunk, 0, &s);  // empty read at the end
  EXPECT_TRUE(s.ok());
}

TEST(VerifiedFile, MismatchFewerThanAttemptsIsRefetchedAndCorrect) {
  for (unsigned k : {1u, 2u}) {
    Fixture f(8 * kChunk);
    f.source->CorruptFirstReads(5 * kChunk + 77, k);
    Status s;
    EXPECT_EQ(f.Read(4 * kChunk + 3, 3 * kChunk, &s), f.Expected(4 * kChunk + 3, 3 * kChunk)) << k;
    ASSERT_TRUE(s.ok()) << s.ToString();
    EXPECT_EQ(f.stats->mismatches, k);
    EXPECT_EQ(f.stats->refetches, k);
    EXPECT_EQ(f.stats->verified_chunks, 4u);  // chunks 4..7
    auto reads = f.source->Reads();
    ASSERT_EQ(reads.size(), 1 + k);  // one wide read, then only the bad chunk again
    for (unsigned i = 1; i <= k; i++) EXPECT_EQ(reads[i], std::make_pair(uint64_t{5 * kChunk}, uint64_t{kChunk}));
  }
}

TEST(VerifiedFile, MismatchOnEveryAttemptIsCorruptionNamingBlobChunkAndHashes) {
  for (unsigned k : {3u, 10u}) {
    Fixture f(8 * kChunk);
    f.source->CorruptFirstReads(5 * kChunk + 77, k);
    Status s;
    f.Read(5 * kChunk, kChunk, &s);
    ASSERT_EQ(s.code(), Code::kCorruption) << k;
    const std::string& m = s.message();
    EXPECT_NE(m.find("registry/blob@sha256:ab"), std::string::npos) << m;
    EXPECT_NE(m.find("chunk 5 "), std::string::npos) << m;
    EXPECT_NE(m.find("bytes [20480, 24576)"), std::string::npos) << m;
    EXPECT_NE(m.find("expected sha256 " + ToHex(f.table->chunks[5])), std::string::npos) << m;
    EXPECT_NE(m.find(", got "), std::string::npos) << m;
    EXPECT_EQ(f.stats->mismatches, 3u);
    EXPECT_EQ(f.stats->refetches, 2u);
    EXPECT_EQ(f.source->Reads().size(), 3u);
  }
}

TEST(VerifiedFile, UnverifiedBytesNeverReachAnUnalignedCallersBuffer) {
  Fixture f(4 * kChunk, {1, std::chrono::milliseconds(0)});
  f.source->CorruptFirstReads(kChunk + 10, 1);
  std::vector<uint8_t> out(100, 0xEE);
  Status s = f.file->ReadAt(kChunk + 5, out);
  EXPECT_EQ(s.code(), Code::kCorruption);
  EXPECT_EQ(out, std::vector<uint8_t>(100, 0xEE));
}

TEST(VerifiedFile, OneAttemptMeansNoRefetch) {
  Fixture f(4 * kChunk, {1, std::chrono::milliseconds(0)});
  f.source->CorruptFirstReads(0, 1);
  Status s;
  f.Read(0, kChunk, &s);
  EXPECT_EQ(s.code(), Code::kCorruption);
  EXPECT_EQ(f.stats->refetches, 0u);
  EXPECT_EQ(f.Read(0, kChunk, &s), f.Expected(0, kChunk));  // the next read is good again
  EXPECT_TRUE(s.ok());
}

TEST(VerifiedFile, BackoffWaitsBeforeRefetching) {
  Fixture f(2 * kChunk, {3, std::chrono::milliseconds(20)});
  f.source->CorruptFirstReads(0, 2);
  auto start = std::chrono::steady_clock::now();
  Status s;
  f.Read(0, 10, &s);
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(60));  // 20 + 40
}

TEST(VerifiedFile, SourceErrorsAreReturnedAsTheyAre) {
  Fixture f(2 * kChunk);
  f.source->FailWith(Status::Unavailable("registry down"));
  Status s;
  f.Read(0, kChunk, &s);
  EXPECT_EQ(s.code(), Code::kUnavailable);
  EXPECT_EQ(s.message(), "registry down");
  f.source->FailWith(Status::IOError("short range"));
  f.Read(5, 10, &s);
  EXPECT_EQ(s.code(), Code::kIOError);
}

TEST(VerifiedFile, PrefetchIsWidenedToChunks) {
  Fixture f(3 * kChunk + 10);
  f.file->Prefetch(kChunk + 1, 10);
  f.file->Prefetch(3 * kChunk + 1, 1000);  // clipped to the blob
  f.file->Prefetch(5 * kChunk, 10);        // past the end: dropped
  auto p = f.source->Prefetches();
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(p[0], std::make_pair(uint64_t{kChunk}, uint64_t{kChunk}));
  EXPECT_EQ(p[1], std::make_pair(uint64_t{3 * kChunk}, uint64_t{10}));
}

TEST(VerifiedFile, CreationChecksSizesTablesAndOptions) {
  auto bytes = Pattern(3 * kChunk);
  auto source = std::make_shared<FlakySource>(bytes);
  auto mem = NewMemReadableFile("blob", bytes);
  auto table = std::make_shared<DigestTable>(*BuildDigestTable(*mem, kChunk));
  EXPECT_TRUE(NewVerifiedFile(source, table, "b").ok());
  auto other = std::make_shared<DigestTable>(*table);
  other->blob_size += 1;  // one byte more: still 3 chunks, but not this blob's size
  EXPECT_EQ(NewVerifiedFile(source, other, "b").status().code(), Code::kInvalidArgument);
  auto missing = std::make_shared<DigestTable>(*table);
  missing->chunks.pop_back();
  EXPECT_EQ(NewVerifiedFile(source, missing, "b").status().code(), Code::kInvalidArgument);
  auto odd = std::make_shared<DigestTable>(*table);
  odd->chunk_size = 5000;
  EXPECT_EQ(NewVerifiedFile(source, odd, "b").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(NewVerifiedFile(source, table, "b", {0, {}}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(NewVerifiedFile(nullptr, table, "b").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(NewVerifiedFile(source, nullptr, "b").status().code(), Code::kInvalidArgument);
}

TEST(VerifiedFile, ConcurrentReadersSeeVerifiedBytes) {
  const size_t size = 64 * kChunk + 123;
  Fixture f(size);
  f.source->CorruptFirstReads(17 * kChunk + 1, 2);  // one reader hits it and refetches
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; t++) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; i++) {
        uint64_t offset = (static_cast<uint64_t>(t) * 7919 + static_cast<uint64_t>(i) * 104729) % size;
        size_t n = std::min<size_t>(size - offset, 1 + (i * 997) % (3 * kChunk));
        std::vector<uint8_t> out(n);
        if (!f.file->ReadAt(offset, out).ok() || out != f.Expected(offset, n)) failures++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(f.stats->mismatches.load(), f.stats->refetches.load());
}

}  // namespace
}  // namespace ovbd::remote
