// The files of one cached key: creating, loading after a restart, resetting on a size change.
#include <dirent.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "cache/block_table.h"
#include "cache/store_impl.h"

namespace ovbd::cache {
namespace {

uint64_t BlockCount(uint64_t size, uint32_t block_size) {
  return size / block_size + (size % block_size != 0 ? 1 : 0);
}

Status CheckBlockCount(uint64_t size, uint32_t block_size) {
  if (BlockCount(size, block_size) > kMaxBlocksPerFile) {
    return Status::NotSupported("cache: " + std::to_string(size) + " bytes is more than " +
                                std::to_string(kMaxBlocksPerFile) + " blocks");
  }
  return Status::OK();
}

}  // namespace

std::string CacheStore::Impl::PathOf(const std::string& key, const char* suffix) const {
  return options.dir + "/" + key + suffix;
}

Result<std::unique_ptr<KeyEntry>> CacheStore::Impl::CreateEntry(const std::string& key,
                                                                 uint64_t size) {
  auto e = std::make_unique<KeyEntry>();
  e->key = key;
  OVBD_ASSIGN_OR_RETURN(e->data, OpenRandomRWFile(PathOf(key, ".data"), {.create = true, .truncate = true}));
  OVBD_ASSIGN_OR_RETURN(e->meta, OpenRandomRWFile(PathOf(key, ".meta"), {.create = true, .truncate = true}));
  OVBD_RETURN_IF_ERROR(ResetLocked(e.get(), size));
  return e;
}

Result<std::unique_ptr<KeyEntry>> CacheStore::Impl::LoadEntry(const std::string& key) {
  auto e = std::make_unique<KeyEntry>();
  e->key = key;
  OVBD_ASSIGN_OR_RETURN(e->meta, OpenRandomRWFile(PathOf(key, ".meta"), {}));
  HeaderBytes hb{};
  if (e->meta->Size() < kTableHeaderSize) return Status::Corruption("cache table: short header");
  OVBD_RETURN_IF_ERROR(e->meta->ReadAt(0, hb));
  OVBD_ASSIGN_OR_RETURN(TableHeader header, DecodeHeader(hb));
  if (header.block_size != options.block_size) {
    return Status::Corruption("cache table: block size " + std::to_string(header.block_size));
  }
  OVBD_RETURN_IF_ERROR(CheckBlockCount(header.source_size, options.block_size));
  e->size = header.source_size;
  e->blocks.resize(BlockCount(e->size, options.block_size));
  OVBD_ASSIGN_OR_RETURN(e->data, OpenRandomRWFile(PathOf(key, ".data"), {.create = true}));
  OVBD_RETURN_IF_ERROR(LoadTable(e.get()));
  return e;
}

Status CacheStore::Impl::LoadTable(KeyEntry* e) {
  uint64_t stored = e->meta->Size() - kTableHeaderSize;
  uint64_t n = std::min<uint64_t>(e->blocks.size(), stored / kTableEntrySize);
  std::vector<uint8_t> table(n * kTableEntrySize);
  OVBD_RETURN_IF_ERROR(e->meta->ReadAt(kTableHeaderSize, table));
  for (uint64_t b = 0; b < n; b++) {
    std::span<const uint8_t, kTableEntrySize> bytes(table.data() + b * kTableEntrySize, kTableEntrySize);
    Result<TableEntry> entry = DecodeEntry(b, static_cast<uint32_t>(BlockLength(*e, b)), bytes);
    if (!entry.ok()) stats.corrupt_blocks++;
    if (!entry.ok() || entry->length == 0) continue;
    BlockSlot& slot = e->blocks[b];
    slot.state = BlockState::kPresent;
    slot.length = entry->length;
    slot.crc = entry->crc;
    e->cached_bytes += entry->length;
  }
  return Status::OK();
}

void CacheStore::Impl::AddEntryLocked(std::unique_ptr<KeyEntry> e) {
  for (uint64_t b = 0; b < e->blocks.size(); b++) {
    BlockSlot& slot = e->blocks[b];
    if (slot.state == BlockState::kPresent) slot.lru = lru.insert(lru.end(), BlockRef{e.get(), b});
  }
  stats.used += e->cached_bytes;
  keys[e->key] = std::move(e);
  stats.files = keys.size();
}

Status CacheStore::Impl::LoadExisting() {
  DIR* dir = ::opendir(options.dir.c_str());
  if (dir == nullptr) return Status::FromErrno(errno, "cache: opendir " + options.dir);
  std::vector<std::string> names;
  while (dirent* d = ::readdir(dir)) names.emplace_back(d->d_name);
  ::closedir(dir);
  const std::string suffix = ".meta";
  for (const std::string& name : names) {
    if (name.size() <= suffix.size() || !name.ends_with(suffix)) continue;
    std::string key = name.substr(0, name.size() - suffix.size());
    if (!ValidateKey(key).ok()) continue;
    Result<std::unique_ptr<KeyEntry>> e = LoadEntry(key);
    if (!e.ok()) {  // unusable table: the key starts empty
      ::unlink(PathOf(key, ".meta").c_str());
      ::unlink(PathOf(key, ".data").c_str());
      continue;
    }
    std::lock_guard<std::mutex> lock(mu);
    AddEntryLocked(std::move(e).value());
  }
  return Status::OK();
}

Status CacheStore::Impl::ResetLocked(KeyEntry* e, uint64_t size) {
  for (const BlockSlot& slot : e->blocks) {
    if (slot.pins > 0 || (slot.state != BlockState::kAbsent && slot.state != BlockState::kPresent)) {
      return Status::InvalidArgument("cache: key " + e->key + " is in use with another size");
    }
  }
  for (BlockSlot& slot : e->blocks) {
    if (slot.state == BlockState::kPresent) lru.erase(slot.lru);
  }
  stats.used -= e->cached_bytes;
  e->cached_bytes = 0;
  e->size = size;
  e->blocks.assign(BlockCount(size, options.block_size), BlockSlot{});
  OVBD_RETURN_IF_ERROR(e->data->Truncate(0));
  OVBD_RETURN_IF_ERROR(e->meta->Truncate(0));
  return e->meta->WriteAt(0, EncodeHeader({options.block_size, size}));
}

Result<KeyEntry*> CacheStore::Impl::Attach(const std::string& key, uint64_t size) {
  OVBD_RETURN_IF_ERROR(ValidateKey(key));
  OVBD_RETURN_IF_ERROR(CheckBlockCount(size, options.block_size));
  std::lock_guard<std::mutex> lock(mu);
  auto it = keys.find(key);
  if (it == keys.end()) {
    OVBD_ASSIGN_OR_RETURN(std::unique_ptr<KeyEntry> created, CreateEntry(key, size));
    AddEntryLocked(std::move(created));
    it = keys.find(key);
  } else if (it->second->size != size) {
    if (it->second->open_files > 0) {
      return Status::InvalidArgument("cache: key " + key + " is open with size " +
                                     std::to_string(it->second->size));
    }
    OVBD_RETURN_IF_ERROR(ResetLocked(it->second.get(), size));
  }
  it->second->open_files++;
  return it->second.get();
}

void CacheStore::Impl::Detach(KeyEntry* e) {
  std::lock_guard<std::mutex> lock(mu);
  e->open_files--;
}

}  // namespace ovbd::cache
