// Prefetcher: what it reads, in which order and how many at once, and how it stops. The fake
// files block on a gate instead of sleeping, so nothing here depends on timing.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "ovbd/trace.h"

namespace ovbd::trace {
namespace {

struct Read {
  std::string file;
  uint64_t offset;
  uint64_t length;
  friend bool operator==(const Read&, const Read&) = default;
  friend auto operator<=>(const Read&, const Read&) = default;
};

// Shared by the fake files of a test: the reads in start order, the in-flight count and a gate
// that holds every read until opened.
struct ReadLog {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Read> reads;
  bool gate_open = true;
  int in_flight = 0;
  int max_in_flight = 0;

  void Open() {
    std::lock_guard lock(mu);
    gate_open = true;
    cv.notify_all();
  }
  // True once `n` reads have started (false after a minute: the test is broken, not slow).
  bool WaitForStarted(size_t n) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(60), [&] { return reads.size() >= n; });
  }
  std::vector<Read> Sorted() {
    std::lock_guard lock(mu);
    std::vector<Read> v = reads;
    std::sort(v.begin(), v.end());
    return v;
  }
};

class FakeFile final : public ReadableFile {
 public:
  FakeFile(std::string name, uint64_t size, std::shared_ptr<ReadLog> log, bool fail = false)
      : name_(std::move(name)), size_(size), log_(std::move(log)), fail_(fail) {}

  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) const override {
    {
      std::unique_lock lock(log_->mu);
      log_->reads.push_back({name_, offset, buf.size()});
      log_->max_in_flight = std::max(log_->max_in_flight, ++log_->in_flight);
      log_->cv.notify_all();
      log_->cv.wait(lock, [&] { return log_->gate_open; });
      log_->in_flight--;
    }
    if (fail_) return Status::IOError(name_ + ": injected read failure");
    if (offset > size_ || buf.size() > size_ - offset) return Status::OutOfRange(name_ + ": past the end");
    std::fill(buf.begin(), buf.end(), uint8_t{0xab});
    return Status::OK();
  }
  uint64_t Size() const override { return size_; }
  const std::string& Name() const override { return name_; }

 private:
  std::string name_;
  uint64_t size_;
  std::shared_ptr<ReadLog> log_;
  bool fail_;
};

using Files = std::map<std::string, std::shared_ptr<const ReadableFile>>;

struct Fixture {
  std::shared_ptr<ReadLog> log = std::make_shared<ReadLog>();
  Files files;
  void Add(const std::string& key, uint64_t size, bool fail = false) {
    files[key] = std::make_shared<FakeFile>(key, size, log, fail);
  }
};

Trace TwoLayers() {
  Trace t;
  t.layers = {"a", "b"};
  t.ranges = {{0, 0, 4096}, {1, 8192, 100}, {0, 1 << 20, 65536}, {1, 0, 1}, {0, 4096, 4096}};
  return t;
}

PrefetchStats Replay(Trace trace, Files files, PrefetchOptions options) {
  auto p = Prefetcher::Start(std::move(trace), std::move(files), options);
  p->Wait();
  return p->Stats();
}

TEST(Prefetcher, ReadsExactlyTheTraceRanges) {
  Fixture f;
  f.Add("a", 4 << 20);
  f.Add("b", 1 << 20);
  PrefetchStats stats = Replay(TwoLayers(), f.files, {});
  std::vector<Read> expected = {{"a", 0, 4096}, {"b", 8192, 100}, {"a", 1 << 20, 65536}, {"b", 0, 1},
                                {"a", 4096, 4096}};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(f.log->Sorted(), expected);
  EXPECT_EQ(stats.ranges, 5u);
  EXPECT_EQ(stats.bytes_done, 4096u + 100 + 65536 + 1 + 4096);
  EXPECT_EQ(stats.bytes_failed, 0u);
  EXPECT_EQ(stats.skipped_layers, 0u);
  EXPECT_EQ(stats.skipped_ranges, 0u);
  EXPECT_TRUE(stats.finished);
  EXPECT_FALSE(stats.cancelled);
}

TEST(Prefetcher, OneWorkerReadsInTraceOrder) {
  Fixture f;
  f.Add("a", 4 << 20);
  f.Add("b", 1 << 20);
  Replay(TwoLayers(), f.files, {.parallel = 1, .max_read = 1 << 20});
  EXPECT_EQ(f.log->reads, (std::vector<Read>{{"a", 0, 4096}, {"b", 8192, 100}, {"a", 1 << 20, 65536},
                                             {"b", 0, 1}, {"a", 4096, 4096}}));
  EXPECT_EQ(f.log->max_in_flight, 1);
}

TEST(Prefetcher, SplitsRangesByMaxRead) {
  Fixture f;
  f.Add("a", 1000);
  Trace t{{"a"}, {{0, 10, 25}, {0, 100, 10}, {0, 200, 1}}};
  PrefetchStats stats = Replay(t, f.files, {.parallel = 1, .max_read = 10});
  EXPECT_EQ(f.log->reads, (std::vector<Read>{{"a", 10, 10}, {"a", 20, 10}, {"a", 30, 5}, {"a", 100, 10},
                                             {"a", 200, 1}}));
  EXPECT_EQ(stats.ranges, 3u);
  EXPECT_EQ(stats.bytes_done, 36u);
}

TEST(Prefetcher, AtMostParallelReadsInFlight) {
  for (unsigned parallel : {1u, 3u}) {
    SCOPED_TRACE(parallel);
    Fixture f;
    f.Add("a", 1 << 20);
    Trace t{{"a"}, {{0, 0, 1 << 20}}};
    f.log->gate_open = false;
    auto p = Prefetcher::Start(t, f.files, {.parallel = parallel, .max_read = 4096});
    ASSERT_TRUE(f.log->WaitForStarted(parallel));
    {
      std::lock_guard lock(f.log->mu);
      EXPECT_EQ(f.log->in_flight, static_cast<int>(parallel));  // all workers blocked in a read
    }
    f.log->Open();
    p->Wait();
    EXPECT_EQ(f.log->max_in_flight, static_cast<int>(parallel));
    EXPECT_EQ(f.log->reads.size(), 256u);
    EXPECT_EQ(p->Stats().bytes_done, 1u << 20);
  }
}

TEST(Prefetcher, SkipsLayersWithoutFiles) {
  Fixture f;
  f.Add("a", 1 << 20);
  f.Add("unused", 1 << 20);
  f.files["c"] = nullptr;
  Trace t{{"a", "missing", "c"}, {{1, 0, 10}, {0, 0, 10}, {2, 0, 10}, {1, 10, 10}, {0, 20, 5}}};
  PrefetchStats stats = Replay(t, f.files, {});
  EXPECT_EQ(f.log->Sorted(), (std::vector<Read>{{"a", 0, 10}, {"a", 20, 5}}));
  EXPECT_EQ(stats.skipped_layers, 2u);
  EXPECT_EQ(stats.skipped_ranges, 3u);
  EXPECT_EQ(stats.ranges, 2u);
  EXPECT_EQ(stats.bytes_done, 15u);
  EXPECT_TRUE(stats.finished);
}

TEST(Prefetcher, CountsFailuresAndGoesOn) {
  Fixture f;
  f.Add("a", 4 << 20);
  f.Add("b", 1 << 20, /*fail=*/true);
  PrefetchStats stats = Replay(TwoLayers(), f.files, {.parallel = 2, .max_read = 64});
  EXPECT_EQ(stats.bytes_done, 4096u + 65536 + 4096);
  EXPECT_EQ(stats.bytes_failed, 101u);
  EXPECT_EQ(stats.reads_failed, 3u);  // 100 bytes in reads of 64 + 36, and 1 byte
  EXPECT_NE(stats.first_error.find("b: injected read failure"), std::string::npos) << stats.first_error;
  EXPECT_EQ(stats.ranges, 5u);
  EXPECT_TRUE(stats.finished);
}

TEST(Prefetcher, ClampsRangesToTheFileSize) {
  Fixture f;
  f.Add("a", 100);
  Trace t{{"a"}, {{0, 50, 100}, {0, 100, 10}, {0, 200, 5}, {0, 90, UINT64_MAX - 90}}};
  PrefetchStats stats = Replay(t, f.files, {.parallel = 1});
  EXPECT_EQ(f.log->reads, (std::vector<Read>{{"a", 50, 50}, {"a", 90, 10}}));
  EXPECT_EQ(stats.ranges, 2u);
  EXPECT_EQ(stats.skipped_ranges, 2u);
  EXPECT_EQ(stats.bytes_done, 60u);
  EXPECT_EQ(stats.bytes_failed, 0u);
}

TEST(Prefetcher, ToleratesRangesOfUnknownLayerIds) {
  Fixture f;
  f.Add("a", 100);
  Trace t{{"a"}, {{5, 0, 10}, {0, 0, 10}}};  // not a valid trace: still no crash
  PrefetchStats stats = Replay(t, f.files, {});
  EXPECT_EQ(stats.skipped_ranges, 1u);
  EXPECT_EQ(stats.bytes_done, 10u);
}

TEST(Prefetcher, CancelStopsAfterInFlightReads) {
  Fixture f;
  f.Add("a", 1 << 20);
  Trace t{{"a"}, {{0, 0, 1 << 20}}};
  f.log->gate_open = false;
  auto p = Prefetcher::Start(t, f.files, {.parallel = 2, .max_read = 4096});
  ASSERT_TRUE(f.log->WaitForStarted(2));
  p->Cancel();
  EXPECT_TRUE(p->Stats().cancelled);
  EXPECT_FALSE(p->Stats().finished);
  f.log->Open();
  p->Wait();
  PrefetchStats stats = p->Stats();
  EXPECT_EQ(f.log->reads.size(), 2u);  // only the two reads already in flight
  EXPECT_EQ(stats.bytes_done, 2u * 4096);
  EXPECT_TRUE(stats.cancelled);
  EXPECT_TRUE(stats.finished);
}

TEST(Prefetcher, DestructorCancelsAndJoins) {
  Fixture f;
  f.Add("a", 1 << 20);
  std::weak_ptr<const ReadableFile> weak = f.files["a"];
  Trace t{{"a"}, {{0, 0, 1 << 20}}};
  f.log->gate_open = false;
  auto p = Prefetcher::Start(t, std::move(f.files), {.parallel = 3, .max_read = 16});
  ASSERT_TRUE(f.log->WaitForStarted(3));
  std::thread opener([log = f.log] { log->Open(); });
  p.reset();  // returns only once every worker has stopped and released the files
  opener.join();
  EXPECT_TRUE(weak.expired());
  std::lock_guard lock(f.log->mu);
  EXPECT_EQ(f.log->in_flight, 0);
}

TEST(Prefetcher, EmptyTraceAndDegenerateOptions) {
  Fixture f;
  f.Add("a", 100);
  PrefetchStats stats = Replay(Trace{}, f.files, {.parallel = 0, .max_read = 0});
  EXPECT_TRUE(stats.finished);
  EXPECT_EQ(stats.ranges, 0u);
  stats = Replay(Trace{{"a"}, {{0, 0, 100}}}, f.files, {.parallel = 0, .max_read = 0});
  EXPECT_EQ(f.log->reads, (std::vector<Read>{{"a", 0, 100}}));
  EXPECT_EQ(stats.bytes_done, 100u);
}

TEST(Prefetcher, WaitTwiceAndCancelAfterTheEnd) {
  Fixture f;
  f.Add("a", 100);
  auto p = Prefetcher::Start(Trace{{"a"}, {{0, 0, 100}}}, f.files, {});
  p->Wait();
  p->Wait();
  p->Cancel();
  EXPECT_TRUE(p->Stats().finished);
  EXPECT_FALSE(p->Stats().cancelled);
}

// Record through RecordingFiles, replay through RecordingFiles: the replay reads the same trace.
TEST(Prefetcher, ReplayReproducesTheRecordedTrace) {
  std::shared_ptr<const ReadableFile> blob_a = NewMemReadableFile("a", std::vector<uint8_t>(1 << 16, 1));
  std::shared_ptr<const ReadableFile> blob_b = NewMemReadableFile("b", std::vector<uint8_t>(1 << 12, 2));
  auto first = std::make_shared<TraceRecorder>(std::vector<std::string>{"a", "b"});
  auto a = NewRecordingFile(blob_a, first, 0);
  auto b = NewRecordingFile(blob_b, first, 1);
  std::vector<uint8_t> buf(512);
  for (uint64_t off : {8192u, 0u, 8704u, 512u}) ASSERT_TRUE(a->ReadAt(off, buf).ok());
  ASSERT_TRUE(b->ReadAt(1024, buf).ok());
  ASSERT_TRUE(a->ReadAt(60000, buf).ok());
  const Trace recorded = first->Snapshot();

  auto second = std::make_shared<TraceRecorder>(recorded.layers);
  Files files = {{"a", NewRecordingFile(blob_a, second, 0)}, {"b", NewRecordingFile(blob_b, second, 1)}};
  PrefetchStats stats = Replay(recorded, files, {.parallel = 1});
  EXPECT_EQ(stats.bytes_done, 6u * 512);
  EXPECT_EQ(second->Snapshot(), recorded);
}

}  // namespace
}  // namespace ovbd::trace
