// CachedFile: a ReadableFile decorator serving a source through a CacheStore, block by block.
#include <algorithm>
#include <array>
#include <mutex>
#include <utility>
#include <cstring>

#include "cache/block_table.h"
#include "cache/store_impl.h"

namespace ovbd::cache {

// Data before entry: a crash in between leaves an absent or stale entry, both caught on read.
static Status StoreBlock(const CacheStore::Impl& impl, KeyEntry* e, uint64_t block,
                         std::span<const uint8_t> data, uint32_t crc) {
  OVBD_RETURN_IF_ERROR(e->data->WriteAt(block * impl.options.block_size, data));
  TableEntry entry{static_cast<uint32_t>(data.size()), crc};
  return e->meta->WriteAt(EntryOffset(block), EncodeEntry(block, entry));
}

Status FetchRunFrom(CacheStore::Impl* impl, KeyEntry* e, const ReadableFile& source, Run& run,
                    std::span<uint8_t> buf) {
  if (run.empty()) return Status::OK();
  // Eviction errors only cost space accounting on disk; the victims are absent in memory.
  for (BlockStep& step : run.steps) (void)impl->Evict(step.victims);
  std::vector<uint8_t> data(run.bytes);
  Status s = source.ReadAt(run.pieces.front().block * impl->options.block_size, data);
  size_t at = 0;
  for (size_t i = 0; i < run.pieces.size(); ++i) {
    const Piece& p = run.pieces[i];
    Flight& flight = *run.steps[i].flight;
    uint32_t crc = 0;
    bool stored = false;
    if (s.ok()) {
      flight.data.assign(data.begin() + at, data.begin() + at + p.length);
      crc = BlockCrc(flight.data);
      stored = StoreBlock(*impl, e, p.block, flight.data, crc).ok();
      if (p.n != 0) std::memcpy(buf.data() + p.done, flight.data.data() + p.in_block, p.n);
    }
    impl->FinishFetch(e, p.block, s, crc, stored, p.n == 0);
    at += p.length;
  }
  run.Clear();
  return s;
}

namespace {

// How often a block that fails verification is retried through the cache before the reader
// falls back to the source directly.
constexpr int kMaxCacheAttempts = 3;
// The last few sequential streams of reads of one file: a read that starts where a stream
// ended continues it. Streams are few (a handful of readers), so a small array does.
class Streams {
 public:
  // Records a read of [offset, offset+n) and returns how many bytes its stream had read before.
  uint64_t Continue(uint64_t offset, uint64_t n) {
    std::lock_guard<std::mutex> lock(mu_);
    for (Stream& s : streams_) {
      if (s.length != 0 && s.end == offset) {
        uint64_t before = s.length;
        s.end = offset + n;
        s.length += n;
        return before;
      }
    }
    streams_[next_] = Stream{offset + n, n};
    next_ = (next_ + 1) % streams_.size();
    return 0;
  }

 private:
  struct Stream {
    uint64_t end = 0;
    uint64_t length = 0;  // 0: unused
  };
  std::mutex mu_;
  std::array<Stream, 8> streams_{};
  size_t next_ = 0;
};

// Whether the run holds a piece a read asked for (n > 0), not only read-ahead.
bool NeedsAny(const Run& run) {
  return std::any_of(run.pieces.begin(), run.pieces.end(), [](const Piece& p) { return p.n != 0; });
}

// Claims the absent blocks of [from, to) as read-ahead pieces of `run` (n == 0), fetching the
// run whenever it is full; stops at the first block that is present, being fetched, or finds no
// room. The last run is left to the caller.
Status ClaimAhead(CacheStore::Impl* impl, KeyEntry* e, const ReadableFile& source, uint64_t from, uint64_t to,
                  Run& run, std::span<uint8_t> buf) {
  for (uint64_t block = from; block < to; ++block) {
    const size_t length = impl->BlockLength(*e, block);
    if (!run.Joins(block, length)) {
      const bool needed = NeedsAny(run);
      Status s = FetchRunFrom(impl, e, source, run, buf);
      if (!s.ok()) return needed ? s : Status::OK();  // read-ahead only: stop quietly
    }
    BlockStep step = impl->BeginReadahead(e, block);
    if (step.kind != BlockStep::kFetch) break;
    run.Add(Piece{block, length, 0, 0, 0}, std::move(step));
  }
  return Status::OK();
}

class CachedFile final : public ReadableFile {
 public:
  CachedFile(std::shared_ptr<CacheStore> store, CacheStore::Impl* impl, KeyEntry* entry,
             std::shared_ptr<const ReadableFile> source)
      : store_(std::move(store)), impl_(impl), entry_(entry), source_(std::move(source)) {}
  ~CachedFile() override { impl_->Detach(entry_); }

  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) const override;
  uint64_t Size() const override { return source_->Size(); }
  const std::string& Name() const override { return source_->Name(); }
  // Claims the absent blocks of [offset, offset+length) now and hands them to the store's fill
  // workers: they are fetched in the background, in runs of adjacent blocks, and the reads that
  // follow wait for those fetches instead of starting their own.
  void Prefetch(uint64_t offset, uint64_t length) const override { impl_->Hint(entry_, source_, offset, length); }
  // The source first: a refetch must not find a stale copy below (cache.h "Invalidation").
  bool Invalidate(uint64_t offset, uint64_t length) const override {
    const bool below = source_->Invalidate(offset, length);
    return impl_->Invalidate(entry_, offset, length) || below;
  }

 private:
  // Fills `out` (exactly the block's length) with block `block`.
  Status ReadBlock(uint64_t block, std::span<uint8_t> out) const;
  // The same, starting from a step already begun.
  Status Serve(uint64_t block, BlockStep& step, std::span<uint8_t> out) const;
  // Fetches one block this reader claimed (kFetch) into `out` (the block's length).
  Status FetchOne(uint64_t block, BlockStep& step, std::span<uint8_t> out) const;
  // One source read for the whole run; stores every block, wakes its waiters, fills `buf`.
  Status FetchRun(Run& run, std::span<uint8_t> buf) const;
  // One cache-file pread for a run of hits; blocks not yet checked by this process are checked
  // against their CRCs, and one that fails is dropped and refetched.
  Status HitRun(Run& run, std::span<uint8_t> buf) const;
  // Releases a step begun but not served because the read is failing with `why`.
  void Abandon(const Piece& p, BlockStep& step, const Status& why) const;
  bool ServeHit(uint64_t block, uint32_t crc, std::span<uint8_t> out) const;
  static Status Wait(Flight& flight, std::span<uint8_t> out);
  uint64_t BlockStart(uint64_t block) const { return block * impl_->options.block_size; }

  std::shared_ptr<CacheStore> store_;  // keeps impl_ and entry_ alive
  CacheStore::Impl* impl_;
  KeyEntry* entry_;
  std::shared_ptr<const ReadableFile> source_;
  mutable Streams streams_;
};

// Blocks are begun in order. Adjacent blocks of the same kind (hits; misses this reader fetches)
// are collected into a run and served together; a run is finished before a step of another kind
// is served, so a reader never waits for another reader's fetch while holding unfinished fetches
// of its own (no deadlock). A read that misses and continues a sequential stream of at least
// refill_size bytes also fetches the absent blocks of the next refill_size bytes.
Status CachedFile::ReadAt(uint64_t offset, std::span<uint8_t> buf) const {
  uint64_t size = Size();
  if (offset > size || buf.size() > size - offset) {
    return Status::OutOfRange(Name() + ": read of " + std::to_string(buf.size()) + " bytes at " +
                              std::to_string(offset) + " is past the end (" + std::to_string(size) + ")");
  }
  const uint64_t bs = impl_->options.block_size;
  const uint64_t refill = impl_->options.refill_size;
  const bool sequential = refill != 0 && streams_.Continue(offset, buf.size()) >= refill;
  thread_local std::vector<uint8_t> scratch;  // reused: no zero-fill per read
  // The runs of this thread's reads, reused so that a read allocates nothing (a read is not
  // re-entered on one thread; the guard keeps that an optimisation, not an assumption).
  thread_local Run reused_fetches, reused_hits;
  thread_local bool in_use = false;
  Run local_fetches, local_hits;
  const bool reuse = !std::exchange(in_use, true);
  struct Release {
    bool reuse;
    ~Release() {
      if (reuse) in_use = false;
    }
  } release{reuse};
  Run& fetches = reuse ? reused_fetches : local_fetches;
  Run& hits = reuse ? reused_hits : local_hits;
  fetches.Clear();  // every path below leaves them empty; this makes sure
  hits.Clear();
  bool missed = false;
  for (size_t done = 0; done < buf.size();) {
    uint64_t pos = offset + done;
    Piece p{pos / bs, 0, static_cast<size_t>(pos % bs), 0, done};
    p.length = impl_->BlockLength(*entry_, p.block);
    p.n = std::min<size_t>(p.length - p.in_block, buf.size() - done);
    done += p.n;
    BlockStep step = impl_->Begin(entry_, p.block);
    const bool hit = step.kind == BlockStep::kHit;
    Status flushed = hit ? FetchRun(fetches, buf) : HitRun(hits, buf);  // the other kind's run
    if (flushed.ok() && (hit || step.kind == BlockStep::kFetch)) {
      Run& same = hit ? hits : fetches;
      if (!same.Joins(p.block, p.length)) flushed = hit ? HitRun(hits, buf) : FetchRun(fetches, buf);
      if (flushed.ok()) {
        same.Add(p, std::move(step));
        missed |= !hit;
        continue;
      }
    }
    if (!flushed.ok()) {
      Abandon(p, step, flushed);
      return flushed;
    }
    missed = true;
    OVBD_RETURN_IF_ERROR(FetchRun(fetches, buf));
    std::span<uint8_t> out = buf.subspan(p.done, p.n);
    if (p.in_block != 0 || p.n != p.length) {
      if (scratch.size() < p.length) scratch.resize(p.length);
      out = std::span<uint8_t>(scratch.data(), p.length);
    }
    OVBD_RETURN_IF_ERROR(Serve(p.block, step, out));
    if (out.data() == scratch.data()) std::memcpy(buf.data() + p.done, scratch.data() + p.in_block, p.n);
  }
  OVBD_RETURN_IF_ERROR(HitRun(hits, buf));
  if (missed && sequential && !buf.empty()) {
    const uint64_t end = offset + buf.size();
    const uint64_t next = (end + bs - 1) / bs;
    const uint64_t last = std::min<uint64_t>(end + refill, size);
    OVBD_RETURN_IF_ERROR(ClaimAhead(impl_, entry_, *source_, next, (last + bs - 1) / bs, fetches, buf));
  }
  const bool needed = NeedsAny(fetches);
  Status s = FetchRun(fetches, buf);
  return needed ? s : Status::OK();  // a failed read-ahead alone does not fail the read
}

void CachedFile::Abandon(const Piece& p, BlockStep& step, const Status& why) const {
  if (step.kind == BlockStep::kHit) impl_->EndHit(entry_, p.block, true);  // unpin, unread
  if (step.kind == BlockStep::kFetch) {
    (void)impl_->Evict(step.victims);
    impl_->FinishFetch(entry_, p.block, why, 0, false);  // waiters fail like this read
  }
}

Status CachedFile::FetchRun(Run& run, std::span<uint8_t> buf) const {
  return FetchRunFrom(impl_, entry_, *source_, run, buf);
}

// The run's bytes are contiguous in the cache file and in `buf`: one pread fills them. Every
// block read whole is then checked against its CRC; a partial block is checked by reading it
// whole, unless this process has checked it before (then the bytes asked for are trusted).
Status CachedFile::HitRun(Run& run, std::span<uint8_t> buf) const {
  if (run.empty()) return Status::OK();
  const Piece& first = run.pieces.front();
  const Piece& last = run.pieces.back();
  const size_t n = last.done + last.n - first.done;
  const bool read = entry_->data->ReadAt(BlockStart(first.block) + first.in_block, buf.subspan(first.done, n)).ok();
  Status result;
  for (size_t i = 0; i < run.pieces.size(); ++i) {
    const Piece& p = run.pieces[i];
    const BlockStep& step = run.steps[i];
    std::span<uint8_t> out = buf.subspan(p.done, p.n);
    bool ok = read;
    if (ok && p.n == p.length) {
      ok = BlockCrc(out) == step.crc;
      impl_->EndHit(entry_, p.block, ok);
    } else if (ok && step.verified) {
      impl_->EndHit(entry_, p.block, true);
    } else {
      thread_local std::vector<uint8_t> whole;
      whole.resize(p.length);
      ok = ServeHit(p.block, step.crc, whole);  // ends the hit
      if (ok) std::memcpy(out.data(), whole.data() + p.in_block, p.n);
    }
    if (ok || !result.ok()) continue;
    // Dropped as corrupt (or unreadable): refetch. ReadBlock may wait on another reader's fetch
    // while ReadAt holds the claim of the (later) block it is beginning. That cannot deadlock:
    // every reader begins blocks in ascending order and finishes its own claims before it
    // waits, so the fetch waited for never waits on a block after it.
    std::vector<uint8_t> block(p.length);
    result = ReadBlock(p.block, block);
    if (result.ok()) std::memcpy(out.data(), block.data() + p.in_block, p.n);
  }
  run.Clear();
  return result;
}

Status CachedFile::Serve(uint64_t block, BlockStep& step, std::span<uint8_t> out) const {
  switch (step.kind) {
    case BlockStep::kHit:
      if (ServeHit(block, step.crc, out)) return Status::OK();
      return ReadBlock(block, out);  // dropped as corrupt: refetch
    case BlockStep::kFetch:
      return FetchOne(block, step, out);
    case BlockStep::kWait: {
      Status s = Wait(*step.flight, out);
      if (s.ok() || !step.flight->ahead) return s;
      return ReadBlock(block, out);  // a read-ahead or hint fetch failed: ask again ourselves
    }
    case BlockStep::kBypass:
      break;
  }
  return source_->ReadAt(BlockStart(block), out);
}

Status CachedFile::ReadBlock(uint64_t block, std::span<uint8_t> out) const {
  for (int attempt = 0; attempt < kMaxCacheAttempts; attempt++) {
    BlockStep step = impl_->Begin(entry_, block);
    switch (step.kind) {
      case BlockStep::kHit:
        if (ServeHit(block, step.crc, out)) return Status::OK();
        continue;  // dropped as corrupt: the next attempt refetches
      case BlockStep::kFetch:
        return FetchOne(block, step, out);
      case BlockStep::kWait: {
        Status s = Wait(*step.flight, out);
        if (s.ok() || !step.flight->ahead) return s;
        continue;  // a read-ahead or hint fetch failed: the next attempt asks again
      }
      case BlockStep::kBypass:
        return source_->ReadAt(BlockStart(block), out);
    }
  }
  return source_->ReadAt(BlockStart(block), out);
}

bool CachedFile::ServeHit(uint64_t block, uint32_t crc, std::span<uint8_t> out) const {
  Status s = entry_->data->ReadAt(BlockStart(block), out);
  bool verified = s.ok() && BlockCrc(out) == crc;
  impl_->EndHit(entry_, block, verified);
  return verified;
}

Status CachedFile::FetchOne(uint64_t block, BlockStep& step, std::span<uint8_t> out) const {
  Run run;
  run.Add(Piece{block, out.size(), 0, out.size(), 0}, std::move(step));
  return FetchRun(run, out);
}

Status CachedFile::Wait(Flight& flight, std::span<uint8_t> out) {
  OVBD_RETURN_IF_ERROR(flight.Wait());
  std::memcpy(out.data(), flight.data.data(), out.size());
  return Status::OK();
}

}  // namespace

Result<std::unique_ptr<ReadableFile>> NewCachedFile(std::shared_ptr<CacheStore> store,
                                                    const std::string& key,
                                                    std::shared_ptr<const ReadableFile> source) {
  if (store == nullptr || source == nullptr) {
    return Status::InvalidArgument("cache: NewCachedFile needs a store and a source");
  }
  CacheStore::Impl* impl = store->impl_.get();
  OVBD_ASSIGN_OR_RETURN(KeyEntry* entry, impl->Attach(key, source->Size()));
  return std::unique_ptr<ReadableFile>(
      std::make_unique<CachedFile>(std::move(store), impl, entry, std::move(source)));
}

}  // namespace ovbd::cache
