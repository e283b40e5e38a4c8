// Internals of CacheStore shared by cache_store.cc, store_blocks.cc and cached_file.cc.
//
// Block state machine (guarded by Impl::mu; transitions under the lock, I/O outside it):
//
//   kAbsent ──Begin (miss, room reserved)──> kFetching ──FinishFetch ok──> kPresent
//      ^                                        │ error                       │ LRU victim
//      └────────────────────────────────────────┘       kEvicting <───────────┘ (pins == 0)
//      └──────────────── Evict done (entry cleared, hole punched) ─────┘
//
// `pins` counts readers of a present block; a pinned block is never chosen as a victim. A
// reader that finds a block kFetching waits on its Flight; one that finds it kEvicting, or finds
// no room, reads the source directly (bypass).
//
// Invalidate: a present unpinned block goes kPresent -> kEvicting -> kAbsent at once; a pinned
// or fetching one gets `drop`: no new hits (bypass), and the last EndHit or the FinishFetch takes
// it the same way (a fetched block's bytes still go to its waiters).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <span>
#include <thread>
#include <sys/types.h>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ovbd/cache.h"
#include "ovbd/io.h"

namespace ovbd::cache {

// One fetch of one block, shared by the fetcher and every reader waiting for it.
struct Flight {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  Status status;              // the source's status
  std::vector<uint8_t> data;  // the block's bytes once done and ok
  // Fetched ahead of any read (read-ahead or a Prefetch hint): a reader that waited on it and
  // got an error asks the source again itself instead of failing with the hint's error.
  bool ahead = false;
  void Finish(Status s);
  Status Wait();              // blocks until done; returns status
};

enum class BlockState : uint8_t { kAbsent, kFetching, kPresent, kEvicting };

struct KeyEntry;
struct BlockRef {
  KeyEntry* key;
  uint64_t block;
};

struct BlockSlot {
  BlockState state = BlockState::kAbsent;
  uint32_t pins = 0;
  uint32_t length = 0;  // of a present (or fetching: reserved) block
  uint32_t crc = 0;
  // kPresent and its bytes were CRC-checked (or written) by this process: later hits may read
  // just the bytes they need without re-checking the whole block.
  bool verified = false;
  bool referenced = false;            // hit since it last came round the CLOCK (PickVictimsLocked)
  bool drop = false;  // invalidated while pinned or fetching: dropped when released, no new hits
  std::list<BlockRef>::iterator lru;  // valid while kPresent
  std::shared_ptr<Flight> flight;     // set while kFetching
};

struct KeyEntry {
  std::string key;
  uint64_t size = 0;
  std::unique_ptr<RandomRWFile> data;  // DIR/<key>.data (sparse)
  std::unique_ptr<RandomRWFile> meta;  // DIR/<key>.meta (block_table.h)
  std::vector<BlockSlot> blocks;
  uint64_t cached_bytes = 0;
  uint32_t open_files = 0;  // CachedFiles attached; a size change needs 0
};

// What a reader does for one block.
struct BlockStep {
  enum Kind { kHit, kFetch, kWait, kBypass } kind = kBypass;
  uint32_t crc = 0;                 // kHit
  bool verified = false;            // kHit: checked before by this process
  std::shared_ptr<Flight> flight;   // kFetch, kWait
  std::vector<BlockRef> victims;    // kFetch: evict these (Impl::Evict) before storing
};

// Adjacent missing blocks of one read are fetched with one source read of at most this much.
inline constexpr uint64_t kMaxRunBytes = 8u << 20;

// Where one block's bytes go in the caller's buffer (n == 0: a read-ahead block).
struct Piece {
  uint64_t block;
  size_t length;    // the block's length
  size_t in_block;  // first byte wanted
  size_t n;         // bytes wanted
  size_t done;      // offset in the caller's buffer
};

// Consecutive blocks of one read that take the same path: fetched by this reader
// (BlockStep::kFetch) or hits (kHit, pinned). Each kind is served with one source read or one
// cache-file pread for the whole run.
struct Run {
  std::vector<Piece> pieces;
  std::vector<BlockStep> steps;
  uint64_t bytes = 0;
  bool empty() const { return pieces.empty(); }
  bool Joins(uint64_t block, size_t length) const {
    return pieces.empty() || (pieces.back().block + 1 == block && bytes + length <= kMaxRunBytes);
  }
  // Empties the run, keeping its capacity (a reader reuses its runs from read to read).
  void Clear() {
    pieces.clear();
    steps.clear();
    bytes = 0;
  }
  void Add(const Piece& p, BlockStep step) {
    pieces.push_back(p);
    steps.push_back(std::move(step));
    bytes += p.length;
  }
};

// A Prefetch hint's run of blocks, claimed (kFetching) by the hinting thread and fetched by a
// fill worker. Readers of those blocks wait on their flights, so a job is never dropped: it is
// fetched, or failed (store closing) to wake its waiters.
struct FillJob {
  KeyEntry* entry = nullptr;                    // lives as long as the store
  std::shared_ptr<const ReadableFile> source;  // kept alive while the job waits
  Run run;                                      // pieces with n == 0
};

struct CacheStore::Impl {
  CacheOptions options;
  int lock_fd = -1;
  mutable std::mutex mu;
  std::map<std::string, std::unique_ptr<KeyEntry>> keys;
  std::list<BlockRef> lru;  // present blocks in CLOCK order: oldest (next to look at) first
  CacheStats stats;         // capacity/used/files kept current under mu

  // Fill workers (fill_pool.cc): Prefetch hints run on kFillThreads threads, from
  // StartFillWorkers to StopFillWorkers. At most kMaxFillJobs wait. Guarded by fill_mu, never
  // taken under mu.
  static constexpr size_t kFillThreads = 8;
  static constexpr size_t kMaxFillJobs = 256;
  std::mutex fill_mu;
  std::condition_variable fill_cv;
  std::deque<FillJob> fill_jobs;
  std::vector<std::thread> fill_threads;
  bool fill_enabled = false;  // StartFillWorkers called (by the serving process)
  bool fill_stop = false;     // StopFillWorkers called: hints are ignored from then on
  void StartFillWorkers();
  // Claims the absent blocks of [offset, offset+length) of `e` (at most capacity/8 bytes) and
  // queues them, as runs of adjacent blocks, for the fill workers (runs that find kMaxFillJobs
  // queued are fetched by the caller). Ignored before StartFillWorkers and after Stop.
  void Hint(KeyEntry* e, const std::shared_ptr<const ReadableFile>& source, uint64_t offset, uint64_t length);
  // Fails the claims of a job that will not be fetched (the store is closing).
  void CancelFill(FillJob& job);
  void FillWorker();
  void StopFillWorkers();

  ~Impl();
  uint64_t BlockLength(const KeyEntry& e, uint64_t block) const;

  // ---- store_blocks.cc: the state machine (each takes mu itself) ----
  BlockStep Begin(KeyEntry* e, uint64_t block);
  // The common tail of Begin and BeginReadahead for an absent block: reserves room and marks it
  // kFetching (kFetch), or kBypass if no room can be made.
  BlockStep ClaimLocked(KeyEntry* e, uint64_t block, bool ahead = false);
  // Read-ahead: claims `block` for fetching (kFetch) only if it is absent and room can be made
  // without waiting; otherwise kBypass, meaning "do not read ahead here". Not counted as a miss.
  BlockStep BeginReadahead(KeyEntry* e, uint64_t block);
  // Ends a hit; `verified` false drops the block (counted corrupt) so the reader refetches.
  void EndHit(KeyEntry* e, uint64_t block, bool verified);
  void EndHitLocked(KeyEntry* e, uint64_t block, bool verified);
  // Ends a fetch: present if `stored`, else absent; wakes the waiters with `status`.
  // `readahead`: the block was fetched ahead of a stream (counted in readahead_bytes).
  void FinishFetch(KeyEntry* e, uint64_t block, const Status& status, uint32_t crc, bool stored,
                   bool readahead = false);
  // Clears the victims' entries and punches their holes, then marks them absent. Counted in
  // evicted_bytes, or in invalidated_blocks if `invalidated`.
  Status Evict(const std::vector<BlockRef>& victims, bool invalidated = false);
  // Drops the blocks of [offset, offset+length) of `e` (cache.h "Invalidation"); true if any
  // present or fetching block was dropped or marked to be.
  bool Invalidate(KeyEntry* e, uint64_t offset, uint64_t length);
  // Under mu: marks block `block` (present or fetching) to be dropped, or takes it as a victim
  // now if present and unpinned. False if there was nothing to drop.
  bool MarkInvalidLocked(KeyEntry* e, uint64_t block, std::vector<BlockRef>* victims);
  // Under mu: a present, unpinned block leaves the LRU and `used` and becomes a victim.
  void TakeLocked(KeyEntry* e, uint64_t block, std::vector<BlockRef>* victims);
  // Under mu: picks unpinned LRU victims freeing >= `need` bytes, marks them kEvicting and
  // subtracts them from used. Picks none (returns false) if that is impossible.
  bool PickVictimsLocked(uint64_t need, std::vector<BlockRef>* victims);

  // ---- key_entry.cc: files of a key ----
  // Finds or creates the entry of `key` for a source of `size` bytes and counts one more open
  // file; Detach undoes the count. Entries live as long as the store (pointers stay valid).
  Result<KeyEntry*> Attach(const std::string& key, uint64_t size);
  void Detach(KeyEntry* e);
  Status ResetLocked(KeyEntry* e, uint64_t size);
  Status LoadExisting();
  std::string PathOf(const std::string& key, const char* suffix) const;
  Result<std::unique_ptr<KeyEntry>> CreateEntry(const std::string& key, uint64_t size);
  Result<std::unique_ptr<KeyEntry>> LoadEntry(const std::string& key);
  Status LoadTable(KeyEntry* e);
  void AddEntryLocked(std::unique_ptr<KeyEntry> e);
};

// Fetches a claimed run from `source`, stores its blocks and wakes their waiters; fills the
// wanted bytes of pieces with n > 0 into `buf` (cached_file.cc). Leaves `run` empty.
Status FetchRunFrom(CacheStore::Impl* impl, KeyEntry* e, const ReadableFile& source, Run& run,
                    std::span<uint8_t> buf);

}  // namespace ovbd::cache
