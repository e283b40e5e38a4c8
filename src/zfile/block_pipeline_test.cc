// BlockPipeline batches, and Builder output at batch boundaries: the entries are those of a
// block-by-block compression for any thread count, batch size and input size.
#include "zfile/block_pipeline.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "base/coding.h"
#include "base/crc32c.h"
#include "ovbd/zfile.h"
#include "testutil.h"
#include "zfile/codec.h"
#include "zfile/format.h"
#include "zfile/zfile_testing.h"

namespace ovbd::zfile {
namespace {

using ovbd::testing::MakeData;
using namespace ovbd::zfile::testing;

// Entries of `data` compressed one block at a time on this thread (the reference).
std::vector<std::vector<uint8_t>> ReferenceEntries(const std::vector<uint8_t>& data, Algorithm algo, bool crc,
                                                   uint32_t bs) {
  std::vector<std::vector<uint8_t>> entries;
  std::vector<uint8_t> tmp(MaxCompressedSize(algo, bs) + kBlockCrcSize);
  for (size_t off = 0; off < data.size(); off += bs) {
    const size_t len = std::min<size_t>(bs, data.size() - off);
    auto n = CompressBlock(algo, std::span<const uint8_t>(data.data() + off, len),
                           std::span<uint8_t>(tmp.data(), tmp.size() - kBlockCrcSize));
    EXPECT_TRUE(n.ok());
    size_t size = *n;
    if (crc) {
      EncodeLE32(tmp.data() + size, Crc32cExtend(kBlockCrcSeed, tmp.data(), size));
      size += kBlockCrcSize;
    }
    entries.emplace_back(tmp.begin(), tmp.begin() + static_cast<ptrdiff_t>(size));
  }
  return entries;
}

// Pushes `data` through a pipeline and returns the entries in the order they came back.
std::vector<std::vector<uint8_t>> PipelineEntries(const std::vector<uint8_t>& data, Algorithm algo, bool crc,
                                                  uint32_t bs, int threads, size_t batch_blocks) {
  BlockPipeline p(algo, crc, bs, threads, batch_blocks);
  EXPECT_EQ(p.batch_bytes(), batch_blocks * bs);
  std::vector<std::vector<uint8_t>> entries;
  auto drain = [&] {
    auto batch = p.Oldest();
    ASSERT_TRUE(batch.ok()) << batch.status().ToString();
    size_t at = 0;
    for (uint32_t size : batch->sizes) {
      entries.emplace_back(batch->bytes.begin() + static_cast<ptrdiff_t>(at),
                           batch->bytes.begin() + static_cast<ptrdiff_t>(at + size));
      at += size;
    }
    EXPECT_EQ(at, batch->bytes.size());
    p.PopOldest();
  };
  for (size_t off = 0; off < data.size(); off += p.batch_bytes()) {
    if (p.Full()) drain();
    const size_t len = std::min(p.batch_bytes(), data.size() - off);
    std::memcpy(p.Input().data(), data.data() + off, len);
    p.Submit(len);
  }
  while (p.Pending() > 0) drain();
  return entries;
}

TEST(BlockPipeline, EntriesMatchBlockByBlockCompression) {
  const uint32_t bs = 4096;
  // Sizes around batch boundaries (batches of 1, 3 and 7 blocks), with short last blocks.
  for (size_t n : {size_t{1}, size_t{bs}, size_t{3} * bs, size_t{3} * bs + 1, size_t{7} * bs - 1,
                   size_t{21} * bs, size_t{50} * bs + 77}) {
    const auto data = MakeData(n, n, n % 2 ? "text" : "random");
    for (bool crc : {false, true}) {
      const auto want = ReferenceEntries(data, Algorithm::kLz4, crc, bs);
      for (int threads : {1, 2, 5}) {
        for (size_t batch : {1, 3, 7}) {
          EXPECT_EQ(PipelineEntries(data, Algorithm::kLz4, crc, bs, threads, batch), want)
              << "n " << n << " crc " << crc << " threads " << threads << " batch " << batch;
        }
      }
    }
  }
}

TEST(BlockPipeline, ZstdAndLargeBlocks) {
  const auto data = MakeData(9, 5 * 65536 + 100, "text");
  const auto want = ReferenceEntries(data, Algorithm::kZstd, true, 65536);
  EXPECT_EQ(PipelineEntries(data, Algorithm::kZstd, true, 65536, 3, 2), want);
}

TEST(BlockPipeline, SlotsAndPending) {
  BlockPipeline one(Algorithm::kLz4, true, 4096, 1, 4);
  EXPECT_FALSE(one.Full());
  one.Submit(100);
  EXPECT_TRUE(one.Full());  // one slot, compressed inline
  EXPECT_EQ(one.Pending(), 1u);
  ASSERT_TRUE(one.Oldest().ok());
  EXPECT_EQ(one.Oldest()->sizes.size(), 1u);
  one.PopOldest();
  EXPECT_EQ(one.Pending(), 0u);

  BlockPipeline two(Algorithm::kLz4, true, 4096, 2, 4);
  size_t submitted = 0;
  while (!two.Full()) {
    std::memset(two.Input().data(), 'a', two.batch_bytes());
    two.Submit(two.batch_bytes());
    submitted++;
  }
  EXPECT_EQ(submitted, 6u);  // 2 per worker + 2
  EXPECT_EQ(two.Pending(), submitted);
  // Destroying a pipeline with batches in flight joins its workers cleanly.
}

// Builder output for sizes around the (1 MiB) batch size is the same for every thread count,
// however the input is appended, and through Compress().
TEST(ZFileBuilderBatches, SizesAroundBatchBoundariesSameBytesForAnyThreadCount) {
  const size_t mib = 1 << 20;
  for (size_t n : {size_t{0}, size_t{4095}, mib - 4096, mib - 1, mib, mib + 1, mib + 4096, 2 * mib + 4097}) {
    const auto data = MakeData(n + 1, n, "text");
    Options o;
    const auto z1 = BuildZFile(data, o);
    for (int threads : {2, 3, 8}) {
      o.threads = threads;
      EXPECT_TRUE(BuildZFile(data, o) == z1) << n << " threads " << threads;
      EXPECT_TRUE(BuildZFile(data, o, 65537) == z1) << n << " threads " << threads << " chunked";
      auto storage = std::make_shared<MemStorage>();
      auto out = NewMemWritableFile("c", storage);
      auto in = NewMemReadableFile("in", data);
      auto info = Compress(*in, out.get(), o);
      ASSERT_TRUE(info.ok()) << info.status().ToString();
      EXPECT_TRUE(storage->bytes == z1) << n << " threads " << threads << " Compress";
    }
    auto r = OpenBytes(z1);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(ReadAllOrFail(**r), data) << n;
  }
}

TEST(ZFileBuilderBatches, MoreThreadsThanBlocks) {
  const auto data = MakeData(11, 3 * 4096 + 5, "text");
  Options o;
  const auto z1 = BuildZFile(data, o);
  o.threads = 16;
  EXPECT_TRUE(BuildZFile(data, o) == z1);
  o.threads = 256;  // the library's maximum: the pipeline keeps its memory bounded
  EXPECT_TRUE(BuildZFile(data, o, 1000) == z1);
}

TEST(ZFileBuilderBatches, InputReadErrorsAreReported) {
  const auto data = MakeData(12, 3 << 20, "text");
  for (int threads : {1, 2}) {
    for (uint64_t n : {1, 2, 3}) {
      auto base = NewMemFile("in");
      ASSERT_TRUE(base->WriteAt(0, data).ok());
      FaultInjectionFile in(std::move(base));
      in.FailNthRead(n);
      auto storage = std::make_shared<MemStorage>();
      auto out = NewMemWritableFile("out", storage);
      Options o;
      o.threads = threads;
      auto info = Compress(in, out.get(), o);
      EXPECT_EQ(info.status().code(), Code::kIOError) << "read " << n << " threads " << threads;
    }
  }
}

}  // namespace
}  // namespace ovbd::zfile
