// The per-block state machine of the cache store (see store_impl.h). The store mutex is held
// only for in-memory transitions; cache-file I/O and source reads happen outside it.
#include <algorithm>

#include "cache/block_table.h"
#include "cache/store_impl.h"

namespace ovbd::cache {

void Flight::Finish(Status s) {
  std::lock_guard<std::mutex> lock(mu);
  status = std::move(s);
  done = true;
  cv.notify_all();
}

Status Flight::Wait() {
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [this] { return done; });
  return status;
}

uint64_t CacheStore::Impl::BlockLength(const KeyEntry& e, uint64_t block) const {
  uint64_t start = block * options.block_size;
  return std::min<uint64_t>(options.block_size, e.size - start);
}

BlockStep CacheStore::Impl::Begin(KeyEntry* e, uint64_t block) {
  std::lock_guard<std::mutex> lock(mu);
  BlockSlot& slot = e->blocks[block];
  BlockStep step;
  if (slot.state == BlockState::kPresent && !slot.drop) {
    slot.pins++;
    slot.referenced = true;  // CLOCK: no list surgery on the hit path (see PickVictimsLocked)
    step.kind = BlockStep::kHit;
    step.crc = slot.crc;
    step.verified = slot.verified;
    return step;
  }
  stats.misses++;
  if (slot.state == BlockState::kPresent) return step;  // invalidated, still pinned: kBypass
  if (slot.state == BlockState::kFetching) {
    step.kind = BlockStep::kWait;
    step.flight = slot.flight;
    return step;
  }
  if (slot.state == BlockState::kEvicting) return step;  // kBypass
  return ClaimLocked(e, block);
}

BlockStep CacheStore::Impl::BeginReadahead(KeyEntry* e, uint64_t block) {
  std::lock_guard<std::mutex> lock(mu);
  if (e->blocks[block].state != BlockState::kAbsent) return BlockStep{};  // kBypass
  return ClaimLocked(e, block, true);
}

BlockStep CacheStore::Impl::ClaimLocked(KeyEntry* e, uint64_t block, bool ahead) {
  BlockSlot& slot = e->blocks[block];
  BlockStep step;
  uint64_t length = BlockLength(*e, block);
  if (!PickVictimsLocked(length, &step.victims)) return step;  // kBypass
  stats.used += length;
  slot.state = BlockState::kFetching;
  slot.verified = false;
  slot.drop = false;
  slot.length = static_cast<uint32_t>(length);
  slot.flight = std::make_shared<Flight>();
  slot.flight->ahead = ahead;
  step.kind = BlockStep::kFetch;
  step.flight = slot.flight;
  return step;
}

// CLOCK, an approximation of LRU: the list is in insertion order and a hit only sets the
// block's reference bit. A referenced block at the cold end gets a second chance (bit cleared,
// moved to the warm end) instead of being evicted, so a block hit since it last came round is
// kept; each block is looked at most twice per call.
bool CacheStore::Impl::PickVictimsLocked(uint64_t need, std::vector<BlockRef>* victims) {
  if (need > options.capacity) return false;
  uint64_t freed = 0;
  std::vector<std::list<BlockRef>::iterator> picked;
  size_t budget = 2 * lru.size();
  for (auto it = lru.begin(); it != lru.end() && budget > 0 && stats.used - freed + need > options.capacity;
       --budget) {
    auto next = std::next(it);
    BlockSlot& slot = it->key->blocks[it->block];
    if (slot.pins == 0 && slot.referenced) {
      slot.referenced = false;
      lru.splice(lru.end(), lru, it);  // iterators stay valid; `next` still follows in order
      if (next == lru.end()) next = it;  // it was the last one: look at it once more
    } else if (slot.pins == 0) {
      picked.push_back(it);
      freed += slot.length;
    }
    it = next;
  }
  if (stats.used - freed + need > options.capacity) return false;
  for (auto it : picked) {
    BlockSlot& slot = it->key->blocks[it->block];
    slot.state = BlockState::kEvicting;
    victims->push_back(*it);
    lru.erase(it);
  }
  stats.used -= freed;
  return true;
}

void CacheStore::Impl::EndHit(KeyEntry* e, uint64_t block, bool verified) {
  std::vector<BlockRef> victims;
  {
    std::lock_guard<std::mutex> lock(mu);
    EndHitLocked(e, block, verified);
    BlockSlot& slot = e->blocks[block];
    if (slot.drop && slot.pins == 0 && slot.state == BlockState::kPresent) TakeLocked(e, block, &victims);
  }
  (void)Evict(victims, true);  // an invalidated block whose last reader just left
}

void CacheStore::Impl::EndHitLocked(KeyEntry* e, uint64_t block, bool verified) {
  BlockSlot& slot = e->blocks[block];
  slot.pins--;
  if (verified) {
    stats.hits++;
    if (slot.state == BlockState::kPresent) slot.verified = true;
    return;
  }
  stats.corrupt_blocks++;
  if (slot.state != BlockState::kPresent) return;  // another reader already dropped it
  // Dropped like an invalidated block: at once if no other reader holds it, else at its release
  // (EndHit). Its entry is cleared on disk too, so a restart (or `ovbd cache verify` run twice)
  // does not find it again when no refetch came to overwrite it.
  slot.drop = true;
}

void CacheStore::Impl::FinishFetch(KeyEntry* e, uint64_t block, const Status& status,
                                   uint32_t crc, bool stored, bool readahead) {
  std::shared_ptr<Flight> flight;
  std::vector<BlockRef> victims;
  {
    std::lock_guard<std::mutex> lock(mu);
    BlockSlot& slot = e->blocks[block];
    flight = std::move(slot.flight);
    if (status.ok()) stats.fetched_bytes += slot.length;
    if (status.ok() && readahead) stats.readahead_bytes += slot.length;
    if (stored) {
      slot.state = BlockState::kPresent;
      slot.verified = true;  // we just wrote these bytes
      slot.crc = crc;
      slot.referenced = false;
      slot.lru = lru.insert(lru.end(), BlockRef{e, block});
      e->cached_bytes += slot.length;
      if (slot.drop) TakeLocked(e, block, &victims);  // invalidated while fetching: not kept
    } else {
      slot.state = BlockState::kAbsent;
      slot.drop = false;
      stats.used -= slot.length;
    }
  }
  flight->Finish(status);  // the waiters get the bytes even if they are not kept
  (void)Evict(victims, true);
}

bool CacheStore::Impl::Invalidate(KeyEntry* e, uint64_t offset, uint64_t length) {
  if (length == 0 || offset >= e->size) return false;
  const uint64_t bs = options.block_size;
  const uint64_t end = (std::min(e->size - offset, length) + offset + bs - 1) / bs;
  std::vector<BlockRef> victims;
  bool any = false;
  {
    std::lock_guard<std::mutex> lock(mu);
    for (uint64_t block = offset / bs; block < end; ++block) any |= MarkInvalidLocked(e, block, &victims);
  }
  // An I/O error here leaves a table entry that may be loaded after a restart; the block's
  // check then fails again and the reader invalidates again.
  (void)Evict(victims, true);
  return any;
}

bool CacheStore::Impl::MarkInvalidLocked(KeyEntry* e, uint64_t block, std::vector<BlockRef>* victims) {
  BlockSlot& slot = e->blocks[block];
  switch (slot.state) {
    case BlockState::kAbsent:
    case BlockState::kEvicting:
      return false;
    case BlockState::kFetching:
      slot.drop = true;
      return true;
    case BlockState::kPresent:
      if (slot.pins > 0) {
        slot.drop = true;
      } else {
        TakeLocked(e, block, victims);
      }
      return true;
  }
  return false;
}

void CacheStore::Impl::TakeLocked(KeyEntry* e, uint64_t block, std::vector<BlockRef>* victims) {
  BlockSlot& slot = e->blocks[block];
  lru.erase(slot.lru);
  slot.state = BlockState::kEvicting;
  slot.drop = false;
  stats.used -= slot.length;
  victims->push_back(BlockRef{e, block});
}

Status CacheStore::Impl::Evict(const std::vector<BlockRef>& victims, bool invalidated) {
  Status first;
  for (const BlockRef& v : victims) {
    // Entry first: a crash between the two leaves an absent entry over stale bytes (harmless);
    // the other order would leave a present entry over a hole, which verification also catches.
    EntryBytes zero{};
    Status s = v.key->meta->WriteAt(EntryOffset(v.block), zero);
    uint64_t length = BlockLength(*v.key, v.block);
    if (s.ok()) s = v.key->data->Trim(v.block * options.block_size, length);
    if (first.ok() && !s.ok()) first = s.WithContext("cache: evicting " + v.key->key);
    std::lock_guard<std::mutex> lock(mu);
    BlockSlot& slot = v.key->blocks[v.block];
    slot.state = BlockState::kAbsent;
    v.key->cached_bytes -= slot.length;
    if (invalidated) {
      stats.invalidated_blocks++;
    } else {
      stats.evicted_bytes += slot.length;
    }
  }
  return first;
}

}  // namespace ovbd::cache
