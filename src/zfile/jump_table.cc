#include "zfile/jump_table.h"

#include <string>

#include "base/coding.h"

namespace ovbd::zfile {
namespace {

// With at most 1023 entries before a block inside its group, entries below 2^22 keep every
// relative offset below 2^32.
constexpr uint32_t kMaxRepresentableEntry = (1u << 22) - 1;

Status BadEntry(uint64_t i, uint64_t offset, uint32_t entry, const std::string& why) {
  return Status::Corruption("jump table entry " + std::to_string(i) + " (block at offset " +
                            std::to_string(offset) + ") is " + std::to_string(entry) + ": " + why);
}

}  // namespace

Result<JumpTable> JumpTable::Build(std::span<const uint8_t> raw, const Limits& limits) {
  if (raw.size() % 4 != 0) return Status::InvalidArgument("jump table size is not a multiple of 4");
  if (limits.max_entry > kMaxRepresentableEntry || limits.max_entry < limits.min_entry) {
    return Status::InvalidArgument("jump table limits out of range");
  }
  JumpTable t;
  t.count_ = raw.size() / 4;
  t.group_base_.resize((t.count_ >> kGroupShift) + 1);
  t.rel_.resize(t.count_ + 1);
  uint64_t offset = limits.first_offset;
  for (uint64_t i = 0; i < t.count_; i++) {
    if ((i & ((1u << kGroupShift) - 1)) == 0) t.group_base_[i >> kGroupShift] = offset;
    t.rel_[i] = static_cast<uint32_t>(offset - t.group_base_[i >> kGroupShift]);
    const uint32_t entry = DecodeLE32(raw.data() + 4 * i);
    if (entry < limits.min_entry) {
      return BadEntry(i, offset, entry, "must be at least " + std::to_string(limits.min_entry));
    }
    if (entry > limits.max_entry) {
      return BadEntry(i, offset, entry, "larger than the worst case " + std::to_string(limits.max_entry));
    }
    offset += entry;  // no overflow: count <= 2^30 and entry < 2^22
    if (offset > limits.end_offset) {
      return BadEntry(i, offset - entry, entry, "runs past the jump table at " + std::to_string(limits.end_offset));
    }
  }
  if (offset != limits.end_offset) {
    return Status::Corruption("jump table entries end at offset " + std::to_string(offset) +
                              ", but the jump table starts at " + std::to_string(limits.end_offset));
  }
  if ((t.count_ & ((1u << kGroupShift) - 1)) == 0) t.group_base_[t.count_ >> kGroupShift] = offset;
  t.rel_[t.count_] = static_cast<uint32_t>(offset - t.group_base_[t.count_ >> kGroupShift]);
  return t;
}

}  // namespace ovbd::zfile
