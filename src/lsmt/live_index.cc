#include "lsmt/live_index.h"

#include <algorithm>

namespace ovbd::lsmt {

Segment ClipSegment(const Segment& s, uint64_t begin, uint64_t end) {
  Segment out = s;
  uint64_t new_begin = std::max(s.offset, begin);
  uint64_t new_end = std::min(s.end(), end);
  if (!s.zeroed) out.moffset += new_begin - s.offset;
  out.offset = new_begin;
  out.length = static_cast<uint32_t>(new_end - new_begin);
  return out;
}

void LiveIndex::Insert(const Segment& s) {
  // Start at the last entry beginning at or before s.offset: it may reach into s.
  auto it = by_offset_.upper_bound(s.offset);
  if (it != by_offset_.begin()) --it;
  while (it != by_offset_.end() && it->second.offset < s.end()) {
    const Segment old = it->second;
    if (old.end() <= s.offset) {
      ++it;
      continue;
    }
    it = by_offset_.erase(it);
    if (old.offset < s.offset) {
      Segment head = ClipSegment(old, old.offset, s.offset);
      by_offset_.emplace(head.offset, head);
    }
    if (old.end() > s.end()) {
      Segment tail = ClipSegment(old, s.end(), old.end());
      by_offset_.emplace(tail.offset, tail);
      break;
    }
  }
  by_offset_[s.offset] = s;
}

void LiveIndex::Lookup(uint64_t offset, uint64_t length,
                       const std::function<void(const Segment&)>& fn) const {
  const uint64_t end = offset + length;
  auto it = by_offset_.upper_bound(offset);
  if (it != by_offset_.begin()) --it;
  for (; it != by_offset_.end() && it->second.offset < end; ++it) {
    if (it->second.end() <= offset) continue;
    fn(ClipSegment(it->second, offset, end));
  }
}

std::vector<Segment> LiveIndex::All() const {
  std::vector<Segment> out;
  out.reserve(by_offset_.size());
  for (const auto& [offset, s] : by_offset_) out.push_back(s);
  return out;
}

}  // namespace ovbd::lsmt
