// The ZFile jump table: one uint32 per block on disk, the size of that block's entry
// (compressed bytes + 4 CRC bytes when verify=1). In memory it becomes block offsets:
//
//   group_base_[g]  uint64  offset of block g * kGroupBlocks
//   rel_[i]         uint32  offset of block i minus group_base_[i / kGroupBlocks]   (i <= count)
//
// 4 bytes per block plus 8 bytes per kGroupBlocks blocks. A group of 1024 entries of at most
// ~66 KiB each stays far below 2^32, so entries larger than the block size (incompressible
// blocks) are representable. Immutable after Build, so safe to share between threads.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "ovbd/status.h"

namespace ovbd::zfile {

class JumpTable {
 public:
  struct Limits {
    uint64_t first_offset = 512;  // where block 0 starts
    uint32_t min_entry = 1;       // each entry must be >= min_entry
    uint32_t max_entry = 0;       // ... and <= max_entry (< 2^22)
    uint64_t end_offset = 0;      // the entries must sum to end_offset - first_offset
  };

  JumpTable() = default;

  // Decodes `raw` (count little-endian uint32, count = raw.size() / 4) and checks each entry
  // against `limits`. Corruption names the entry number and its offset.
  static Result<JumpTable> Build(std::span<const uint8_t> raw, const Limits& limits);

  uint64_t count() const { return count_; }
  // Offset of block i's entry, 0 <= i <= count(); Offset(count()) is the jump table's offset.
  uint64_t Offset(uint64_t i) const { return group_base_[i >> kGroupShift] + rel_[i]; }
  // Size of block i's entry (compressed bytes + CRC).
  uint32_t EntrySize(uint64_t i) const { return static_cast<uint32_t>(Offset(i + 1) - Offset(i)); }

 private:
  static constexpr unsigned kGroupShift = 10;  // 1024 blocks per group

  uint64_t count_ = 0;
  std::vector<uint64_t> group_base_;
  std::vector<uint32_t> rel_;
};

}  // namespace ovbd::zfile
