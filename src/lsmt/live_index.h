// The writable layer's in-memory index: a mutable, sorted, non-overlapping set of segments with
// last-write-wins insertion (notes §3.2, overlaybd's Index0::insert).
//
//   before:   [AAAAAAAAAAAAAAAAAAAA]        [BBBBB]
//   insert:            [NNNNNNNNNNNNNNNNNNNNNNN]
//   after:    [AAAAAAAA][NNNNNNNNNNNNNNNNNNNNNNN][BB]   B's moffset advanced by what was cut
//
// A data entry trimmed at its front advances its moffset by the trimmed length; a zeroed entry
// keeps its moffset (it points at nothing). Not thread-safe: the RwLayer guards it.
//
// The entries live in a pool that the index owns, not one heap allocation each: an index of a
// few hundred thousand entries is then freed in a few large blocks. Freed one entry at a time
// (a std::map on the global heap), dropping a sealed upper's index took 20-60 ms, during which
// the serving threads, whose heap arena had allocated the entries, waited for its lock on every
// request (docs/performance.md, "Online lifecycle").
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <memory_resource>
#include <vector>

#include "ovbd/lsmt.h"

namespace ovbd::lsmt {

class LiveIndex {
 public:
  LiveIndex() = default;
  LiveIndex(LiveIndex&&) noexcept = default;  // the entries stay in the pool, which moves along
  LiveIndex& operator=(LiveIndex&&) = delete;
  LiveIndex(const LiveIndex&) = delete;
  LiveIndex& operator=(const LiveIndex&) = delete;

  // Inserts `s` (length >= 1), replacing whatever it overlaps.
  void Insert(const Segment& s);
  // Calls fn for every segment overlapping [offset, offset+length) sectors, clipped to it.
  void Lookup(uint64_t offset, uint64_t length, const std::function<void(const Segment&)>& fn) const;
  std::vector<Segment> All() const;
  size_t size() const { return by_offset_.size(); }

 private:
  // Declared before the map, so the map is destroyed (into the pool) first.
  std::unique_ptr<std::pmr::unsynchronized_pool_resource> pool_ =
      std::make_unique<std::pmr::unsynchronized_pool_resource>();
  std::pmr::map<uint64_t, Segment> by_offset_{pool_.get()};  // keyed by Segment::offset
};

// Clips `s` to [begin, end) sectors (which must overlap it); a data segment cut at its front has
// its moffset advanced.
Segment ClipSegment(const Segment& s, uint64_t begin, uint64_t end);

}  // namespace ovbd::lsmt
