// ParallelCopy: ordered output for any thread count and chunk size, errors stop the copy.
#include "cli/copy.h"

#include <gtest/gtest.h>

#include <vector>

#include "ovbd/zfile.h"
#include "testutil.h"

namespace ovbd::cli {
namespace {

using ovbd::testing::MakeData;

struct Copied {
  Status status;
  std::vector<uint8_t> bytes;
  uint64_t last_progress = 0;
  uint64_t progress_calls = 0;
};

Copied Copy(const ReadableFile& in, int threads, size_t chunk, WritableFile* out = nullptr) {
  Copied c;
  auto storage = std::make_shared<MemStorage>();
  auto mem = NewMemWritableFile("out", storage);
  c.status = ParallelCopy(in, out ? out : mem.get(), threads,
                          [&](uint64_t done, uint64_t total) {
                            EXPECT_EQ(total, in.Size());
                            EXPECT_GT(done, c.last_progress);
                            c.last_progress = done;
                            c.progress_calls++;
                          },
                          chunk);
  c.bytes = storage->bytes;
  return c;
}

TEST(ParallelCopy, SameBytesForAnyThreadCountAndChunkSize) {
  for (size_t n : {size_t{0}, size_t{1}, size_t{4096}, size_t{100000}, size_t{3 << 20}}) {
    const auto data = MakeData(n, n, "text");
    auto in = NewMemReadableFile("in", data);
    for (int threads : {0, 1, 2, 3, 8}) {
      for (size_t chunk : {size_t{1}, size_t{4095}, size_t{65536}, kCopyChunk}) {
        if (chunk == 1 && n > 4096) continue;  // a byte at a time is only for small inputs
        const Copied c = Copy(*in, threads, chunk);
        ASSERT_TRUE(c.status.ok()) << c.status.ToString();
        EXPECT_TRUE(c.bytes == data) << "n " << n << " threads " << threads << " chunk " << chunk;
        EXPECT_EQ(c.last_progress, n);
        EXPECT_EQ(c.progress_calls, (n + chunk - 1) / chunk);
      }
    }
  }
}

TEST(ParallelCopy, ZeroChunkIsInvalid) {
  auto in = NewMemReadableFile("in", MakeData(1, 10));
  EXPECT_EQ(Copy(*in, 1, 0).status.code(), Code::kInvalidArgument);
}

TEST(ParallelCopy, ReadErrorStopsTheCopyAfterTheChunksBefore) {
  const auto data = MakeData(2, 1 << 20, "random");
  for (int threads : {1, 2, 4}) {
    for (uint64_t nth : {1, 2, 7, 16}) {
      auto base = NewMemFile("in");
      ASSERT_TRUE(base->WriteAt(0, data).ok());
      FaultInjectionFile in(std::move(base));
      in.FailNthRead(nth);
      const Copied c = Copy(in, threads, 65536);
      EXPECT_EQ(c.status.code(), Code::kIOError) << "threads " << threads << " read " << nth;
      // Whatever was written is a prefix of the input made of whole chunks.
      EXPECT_EQ(c.bytes.size() % 65536, 0u);
      EXPECT_LT(c.bytes.size(), data.size());
      EXPECT_TRUE(std::equal(c.bytes.begin(), c.bytes.end(), data.begin()));
    }
  }
}

// Fails the n-th Append.
class FailingWriter final : public WritableFile {
 public:
  explicit FailingWriter(uint64_t fail_at) : fail_at_(fail_at) {}
  Status Append(std::span<const uint8_t> data) override {
    if (++appends_ == fail_at_) return Status::IOError("injected write error");
    pos_ += data.size();
    return Status::OK();
  }
  uint64_t Position() const override { return pos_; }
  bool Seekable() const override { return false; }
  Status Rewrite(uint64_t, std::span<const uint8_t>) override { return Status::NotSupported("no"); }
  Status Sync() override { return Status::OK(); }
  Status Close() override { return Status::OK(); }
  const std::string& Name() const override { return name_; }

 private:
  uint64_t fail_at_;
  uint64_t appends_ = 0;
  uint64_t pos_ = 0;
  std::string name_ = "failing";
};

TEST(ParallelCopy, WriteErrorStopsTheWorkers) {
  auto in = NewMemReadableFile("in", MakeData(3, 2 << 20, "text"));
  for (int threads : {1, 2, 5}) {
    for (uint64_t nth : {1, 3, 32}) {
      FailingWriter out(nth);
      const Copied c = Copy(*in, threads, 65536, &out);
      EXPECT_EQ(c.status.code(), Code::kIOError) << "threads " << threads << " write " << nth;
      EXPECT_EQ(out.Position(), (nth - 1) * 65536);
    }
  }
}

// A decompressed ZFile (the decompress command's input) copies back to the original bytes.
TEST(ParallelCopy, DecompressesAZFile) {
  const auto data = MakeData(4, (5 << 20) + 333, "text");
  auto storage = std::make_shared<MemStorage>();
  auto zout = NewMemWritableFile("z", storage);
  auto raw = NewMemReadableFile("raw", data);
  ASSERT_TRUE(zfile::Compress(*raw, zout.get(), zfile::Options{}).ok());
  auto reader = zfile::Open(NewMemReadableFile("z", storage->bytes));
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  for (int threads : {1, 2}) {
    const Copied c = Copy(**reader, threads, kCopyChunk);
    ASSERT_TRUE(c.status.ok()) << c.status.ToString();
    EXPECT_TRUE(c.bytes == data);
  }
}

}  // namespace
}  // namespace ovbd::cli
