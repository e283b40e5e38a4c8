// The merged segment index: a packed sorted array under a direct table of offset buckets and a
// static B+-tree of block end keys.
//
// Why this layout: a binary search over 32-byte Segments does ~log2(n) dependent loads, most of
// them cache misses at 1M segments, and mispredicts half its branches. The tree alone costs
// ceil(log16(n/16)) node visits (2 cache lines each, upper levels stay cached) plus one block
// scan; at 1M segments the lower two levels miss the caches. The direct table replaces the
// whole descent by one load from a table of ~2 entries per block (L2-sized at 1M segments):
// the table entry names the block and, when one block boundary falls inside the bucket, where,
// so the block follows without reading any key. Buckets holding several boundaries (dense
// regions) fall back to the tree. See segment_index.h for the picture.
#include "lsmt/segment_index.h"

#include <sys/mman.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstring>
#include <limits>
#include <new>
#include <string>

namespace ovbd::lsmt {
namespace {

constexpr size_t kHugePage = 2 << 20;
// Pads inner levels. INT64_MAX rather than UINT64_MAX so that signed 64-bit vector compares
// still order it above every real key (ends are < 2^51).
constexpr uint64_t kNoKey = std::numeric_limits<int64_t>::max();
// Fills padding slots of the last block: offset 2^50 - 1, length 16383; it never starts at or
// before a searched x (x < last_end_ <= 2^50 - 1) and ends after every valid segment.
constexpr PackedSegment kPaddingSegment{~0ULL, 0};

std::string Describe(const Segment& s) {
  return "offset " + std::to_string(s.offset) + " length " + std::to_string(s.length) +
         " moffset " + std::to_string(s.moffset);
}

// ---- node and block counters: portable and AVX2 versions compute the same ------------------
// The search only runs for x < last_end_ <= 2^50 - 1, which the AVX2 versions rely on.

// Number of keys <= x in one node of kNodeKeys keys.
inline size_t CountKeysNotAbove(const uint64_t* keys, uint64_t x) {
  size_t count = 0;
  for (size_t j = 0; j < kNodeKeys; ++j) count += keys[j] <= x ? 1 : 0;
  return count;
}

// Number of segments starting at or before x in one block: lo <= probe, probe = x<<14 | 0x3FFF.
inline size_t CountStartsNotAbove(const PackedSegment* block, uint64_t probe) {
  size_t count = 0;
  for (size_t j = 0; j < kBlockSegments; ++j) count += block[j].lo <= probe ? 1 : 0;
  return count;
}

// Number of keys <= x among kLeafWindow consecutive leaf keys (any alignment).
inline size_t CountWindowNotAbove(const uint64_t* keys, uint64_t x) {
  size_t count = 0;
  for (size_t j = 0; j < kLeafWindow; ++j) count += keys[j] <= x ? 1 : 0;
  return count;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define OVBD_INDEX_AVX2 1
static_assert(kNodeKeys % 4 == 0 && kBlockSegments % 4 == 0 && kNodeKeys <= 32 &&
                  kBlockSegments <= 32,
              "the AVX2 counters take 4 lanes at a time into 32 bits");

__attribute__((target("avx2"))) inline size_t CountKeysNotAboveAvx2(const uint64_t* keys,
                                                                    uint64_t x) {
  const __m256i xv = _mm256_set1_epi64x(static_cast<int64_t>(x));
  const __m256i* v = reinterpret_cast<const __m256i*>(keys);
  unsigned above = 0;
  for (size_t k = 0; k < kNodeKeys / 4; ++k) {
    __m256i gt = _mm256_cmpgt_epi64(_mm256_load_si256(v + k), xv);
    above |= static_cast<unsigned>(_mm256_movemask_pd(_mm256_castsi256_pd(gt))) << (4 * k);
  }
  return kNodeKeys - static_cast<size_t>(__builtin_popcount(above));
}

__attribute__((target("avx2"))) inline size_t CountWindowNotAboveAvx2(const uint64_t* keys,
                                                                      uint64_t x) {
  static_assert(kLeafWindow == 8);
  const __m256i xv = _mm256_set1_epi64x(static_cast<int64_t>(x));
  const __m256i* v = reinterpret_cast<const __m256i*>(keys);
  __m256i gt0 = _mm256_cmpgt_epi64(_mm256_loadu_si256(v), xv);
  __m256i gt1 = _mm256_cmpgt_epi64(_mm256_loadu_si256(v + 1), xv);
  unsigned above = static_cast<unsigned>(_mm256_movemask_pd(_mm256_castsi256_pd(gt0))) |
                   static_cast<unsigned>(_mm256_movemask_pd(_mm256_castsi256_pd(gt1))) << 4;
  return kLeafWindow - static_cast<size_t>(__builtin_popcount(above));
}

// lo words can use bit 63, so both sides get their sign bit flipped for the signed compare.
__attribute__((target("avx2"))) inline size_t CountStartsNotAboveAvx2(const PackedSegment* block,
                                                                      uint64_t probe) {
  const __m256i sign = _mm256_set1_epi64x(std::numeric_limits<int64_t>::min());
  const __m256i pv = _mm256_xor_si256(_mm256_set1_epi64x(static_cast<int64_t>(probe)), sign);
  const __m256i* v = reinterpret_cast<const __m256i*>(block);
  unsigned above = 0;
  for (size_t k = 0; k < kBlockSegments / 4; ++k) {
    // lo of 4 segments (in the order 0, 2, 1, 3: counting does not care).
    __m256i lo =
        _mm256_unpacklo_epi64(_mm256_load_si256(v + 2 * k), _mm256_load_si256(v + 2 * k + 1));
    __m256i gt = _mm256_cmpgt_epi64(_mm256_xor_si256(lo, sign), pv);
    above |= static_cast<unsigned>(_mm256_movemask_pd(_mm256_castsi256_pd(gt))) << (4 * k);
  }
  return kBlockSegments - static_cast<size_t>(__builtin_popcount(above));
}
#endif

struct SearchView {
  const AlignedArray<uint64_t>* levels;  // leaf first
  size_t level_count;
  const PackedSegment* segments;
  const TableEntry* table;  // nullptr: no table
  uint64_t table_base;
  unsigned table_shift;
};

template <bool kAvx2>
inline size_t NodeCount(const uint64_t* keys, uint64_t x) {
#ifdef OVBD_INDEX_AVX2
  if constexpr (kAvx2) return CountKeysNotAboveAvx2(keys, x);
#endif
  return CountKeysNotAbove(keys, x);
}

template <bool kAvx2>
inline size_t BlockCount(const PackedSegment* block, uint64_t probe) {
#ifdef OVBD_INDEX_AVX2
  if constexpr (kAvx2) return CountStartsNotAboveAvx2(block, probe);
#endif
  return CountStartsNotAbove(block, probe);
}

template <bool kAvx2>
inline size_t WindowCount(const uint64_t* keys, uint64_t x) {
#ifdef OVBD_INDEX_AVX2
  if constexpr (kAvx2) return CountWindowNotAboveAvx2(keys, x);
#endif
  return CountWindowNotAbove(keys, x);
}

// The first block whose last end is > x, by the tree; requires x < the last segment's end.
template <bool kAvx2>
inline size_t TreeBlock(const SearchView& t, uint64_t x) {
  size_t node = 0;
  for (size_t level = t.level_count; level-- > 0;) {
    node = node * kNodeKeys + NodeCount<kAvx2>(t.levels[level].data() + node * kNodeKeys, x);
  }
  return node;
}

// Position of the first segment with end > x; requires x < the last segment's end.
template <bool kAvx2>
inline size_t Descend(const SearchView& t, uint64_t x) {
  size_t node;
  // x below the first segment takes bucket 0 at distance 0, as the first offset would: both
  // answer segment 0.
  const uint64_t d = x > t.table_base ? x - t.table_base : 0;
  TableEntry e{0, kTableSplitSearch};
  if (t.table != nullptr) e = t.table[d >> t.table_shift];
  if (e.split < kTableSplitWindow) [[likely]] {
    const uint64_t in_bucket = d & ((uint64_t{1} << t.table_shift) - 1);
    node = e.block + (in_bucket >= e.split ? 1 : 0);
  } else if (e.split == kTableSplitWindow) {
    node = e.block + WindowCount<kAvx2>(t.levels[0].data() + e.block, x);
  } else {
    node = TreeBlock<kAvx2>(t, x);
  }
  // `node` is the first block whose last end is > x. Its first c segments start at or before x
  // and all but the (c-1)-th of them end at or before x.
  const PackedSegment* block = t.segments + node * kBlockSegments;
  size_t c = BlockCount<kAvx2>(block, x << PackedSegment::kLengthBits | PackedSegment::kLengthMask);
  size_t last = c == 0 ? 0 : c - 1;
  size_t inside = (c > 0 && block[last].end() > x) ? 1 : 0;
  return node * kBlockSegments + c - inside;
}

size_t DescendPortable(const SearchView& t, uint64_t x) { return Descend<false>(t, x); }

#ifdef OVBD_INDEX_AVX2
__attribute__((target("avx2"), flatten)) size_t DescendAvx2(const SearchView& t, uint64_t x) {
  return Descend<true>(t, x);
}
bool CpuHasAvx2() { return __builtin_cpu_supports("avx2"); }
#else
size_t DescendAvx2(const SearchView& t, uint64_t x) { return Descend<false>(t, x); }
bool CpuHasAvx2() { return false; }
#endif

// One tree level above `below`: the max of every kNodeKeys keys, padded with kNoKey to whole
// nodes. Keys are non-decreasing, so the max of a node is its last key.
AlignedArray<uint64_t> ParentLevel(const AlignedArray<uint64_t>& below) {
  size_t keys = below.size() / kNodeKeys;
  AlignedArray<uint64_t> level((keys + kNodeKeys - 1) / kNodeKeys * kNodeKeys);
  for (size_t i = 0; i < level.size(); ++i) {
    level[i] = i < keys ? below[i * kNodeKeys + kNodeKeys - 1] : kNoKey;
  }
  return level;
}

std::align_val_t AlignmentFor(size_t bytes) {
  return std::align_val_t{bytes >= kHugePage ? kHugePage : 64};
}

}  // namespace

void* AllocateIndexMemory(size_t bytes) {
  void* p = ::operator new(bytes, AlignmentFor(bytes));
  // Advice only: without THP (or off Linux) the index works the same, with more TLB misses.
  if (bytes >= kHugePage) (void)madvise(p, bytes / kHugePage * kHugePage, MADV_HUGEPAGE);
  return p;
}

void FreeIndexMemory(void* p, size_t bytes) { ::operator delete(p, AlignmentFor(bytes)); }

Status ValidateSegment(const Segment& s) {
  if (s.length == 0 || s.length > kMaxSegmentLength) {
    return Status::InvalidArgument("segment length out of [1, 16383]: " + Describe(s));
  }
  if (s.offset > kMaxOffset || s.end() > kMaxOffset) {
    return Status::InvalidArgument("segment end beyond 2^50-1 sectors: " + Describe(s));
  }
  if (s.moffset > kMaxMOffset || (!s.zeroed && s.moffset + s.length > kMaxMOffset + 1)) {
    return Status::InvalidArgument("segment moffset beyond 2^55 sectors: " + Describe(s));
  }
  return Status::OK();
}

Status ValidateSortedSegments(std::span<const Segment> segments, std::string_view what) {
  uint64_t prev_end = 0;
  for (size_t i = 0; i < segments.size(); ++i) {
    if (IsValidSegment(segments[i]) && segments[i].offset >= prev_end) {  // the hot path
      prev_end = segments[i].end();
      continue;
    }
    Status st = ValidateSegment(segments[i]);
    if (!st.ok()) return st.WithContext(std::string(what) + ": segment " + std::to_string(i));
    if (segments[i].offset < prev_end) {
      return Status::InvalidArgument(std::string(what) + ": segment " + std::to_string(i) +
                                     " starts before the end of the previous one (" +
                                     std::to_string(prev_end) + "): " + Describe(segments[i]));
    }
    prev_end = segments[i].end();
  }
  return Status::OK();
}

PackedSegmentIndex::PackedSegmentIndex(size_t count, IndexOptions options)
    : use_avx2_(options.allow_simd && CpuHasAvx2()),
      size_(count),
      segments_((count + kBlockSegments - 1) / kBlockSegments * kBlockSegments) {}

PackedSegmentIndex::PackedSegmentIndex(std::span<const Segment> segments, IndexOptions options)
    : PackedSegmentIndex(segments.size(), options) {
  for (size_t i = 0; i < size_; ++i) segments_[i] = PackedSegment::Pack(segments[i]);
  Finish(options);
}

PackedSegmentIndex::PackedSegmentIndex(const PackedSegment* packed, size_t count,
                                       IndexOptions options)
    : PackedSegmentIndex(count, options) {
  if (count > 0) std::memcpy(segments_.data(), packed, count * sizeof(PackedSegment));
  Finish(options);
}

void PackedSegmentIndex::Finish(const IndexOptions& options) {
  for (size_t i = size_; i < segments_.size(); ++i) segments_[i] = kPaddingSegment;
  if (size_ == 0) return;
  first_offset_ = segments_[0].offset();
  last_end_ = segments_[size_ - 1].end();
  BuildLevels();
  if (options.allow_table) BuildTable();
}

// Leaf keys: the end of the last segment of each block (for a padded last block, its padding
// end, which is larger still: any x < last_end_ still selects it).
void PackedSegmentIndex::BuildLevels() {
  size_t blocks = segments_.size() / kBlockSegments;
  if (blocks == 0) return;
  AlignedArray<uint64_t> leaf((blocks + kNodeKeys - 1) / kNodeKeys * kNodeKeys);
  for (size_t b = 0; b < leaf.size(); ++b) {
    leaf[b] = b < blocks ? segments_[b * kBlockSegments + kBlockSegments - 1].end() : kNoKey;
  }
  levels_.push_back(std::move(leaf));
  while (levels_.back().size() > kNodeKeys) levels_.push_back(ParentLevel(levels_.back()));
}

namespace {

// Buckets of 2^shift sectors needed for `range` sectors (range >= 1).
uint64_t BucketsFor(uint64_t range, unsigned shift) { return ((range - 1) >> shift) + 1; }

// Number of buckets of 2^shift sectors from `base` holding two or more of the block
// boundaries `ends` (sorted, all > base); a boundary at e splits the bucket of sector e - 1.
size_t CrowdedBuckets(const uint64_t* ends, size_t count, uint64_t base, unsigned shift) {
  size_t crowded = 0;
  uint64_t prev = ~0ULL, counted = ~0ULL;
  for (size_t j = 0; j < count; ++j) {
    uint64_t bucket = (ends[j] - 1 - base) >> shift;
    if (bucket == prev && bucket != counted) {
      ++crowded;
      counted = bucket;
    }
    prev = bucket;
  }
  return crowded;
}

}  // namespace

// The table size: buckets are powers of two; the smallest shift allowed gives at most
// kMaxTableEntriesPerBlock buckets per block. Among that shift and the next two, take the
// largest (smallest table, more likely to stay cached) that sends at most 1/32 of the buckets
// to the tree. No table if buckets would have to exceed 2^kMaxTableShift sectors.
void PackedSegmentIndex::BuildTable() {
  const size_t blocks = segments_.size() / kBlockSegments;
  const uint64_t range = last_end_ - first_offset_;
  const uint64_t max_buckets = kMaxTableEntriesPerBlock * blocks;
  unsigned shift = 0;
  while (BucketsFor(range, shift) > max_buckets) ++shift;
  if (shift > kMaxTableShift) return;
  // Boundaries inside the range: the ends of every block but the last (whose end is >= last_end_).
  const uint64_t* ends = levels_[0].data();
  for (unsigned wider = 0; wider < 2 && shift < kMaxTableShift; ++wider) {
    uint64_t buckets = BucketsFor(range, shift + 1);
    if (CrowdedBuckets(ends, blocks - 1, first_offset_, shift + 1) * 32 > buckets) break;
    ++shift;
  }
  table_shift_ = shift;
  const uint64_t width = uint64_t{1} << shift;
  table_ = AlignedArray<TableEntry>(BucketsFor(range, shift));
  size_t j = 0;  // first block whose end is > the bucket's first sector
  for (size_t i = 0; i < table_.size(); ++i) {
    const uint64_t lo = first_offset_ + (static_cast<uint64_t>(i) << shift);
    const uint64_t hi = std::min(lo + width - 1, last_end_ - 1);  // last sector searched for
    while (ends[j] <= lo) ++j;   // stops at the last block at the latest (end >= last_end_ > lo)
    size_t k = j;  // first block whose end is > hi, counted up to j + kLeafWindow
    while (k < j + kLeafWindow && ends[k] <= hi) ++k;
    // The answer for any x of the bucket is in [j, k]; a window of leaf keys from j covers
    // that if k - j < kLeafWindow, and stays inside the leaf level (the keys after the last
    // block are kNoKey padding up to a multiple of kNodeKeys >= kLeafWindow).
    uint32_t split = kTableSplitSearch;
    if (k < j + kLeafWindow && j + kLeafWindow <= levels_[0].size()) split = kTableSplitWindow;
    if (k == j) split = static_cast<uint32_t>(width);
    if (k == j + 1) split = static_cast<uint32_t>(ends[j] - lo);
    table_[i] = {static_cast<uint32_t>(j), split};
  }
}

size_t PackedSegmentIndex::table_buckets_with_split(uint32_t split) const {
  size_t n = 0;
  for (size_t i = 0; i < table_.size(); ++i) n += table_[i].split == split ? 1 : 0;
  return n;
}

size_t PackedSegmentIndex::FindIndex(uint64_t offset) const {
  if (offset >= last_end_) return size_;  // also the empty index
  SearchView view{levels_.data(), levels_.size(), segments_.data(),
                  table_.size() > 0 ? table_.data() : nullptr, first_offset_, table_shift_};
  return use_avx2_ ? DescendAvx2(view, offset) : DescendPortable(view, offset);
}

std::optional<Segment> PackedSegmentIndex::FindFirstEndingAfter(uint64_t offset) const {
  size_t i = FindIndex(offset);
  if (i >= size_) return std::nullopt;
  return segments_[i].Unpack();
}

template <typename Visit>
void PackedSegmentIndex::ForEachOverlapping(uint64_t offset, uint64_t length,
                                            Visit&& visit) const {
  if (length == 0) return;
  uint64_t end = offset + length < offset ? kNoKey : offset + length;  // saturate
  for (size_t i = FindIndex(offset); i < size_; ++i) {
    const PackedSegment& s = segments_[i];
    if (s.offset() >= end) break;
    visit(s.Clip(std::max(s.offset(), offset), std::min(s.end(), end)));
  }
}

void PackedSegmentIndex::Lookup(uint64_t offset, uint64_t length,
                                const std::function<void(const Segment&)>& fn) const {
  ForEachOverlapping(offset, length, [&fn](const PackedSegment& s) { fn(s.Unpack()); });
}

void PackedSegmentIndex::AppendOverlapping(uint64_t offset, uint64_t length,
                                           std::vector<Segment>* out) const {
  ForEachOverlapping(offset, length, [out](const PackedSegment& s) { out->push_back(s.Unpack()); });
}

std::vector<Segment> PackedSegmentIndex::All() const {
  std::vector<Segment> all;
  all.reserve(size_);
  for (size_t i = 0; i < size_; ++i) all.push_back(segments_[i].Unpack());
  return all;
}

size_t PackedSegmentIndex::MemoryBytes() const {
  size_t bytes = sizeof(*this) + segments_.size() * sizeof(PackedSegment) +
                 table_.size() * sizeof(TableEntry) +
                 levels_.capacity() * sizeof(AlignedArray<uint64_t>);
  for (const auto& level : levels_) bytes += level.size() * sizeof(uint64_t);
  return bytes;
}

Result<std::unique_ptr<SegmentIndex>> BuildSegmentIndex(std::vector<Segment> segments) {
  if (segments.size() > kMaxMergedIndexSize) {
    return Status::InvalidArgument("segment index: " + std::to_string(segments.size()) +
                                   " segments exceed the cap of " +
                                   std::to_string(kMaxMergedIndexSize));
  }
  OVBD_RETURN_IF_ERROR(ValidateSortedSegments(segments, "segment index"));
  return std::unique_ptr<SegmentIndex>(std::make_unique<PackedSegmentIndex>(segments));
}

void SegmentIndex::AppendOverlapping(uint64_t offset, uint64_t length,
                                     std::vector<Segment>* out) const {
  Lookup(offset, length, [out](const Segment& s) { out->push_back(s); });
}

}  // namespace ovbd::lsmt
