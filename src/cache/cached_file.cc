// CachedFile: a ReadableFile decorator serving a source through a CacheStore, block by block.
#include <algorithm>
#include <cstring>

#include "cache/block_table.h"
#include "cache/store_impl.h"

namespace ovbd::cache {
namespace {

// How often a block that fails verification is retried through the cache before the reader
// falls back to the source directly.
constexpr int kMaxCacheAttempts = 3;
// Adjacent missing blocks of one read are fetched with one source read of at most this much.
constexpr uint64_t kMaxRunBytes = 8u << 20;

// Where one block's bytes go in the caller's buffer.
struct Piece {
  uint64_t block;
  size_t length;    // the block's length
  size_t in_block;  // first byte wanted
  size_t n;         // bytes wanted
  size_t done;      // offset in the caller's buffer
};

// Consecutive blocks of one read that this reader fetches (BlockStep::kFetch), not yet done.
struct Run {
  std::vector<Piece> pieces;
  std::vector<BlockStep> steps;
  uint64_t bytes = 0;
  bool Joins(uint64_t block, size_t length) const {
    return pieces.empty() || (pieces.back().block + 1 == block && bytes + length <= kMaxRunBytes);
  }
};

class CachedFile final : public ReadableFile {
 public:
  CachedFile(std::shared_ptr<CacheStore> store, CacheStore::Impl* impl, KeyEntry* entry,
             std::shared_ptr<const ReadableFile> source)
      : store_(std::move(store)), impl_(impl), entry_(entry), source_(std::move(source)) {}
  ~CachedFile() override { impl_->Detach(entry_); }

  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) const override;
  uint64_t Size() const override { return source_->Size(); }
  const std::string& Name() const override { return source_->Name(); }
  void Prefetch(uint64_t offset, uint64_t length) const override { source_->Prefetch(offset, length); }

 private:
  // Fills `out` (exactly the block's length) with block `block`.
  Status ReadBlock(uint64_t block, std::span<uint8_t> out) const;
  // The same, starting from a step already begun (not kFetch).
  Status Serve(uint64_t block, BlockStep& step, std::span<uint8_t> out) const;
  // One source read for the whole run; stores every block, wakes its waiters, fills `buf`.
  Status FetchRun(Run& run, std::span<uint8_t> buf) const;
  bool ServeHit(uint64_t block, uint32_t crc, std::span<uint8_t> out) const;
  bool ServeVerifiedHit(const Piece& p, std::span<uint8_t> buf) const;
  Status Fetch(uint64_t block, BlockStep& step, std::span<uint8_t> out) const;
  Status Store(uint64_t block, std::span<const uint8_t> data, uint32_t crc) const;
  static Status Wait(Flight& flight, std::span<uint8_t> out);
  uint64_t BlockStart(uint64_t block) const { return block * impl_->options.block_size; }

  std::shared_ptr<CacheStore> store_;  // keeps impl_ and entry_ alive
  CacheStore::Impl* impl_;
  KeyEntry* entry_;
  std::shared_ptr<const ReadableFile> source_;
};

// Blocks are begun in order. Adjacent misses this reader must fetch are collected into a run and
// fetched with one source read; the run is finished before any other step, so a reader never
// waits for another reader's fetch while holding unfinished fetches of its own (no deadlock).
Status CachedFile::ReadAt(uint64_t offset, std::span<uint8_t> buf) const {
  uint64_t size = Size();
  if (offset > size || buf.size() > size - offset) {
    return Status::OutOfRange(Name() + ": read of " + std::to_string(buf.size()) + " bytes at " +
                              std::to_string(offset) + " is past the end (" + std::to_string(size) + ")");
  }
  const uint64_t bs = impl_->options.block_size;
  thread_local std::vector<uint8_t> scratch;  // reused: no zero-fill per read
  Run run;
  for (size_t done = 0; done < buf.size();) {
    uint64_t pos = offset + done;
    Piece p{pos / bs, 0, static_cast<size_t>(pos % bs), 0, done};
    p.length = impl_->BlockLength(*entry_, p.block);
    p.n = std::min<size_t>(p.length - p.in_block, buf.size() - done);
    done += p.n;
    BlockStep step = impl_->Begin(entry_, p.block);
    if (step.kind == BlockStep::kFetch && run.Joins(p.block, p.length)) {
      run.pieces.push_back(p);
      run.steps.push_back(std::move(step));
      run.bytes += p.length;
      continue;
    }
    Status flushed = FetchRun(run, buf);
    if (step.kind == BlockStep::kFetch) {  // starts the next run
      run.pieces.push_back(p);
      run.steps.push_back(std::move(step));
      run.bytes += p.length;
      OVBD_RETURN_IF_ERROR(flushed);
      continue;
    }
    if (!flushed.ok()) {
      if (step.kind == BlockStep::kHit) impl_->EndHit(entry_, p.block, true);  // unpin, unread
      return flushed;
    }
    // A partial hit on a block already checked by this process reads only what it needs; a
    // whole-block hit re-checks the CRC (the block is read whole anyway).
    bool refetch = false;
    if (step.kind == BlockStep::kHit && step.verified && p.n != p.length) {
      if (ServeVerifiedHit(p, buf)) continue;
      refetch = true;  // the read failed and the block was dropped
    }
    std::span<uint8_t> out = buf.subspan(p.done, p.n);
    if (p.in_block != 0 || p.n != p.length) {
      if (scratch.size() < p.length) scratch.resize(p.length);
      out = std::span<uint8_t>(scratch.data(), p.length);
    }
    OVBD_RETURN_IF_ERROR(refetch ? ReadBlock(p.block, out) : Serve(p.block, step, out));
    if (out.data() == scratch.data()) std::memcpy(buf.data() + p.done, scratch.data() + p.in_block, p.n);
  }
  return FetchRun(run, buf);
}

Status CachedFile::FetchRun(Run& run, std::span<uint8_t> buf) const {
  if (run.pieces.empty()) return Status::OK();
  for (BlockStep& step : run.steps) (void)impl_->Evict(step.victims);  // see Fetch
  std::vector<uint8_t> data(run.bytes);
  Status s = source_->ReadAt(BlockStart(run.pieces.front().block), data);
  size_t at = 0;
  for (size_t i = 0; i < run.pieces.size(); ++i) {
    const Piece& p = run.pieces[i];
    Flight& flight = *run.steps[i].flight;
    uint32_t crc = 0;
    bool stored = false;
    if (s.ok()) {
      flight.data.assign(data.begin() + at, data.begin() + at + p.length);
      crc = BlockCrc(flight.data);
      stored = Store(p.block, flight.data, crc).ok();
      std::memcpy(buf.data() + p.done, flight.data.data() + p.in_block, p.n);
    }
    impl_->FinishFetch(entry_, p.block, s, crc, stored);
    at += p.length;
  }
  run = Run();
  return s;
}

Status CachedFile::Serve(uint64_t block, BlockStep& step, std::span<uint8_t> out) const {
  switch (step.kind) {
    case BlockStep::kHit:
      if (ServeHit(block, step.crc, out)) return Status::OK();
      return ReadBlock(block, out);  // dropped as corrupt: refetch
    case BlockStep::kFetch:
      return Fetch(block, step, out);
    case BlockStep::kWait:
      return Wait(*step.flight, out);
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
        return Fetch(block, step, out);
      case BlockStep::kWait:
        return Wait(*step.flight, out);
      case BlockStep::kBypass:
        return source_->ReadAt(BlockStart(block), out);
    }
  }
  return source_->ReadAt(BlockStart(block), out);
}

// A hit on a block this process has already checked: only the bytes asked for are read.
bool CachedFile::ServeVerifiedHit(const Piece& p, std::span<uint8_t> buf) const {
  Status s = entry_->data->ReadAt(BlockStart(p.block) + p.in_block, buf.subspan(p.done, p.n));
  impl_->EndHit(entry_, p.block, s.ok());
  return s.ok();  // else the block was dropped; the caller refetches it
}

bool CachedFile::ServeHit(uint64_t block, uint32_t crc, std::span<uint8_t> out) const {
  Status s = entry_->data->ReadAt(BlockStart(block), out);
  bool verified = s.ok() && BlockCrc(out) == crc;
  impl_->EndHit(entry_, block, verified);
  return verified;
}

Status CachedFile::Fetch(uint64_t block, BlockStep& step, std::span<uint8_t> out) const {
  // Eviction errors only cost space accounting on disk; the victims are absent in memory.
  (void)impl_->Evict(step.victims);
  Flight& flight = *step.flight;
  flight.data.resize(out.size());
  Status s = source_->ReadAt(BlockStart(block), flight.data);
  uint32_t crc = s.ok() ? BlockCrc(flight.data) : 0;
  bool stored = s.ok() && Store(block, flight.data, crc).ok();
  if (s.ok()) std::memcpy(out.data(), flight.data.data(), out.size());
  impl_->FinishFetch(entry_, block, s, crc, stored);
  return s;
}

// Data before entry: a crash in between leaves an absent or stale entry, both caught on read.
Status CachedFile::Store(uint64_t block, std::span<const uint8_t> data, uint32_t crc) const {
  OVBD_RETURN_IF_ERROR(entry_->data->WriteAt(BlockStart(block), data));
  TableEntry entry{static_cast<uint32_t>(data.size()), crc};
  return entry_->meta->WriteAt(EntryOffset(block), EncodeEntry(block, entry));
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
