// The writable layer's in-memory index: a mutable, sorted, non-overlapping set of segments with
// last-write-wins insertion (notes §3.2, overlaybd's Index0::insert).
//
//   before:   [AAAAAAAAAAAAAAAAAAAA]        [BBBBB]
//   insert:            [NNNNNNNNNNNNNNNNNNNNNNN]
//   after:    [AAAAAAAA][NNNNNNNNNNNNNNNNNNNNNNN][BB]   B's moffset advanced by what was cut
//
// A data entry trimmed at its front advances its moffset by the trimmed length; a zeroed entry
// keeps its moffset (it points at nothing). Not thread-safe: the RwLayer guards it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <vector>

#include "ovbd/lsmt.h"

namespace ovbd::lsmt {

class LiveIndex {
 public:
  // Inserts `s` (length >= 1), replacing whatever it overlaps.
  void Insert(const Segment& s);
  // Calls fn for every segment overlapping [offset, offset+length) sectors, clipped to it.
  void Lookup(uint64_t offset, uint64_t length, const std::function<void(const Segment&)>& fn) const;
  std::vector<Segment> All() const;
  size_t size() const { return by_offset_.size(); }

 private:
  std::map<uint64_t, Segment> by_offset_;  // keyed by Segment::offset
};

// Clips `s` to [begin, end) sectors (which must overlap it); a data segment cut at its front has
// its moffset advanced.
Segment ClipSegment(const Segment& s, uint64_t begin, uint64_t end);

}  // namespace ovbd::lsmt
