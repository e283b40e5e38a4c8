// TraceRecorder merging rules and the RecordingFile decorator.
#include <gtest/gtest.h>

#include <algorithm>
#include <thread>

#include "ovbd/trace.h"
#include "testutil.h"

namespace ovbd::trace {
namespace {

using Ranges = std::vector<TraceRange>;

Ranges RecordAll(const std::vector<TraceRange>& reads, size_t max_ranges = kMaxRanges,
                 size_t* dropped = nullptr) {
  TraceRecorder rec({"a", "b"}, max_ranges);
  for (const TraceRange& r : reads) rec.Record(r.layer, r.offset, r.length);
  if (dropped) *dropped = rec.dropped();
  return rec.Snapshot().ranges;
}

// The union of the ranges of `layer` as sorted, disjoint, non-adjacent [start, end) pairs.
std::vector<std::pair<uint64_t, uint64_t>> Union(const Ranges& ranges, uint32_t layer) {
  std::vector<std::pair<uint64_t, uint64_t>> v, out;
  for (const TraceRange& r : ranges) {
    if (r.layer == layer) v.emplace_back(r.offset, r.offset + r.length);
  }
  std::sort(v.begin(), v.end());
  for (const auto& [s, e] : v) {
    if (!out.empty() && s <= out.back().second) {
      out.back().second = std::max(out.back().second, e);
    } else {
      out.emplace_back(s, e);
    }
  }
  return out;
}

TEST(TraceRecorder, SnapshotHasTheLayerKeys) {
  TraceRecorder rec({"sha256:aa", "b"});
  EXPECT_EQ(rec.Snapshot(), (Trace{{"sha256:aa", "b"}, {}}));
  EXPECT_EQ(rec.dropped(), 0u);
}

TEST(TraceRecorder, AdjacentReadsMerge) {
  EXPECT_EQ(RecordAll({{0, 0, 10}, {0, 10, 10}, {0, 20, 5}}), (Ranges{{0, 0, 25}}));
  EXPECT_EQ(RecordAll({{0, 100, 10}, {0, 90, 10}}), (Ranges{{0, 90, 20}}));
}

TEST(TraceRecorder, OverlappingReadsMerge) {
  EXPECT_EQ(RecordAll({{0, 0, 10}, {0, 5, 10}}), (Ranges{{0, 0, 15}}));
  EXPECT_EQ(RecordAll({{0, 100, 10}, {0, 95, 10}}), (Ranges{{0, 95, 15}}));
  EXPECT_EQ(RecordAll({{0, 100, 10}, {0, 50, 100}}), (Ranges{{0, 50, 100}}));
}

TEST(TraceRecorder, CoveredReadsAreDropped) {
  size_t dropped = 99;
  EXPECT_EQ(RecordAll({{0, 0, 100}, {0, 500, 10}, {0, 10, 20}, {0, 0, 100}, {0, 99, 1}}, kMaxRanges,
                      &dropped),
            (Ranges{{0, 0, 100}, {0, 500, 10}}));
  EXPECT_EQ(dropped, 0u);  // duplicates are not "dropped"
  // Covered by the union of two earlier ranges.
  // ([10, 20) is adjacent to the newest range [20, 30) and extends it.)
  EXPECT_EQ(RecordAll({{0, 0, 10}, {0, 20, 10}, {0, 10, 10}, {0, 5, 20}}),
            (Ranges{{0, 0, 10}, {0, 10, 20}}));
}

TEST(TraceRecorder, DisjointReadsKeepFirstReadOrder) {
  EXPECT_EQ(RecordAll({{0, 100, 10}, {0, 0, 10}, {0, 50, 1}}),
            (Ranges{{0, 100, 10}, {0, 0, 10}, {0, 50, 1}}));
}

TEST(TraceRecorder, OnlyTheNewestRangeOfALayerIsExtended) {
  EXPECT_EQ(RecordAll({{0, 0, 10}, {0, 100, 10}, {0, 10, 10}}),
            (Ranges{{0, 0, 10}, {0, 100, 10}, {0, 10, 10}}));
  // Partly covered reads are recorded whole.
  EXPECT_EQ(RecordAll({{0, 0, 10}, {0, 100, 10}, {0, 5, 10}}),
            (Ranges{{0, 0, 10}, {0, 100, 10}, {0, 5, 10}}));
}

TEST(TraceRecorder, LayersMergeIndependently) {
  EXPECT_EQ(RecordAll({{0, 0, 10}, {1, 10, 10}, {0, 10, 10}, {1, 0, 10}, {1, 5, 2}, {0, 5, 10}}),
            (Ranges{{0, 0, 20}, {1, 0, 20}}));
  EXPECT_EQ(RecordAll({{0, 0, 10}, {1, 0, 10}}), (Ranges{{0, 0, 10}, {1, 0, 10}}));
}

TEST(TraceRecorder, IgnoresEmptyReadsAndClampsAtTheEndOfTheAddressSpace) {
  EXPECT_EQ(RecordAll({{0, 5, 0}}), Ranges{});
  EXPECT_EQ(RecordAll({{0, UINT64_MAX - 5, 100}, {0, UINT64_MAX, 1}}), (Ranges{{0, UINT64_MAX - 5, 5}}));
}

TEST(TraceRecorder, MaxRangesDropsAndCounts) {
  size_t dropped = 0;
  auto ranges = RecordAll({{0, 0, 10}, {1, 0, 10}, {0, 100, 10}, {1, 100, 10},  // 2 dropped
                           {0, 10, 10},                                         // extends
                           {1, 5, 2},                                           // covered
                           {7, 0, 1}},                                          // unknown layer
                          2, &dropped);
  EXPECT_EQ(ranges, (Ranges{{0, 0, 20}, {1, 0, 10}}));
  EXPECT_EQ(dropped, 3u);
}

TEST(TraceRecorder, ConcurrentRecord) {
  constexpr int kThreads = 4;
  constexpr uint64_t kReads = 2000, kBlock = 4096;
  auto rec = std::make_shared<TraceRecorder>(std::vector<std::string>{"t0", "t1", "t2", "t3", "shared"});
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([&rec, t] {
      for (uint64_t i = 0; i < kReads; i++) {
        rec->Record(static_cast<uint32_t>(t), i * kBlock, kBlock);       // sequential: one range
        if (i % kThreads == static_cast<uint64_t>(t)) rec->Record(4, i * kBlock, kBlock);
        rec->Record(4, 0, kBlock);                                       // covered after the first
        if (i % 256 == 0) (void)rec->Snapshot();
      }
    });
  }
  for (auto& th : threads) th.join();
  Trace trace = rec->Snapshot();
  EXPECT_EQ(rec->dropped(), 0u);
  Ranges own;
  for (const TraceRange& r : trace.ranges) {
    if (r.layer < kThreads) own.push_back(r);
  }
  EXPECT_EQ(own.size(), static_cast<size_t>(kThreads));
  for (const TraceRange& r : own) EXPECT_EQ(r.offset + r.length, kReads * kBlock);
  EXPECT_EQ(Union(trace.ranges, 4), (std::vector<std::pair<uint64_t, uint64_t>>{{0, kReads * kBlock}}));
  EXPECT_TRUE(ValidateTrace(trace).ok());
}

TEST(TraceRecorder, SnapshotSavesAndLoads) {
  TraceRecorder rec({"sha256:ab", "local.lsmt"});
  rec.Record(1, 4096, 512);
  rec.Record(0, 0, 1 << 20);
  rec.Record(1, 4608, 512);
  ovbd::testing::TempDir dir;
  ASSERT_TRUE(SaveTrace(dir.Join("t"), rec.Snapshot()).ok());
  auto loaded = LoadTrace(dir.Join("t"));
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(*loaded, rec.Snapshot());
  EXPECT_EQ(loaded->ranges, (Ranges{{1, 4096, 1024}, {0, 0, 1 << 20}}));
}

TEST(RecordingFile, ForwardsAndRecordsSuccessfulReads) {
  std::vector<uint8_t> data = ovbd::testing::MakeData(1, 1000);
  std::shared_ptr<const ReadableFile> base = NewMemReadableFile("blob", data);
  auto rec = std::make_shared<TraceRecorder>(std::vector<std::string>{"a", "b"});
  auto file = NewRecordingFile(base, rec, 1);
  EXPECT_EQ(file->Size(), 1000u);
  EXPECT_EQ(file->Name(), "blob");

  std::vector<uint8_t> buf(50);
  ASSERT_TRUE(file->ReadAt(100, buf).ok());
  EXPECT_TRUE(std::equal(buf.begin(), buf.end(), data.begin() + 100));
  ASSERT_TRUE(file->ReadAt(150, buf).ok());
  EXPECT_FALSE(file->ReadAt(990, buf).ok());          // past the end: not recorded
  ASSERT_TRUE(file->ReadAt(500, std::span<uint8_t>()).ok());  // empty: not recorded
  file->Prefetch(700, 10);                            // a hint: not recorded
  EXPECT_EQ(rec->Snapshot().ranges, (Ranges{{1, 100, 100}}));
}

}  // namespace
}  // namespace ovbd::trace
