// Tests of BuildSegmentIndex / SegmentIndex and MergeIndexes against brute-force models.
#include "lsmt/segment_index.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <random>
#include <tuple>
#include <vector>

#include "ovbd/lsmt.h"

namespace ovbd::lsmt {
namespace {

constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();

// Random sorted, non-overlapping segments starting at `base`: lengths mostly short, some
// kMaxSegmentLength; gaps often zero (adjacent segments) so boundaries coincide.
std::vector<Segment> RandomSegments(std::mt19937_64& rng, size_t n, uint64_t base) {
  std::vector<Segment> out;
  uint64_t pos = base;
  for (size_t i = 0; i < n; ++i) {
    uint64_t gap = rng() % 3 == 0 ? 0 : rng() % 100;
    uint32_t length = rng() % 50 == 0 ? kMaxSegmentLength : static_cast<uint32_t>(1 + rng() % 40);
    bool zeroed = rng() % 4 == 0;
    pos += gap;
    out.push_back({pos, length, 8 + rng() % 1000000, zeroed, static_cast<uint8_t>(rng())});
    pos += length;
  }
  return out;
}

std::optional<Segment> ModelFirstEndingAfter(const std::vector<Segment>& segs, uint64_t x) {
  auto it = std::partition_point(segs.begin(), segs.end(),
                                 [x](const Segment& s) { return s.end() <= x; });
  if (it == segs.end()) return std::nullopt;
  return *it;
}

// Overlapping part of each segment, clipped: the brute-force Lookup.
std::vector<Segment> ModelLookup(const std::vector<Segment>& segs, uint64_t offset,
                                 uint64_t length) {
  std::vector<Segment> out;
  uint64_t end = offset + length < offset ? kU64Max : offset + length;
  for (const Segment& s : segs) {
    uint64_t from = std::max(s.offset, offset);
    uint64_t to = std::min(s.end(), end);
    if (from >= to) continue;
    Segment c = s;
    c.offset = from;
    c.length = static_cast<uint32_t>(to - from);
    if (!s.zeroed) c.moffset += from - s.offset;
    out.push_back(c);
  }
  return out;
}

std::vector<Segment> IndexLookup(const SegmentIndex& index, uint64_t offset, uint64_t length) {
  std::vector<Segment> out;
  index.Lookup(offset, length, [&out](const Segment& s) { out.push_back(s); });
  return out;
}

// Query points: every boundary and its neighbours, extremes, random points.
std::vector<uint64_t> QueryPoints(std::mt19937_64& rng, const std::vector<Segment>& segs,
                                  size_t max_boundaries) {
  std::vector<uint64_t> q = {0, 1, kU64Max, kMaxOffset, kMaxOffset + 1};
  size_t step = std::max<size_t>(1, segs.size() / std::max<size_t>(1, max_boundaries));
  for (size_t i = 0; i < segs.size(); i += step) {
    for (uint64_t b : {segs[i].offset, segs[i].end()}) {
      q.push_back(b);
      q.push_back(b + 1);
      if (b > 0) q.push_back(b - 1);
    }
  }
  if (!segs.empty()) {
    uint64_t lo = segs.front().offset, hi = segs.back().end();
    for (int i = 0; i < 2000; ++i) q.push_back(lo + rng() % (hi - lo + 10));
  }
  return q;
}

void CheckIndexAgainstModel(const std::vector<Segment>& segs, uint64_t seed) {
  auto built = BuildSegmentIndex(segs);
  ASSERT_TRUE(built.ok()) << built.status().ToString();
  const SegmentIndex& index = **built;
  ASSERT_EQ(index.size(), segs.size());
  ASSERT_EQ(index.All(), segs);
  std::mt19937_64 rng(seed);
  const std::vector<uint64_t> q = QueryPoints(rng, segs, 5000);
  // Every search path: SIMD or portable counters, with or without the direct table.
  PackedSegmentIndex portable(segs, {.allow_simd = false});
  PackedSegmentIndex portable_tree(segs, {.allow_simd = false, .allow_table = false});
  PackedSegmentIndex simd_tree(segs, {.allow_table = false});
  EXPECT_FALSE(portable.uses_avx2());
  EXPECT_EQ(portable_tree.table_size(), 0u);
  for (uint64_t x : q) {
    const std::optional<Segment> want = ModelFirstEndingAfter(segs, x);
    ASSERT_EQ(index.FindFirstEndingAfter(x), want) << "x=" << x;
    ASSERT_EQ(portable.FindFirstEndingAfter(x), want) << "x=" << x;
    ASSERT_EQ(portable_tree.FindFirstEndingAfter(x), want) << "x=" << x;
    ASSERT_EQ(simd_tree.FindFirstEndingAfter(x), want) << "x=" << x;
  }
  // Lookups: short ranges near boundaries, ranges spanning many segments, saturating ends.
  for (int i = 0; i < 300; ++i) {
    uint64_t offset = q[rng() % q.size()];
    uint64_t length = i % 10 == 0 ? kU64Max : rng() % (i % 3 == 0 ? 20000 : 64);
    std::vector<Segment> want =
        segs.size() <= 2000 ? ModelLookup(segs, offset, length) : std::vector<Segment>{};
    if (segs.size() > 2000) {  // the model over the relevant window only
      auto it = std::partition_point(segs.begin(), segs.end(),
                                     [offset](const Segment& s) { return s.end() <= offset; });
      auto stop = it;
      uint64_t end = offset + length < offset ? kU64Max : offset + length;
      while (stop != segs.end() && stop->offset < end && stop - it < 5000) ++stop;
      if (stop != segs.end() && stop->offset < end) continue;  // too wide to model cheaply
      want = ModelLookup(std::vector<Segment>(it, stop), offset, length);
    }
    ASSERT_EQ(IndexLookup(index, offset, length), want) << offset << "+" << length;
    std::vector<Segment> appended = {Segment{1, 2, 3}};  // kept in front
    index.AppendOverlapping(offset, length, &appended);
    ASSERT_EQ(appended.size(), want.size() + 1);
    ASSERT_TRUE(std::equal(want.begin(), want.end(), appended.begin() + 1));
  }
}

class IndexSizes : public ::testing::TestWithParam<size_t> {};

TEST_P(IndexSizes, MatchesModel) {
  size_t n = GetParam();
  for (uint64_t seed = 1; seed <= (n < 1000 ? 8u : 2u); ++seed) {
    std::mt19937_64 rng(seed * 7919 + n);
    CheckIndexAgainstModel(RandomSegments(rng, n, rng() % 1000), seed);
    // The same shape near the top of the address space.
    std::vector<Segment> high = RandomSegments(rng, n, 0);
    if (!high.empty() && high.back().end() < kMaxOffset) {
      uint64_t shift = kMaxOffset - high.back().end();
      for (Segment& s : high) s.offset += shift;
    }
    CheckIndexAgainstModel(high, seed);
  }
}

INSTANTIATE_TEST_SUITE_P(Sizes, IndexSizes,
                         ::testing::Values(0, 1, 2, kBlockSegments - 1, kBlockSegments,
                                           kBlockSegments + 1, kBlockSegments* kNodeKeys,
                                           kBlockSegments* kNodeKeys + 1, 1000, 100000));

// Regions of rising density: sparse ones answer from the table directly, medium ones count a
// window of leaf keys, dense ones (many block boundaries in one bucket) descend the tree.
TEST(SegmentIndex, TableFallsBackToWindowAndTree) {
  std::vector<Segment> segs;
  uint64_t pos = 0;
  for (int region = 7; region >= 0; --region) {
    for (int i = 0; i < 2000; ++i) {
      segs.push_back({pos, 1, 8});
      pos += uint64_t{1} << (2 * region);
    }
    pos += 1;
  }
  std::sort(segs.begin(), segs.end(),
            [](const Segment& a, const Segment& b) { return a.offset < b.offset; });
  PackedSegmentIndex index(segs);
  ASSERT_GT(index.table_size(), 0u);
  const size_t window = index.table_buckets_with_split(kTableSplitWindow);
  const size_t search = index.table_buckets_with_split(kTableSplitSearch);
  EXPECT_GT(window, 0u);
  EXPECT_GT(search, 0u);
  EXPECT_LT(window + search, index.table_size() / 2);
  CheckIndexAgainstModel(segs, 3);
  // Clusters far apart, with gaps of many empty buckets.
  std::mt19937_64 rng(11);
  segs.clear();
  for (uint64_t cluster : {uint64_t{0}, uint64_t{1} << 24, uint64_t{1} << 30}) {
    std::vector<Segment> part = RandomSegments(rng, 3000, cluster);
    segs.insert(segs.end(), part.begin(), part.end());
  }
  for (uint64_t i = 0; i < 200; ++i) segs.push_back({(1ULL << 31) + i * 100000, 5, 8});
  CheckIndexAgainstModel(segs, 5);
}

// Uniform segments: every bucket answers from the table.
TEST(SegmentIndex, TableCoversUniformSegments) {
  std::vector<Segment> segs;
  for (uint64_t i = 0; i < 50000; ++i) segs.push_back({i * 700, 600, 8});
  PackedSegmentIndex index(segs);
  ASSERT_GT(index.table_size(), 0u);
  EXPECT_EQ(index.table_buckets_with_split(kTableSplitSearch), 0u);
  EXPECT_EQ(index.table_buckets_with_split(kTableSplitWindow), 0u);
  EXPECT_LE(index.table_size(), kMaxTableEntriesPerBlock * (segs.size() / kBlockSegments + 1));
}

// Buckets would have to be wider than 2^31 sectors: no table, the tree answers.
TEST(SegmentIndex, NoTableForSparseHugeRange) {
  std::vector<Segment> segs = {{0, 8, 8}, {kMaxOffset / 2, 8, 8}, {kMaxOffset - 8, 8, 8}};
  PackedSegmentIndex index(segs);
  EXPECT_EQ(index.table_size(), 0u);
  CheckIndexAgainstModel(segs, 4);
}

// Block boundaries exactly on bucket starts and one sector inside them.
TEST(SegmentIndex, BoundariesOnBucketEdges) {
  for (uint64_t length : {uint64_t{1}, uint64_t{2}, uint64_t{3}, uint64_t{64}, uint64_t{65}}) {
    std::vector<Segment> segs;
    for (uint64_t i = 0; i < 4000; ++i) {
      segs.push_back({7 + i * length, static_cast<uint32_t>(length), 8});
    }
    SCOPED_TRACE(length);
    CheckIndexAgainstModel(segs, length);
  }
}

TEST(SegmentIndex, LookupClipsDataAndZeroed) {
  auto built = BuildSegmentIndex({{100, 50, 1000, false, 3}, {150, 10, 7, true, 4}});
  ASSERT_TRUE(built.ok());
  std::vector<Segment> got = IndexLookup(**built, 120, 35);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], (Segment{120, 30, 1020, false, 3}));
  EXPECT_EQ(got[1], (Segment{150, 5, 7, true, 4}));
  got = IndexLookup(**built, 155, 100);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], (Segment{155, 5, 7, true, 4}));
  EXPECT_TRUE(IndexLookup(**built, 160, 1000).empty());
  EXPECT_TRUE(IndexLookup(**built, 0, 100).empty());
  EXPECT_TRUE(IndexLookup(**built, 120, 0).empty());
}

TEST(SegmentIndex, MemoryUnder24BytesPerSegment) {
  std::mt19937_64 rng(5);
  auto built = BuildSegmentIndex(RandomSegments(rng, 100000, 0));
  ASSERT_TRUE(built.ok());
  EXPECT_LT(static_cast<double>((*built)->MemoryBytes()) / (*built)->size(), 24.0);
}

TEST(SegmentIndex, RejectsBadInput) {
  using V = std::vector<Segment>;
  EXPECT_FALSE(BuildSegmentIndex(V{{10, 5, 0}, {12, 5, 0}}).ok());  // overlap
  EXPECT_FALSE(BuildSegmentIndex(V{{20, 5, 0}, {10, 5, 0}}).ok());  // unsorted
  EXPECT_FALSE(BuildSegmentIndex(V{{10, 0, 0}}).ok());              // empty segment
  EXPECT_FALSE(BuildSegmentIndex(V{{10, kMaxSegmentLength + 1, 0}}).ok());
  EXPECT_FALSE(BuildSegmentIndex(V{{kMaxOffset, 1, 0}}).ok());        // the padding marker
  EXPECT_FALSE(BuildSegmentIndex(V{{kMaxOffset - 1, 2, 0}}).ok());    // ends past 2^50-1
  EXPECT_FALSE(BuildSegmentIndex(V{{kU64Max - 2, 5, 0}}).ok());       // end overflows
  EXPECT_FALSE(BuildSegmentIndex(V{{0, 8, kMaxMOffset}}).ok());       // data past 2^55
  EXPECT_TRUE(BuildSegmentIndex(V{{0, 8, kMaxMOffset, true}}).ok());  // zeroed: moffset unused
  EXPECT_TRUE(BuildSegmentIndex(V{{kMaxOffset - 1, 1, 0}, {10, 5, 0}}).status().code() ==
              Code::kInvalidArgument);
  EXPECT_TRUE(BuildSegmentIndex(V{{10, 5, 0}, {15, 5, 0}, {kMaxOffset - 1, 1, 0}}).ok());
}

// ---- MergeIndexes ------------------------------------------------------------------------

// The recursive merge exactly as notes §2.6 describe it (quadratic; small inputs only).
void ReferenceMerge(const std::vector<std::vector<Segment>>& idx, size_t level, uint64_t b,
                    uint64_t e, std::vector<Segment>& out) {
  if (level >= idx.size() || b >= e) return;
  for (const Segment& m : idx[level]) {
    if (m.end() <= b || m.offset >= e) continue;
    if (m.offset > b) ReferenceMerge(idx, level + 1, b, m.offset, out);
    uint64_t from = std::max(m.offset, b), to = std::min(m.end(), e);
    Segment c = m;
    c.offset = from;
    c.length = static_cast<uint32_t>(to - from);
    if (!m.zeroed) c.moffset += from - m.offset;
    c.tag = static_cast<uint8_t>(level);
    out.push_back(c);
    b = m.end();
  }
  if (b < e) ReferenceMerge(idx, level + 1, b, e, out);
}

struct Cell {
  int layer = -1;  // -1: hole
  uint64_t moffset = 0;
  bool zeroed = false;
  bool operator==(const Cell&) const = default;
};

// Paints layers bottom-up into one cell per sector of [base, base + span).
std::vector<Cell> PaintModel(const std::vector<std::vector<Segment>>& top_first, uint64_t base,
                             uint64_t span) {
  std::vector<Cell> cells(span);
  for (size_t layer = top_first.size(); layer-- > 0;) {
    for (const Segment& s : top_first[layer]) {
      for (uint64_t x = s.offset; x < s.end(); ++x) {
        cells[x - base] = {static_cast<int>(layer),
                           s.zeroed ? s.moffset : s.moffset + (x - s.offset), s.zeroed};
      }
    }
  }
  return cells;
}

std::vector<Cell> PaintMerged(const std::vector<Segment>& merged, uint64_t base, uint64_t span) {
  std::vector<Cell> cells(span);
  for (const Segment& s : merged) {
    for (uint64_t x = s.offset; x < s.end(); ++x) {
      cells[x - base] = {s.tag, s.zeroed ? s.moffset : s.moffset + (x - s.offset), s.zeroed};
    }
  }
  return cells;
}

// A random stack over [base, base + span): layers with random overlapping data/zeroed segments.
std::vector<std::vector<Segment>> RandomStack(std::mt19937_64& rng, size_t layers, uint64_t base,
                                              uint64_t span, size_t max_segments) {
  std::vector<std::vector<Segment>> stack(layers);
  for (auto& layer : stack) {
    size_t n = rng() % (max_segments + 1);
    std::vector<uint64_t> starts;
    for (size_t i = 0; i < n; ++i) starts.push_back(base + rng() % span);
    std::sort(starts.begin(), starts.end());
    uint64_t pos = base;
    for (uint64_t start : starts) {
      start = std::max(start, pos);
      uint64_t room = base + span - start;
      if (room == 0) break;
      uint64_t want = rng() % 20 == 0 ? kMaxSegmentLength : 1 + rng() % 300;
      uint32_t length = static_cast<uint32_t>(std::min(want, room));
      layer.push_back({start, length, 8 + rng() % (1ULL << 40), rng() % 3 == 0, 0});
      pos = start + length;
    }
  }
  return stack;
}

void CheckMerge(const std::vector<std::vector<Segment>>& stack, uint64_t base, uint64_t span,
                bool paint) {
  auto merged = MergeIndexes(stack);
  ASSERT_TRUE(merged.ok()) << merged.status().ToString();
  ASSERT_TRUE(ValidateSortedSegments(*merged, "merged").ok());
  std::vector<Segment> want;
  ReferenceMerge(stack, 0, 0, kMaxOffset, want);
  ASSERT_EQ(*merged, want);
  if (paint) {
    ASSERT_TRUE(PaintMerged(*merged, base, span) == PaintModel(stack, base, span));
  }
}

TEST(MergeIndexes, BuildMergedIndexEqualsMergeThenBuild) {
  std::mt19937_64 rng(9);
  for (int round = 0; round < 20; ++round) {
    auto stack = RandomStack(rng, 1 + rng() % 30, 0, 200000, 200);
    auto merged = MergeIndexes(stack);
    ASSERT_TRUE(merged.ok());
    auto index = BuildMergedIndex(stack);
    ASSERT_TRUE(index.ok());
    EXPECT_EQ((*index)->All(), *merged);
  }
  auto empty = BuildMergedIndex({});
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ((*empty)->size(), 0u);
  EXPECT_FALSE((*empty)->FindFirstEndingAfter(0).has_value());
  EXPECT_EQ(BuildMergedIndex({{{0, 10, 8}, {5, 5, 8}}}).status().code(), Code::kInvalidArgument);
}

TEST(MergeIndexes, RandomStacksMatchModels) {
  std::mt19937_64 rng(42);
  for (int round = 0; round < 300; ++round) {
    size_t layers = 1 + rng() % 20;
    uint64_t span = 1000 + rng() % 60000;
    uint64_t base = round % 2 == 0 ? rng() % 1000 : kMaxOffset - span - rng() % 3;
    auto stack = RandomStack(rng, layers, base, span, 1 + rng() % 40);
    SCOPED_TRACE(round);
    CheckMerge(stack, base, span, round % 3 == 0);
  }
}

TEST(MergeIndexes, ManyLayersMatchReference) {
  std::mt19937_64 rng(7);
  for (size_t layers : {kMaxStackLayers, size_t{128}, size_t{129}, size_t{3}}) {
    auto stack = RandomStack(rng, layers, 0, 20000, 12);
    SCOPED_TRACE(layers);
    CheckMerge(stack, 0, 20000, true);
  }
}

TEST(MergeIndexes, ZeroedShadowsAndClipsKeepMoffset) {
  // top: zeroed [10,20) moffset 5; bottom: data [0,30) moffset 100.
  auto merged = MergeIndexes({{{10, 10, 5, true, 9}}, {{0, 30, 100, false, 9}}});
  ASSERT_TRUE(merged.ok());
  std::vector<Segment> want = {
      {0, 10, 100, false, 1}, {10, 10, 5, true, 0}, {20, 10, 120, false, 1}};
  EXPECT_EQ(*merged, want);
  // A zeroed lower entry clipped at its front keeps its moffset.
  merged = MergeIndexes({{{0, 10, 100, false, 0}}, {{5, 30, 77, true, 0}}});
  ASSERT_TRUE(merged.ok());
  want = {{0, 10, 100, false, 0}, {10, 25, 77, true, 1}};
  EXPECT_EQ(*merged, want);
}

TEST(MergeIndexes, EdgeCases) {
  auto empty = MergeIndexes({});
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
  auto one = MergeIndexes({{{kMaxOffset - kMaxSegmentLength, kMaxSegmentLength, 8, false, 5}}});
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(
      *one,
      (std::vector<Segment>{{kMaxOffset - kMaxSegmentLength, kMaxSegmentLength, 8, false, 0}}));
}

TEST(MergeIndexes, RejectsBadInput) {
  std::vector<std::vector<Segment>> too_many(kMaxStackLayers + 1, {{0, 1, 8}});
  EXPECT_EQ(MergeIndexes(too_many).status().code(), Code::kInvalidArgument);
  too_many.pop_back();
  EXPECT_TRUE(MergeIndexes(too_many).ok());
  EXPECT_EQ(MergeIndexes({{{0, 1, 8}}, {{20, 5, 8}, {10, 5, 8}}}).status().code(),
            Code::kInvalidArgument);  // unsorted
  EXPECT_EQ(MergeIndexes({{{0, 10, 8}, {5, 5, 8}}}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(MergeIndexes({{{0, 0, 8}}}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(MergeIndexes({{{kMaxOffset, 1, 8}}}).status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace ovbd::lsmt
