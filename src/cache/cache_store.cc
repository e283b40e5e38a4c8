// CacheStore: options, the directory lock, stats, listing and pruning.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "cache/block_table.h"
#include "cache/store_impl.h"

namespace ovbd::cache {
namespace {

bool KeyChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == ':' || c == '-';
}

Status ValidateOptions(const CacheOptions& o) {
  if (o.dir.empty()) return Status::InvalidArgument("cache: empty directory");
  if (o.capacity == 0) return Status::InvalidArgument("cache: capacity must be > 0");
  if (o.block_size != 0 && (o.block_size < kMinBlockSize || o.block_size > kMaxBlockSize ||
                            (o.block_size & (o.block_size - 1)) != 0)) {
    return Status::InvalidArgument("cache: block size " + std::to_string(o.block_size) +
                                   " is not a power of two in [4 KiB, 16 MiB]");
  }
  if (o.refill_size > kMaxRefillSize) {
    return Status::InvalidArgument("cache: refill size " + std::to_string(o.refill_size) +
                                   " is more than 64 MiB");
  }
  return Status::OK();
}

// Creates the directory if needed and takes an exclusive, non-blocking flock on DIR/lock.
Result<int> LockDirectory(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return Status::FromErrno(errno, "cache: mkdir " + dir);
  }
  std::string path = dir + "/lock";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Status::FromErrno(errno, "cache: open " + path);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) return Status::Unavailable("cache: " + dir + " is in use by another store");
    return Status::FromErrno(err, "cache: flock " + path);
  }
  return fd;
}

// The block size of the first readable table in `dir` (block_size 0 = adopt), else the default.
uint32_t AdoptBlockSize(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return kDefaultBlockSize;
  uint32_t found = 0;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name.size() <= 5 || !name.ends_with(".meta") || name[0] == '.') continue;
    int fd = ::open((dir + "/" + name).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    HeaderBytes hb{};
    bool full = ::pread(fd, hb.data(), hb.size(), 0) == static_cast<ssize_t>(hb.size());
    ::close(fd);
    auto header = full ? DecodeHeader(hb) : Result<TableHeader>(Status::Corruption("short"));
    if (header.ok() && header->block_size >= kMinBlockSize && header->block_size <= kMaxBlockSize &&
        (header->block_size & (header->block_size - 1)) == 0) {
      found = header->block_size;
      break;
    }
  }
  ::closedir(d);
  return found != 0 ? found : kDefaultBlockSize;
}

}  // namespace

Status ValidateKey(const std::string& key) {
  if (key.empty() || key.size() > kMaxKeyLength || key[0] == '.' ||
      !std::all_of(key.begin(), key.end(), KeyChar)) {
    return Status::InvalidArgument("cache: invalid key '" + key.substr(0, kMaxKeyLength) + "'");
  }
  return Status::OK();
}

CacheStore::Impl::~Impl() {
  StopFillWorkers();
  if (lock_fd >= 0) ::close(lock_fd);
}

CacheStore::CacheStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CacheStore::~CacheStore() = default;

Result<std::shared_ptr<CacheStore>> CacheStore::Open(const CacheOptions& options) {
  OVBD_RETURN_IF_ERROR(ValidateOptions(options));
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->stats.capacity = options.capacity;
  OVBD_ASSIGN_OR_RETURN(impl->lock_fd, LockDirectory(options.dir));
  if (impl->options.block_size == 0) impl->options.block_size = AdoptBlockSize(options.dir);
  impl->stats.block_size = impl->options.block_size;
  impl->stats.refill_size = impl->options.refill_size;
  OVBD_RETURN_IF_ERROR(impl->LoadExisting());
  std::shared_ptr<CacheStore> store(new CacheStore(std::move(impl)));
  OVBD_RETURN_IF_ERROR(store->Prune(options.capacity));
  return store;
}

void CacheStore::StartFillWorkers() { impl_->StartFillWorkers(); }
void CacheStore::StopFillWorkers() { impl_->StopFillWorkers(); }

CacheStats CacheStore::Stats() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->stats;
}

std::vector<CachedFileInfo> CacheStore::Files() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  std::vector<CachedFileInfo> files;
  for (const auto& [key, e] : impl_->keys) files.push_back({key, e->size, e->cached_bytes});
  return files;  // std::map: sorted by key
}

std::vector<std::pair<uint64_t, uint64_t>> CacheStore::CachedRanges(const std::string& key) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  auto it = impl_->keys.find(key);
  if (it == impl_->keys.end()) return ranges;
  const KeyEntry& e = *it->second;
  const uint64_t bs = impl_->options.block_size;
  for (uint64_t b = 0; b < e.blocks.size(); ++b) {
    if (e.blocks[b].state != BlockState::kPresent) continue;
    const uint64_t start = b * bs, end = start + impl_->BlockLength(e, b);
    if (!ranges.empty() && ranges.back().second == start) {
      ranges.back().second = end;
    } else {
      ranges.emplace_back(start, end);
    }
  }
  return ranges;
}

Status CacheStore::Prune(uint64_t target_bytes) {
  std::vector<BlockRef> victims;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    Impl& s = *impl_;
    for (auto it = s.lru.begin(); it != s.lru.end() && s.stats.used > target_bytes;) {
      BlockSlot& slot = it->key->blocks[it->block];
      if (slot.pins > 0) {
        ++it;
        continue;
      }
      slot.state = BlockState::kEvicting;
      s.stats.used -= slot.length;
      victims.push_back(*it);
      it = s.lru.erase(it);
    }
  }
  return impl_->Evict(victims);
}

}  // namespace ovbd::cache
