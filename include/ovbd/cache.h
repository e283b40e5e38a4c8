// Local block cache in front of remote blobs (lazy loading, docs/design.md "Local cache").
//
//   reader ── CachedFile(key) ──hit──> DIR/<key>.data  (sparse, block b at b*block_size)
//                 │    │               DIR/<key>.meta  (header + one 16-byte entry per block:
//                 │    │                                 length, CRC32C of the data, entry CRC)
//                 │    └─miss─> source.ReadAt (adjacent missing blocks of a read in one fetch,
//                 │              plus refill_size ahead when the read continues a sequential
//                 │              stream; one fetch per block however many readers wait)
//                 ├─Prefetch(range)─> claims the absent blocks; 8 fill workers fetch them
//                 └──────────> CacheStore: capacity, LRU (CLOCK) over all keys, pins, stats, prune
//
// Crash safety and self-verification: a block is written to the data file before its table
// entry; every hit re-computes the CRC32C of the block and compares it with the entry. A block
// whose bytes do not match (torn write, kill -9, bit rot, a hole punched by a crash mid-eviction)
// or whose entry fails its own CRC is treated as missing: counted in corrupt_blocks, refetched,
// never served. Nothing needs fsync for correctness; durability only saves refetches.
//
// Capacity: `used` (bytes of cached blocks plus blocks being fetched) never exceeds `capacity`.
// A miss makes room by evicting least recently used blocks of any key (CLOCK: a hit sets a
// reference bit that buys the block one more round; eviction punches holes in the
// data file); a block pinned by an in-flight read is never evicted. If no room can be made the
// block is served straight from the source and not cached.
//
// Invalidation: a reader whose own content check (a ZFile block CRC, a digest) failed on bytes
// a CachedFile returned calls Invalidate(range), so the next read asks the source again. Each
// block overlapping the range is dropped: a present block that no read is using right now
// loses its table entry and its data (the eviction path: after a restart it is not loaded
// again); a block pinned by a read in flight is dropped when that read ends, and is never
// served as a hit meanwhile (readers go to the source); a block being fetched is served to the
// readers waiting for it but not kept. Dropped blocks are counted in invalidated_blocks. The
// source is invalidated too (first, so that a refetch cannot find a stale copy below).
//
// Locking: one store mutex guards the in-memory tables and is never held across source reads
// or cache-file I/O, so a slow source delays only the readers of the blocks it is fetching.
// Recency is kept in memory only: after a restart the LRU order is the load order.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ovbd/io.h"
#include "ovbd/status.h"

namespace ovbd::cache {

inline constexpr uint32_t kMinBlockSize = 4u << 10;
inline constexpr uint32_t kMaxBlockSize = 16u << 20;
// The unit the cache fetches, checks (CRC32C) and evicts. Small, so that a scattered working set
// costs little more than its own bytes on a slow link (docs/design.md "Refill").
inline constexpr uint32_t kDefaultBlockSize = 16u << 10;
// How far ahead a miss that continues a sequential stream fetches (the refill granularity).
inline constexpr uint64_t kDefaultRefillSize = 256u << 10;
inline constexpr uint64_t kMaxRefillSize = 64u << 20;
// Implementation limit: blocks per key (in-memory table size). 16 Mi blocks = 256 GiB at 16 KiB.
inline constexpr uint64_t kMaxBlocksPerFile = 16u << 20;
// Keys become file names: 1..kMaxKeyLength chars of [A-Za-z0-9._:-], not starting with '.'.
inline constexpr size_t kMaxKeyLength = 160;

struct CacheOptions {
  std::string dir;           // created if missing (parent must exist)
  uint64_t capacity = 0;     // bytes, > 0
  // Power of two in [kMinBlockSize, kMaxBlockSize]; 0 = the block size of the tables already in
  // `dir` (the default if there are none). Tables of another block size are discarded on Open.
  uint32_t block_size = kDefaultBlockSize;
  // Refill granularity of sequential reads: a read with a miss that continues a stream of reads
  // (each starting where the previous one ended) at least this long also fetches the absent
  // blocks of the next refill_size bytes, in the same source request. Scattered reads fetch only
  // their own blocks. 0 = never read ahead; at most kMaxRefillSize. Not stored on disk.
  uint64_t refill_size = kDefaultRefillSize;
};

struct CacheStats {
  uint64_t capacity = 0;
  uint32_t block_size = 0;
  uint64_t refill_size = 0;
  uint64_t used = 0;            // bytes of cached blocks + blocks being fetched
  uint64_t hits = 0;            // blocks served from the cache file
  uint64_t misses = 0;          // blocks fetched from a source (or waited for)
  uint64_t fetched_bytes = 0;   // bytes read from sources
  uint64_t readahead_bytes = 0; // of which fetched ahead of reads: sequential read-ahead
                                // (refill_size) and CachedFile Prefetch hints
  uint64_t evicted_bytes = 0;   // bytes evicted (capacity or Prune)
  uint64_t corrupt_blocks = 0;  // cached blocks that failed verification and were dropped
  uint64_t invalidated_blocks = 0;  // blocks dropped because a check failed: Invalidate (a reader's check) or their own CRC32C
  size_t files = 0;             // keys known to the store
};

struct CachedFileInfo {
  std::string key;
  uint64_t size = 0;           // source size in bytes
  uint64_t cached_bytes = 0;   // bytes of blocks present in the cache
};

// Returns InvalidArgument unless `key` is a valid cache key (see kMaxKeyLength).
Status ValidateKey(const std::string& key);

// The cache of one directory. Thread-safe. At most one CacheStore per directory and process
// tree: Open takes an exclusive flock on DIR/lock (a second Open fails with Unavailable).
// The store must outlive nothing: CachedFiles keep it alive through a shared_ptr.
class CacheStore {
 public:
  // Validates options (InvalidArgument), creates the directory, locks it and loads the block
  // tables of every key already there. Tables with another block size or a broken header are
  // discarded (the key starts empty). If the loaded blocks exceed capacity, LRU blocks are
  // evicted right away.
  static Result<std::shared_ptr<CacheStore>> Open(const CacheOptions& options);
  ~CacheStore();
  CacheStore(const CacheStore&) = delete;
  CacheStore& operator=(const CacheStore&) = delete;

  CacheStats Stats() const;
  // Keys with their size and cached bytes, sorted by key.
  std::vector<CachedFileInfo> Files() const;
  // Byte ranges [start, end) of `key` held by the cache right now (present blocks, adjacent
  // ones merged), ascending; empty for an unknown key.
  std::vector<std::pair<uint64_t, uint64_t>> CachedRanges(const std::string& key) const;
  // Starts the fill workers that fetch CachedFile Prefetch hints in the background (8 threads).
  // Until then hints are ignored. Call it in the process that serves, and StopFillWorkers in the
  // same process: the store keeps no track of forks (threads do not survive one, so an owner
  // that forks starts the workers after it). Idempotent; nothing after StopFillWorkers.
  void StartFillWorkers();
  // Stops the fill workers: queued hints are dropped (readers waiting on them ask the source
  // themselves), fetches in flight finish, later hints are ignored. Call it before releasing
  // the files read through the store; the destructor also does. Idempotent.
  void StopFillWorkers();
  // Evicts LRU blocks until used <= target_bytes. Pinned and in-flight blocks stay, so `used`
  // may remain above target; returns the first I/O error met while evicting.
  Status Prune(uint64_t target_bytes);

  struct Impl;  // src/cache/store_impl.h

 private:
  explicit CacheStore(std::unique_ptr<Impl> impl);
  friend Result<std::unique_ptr<ReadableFile>> NewCachedFile(std::shared_ptr<CacheStore>,
                                                             const std::string&,
                                                             std::shared_ptr<const ReadableFile>);
  std::unique_ptr<Impl> impl_;
};

// A ReadableFile with the content of `source`, served through `store` under `key` (e.g.
// "sha256:<hex>" of the blob). Size() and Name() are the source's. ReadAt splits a read into
// block_size-aligned blocks; adjacent hits are read from the cache file with one pread (each
// block CRC-verified), adjacent misses are fetched from the source with one read (plus the
// refill_size read-ahead of a sequential stream), once however many readers want them, stored,
// then served. A source error is
// returned as is and nothing is cached for that block. Invalidate(range) drops the range's
// blocks (see "Invalidation" above) and returns true if any was dropped or the source's
// Invalidate returned true. If the key was cached for a source of a
// different size its blocks are dropped (InvalidArgument if that key is being read right now).
// Thread-safe.
Result<std::unique_ptr<ReadableFile>> NewCachedFile(std::shared_ptr<CacheStore> store,
                                                    const std::string& key,
                                                    std::shared_ptr<const ReadableFile> source);

}  // namespace ovbd::cache
