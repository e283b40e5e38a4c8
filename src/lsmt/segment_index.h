// Internals of the merged segment index (public contract: include/ovbd/lsmt.h).
//
//   x ──(x - base_) >> table_shift_──> table_[bucket] = {block j, split}
//                                        │  one boundary (or none) in the bucket:
//                                        │  block = j + (x - bucket start >= split)
//                                        │  a few: count 8 leaf keys from j (levels_[0])
//                                        │  many: descend the tree instead
//                                        v
//   segments_ (PackedSegment, 16 B each, sorted, padded to a multiple of kBlockSegments)
//   | blk 0: seg 0..15 | blk 1: seg 16..31 | ...                       | blk B-1 (padded) |
//            ^                                                                 ^
//   levels_[0]: max end of each block, grouped in nodes of kNodeKeys keys (64-byte aligned)
//   levels_[1]: max end of each node of levels_[0]   ...   levels_.back(): one node (the root)
//
// A lookup for "first segment with end > x" finds the block whose max end is the first one
// above x, then counts the segments of that block that start at or before x and checks the end
// of the last of them; all branch free (AVX2 when the CPU has it). The block comes from the
// direct table (one entry, usually L2-resident, then the block: two dependent cache misses at
// most) when the bucket of x holds at most one block boundary, else from the tree: root -> leaf
// level, counting the keys <= x in one node per level (at most 2 cache lines of keys each).
// The final block is 4 lines loaded in parallel.
// Memory: 16 B per segment + ~8/kBlockSegments B per segment of tree keys + a table of at most
// kMaxTableEntriesPerBlock 8-byte entries per block (at most 2 B per segment; ~0.6 B for
// uniformly spread segments, where 1-2 entries per block suffice).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "ovbd/lsmt.h"
#include "ovbd/status.h"

namespace ovbd::lsmt {

// The 16-byte in-memory form of a Segment (not the on-disk record: see format code for that):
//   lo = offset << 14 | length          so that lo orders like offset, and
//        lo <= (x << 14 | 0x3FFF)  <=>  offset <= x
//   hi = moffset (bits 0..54) | zeroed (bit 55) | tag (bits 56..63)   (as on disk)
// Pack() requires a segment that passes ValidateSegment().
struct PackedSegment {
  static constexpr int kLengthBits = 14;
  static constexpr uint64_t kLengthMask = (1ULL << kLengthBits) - 1;
  static constexpr uint64_t kMOffsetMask = (1ULL << 55) - 1;
  static constexpr uint64_t kZeroedBit = 1ULL << 55;

  uint64_t lo = 0;
  uint64_t hi = 0;

  static PackedSegment Pack(const Segment& s) {
    return {s.offset << kLengthBits | s.length,
            s.moffset | (s.zeroed ? kZeroedBit : 0) | (static_cast<uint64_t>(s.tag) << 56)};
  }
  Segment Unpack() const { return {offset(), length(), moffset(), zeroed(), tag()}; }
  uint64_t offset() const { return lo >> kLengthBits; }
  uint32_t length() const { return static_cast<uint32_t>(lo & kLengthMask); }
  uint64_t end() const { return offset() + length(); }
  uint64_t moffset() const { return hi & kMOffsetMask; }
  bool zeroed() const { return (hi & kZeroedBit) != 0; }
  uint8_t tag() const { return static_cast<uint8_t>(hi >> 56); }
  void set_tag(uint8_t tag) { hi = (hi & ~(0xFFULL << 56)) | (static_cast<uint64_t>(tag) << 56); }

  // The part [from, to) of this segment; requires offset() <= from < to <= end(). A data
  // segment's moffset advances by (from - offset()); a zeroed one's is kept.
  PackedSegment Clip(uint64_t from, uint64_t to) const {
    uint64_t skip = zeroed() ? 0 : from - offset();
    return {from << kLengthBits | (to - from), hi + skip};
  }
};
static_assert(sizeof(PackedSegment) == 16);

// True if 1 <= length <= kMaxSegmentLength, end() <= kMaxOffset (so offset never equals the
// padding marker and every end fits 50 bits), moffset <= kMaxMOffset and, for data,
// moffset + length <= 2^55 (clipping can then never carry into the zeroed bit).
inline bool IsValidSegment(const Segment& s) {
  return s.length - 1u < kMaxSegmentLength && s.offset <= kMaxOffset - s.length &&
         s.moffset <= kMaxMOffset && (s.zeroed || s.moffset + s.length <= kMaxMOffset + 1);
}

// OK if IsValidSegment(s), else InvalidArgument naming the broken field.
Status ValidateSegment(const Segment& s);

// InvalidArgument unless every segment is valid and each starts at or after the previous end.
// `what` names the list in the message ("layer 3").
Status ValidateSortedSegments(std::span<const Segment> segments, std::string_view what);

// Number of segments per leaf block and keys per inner node (both powers of two).
inline constexpr size_t kBlockSegments = 16;
inline constexpr size_t kNodeKeys = 16;

// The direct table: at most this many 8-byte entries per block, buckets of at most 2^31 sectors.
inline constexpr size_t kMaxTableEntriesPerBlock = 4;
inline constexpr unsigned kMaxTableShift = 31;

// One bucket of the direct table: `block` is the first block whose max end is above the
// bucket's first sector; `split` is the position (from the bucket's start) of that block's max
// end if it falls inside the bucket, 2^shift if it does not, kTableSplitWindow if the bucket
// holds 2..kLeafWindow-1 block boundaries (the answer is among the kLeafWindow leaf keys from
// `block`), kTableSplitSearch if it holds more (the tree answers).
struct TableEntry {
  uint32_t block = 0;
  uint32_t split = 0;
};
inline constexpr uint32_t kTableSplitSearch = 0xFFFFFFFF;
inline constexpr uint32_t kTableSplitWindow = 0xFFFFFFFE;
inline constexpr size_t kLeafWindow = 8;
static_assert(kLeafWindow <= kNodeKeys, "a window must fit in the padded leaf level");

// Memory for the index arrays: 64-byte aligned; from 2 MiB up, 2 MiB aligned and advised to use
// transparent huge pages (a random lookup then costs no TLB miss). Free with FreeIndexMemory and
// the same byte count.
void* AllocateIndexMemory(size_t bytes);
void FreeIndexMemory(void* p, size_t bytes);

// A fixed-size array in index memory. T must be trivially copyable: elements start
// uninitialised and are assigned before use.
template <typename T>
class AlignedArray {
 public:
  static_assert(std::is_trivially_copyable_v<T> && std::is_trivially_destructible_v<T>);
  AlignedArray() = default;
  explicit AlignedArray(size_t n)
      : data_(static_cast<T*>(AllocateIndexMemory(n * sizeof(T)))), size_(n) {}
  AlignedArray(AlignedArray&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  AlignedArray& operator=(AlignedArray&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    return *this;
  }
  AlignedArray(const AlignedArray&) = delete;
  AlignedArray& operator=(const AlignedArray&) = delete;
  ~AlignedArray() {
    if (data_ != nullptr) FreeIndexMemory(data_, size_ * sizeof(T));
  }
  T* data() { return data_; }
  const T* data() const { return data_; }
  size_t size() const { return size_; }
  T& operator[](size_t i) { return data_[i]; }
  const T& operator[](size_t i) const { return data_[i]; }

 private:
  T* data_ = nullptr;
  size_t size_ = 0;
};

// The SegmentIndex implementation (see the picture above). Immutable after construction;
// concurrent const calls are safe.
struct IndexOptions {
  bool allow_simd = true;   // false forces the portable search (tests compare both)
  bool allow_table = true;  // false: every lookup descends the tree (tests compare both)
};

class PackedSegmentIndex final : public SegmentIndex {
 public:
  // `segments` must have passed ValidateSortedSegments.
  explicit PackedSegmentIndex(std::span<const Segment> segments, IndexOptions options = {});
  // Takes `count` packed segments that are valid, sorted and non-overlapping (tags kept).
  PackedSegmentIndex(const PackedSegment* packed, size_t count, IndexOptions options = {});

  void Lookup(uint64_t offset, uint64_t length,
              const std::function<void(const Segment&)>& fn) const override;
  void AppendOverlapping(uint64_t offset, uint64_t length,
                         std::vector<Segment>* out) const override;
  std::optional<Segment> FindFirstEndingAfter(uint64_t offset) const override;
  size_t size() const override { return size_; }
  std::vector<Segment> All() const override;
  size_t MemoryBytes() const override;

  // Position of the first segment whose end is > offset, or size() if none.
  size_t FindIndex(uint64_t offset) const;
  bool uses_avx2() const { return use_avx2_; }
  // Number of direct-table buckets (0: no table) and how many of them count leaf keys or
  // send x to the tree.
  size_t table_size() const { return table_.size(); }
  size_t table_buckets_with_split(uint32_t split) const;

 private:
  PackedSegmentIndex(size_t count, IndexOptions options);
  // Fills the padding, then builds the tree and the table.
  void Finish(const IndexOptions& options);
  void BuildLevels();
  void BuildTable();
  // Calls visit(const PackedSegment&) for each segment overlapping [offset, offset+length),
  // clipped to it, in order.
  template <typename Visit>
  void ForEachOverlapping(uint64_t offset, uint64_t length, Visit&& visit) const;

  bool use_avx2_ = false;  // chosen once, at construction
  size_t size_ = 0;
  uint64_t first_offset_ = 0;                   // offset of the first segment (table base)
  uint64_t last_end_ = 0;                       // end of the last segment (0 if empty)
  unsigned table_shift_ = 0;                    // a bucket covers 2^table_shift_ sectors
  AlignedArray<PackedSegment> segments_;        // size_ rounded up to kBlockSegments
  std::vector<AlignedArray<uint64_t>> levels_;  // leaf keys first, root last
  AlignedArray<TableEntry> table_;              // empty: no table
};

}  // namespace ovbd::lsmt
