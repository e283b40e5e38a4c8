// CacheStore + CachedFile against a counting, gated, failing fake source.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <condition_variable>
#include <chrono>
#include <cstring>
#include <functional>
#include <mutex>
#include <random>
#include <thread>

#include "ovbd/cache.h"
#include "testutil.h"

namespace ovbd::cache {
namespace {

using testing::MakeData;
using testing::TempDir;

// A source over a byte vector that counts reads, can hold reads of one offset until released
// (a latch, not timing) and can fail reads covering one offset.
class FakeSource final : public ReadableFile {
 public:
  explicit FakeSource(std::vector<uint8_t> bytes, std::string name = "fake")
      : bytes_(std::move(bytes)), name_(std::move(name)) {}

  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) const override {
    reads_++;
    if (offset > bytes_.size() || buf.size() > bytes_.size() - offset) return Status::OutOfRange("fake");
    if (Covers(offset, buf.size(), gate_at_.load())) WaitForGate();
    if (Covers(offset, buf.size(), fail_at_.load()) && fail_times_.fetch_sub(1) > 0) {
      return Status::Unavailable("fake: injected");
    }
    std::memcpy(buf.data(), bytes_.data() + offset, buf.size());
    return Status::OK();
  }
  uint64_t Size() const override { return bytes_.size(); }
  const std::string& Name() const override { return name_; }
  bool Invalidate(uint64_t, uint64_t) const override {
    invalidations_++;
    return origin_may_differ_;
  }

  uint64_t reads() const { return reads_.load(); }
  uint64_t invalidations() const { return invalidations_.load(); }
  // What Invalidate returns (a network origin: true).
  void SetOriginMayDiffer(bool v) { origin_may_differ_ = v; }
  // Changes the origin's bytes (not while reads run).
  void Poke(uint64_t offset, uint8_t mask) { bytes_[offset] ^= mask; }
  // Reads covering `offset` fail (the first `times` of them).
  void FailAt(uint64_t offset, int64_t times = int64_t{1} << 40) {
    fail_times_ = times;
    fail_at_ = offset;
  }
  void Gate(uint64_t offset) { gate_at_ = offset; }
  void WaitUntilGated(int n) const {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return waiting_ >= n; });
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  const std::vector<uint8_t>& bytes() const { return bytes_; }

 private:
  static constexpr uint64_t kNone = ~0ull;
  static bool Covers(uint64_t offset, size_t n, uint64_t at) { return at >= offset && at - offset < n; }
  void WaitForGate() const {
    std::unique_lock<std::mutex> lock(mu_);
    waiting_++;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_; });
  }

  std::vector<uint8_t> bytes_;
  std::string name_;
  mutable std::atomic<uint64_t> reads_{0};
  mutable std::atomic<uint64_t> invalidations_{0};
  bool origin_may_differ_ = false;
  std::atomic<uint64_t> fail_at_{kNone};
  mutable std::atomic<int64_t> fail_times_{0};
  std::atomic<uint64_t> gate_at_{kNone};
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  mutable int waiting_ = 0;
  bool open_ = false;
};

constexpr uint32_t kBlock = 4096;
const std::string kKey = "sha256:0123abcd";

std::shared_ptr<CacheStore> OpenStore(const std::string& dir, uint64_t capacity, uint32_t bs = kBlock) {
  auto store = CacheStore::Open({dir, capacity, bs});
  EXPECT_TRUE(store.ok()) << store.status().ToString();
  return store.ok() ? store.value() : nullptr;
}

std::unique_ptr<ReadableFile> Cached(std::shared_ptr<CacheStore> store, std::shared_ptr<FakeSource> src,
                                     const std::string& key = kKey) {
  auto f = NewCachedFile(std::move(store), key, std::move(src));
  EXPECT_TRUE(f.ok()) << f.status().ToString();
  return f.ok() ? std::move(f).value() : nullptr;
}

std::vector<uint8_t> Read(const ReadableFile& f, uint64_t offset, size_t n) {
  std::vector<uint8_t> out(n);
  Status s = f.ReadAt(offset, out);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

std::vector<uint8_t> Slice(const FakeSource& src, uint64_t offset, size_t n) {
  return {src.bytes().begin() + offset, src.bytes().begin() + offset + n};
}

uint64_t AllocatedBytes(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

void PatchFile(const std::string& path, uint64_t offset, std::vector<uint8_t> bytes) {
  auto f = OpenRandomRWFile(path, {});
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->WriteAt(offset, bytes).ok());
}

TEST(CacheStore, RandomReadsOfAnyAlignmentMatchSource) {
  TempDir dir;
  auto src = std::make_shared<FakeSource>(MakeData(1, 300 * 1024 + 123));
  auto f = Cached(OpenStore(dir.path(), 1 << 20), src);
  std::mt19937_64 rng(7);
  for (int i = 0; i < 300; i++) {
    uint64_t off = rng() % src->Size();
    size_t n = static_cast<size_t>(rng() % std::min<uint64_t>(20000, src->Size() - off + 1));
    ASSERT_EQ(Read(*f, off, n), Slice(*src, off, n)) << "offset " << off << " length " << n;
  }
  EXPECT_EQ(Read(*f, 0, src->Size()), src->bytes());
  EXPECT_EQ(f->Size(), src->Size());
  std::vector<uint8_t> past(2);
  EXPECT_EQ(f->ReadAt(src->Size() - 1, past).code(), Code::kOutOfRange);
}

// Refill: a scattered miss fetches its own blocks and nothing more, whatever refill_size is.
TEST(CacheStore, ScatteredMissFetchesOnlyItsOwnBlocks) {
  TempDir dir;
  auto src = std::make_shared<FakeSource>(MakeData(31, 64 * kBlock));
  auto store = CacheStore::Open({dir.path(), 1 << 20, kBlock, 16 * kBlock}).value();
  auto f = Cached(store, src);
  EXPECT_EQ(Read(*f, 10 * kBlock + 100, 10), Slice(*src, 10 * kBlock + 100, 10));
  EXPECT_EQ(Read(*f, 30 * kBlock - 5, 10), Slice(*src, 30 * kBlock - 5, 10));  // spans two blocks
  EXPECT_EQ(src->reads(), 2u);
  EXPECT_EQ(store->Stats().fetched_bytes, 3u * kBlock);
  EXPECT_EQ(store->Stats().readahead_bytes, 0u);
}

// Refill: once a stream of reads (each starting where the last ended) has read refill_size
// bytes, its next miss also fetches the next refill_size bytes in the same source request.
TEST(CacheStore, SequentialStreamReadsAheadByRefillSize) {
  TempDir dir;
  auto src = std::make_shared<FakeSource>(MakeData(32, 64 * kBlock));
  const uint64_t refill = 4 * kBlock;
  auto store = CacheStore::Open({dir.path(), 1 << 20, kBlock, refill}).value();
  auto f = Cached(store, src);
  for (uint64_t b = 0; b < 4; ++b) EXPECT_EQ(Read(*f, b * kBlock, kBlock), Slice(*src, b * kBlock, kBlock));
  EXPECT_EQ(src->reads(), 4u);  // the stream is shorter than refill_size: no read-ahead yet
  EXPECT_EQ(Read(*f, 4 * kBlock, kBlock), Slice(*src, 4 * kBlock, kBlock));
  EXPECT_EQ(src->reads(), 5u);  // block 4 + read-ahead of blocks 5..8, one request
  EXPECT_EQ(store->Stats().readahead_bytes, refill);
  for (uint64_t b = 5; b < 9; ++b) EXPECT_EQ(Read(*f, b * kBlock, kBlock), Slice(*src, b * kBlock, kBlock));
  EXPECT_EQ(src->reads(), 5u);  // all hits
  // The stream to the end of the file: every byte right, never past the end, nothing twice.
  for (uint64_t b = 9; b < 64; ++b) EXPECT_EQ(Read(*f, b * kBlock, kBlock), Slice(*src, b * kBlock, kBlock));
  EXPECT_EQ(store->Stats().fetched_bytes, 64u * kBlock);
  EXPECT_LT(src->reads(), 5u + 55u / 4u + 2u);
}

// Refill: read-ahead stops at a block that is already cached (and refill_size 0 disables it).
TEST(CacheStore, ReadAheadStopsAtCachedBlocksAndCanBeDisabled) {
  TempDir dir;
  auto src = std::make_shared<FakeSource>(MakeData(33, 32 * kBlock));
  auto store = CacheStore::Open({dir.path(), 1 << 20, kBlock, 8 * kBlock}).value();
  auto f = Cached(store, src);
  Read(*f, 11 * kBlock, kBlock);                                   // cached: block 11
  for (uint64_t b = 0; b < 9; ++b) Read(*f, b * kBlock, kBlock);  // block 8 reads ahead 9..10 only
  EXPECT_EQ(store->Stats().readahead_bytes, 2u * kBlock);
  EXPECT_EQ(Read(*f, 0, 12 * kBlock), Slice(*src, 0, 12 * kBlock));
  TempDir dir2;
  auto none = CacheStore::Open({dir2.path(), 1 << 20, kBlock, 0}).value();
  auto g = Cached(none, src);
  for (uint64_t b = 0; b < 32; ++b) Read(*g, b * kBlock, kBlock);
  EXPECT_EQ(none->Stats().readahead_bytes, 0u);
  EXPECT_EQ(none->Stats().fetched_bytes, 32u * kBlock);
}

// After a restart no block is trusted: a partial hit reads its whole block to check the CRC.
TEST(CacheStore, PartialHitAfterRestartIsChecked) {
  TempDir dir;
  auto bytes = MakeData(34, 8 * kBlock);
  auto src = std::make_shared<FakeSource>(bytes);
  {
    auto store = OpenStore(dir.path(), 1 << 20);
    Read(*Cached(store, src), 0, bytes.size());
  }
  PatchFile(dir.Join(kKey + ".data"), 3 * kBlock + 9, {static_cast<uint8_t>(bytes[3 * kBlock + 9] ^ 1)});
  auto store = OpenStore(dir.path(), 1 << 20);
  auto f = Cached(store, src);
  uint64_t before = src->reads();
  EXPECT_EQ(Read(*f, 3 * kBlock + 8, 4), Slice(*src, 3 * kBlock + 8, 4));
  EXPECT_EQ(store->Stats().corrupt_blocks, 1u);
  EXPECT_EQ(src->reads(), before + 1);
  EXPECT_EQ(Read(*f, 2 * kBlock + 100, 3 * kBlock), Slice(*src, 2 * kBlock + 100, 3 * kBlock));
  EXPECT_EQ(src->reads(), before + 1);  // a run of hits, all good now
}

bool WaitFor(const std::function<bool()>& done) {
  for (int i = 0; i < 5000 && !done(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return done();
}

// Prefetch hints: a fill worker fetches the absent blocks of the range in one request, in the
// background; reads that follow are hits.
TEST(CacheStore, PrefetchFillsInTheBackground) {
  TempDir dir;
  auto src = std::make_shared<FakeSource>(MakeData(35, 32 * kBlock));
  auto store = OpenStore(dir.path(), 1 << 20);
  auto f = Cached(store, src);
  f->Prefetch(0, 8 * kBlock);  // before StartFillWorkers: ignored
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(src->reads(), 0u);
  store->StartFillWorkers();
  Read(*f, 4 * kBlock, kBlock);  // cached already: the hint skips it
  f->Prefetch(2 * kBlock + 5, 6 * kBlock);
  ASSERT_TRUE(WaitFor([&] { return store->Stats().fetched_bytes == 7u * kBlock; }));
  EXPECT_EQ(src->reads(), 3u);  // the read, blocks 2..3, blocks 5..8
  EXPECT_EQ(Read(*f, 2 * kBlock, 7 * kBlock), Slice(*src, 2 * kBlock, 7 * kBlock));
  EXPECT_EQ(src->reads(), 3u);
  f->Prefetch(2 * kBlock, 7 * kBlock);  // all cached: nothing to do
  f->Prefetch(40 * kBlock, kBlock);     // past the end: ignored
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(src->reads(), 3u);
}

// A read of a block a fill worker is fetching waits for that fetch: one source read in all.
TEST(CacheStore, ReadWaitsForTheFillOfItsBlock) {
  TempDir dir;
  auto src = std::make_shared<FakeSource>(MakeData(36, 16 * kBlock));
  src->Gate(0);
  auto store = OpenStore(dir.path(), 1 << 20);
  store->StartFillWorkers();
  auto f = Cached(store, src);
  f->Prefetch(0, 4 * kBlock);
  src->WaitUntilGated(1);
  std::vector<uint8_t> got;
  std::thread reader([&] { got = Read(*f, kBlock, 2 * kBlock); });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  src->Release();
  reader.join();
  EXPECT_EQ(got, Slice(*src, kBlock, 2 * kBlock));
  EXPECT_EQ(src->reads(), 1u);
}

// A reader waiting on a hinted fetch that fails asks the source again itself: the hint's error
// is not the read's.
TEST(CacheStore, FailedHintFetchIsRetriedByItsReader) {
  TempDir dir;
  auto src = std::make_shared<FakeSource>(MakeData(39, 16 * kBlock));
  src->Gate(0);
  src->FailAt(0, 1);
  auto store = OpenStore(dir.path(), 1 << 20);
  store->StartFillWorkers();
  auto f = Cached(store, src);
  f->Prefetch(0, 2 * kBlock);
  src->WaitUntilGated(1);
  std::vector<uint8_t> got;
  std::thread reader([&] { got = Read(*f, 0, kBlock); });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  src->Release();
  reader.join();
  EXPECT_EQ(got, Slice(*src, 0, kBlock));
  EXPECT_EQ(src->reads(), 2u);  // the failed hint, the reader's own
}

// A failed read-ahead does not fail the read that triggered it (a read-ahead that shares a
// request with the read's own blocks does: it is one request).
TEST(CacheStore, FailedReadAheadDoesNotFailTheRead) {
  TempDir dir;
  auto src = std::make_shared<FakeSource>(MakeData(40, 16 * kBlock));
  auto store = CacheStore::Open({dir.path(), 1 << 20, kBlock, 2 * kBlock}).value();
  auto f = Cached(store, src);
  Read(*f, 6 * kBlock, kBlock);      // block 6 cached
  Read(*f, 3 * kBlock, 2 * kBlock);  // a stream of 2 blocks (3, 4)
  EXPECT_EQ(src->reads(), 2u);
  src->FailAt(7 * kBlock + 1, 1);
  // Blocks 5 (miss) and 6 (hit) continue the stream: blocks 7..8 are read ahead, alone, and fail.
  EXPECT_EQ(Read(*f, 5 * kBlock, 2 * kBlock), Slice(*src, 5 * kBlock, 2 * kBlock));
  EXPECT_EQ(src->reads(), 4u);
  EXPECT_EQ(store->Stats().readahead_bytes, 0u);
  EXPECT_EQ(Read(*f, 7 * kBlock, kBlock), Slice(*src, 7 * kBlock, kBlock));  // fetched again
  EXPECT_EQ(src->reads(), 5u);
}

// A store with queued or running fill jobs closes cleanly (the jobs finish or are dropped).
TEST(CacheStore, StoreClosesWithFillJobsPending) {
  TempDir dir;
  auto src = std::make_shared<FakeSource>(MakeData(37, 256 * kBlock));
  {
    auto store = OpenStore(dir.path(), 1 << 20);
    store->StartFillWorkers();
    auto f = Cached(store, src);
    for (uint64_t b = 0; b < 256; b += 2) f->Prefetch(b * kBlock, kBlock);
  }
  auto store = OpenStore(dir.path(), 1 << 20);
  auto f = Cached(store, src);
  EXPECT_EQ(Read(*f, 0, 256 * kBlock), src->bytes());
}

// Eviction is CLOCK (LRU approximated by a reference bit): a block hit since it was cached
// survives, the oldest block not hit since goes.
TEST(CacheStore, EvictionSparesBlocksHitSinceTheyCame) {
  TempDir dir;
  auto src = std::make_shared<FakeSource>(MakeData(38, 8 * kBlock));
  auto store = OpenStore(dir.path(), 4 * kBlock);
  auto f = Cached(store, src);
  for (uint64_t b = 0; b < 4; ++b) Read(*f, b * kBlock, 100);  // fills the cache
  Read(*f, 0, 100);                                             // a hit on block 0
  Read(*f, 4 * kBlock, 100);                                    // evicts one block
  EXPECT_EQ(src->reads(), 5u);
  EXPECT_EQ(Read(*f, 0, kBlock), Slice(*src, 0, kBlock));
  EXPECT_EQ(src->reads(), 5u);  // block 0 stayed
  EXPECT_EQ(Read(*f, kBlock, kBlock), Slice(*src, kBlock, kBlock));
  EXPECT_EQ(src->reads(), 6u);  // block 1, the oldest not hit, went
  EXPECT_LE(store->Stats().used, 4u * kBlock);
}

TEST(CacheStore, SecondReadIsAHit) {
  TempDir dir;
  auto src = std::make_shared<FakeSource>(MakeData(2, 64 * 1024));
  auto store = OpenStore(dir.path(), 1 << 20);
  auto f = Cached(store, src);
  Read(*f, 5000, 10000);  // blocks 1..3: adjacent misses, one source read
  EXPECT_EQ(src->reads(), 1u);
  EXPECT_EQ(Read(*f, 5000, 10000), Slice(*src, 5000, 10000));
  EXPECT_EQ(src->reads(), 1u);
  CacheStats s = store->Stats();
  EXPECT_EQ(s.misses, 3u);
  EXPECT_EQ(s.hits, 3u);
  EXPECT_EQ(s.fetched_bytes, 3u * kBlock);
  EXPECT_EQ(s.used, 3u * kBlock);
}

TEST(CacheStore, ConcurrentMissesOnOneBlockFetchOnce) {
  TempDir dir;
  auto src = std::make_shared<FakeSource>(MakeData(3, 64 * 1024));
  auto store = OpenStore(dir.path(), 1 << 20);
  auto f = Cached(store, src);
  src->Gate(kBlock);
  constexpr int kThreads = 8;
  std::vector<std::thread> threads;
  std::atomic<int> good{0};
  for (int i = 0; i < kThreads; i++) {
    threads.emplace_back([&, i] {
      if (Read(*f, kBlock + 100 * i, 500) == Slice(*src, kBlock + 100 * i, 500)) good++;
    });
  }
  src->WaitUntilGated(1);
  while (store->Stats().misses < kThreads) std::this_thread::yield();  // all are waiting
  src->Release();
  for (auto& t : threads) t.join();
  EXPECT_EQ(good.load(), kThreads);
  EXPECT_EQ(src->reads(), 1u);
}

// Runs of adjacent misses held by one reader while others wait on blocks of it (and it on
// theirs): overlapping multi-block reads from many threads must all finish with the right bytes.
TEST(CacheStore, OverlappingMultiBlockReadsFromManyThreads) {
  for (uint64_t cap : {uint64_t{1} << 20, uint64_t{6} * kBlock}) {
    TempDir dir;
    auto src = std::make_shared<FakeSource>(MakeData(21, 64 * kBlock + 77));
    auto store = OpenStore(dir.path(), cap);
    auto f = Cached(store, src);
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&, t] {
        std::mt19937_64 rng(t);
        for (int i = 0; i < 60; ++i) {
          uint64_t len = 1 + rng() % (9 * kBlock);
          uint64_t off = rng() % (src->Size() - len);
          if (t % 2) off = src->Size() - len - off;  // half of them walk the other way
          EXPECT_EQ(Read(*f, off, len), Slice(*src, off, len)) << "cap " << cap << " off " << off;
        }
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_LE(store->Stats().used, cap);
  }
}

TEST(CacheStore, CapHoldsUnderWorkloadFourTimesTheCap) {
  TempDir dir;
  const uint64_t cap = 16 * kBlock;
  auto src = std::make_shared<FakeSource>(MakeData(4, 4 * cap));
  auto store = OpenStore(dir.path(), cap);
  auto f = Cached(store, src);
  std::mt19937_64 rng(9);
  for (int i = 0; i < 400; i++) {
    uint64_t off = rng() % (src->Size() - 9000);
    ASSERT_EQ(Read(*f, off, 9000), Slice(*src, off, 9000));
    ASSERT_LE(store->Stats().used, cap);
  }
  CacheStats s = store->Stats();
  EXPECT_GT(s.evicted_bytes, 0u);
  EXPECT_EQ(store->Files().at(0).cached_bytes, s.used);
  EXPECT_LE(AllocatedBytes(dir.Join(kKey + ".data")), cap);
}

TEST(CacheStore, InFlightBlockIsNotEvicted) {
  TempDir dir;
  auto src = std::make_shared<FakeSource>(MakeData(5, 8 * kBlock));
  auto store = OpenStore(dir.path(), kBlock);  // room for exactly one block
  auto f = Cached(store, src);
  src->Gate(0);
  std::thread slow([&] { EXPECT_EQ(Read(*f, 0, kBlock), Slice(*src, 0, kBlock)); });
  src->WaitUntilGated(1);
  // No room and the only candidate is in flight: served from the source, not cached.
  EXPECT_EQ(Read(*f, 3 * kBlock, kBlock), Slice(*src, 3 * kBlock, kBlock));
  EXPECT_EQ(store->Stats().used, kBlock);
  src->Release();
  slow.join();
  uint64_t reads = src->reads();
  Read(*f, 0, kBlock);
  EXPECT_EQ(src->reads(), reads);  // block 0 survived
}

TEST(CacheStore, RestartKeepsCachedBlocks) {
  TempDir dir;
  auto bytes = MakeData(6, 10 * kBlock + 77);
  {
    auto store = OpenStore(dir.path(), 1 << 20);
    Read(*Cached(store, std::make_shared<FakeSource>(bytes)), 0, bytes.size());
  }
  auto src = std::make_shared<FakeSource>(bytes);
  auto store = OpenStore(dir.path(), 1 << 20);
  ASSERT_EQ(store->Files().size(), 1u);
  EXPECT_EQ(store->Files()[0].key, kKey);
  EXPECT_EQ(store->Files()[0].cached_bytes, bytes.size());
  EXPECT_EQ(store->Stats().used, bytes.size());
  EXPECT_EQ(Read(*Cached(store, src), 0, bytes.size()), bytes);
  EXPECT_EQ(src->reads(), 0u);
  EXPECT_EQ(store->Stats().hits, 11u);
}

TEST(CacheStore, RestartWithSmallerCapacityEvicts) {
  TempDir dir;
  auto bytes = MakeData(7, 10 * kBlock);
  {
    auto store = OpenStore(dir.path(), 1 << 20);
    Read(*Cached(store, std::make_shared<FakeSource>(bytes)), 0, bytes.size());
  }
  auto store = OpenStore(dir.path(), 4 * kBlock);
  EXPECT_EQ(store->Stats().used, 4u * kBlock);
  EXPECT_EQ(Read(*Cached(store, std::make_shared<FakeSource>(bytes)), 0, bytes.size()), bytes);
}

// A reader's content check failed on bytes of block 1: Invalidate drops exactly the blocks of the
// range (in memory and on disk) and the next read of them asks the source, which has healed.
TEST(CacheStore, InvalidateDropsTheRangeAndTheNextReadFetchesAgain) {
  TempDir dir;
  auto src = std::make_shared<FakeSource>(MakeData(30, 8 * kBlock));
  auto store = OpenStore(dir.path(), 1 << 20);
  auto f = Cached(store, src);
  src->Poke(kBlock + 10, 0x40);  // corrupted in transit
  Read(*f, 0, 3 * kBlock);
  ASSERT_EQ(src->reads(), 1u);
  src->Poke(kBlock + 10, 0x40);  // the origin is healthy again
  EXPECT_TRUE(f->Invalidate(kBlock + 5, 10));
  EXPECT_EQ(src->invalidations(), 1u);
  CacheStats s = store->Stats();
  EXPECT_EQ(s.invalidated_blocks, 1u);
  EXPECT_EQ(s.used, 2u * kBlock);
  EXPECT_EQ(s.evicted_bytes, 0u);
  EXPECT_EQ(store->Files().at(0).cached_bytes, 2u * kBlock);
  EXPECT_EQ(Read(*f, 0, 3 * kBlock), Slice(*src, 0, 3 * kBlock));
  EXPECT_EQ(src->reads(), 2u);  // block 1 only; blocks 0 and 2 were hits
  EXPECT_EQ(store->Stats().used, 3u * kBlock);
}

TEST(CacheStore, InvalidateSaysWhetherARereadMayDiffer) {
  TempDir dir;
  auto src = std::make_shared<FakeSource>(MakeData(31, 8 * kBlock));
  auto store = OpenStore(dir.path(), 1 << 20);
  auto f = Cached(store, src);
  Read(*f, 0, kBlock);
  EXPECT_FALSE(f->Invalidate(4 * kBlock, kBlock));  // absent, local source: pointless
  EXPECT_FALSE(f->Invalidate(0, 0));
  EXPECT_FALSE(f->Invalidate(100 * kBlock, kBlock));  // past the end
  src->SetOriginMayDiffer(true);
  EXPECT_TRUE(f->Invalidate(4 * kBlock, kBlock));  // absent, but the source says so
  src->SetOriginMayDiffer(false);
  EXPECT_TRUE(f->Invalidate(0, 1));  // a cached block was dropped
  EXPECT_FALSE(f->Invalidate(0, 1));  // nothing left to drop
  EXPECT_EQ(store->Stats().invalidated_blocks, 1u);
}

TEST(CacheStore, InvalidatedBlockIsNotLoadedAfterRestart) {
  TempDir dir;
  auto bytes = MakeData(32, 10 * kBlock);
  {
    auto store = OpenStore(dir.path(), 1 << 20);
    auto f = Cached(store, std::make_shared<FakeSource>(bytes));
    Read(*f, 0, bytes.size());
    EXPECT_TRUE(f->Invalidate(2 * kBlock, 2 * kBlock));  // blocks 2 and 3
  }
  auto src = std::make_shared<FakeSource>(bytes);
  auto store = OpenStore(dir.path(), 1 << 20);
  EXPECT_EQ(store->Files().at(0).cached_bytes, 8u * kBlock);
  EXPECT_EQ(store->Stats().corrupt_blocks, 0u);  // cleared, not left to fail their CRC
  EXPECT_EQ(Read(*Cached(store, src), 0, bytes.size()), bytes);
  EXPECT_EQ(src->reads(), 1u);  // blocks 2..3, one run
  EXPECT_EQ(store->Stats().hits, 8u);
}

// A block invalidated while it is being fetched: the waiting reader gets the fetched bytes, the
// block is not kept, and the next read fetches it again.
TEST(CacheStore, BlockInvalidatedWhileFetchingIsServedButNotKept) {
  TempDir dir;
  auto src = std::make_shared<FakeSource>(MakeData(33, 4 * kBlock));
  auto store = OpenStore(dir.path(), 1 << 20);
  auto f = Cached(store, src);
  src->Gate(kBlock);
  std::thread reader([&] { EXPECT_EQ(Read(*f, kBlock, kBlock), Slice(*src, kBlock, kBlock)); });
  src->WaitUntilGated(1);
  EXPECT_TRUE(f->Invalidate(kBlock, 1));
  src->Release();
  reader.join();
  CacheStats s = store->Stats();
  EXPECT_EQ(s.invalidated_blocks, 1u);
  EXPECT_EQ(s.used, 0u);
  EXPECT_EQ(store->Files().at(0).cached_bytes, 0u);
  EXPECT_EQ(Read(*f, kBlock, kBlock), Slice(*src, kBlock, kBlock));
  EXPECT_EQ(src->reads(), 2u);
  EXPECT_EQ(store->Stats().used, uint64_t{kBlock});
}

// Readers and invalidations of overlapping ranges at once: never a wrong byte, and the books
// balance once everyone is done.
TEST(CacheStore, ConcurrentReadsAndInvalidations) {
  for (uint64_t cap : {uint64_t{1} << 20, uint64_t{6} * kBlock}) {
    TempDir dir;
    auto src = std::make_shared<FakeSource>(MakeData(34, 32 * kBlock + 99));
    auto store = OpenStore(dir.path(), cap);
    auto f = Cached(store, src);
    std::atomic<bool> stop{false};
    std::vector<std::thread> invalidators;
    for (int t = 0; t < 2; ++t) {
      invalidators.emplace_back([&, t] {
        std::mt19937_64 rng(100 + t);
        while (!stop) {
          uint64_t off = rng() % src->Size();
          (void)f->Invalidate(off, 1 + rng() % (3 * kBlock));
          std::this_thread::yield();
        }
      });
    }
    std::vector<std::thread> readers;
    for (int t = 0; t < 6; ++t) {
      readers.emplace_back([&, t] {
        std::mt19937_64 rng(t);
        for (int i = 0; i < 150; ++i) {
          uint64_t len = 1 + rng() % (5 * kBlock);
          uint64_t off = rng() % (src->Size() - len);
          EXPECT_EQ(Read(*f, off, len), Slice(*src, off, len)) << "cap " << cap << " off " << off;
        }
      });
    }
    for (auto& th : readers) th.join();
    stop = true;
    for (auto& th : invalidators) th.join();
    CacheStats s = store->Stats();
    EXPECT_LE(s.used, cap);
    EXPECT_EQ(store->Files().at(0).cached_bytes, s.used);
    // Whether the racing invalidations hit a cached block depends on scheduling; this one must.
    const uint64_t invalidated = s.invalidated_blocks;
    EXPECT_EQ(Read(*f, 0, kBlock), Slice(*src, 0, kBlock));
    (void)f->Invalidate(0, src->Size());
    EXPECT_GT(store->Stats().invalidated_blocks, invalidated);
    EXPECT_EQ(store->Stats().used, 0u);
    EXPECT_EQ(store->Files().at(0).cached_bytes, 0u);
    EXPECT_TRUE(store->CachedRanges(kKey).empty());
  }
}

TEST(CacheStore, FlippedDataByteIsDetectedAndRefetched) {
  TempDir dir;
  auto bytes = MakeData(8, 6 * kBlock);
  auto src = std::make_shared<FakeSource>(bytes);
  auto store = OpenStore(dir.path(), 1 << 20);
  auto f = Cached(store, src);
  Read(*f, 0, bytes.size());
  PatchFile(dir.Join(kKey + ".data"), 2 * kBlock + 17, {static_cast<uint8_t>(bytes[2 * kBlock + 17] ^ 0x20)});
  EXPECT_EQ(Read(*f, 0, bytes.size()), bytes);
  EXPECT_EQ(store->Stats().corrupt_blocks, 1u);
  EXPECT_EQ(src->reads(), 2u);  // the first read's one run + the refetch
  EXPECT_EQ(Read(*f, 2 * kBlock, kBlock), Slice(*src, 2 * kBlock, kBlock));  // repaired
  EXPECT_EQ(src->reads(), 2u);
}

TEST(CacheStore, CrashLeftoversAreNeverServed) {
  TempDir dir;
  auto bytes = MakeData(9, 6 * kBlock);
  {
    auto store = OpenStore(dir.path(), 1 << 20);
    Read(*Cached(store, std::make_shared<FakeSource>(bytes)), 0, bytes.size());
  }
  // Torn entry of block 1; block 3's data lost (a hole) under a present entry; block 4's data
  // half written.
  PatchFile(dir.Join(kKey + ".meta"), 32 + 16 * 1 + 8, std::vector<uint8_t>(8, 0));
  PatchFile(dir.Join(kKey + ".data"), 3 * kBlock, std::vector<uint8_t>(kBlock, 0));
  PatchFile(dir.Join(kKey + ".data"), 4 * kBlock + 2048, MakeData(99, 2048));
  auto src = std::make_shared<FakeSource>(bytes);
  auto store = OpenStore(dir.path(), 1 << 20);
  EXPECT_EQ(store->Stats().corrupt_blocks, 1u);  // the torn entry, found at load
  EXPECT_EQ(Read(*Cached(store, src), 0, bytes.size()), bytes);
  EXPECT_EQ(store->Stats().corrupt_blocks, 3u);
  EXPECT_EQ(src->reads(), 3u);
}

TEST(CacheStore, BrokenHeaderOrOtherBlockSizeStartsEmpty) {
  TempDir dir;
  auto bytes = MakeData(10, 4 * kBlock);
  {
    auto store = OpenStore(dir.path(), 1 << 20);
    Read(*Cached(store, std::make_shared<FakeSource>(bytes)), 0, bytes.size());
    Read(*Cached(store, std::make_shared<FakeSource>(bytes), "other"), 0, bytes.size());
  }
  PatchFile(dir.Join("other.meta"), 0, {'X'});
  {
    auto store = OpenStore(dir.path(), 1 << 20);
    ASSERT_EQ(store->Files().size(), 1u);
    EXPECT_EQ(store->Files()[0].key, kKey);
  }
  auto store = OpenStore(dir.path(), 1 << 20, 2 * kBlock);
  EXPECT_EQ(store->Files().size(), 0u);
  auto src = std::make_shared<FakeSource>(bytes);
  EXPECT_EQ(Read(*Cached(store, src), 0, bytes.size()), bytes);
  EXPECT_EQ(src->reads(), 1u);
}

TEST(CacheStore, SourceErrorPropagatesAndNothingIsCached) {
  TempDir dir;
  auto src = std::make_shared<FakeSource>(MakeData(11, 4 * kBlock));
  auto store = OpenStore(dir.path(), 1 << 20);
  auto f = Cached(store, src);
  src->FailAt(kBlock + 5);
  std::vector<uint8_t> buf(3 * kBlock);
  EXPECT_EQ(f->ReadAt(0, buf).code(), Code::kUnavailable);
  EXPECT_EQ(store->Stats().used, 0u);  // the three blocks were one source read, which failed
  src->FailAt(~0ull);
  EXPECT_EQ(Read(*f, kBlock, kBlock), Slice(*src, kBlock, kBlock));
  EXPECT_EQ(store->Stats().used, kBlock);
  Read(*f, 0, kBlock);   // a hit between two misses splits the runs
  Read(*f, 0, 4 * kBlock);
  EXPECT_EQ(src->reads(), 4u);  // failed run, block 1, block 0, then blocks 2..3 in one read
}

TEST(CacheStore, WaitersOfAFailedFetchGetTheError) {
  TempDir dir;
  auto src = std::make_shared<FakeSource>(MakeData(12, 4 * kBlock));
  auto store = OpenStore(dir.path(), 1 << 20);
  auto f = Cached(store, src);
  src->Gate(0);
  src->FailAt(1);  // checked after the gate: the fetch fails once released
  std::vector<Code> codes(2);
  auto reader = [&](int i) {
    std::vector<uint8_t> buf(kBlock);
    codes[i] = f->ReadAt(0, buf).code();
  };
  std::thread fetcher(reader, 0);
  src->WaitUntilGated(1);
  std::thread waiter(reader, 1);
  while (store->Stats().misses < 2) std::this_thread::yield();
  src->Release();
  fetcher.join();
  waiter.join();
  EXPECT_EQ(codes[0], Code::kUnavailable);
  EXPECT_EQ(codes[1], Code::kUnavailable);
  EXPECT_EQ(src->reads(), 1u);
  EXPECT_EQ(store->Stats().used, 0u);
  EXPECT_EQ(store->Files()[0].cached_bytes, 0u);
}

TEST(CacheStore, SlowSourceDoesNotBlockOtherFilesOrHits) {
  TempDir dir;
  auto store = OpenStore(dir.path(), 1 << 20);
  auto fast_src = std::make_shared<FakeSource>(MakeData(13, 4 * kBlock));
  auto slow_src = std::make_shared<FakeSource>(MakeData(14, 4 * kBlock));
  auto fast = Cached(store, fast_src, "fast");
  auto slow = Cached(store, slow_src, "slow");
  Read(*fast, 0, 2 * kBlock);
  Read(*slow, 0, kBlock);
  slow_src->Gate(2 * kBlock);
  std::thread t([&] { Read(*slow, 2 * kBlock, kBlock); });
  slow_src->WaitUntilGated(1);
  // The slow fetch is stuck: hits on both files and misses on the fast one still complete.
  EXPECT_EQ(Read(*fast, 0, 4 * kBlock), fast_src->bytes());
  EXPECT_EQ(Read(*slow, 0, kBlock), Slice(*slow_src, 0, kBlock));
  EXPECT_EQ(store->Stats().files, 2u);
  slow_src->Release();
  t.join();
}

TEST(CacheStore, PruneEvictsAndPunchesHoles) {
  TempDir dir;
  auto src = std::make_shared<FakeSource>(MakeData(15, 32 * kBlock));
  auto store = OpenStore(dir.path(), 1 << 20);
  auto f = Cached(store, src);
  Read(*f, 0, src->Size());
  ASSERT_TRUE(store->Prune(10 * kBlock).ok());
  EXPECT_LE(store->Stats().used, 10u * kBlock);
  ASSERT_TRUE(store->Prune(0).ok());
  EXPECT_EQ(store->Stats().used, 0u);
  EXPECT_EQ(store->Stats().evicted_bytes, 32u * kBlock);
  EXPECT_EQ(AllocatedBytes(dir.Join(kKey + ".data")), 0u);
  EXPECT_EQ(Read(*f, 0, src->Size()), src->bytes());
  EXPECT_EQ(src->reads(), 2u);  // one run of 32 blocks each time
}

TEST(CacheStore, SourceOfAnotherSizeResetsTheKey) {
  TempDir dir;
  auto store = OpenStore(dir.path(), 1 << 20);
  auto a = std::make_shared<FakeSource>(MakeData(16, 3 * kBlock));
  auto b = std::make_shared<FakeSource>(MakeData(17, 5 * kBlock));
  {
    auto f = Cached(store, a);
    Read(*f, 0, a->Size());
    EXPECT_EQ(NewCachedFile(store, kKey, b).status().code(), Code::kInvalidArgument);  // open
  }
  EXPECT_EQ(Read(*Cached(store, b), 0, b->Size()), b->bytes());
  EXPECT_EQ(store->Stats().used, 5u * kBlock);
}

TEST(CacheStore, RejectInvalidOptions) {
  TempDir dir;
  EXPECT_EQ(CacheStore::Open({"", 1 << 20, kBlock}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(CacheStore::Open({dir.path(), 0, kBlock}).status().code(), Code::kInvalidArgument);
  for (uint32_t bs : {2048u, 3u << 12, 32u << 20}) {
    EXPECT_EQ(CacheStore::Open({dir.path(), 1 << 20, bs}).status().code(), Code::kInvalidArgument) << bs;
  }
  EXPECT_FALSE(CacheStore::Open({dir.Join("no/such/parent"), 1 << 20, kBlock}).ok());
  EXPECT_EQ(CacheStore::Open({dir.path(), 1 << 20, kBlock, kMaxRefillSize + 1}).status().code(),
            Code::kInvalidArgument);
}

TEST(CacheStore, BlockSizeZeroAdoptsTheTablesAlreadyThere) {
  TempDir dir;
  {
    auto empty = CacheStore::Open({dir.path(), 1 << 20, 0});
    ASSERT_TRUE(empty.ok()) << empty.status().ToString();
    EXPECT_EQ((*empty)->Stats().block_size, kDefaultBlockSize);  // nothing there: the default
  }
  {
    auto store = OpenStore(dir.path(), 1 << 20);  // block size kBlock
    auto src = std::make_shared<FakeSource>(MakeData(18, 3 * kBlock));
    auto file = NewCachedFile(store, "k", src);
    ASSERT_TRUE(file.ok());
    std::vector<uint8_t> buf(3 * kBlock);
    ASSERT_TRUE((*file)->ReadAt(0, buf).ok());
  }
  auto adopted = CacheStore::Open({dir.path(), 1 << 20, 0});
  ASSERT_TRUE(adopted.ok()) << adopted.status().ToString();
  EXPECT_EQ((*adopted)->Stats().block_size, kBlock);
  EXPECT_EQ((*adopted)->Stats().used, 3 * kBlock);  // kept, not discarded
}

TEST(CacheStore, CachedRangesMergesPresentBlocks) {
  TempDir dir;
  auto store = OpenStore(dir.path(), 1 << 20);
  auto src = std::make_shared<FakeSource>(MakeData(18, 5 * kBlock + 100));
  auto file = NewCachedFile(store, "k", src);
  ASSERT_TRUE(file.ok());
  std::vector<uint8_t> buf(10);
  ASSERT_TRUE((*file)->ReadAt(kBlock + 5, buf).ok());      // block 1
  ASSERT_TRUE((*file)->ReadAt(2 * kBlock, buf).ok());      // block 2
  ASSERT_TRUE((*file)->ReadAt(5 * kBlock + 50, buf).ok());  // the short last block
  using R = std::vector<std::pair<uint64_t, uint64_t>>;
  EXPECT_EQ(store->CachedRanges("k"), (R{{kBlock, 3 * kBlock}, {5 * kBlock, 5 * kBlock + 100}}));
  EXPECT_TRUE(store->CachedRanges("unknown").empty());
}

TEST(CacheStore, SecondStoreOnOneDirectoryIsRefused) {
  TempDir dir;
  auto store = OpenStore(dir.path(), 1 << 20);
  EXPECT_EQ(CacheStore::Open({dir.path(), 1 << 20, kBlock}).status().code(), Code::kUnavailable);
  store.reset();
  EXPECT_TRUE(CacheStore::Open({dir.path(), 1 << 20, kBlock}).ok());
}

TEST(CacheStore, RejectInvalidKeysAndArguments) {
  TempDir dir;
  auto store = OpenStore(dir.path(), 1 << 20);
  auto src = std::make_shared<FakeSource>(MakeData(18, kBlock));
  for (std::string key : {std::string(), std::string(".."), std::string("../x"), std::string("a/b"),
                          std::string(".hidden"), std::string("a b"), std::string("a\0b", 3),
                          std::string(kMaxKeyLength + 1, 'a')}) {
    EXPECT_EQ(NewCachedFile(store, key, src).status().code(), Code::kInvalidArgument) << key;
  }
  EXPECT_TRUE(ValidateKey("sha256:" + std::string(64, 'f')).ok());
  EXPECT_EQ(NewCachedFile(nullptr, kKey, src).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(NewCachedFile(store, kKey, nullptr).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(store->Files().size(), 0u);
}

}  // namespace
}  // namespace ovbd::cache
