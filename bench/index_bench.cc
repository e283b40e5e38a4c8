// Benchmarks of the merged segment index and of MergeIndexes.
//
//   BM_LowerBoundBaseline/N   std::lower_bound over a sorted std::vector<Segment> (by end > x)
//   BM_SegmentIndexLookup/N   SegmentIndex::FindFirstEndingAfter on the same segments
//   BM_SegmentIndexLookup8/N  SegmentIndex::Lookup of 8 sectors (callback per segment)
//   BM_SegmentIndexAppend8/N  SegmentIndex::AppendOverlapping of 8 sectors (the image read path)
//   BM_MergeIndexes_255x10K   merge of 255 layers x 10K random segments over 64 GiB
//   BM_MergeIndexes_255x10K_Disjoint  the same count, never overlapping (2.55M merged segments)
//   BM_MergeAndBuild_255x10K  BuildMergedIndex of the same stack (the open path)
//
// Lookups are uniformly random points in the covered range; compare items_per_second of the
// first two at the same N for the speed-up. bytes_per_segment = MemoryBytes() / size().
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "ovbd/lsmt.h"

namespace {

using ovbd::lsmt::Segment;

constexpr size_t kQueries = 1 << 16;  // power of two: cycled with a mask

// n sorted, non-overlapping segments of 8..1023 sectors with gaps of 0..255 sectors.
std::vector<Segment> MakeSegments(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<Segment> segs;
  segs.reserve(n);
  uint64_t pos = 0, moffset = 8;
  for (size_t i = 0; i < n; ++i) {
    pos += rng() % 256;
    uint32_t length = static_cast<uint32_t>(8 + rng() % 1016);
    segs.push_back({pos, length, moffset, rng() % 8 == 0, 0});
    pos += length;
    moffset += length;
  }
  return segs;
}

std::vector<uint64_t> MakeQueries(const std::vector<Segment>& segs, uint64_t seed) {
  std::mt19937_64 rng(seed);
  uint64_t lo = segs.front().offset, span = segs.back().end() - lo;
  std::vector<uint64_t> queries(kQueries);
  for (uint64_t& q : queries) q = lo + rng() % span;
  return queries;
}

std::unique_ptr<ovbd::lsmt::SegmentIndex> MustBuild(std::vector<Segment> segs) {
  auto index = ovbd::lsmt::BuildSegmentIndex(std::move(segs));
  if (!index.ok()) {
    std::fprintf(stderr, "BuildSegmentIndex: %s\n", index.status().ToString().c_str());
    std::abort();
  }
  return std::move(index).value();
}

void BM_LowerBoundBaseline(benchmark::State& state) {
  std::vector<Segment> segs = MakeSegments(static_cast<size_t>(state.range(0)), 1);
  std::vector<uint64_t> queries = MakeQueries(segs, 2);
  size_t i = 0;
  for (auto _ : state) {
    uint64_t x = queries[i++ & (kQueries - 1)];
    auto it = std::lower_bound(segs.begin(), segs.end(), x,
                               [](const Segment& s, uint64_t v) { return s.end() <= v; });
    benchmark::DoNotOptimize(it);
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["bytes_per_segment"] = static_cast<double>(sizeof(Segment));
}
BENCHMARK(BM_LowerBoundBaseline)->Arg(1000)->Arg(100000)->Arg(1000000);

void BM_SegmentIndexLookup(benchmark::State& state) {
  std::vector<Segment> segs = MakeSegments(static_cast<size_t>(state.range(0)), 1);
  std::vector<uint64_t> queries = MakeQueries(segs, 2);
  auto index = MustBuild(std::move(segs));
  size_t i = 0;
  for (auto _ : state) {
    auto found = index->FindFirstEndingAfter(queries[i++ & (kQueries - 1)]);
    benchmark::DoNotOptimize(found);
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["bytes_per_segment"] =
      static_cast<double>(index->MemoryBytes()) / static_cast<double>(index->size());
}
BENCHMARK(BM_SegmentIndexLookup)->Arg(1000)->Arg(100000)->Arg(1000000);

void BM_SegmentIndexLookup8(benchmark::State& state) {
  std::vector<Segment> segs = MakeSegments(static_cast<size_t>(state.range(0)), 1);
  std::vector<uint64_t> queries = MakeQueries(segs, 2);
  auto index = MustBuild(std::move(segs));
  size_t i = 0;
  uint64_t sink = 0;
  for (auto _ : state) {
    index->Lookup(queries[i++ & (kQueries - 1)], 8,
                  [&sink](const Segment& s) { sink += s.moffset; });
  }
  benchmark::DoNotOptimize(sink);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SegmentIndexLookup8)->Arg(1000)->Arg(100000)->Arg(1000000);

void BM_SegmentIndexAppend8(benchmark::State& state) {
  std::vector<Segment> segs = MakeSegments(static_cast<size_t>(state.range(0)), 1);
  std::vector<uint64_t> queries = MakeQueries(segs, 2);
  auto index = MustBuild(std::move(segs));
  size_t i = 0;
  uint64_t sink = 0;
  std::vector<Segment> out;
  for (auto _ : state) {
    out.clear();
    index->AppendOverlapping(queries[i++ & (kQueries - 1)], 8, &out);
    for (const Segment& s : out) sink += s.moffset;
  }
  benchmark::DoNotOptimize(sink);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SegmentIndexAppend8)->Arg(1000)->Arg(100000)->Arg(1000000);

// 255 layers of 10K segments at random offsets over 64 GiB (2^27 sectors), lengths up to
// kMaxSegmentLength, so layers overlap heavily: top first, as OpenImage passes them.
std::vector<std::vector<Segment>> MakeStack() {
  constexpr uint64_t kSpace = 1ULL << 27;
  std::mt19937_64 rng(3);
  std::vector<std::vector<Segment>> stack(255);
  for (auto& layer : stack) {
    std::vector<uint64_t> starts(10000);
    for (uint64_t& s : starts) s = rng() % kSpace;
    std::sort(starts.begin(), starts.end());
    uint64_t pos = 0, moffset = 8;
    for (uint64_t start : starts) {
      start = std::max(start, pos);
      uint32_t length = static_cast<uint32_t>(1 + rng() % ovbd::lsmt::kMaxSegmentLength);
      layer.push_back({start, length, moffset, rng() % 16 == 0, 0});
      pos = start + length;
      moffset += length;
    }
  }
  return stack;
}

// Worst case for the output size: 255 x 10K short segments that never overlap (interleaved),
// so every input segment survives: 2.55M merged segments.
std::vector<std::vector<Segment>> MakeDisjointStack() {
  std::vector<std::vector<Segment>> stack(255);
  for (size_t layer = 0; layer < stack.size(); ++layer) {
    for (uint64_t i = 0; i < 10000; ++i)
      stack[layer].push_back({(i * 255 + layer) * 16, 8, 8 + i * 8});
  }
  return stack;
}

void RunMerge(benchmark::State& state, const std::vector<std::vector<Segment>>& stack) {
  size_t merged_size = 0;
  for (auto _ : state) {
    auto merged = ovbd::lsmt::MergeIndexes(stack);
    if (!merged.ok()) {
      state.SkipWithError(merged.status().ToString().c_str());
      break;
    }
    merged_size = merged->size();
    benchmark::DoNotOptimize(merged);
  }
  state.counters["merged_segments"] = static_cast<double>(merged_size);
  state.SetItemsProcessed(state.iterations() * 255 * 10000);
}

void BM_MergeIndexes_255x10K(benchmark::State& state) { RunMerge(state, MakeStack()); }
BENCHMARK(BM_MergeIndexes_255x10K)->Unit(benchmark::kMillisecond);

void BM_MergeIndexes_255x10K_Disjoint(benchmark::State& state) {
  RunMerge(state, MakeDisjointStack());
}
BENCHMARK(BM_MergeIndexes_255x10K_Disjoint)->Unit(benchmark::kMillisecond);

void BM_MergeAndBuild_255x10K(benchmark::State& state) {
  auto stack = MakeStack();
  double bytes_per_segment = 0;
  for (auto _ : state) {
    auto built = ovbd::lsmt::BuildMergedIndex(stack);
    if (!built.ok()) {
      state.SkipWithError(built.status().ToString().c_str());
      break;
    }
    auto index = std::move(built).value();
    bytes_per_segment =
        static_cast<double>(index->MemoryBytes()) / static_cast<double>(index->size());
    benchmark::DoNotOptimize(index);
  }
  state.counters["bytes_per_segment"] = bytes_per_segment;
}
BENCHMARK(BM_MergeAndBuild_255x10K)->Unit(benchmark::kMillisecond);

}  // namespace
