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
  bool ServeHit(uint64_t block, uint32_t crc, std::span<uint8_t> out) const;
  Status Fetch(uint64_t block, BlockStep& step, std::span<uint8_t> out) const;
  Status Store(uint64_t block, std::span<const uint8_t> data, uint32_t crc) const;
  static Status Wait(Flight& flight, std::span<uint8_t> out);
  uint64_t BlockStart(uint64_t block) const { return block * impl_->options.block_size; }

  std::shared_ptr<CacheStore> store_;  // keeps impl_ and entry_ alive
  CacheStore::Impl* impl_;
  KeyEntry* entry_;
  std::shared_ptr<const ReadableFile> source_;
};

Status CachedFile::ReadAt(uint64_t offset, std::span<uint8_t> buf) const {
  uint64_t size = Size();
  if (offset > size || buf.size() > size - offset) {
    return Status::OutOfRange(Name() + ": read of " + std::to_string(buf.size()) + " bytes at " +
                              std::to_string(offset) + " is past the end (" + std::to_string(size) + ")");
  }
  const uint64_t bs = impl_->options.block_size;
  std::vector<uint8_t> scratch;
  for (size_t done = 0; done < buf.size();) {
    uint64_t pos = offset + done;
    uint64_t block = pos / bs;
    uint64_t in_block = pos % bs;
    size_t length = impl_->BlockLength(*entry_, block);
    size_t n = std::min<size_t>(length - in_block, buf.size() - done);
    if (in_block == 0 && n == length) {
      OVBD_RETURN_IF_ERROR(ReadBlock(block, buf.subspan(done, n)));
    } else {
      scratch.resize(length);
      OVBD_RETURN_IF_ERROR(ReadBlock(block, scratch));
      std::memcpy(buf.data() + done, scratch.data() + in_block, n);
    }
    done += n;
  }
  return Status::OK();
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
