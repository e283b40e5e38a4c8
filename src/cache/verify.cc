// ovbd cache verify: re-reads cached blocks through a CachedFile whose source is offline.
#include "ovbd/cache_verify.h"

#include <algorithm>

namespace ovbd::cache {
namespace {

// The source of a cache being verified: it has the blob's size and nothing else. A block that
// fails its CRC32C is treated as missing by the cache, and asking this source for it fails.
class OfflineSource : public ReadableFile {
 public:
  OfflineSource(std::string name, uint64_t size) : name_(std::move(name)), size_(size) {}
  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) const override {
    return Status::Unavailable(name_ + ": bytes " + std::to_string(offset) + "+" + std::to_string(buf.size()) +
                               " are not in the cache (or failed their CRC32C there)");
  }
  uint64_t Size() const override { return size_; }
  const std::string& Name() const override { return name_; }

 private:
  std::string name_;
  uint64_t size_;
};

}  // namespace

Result<VerifyReport> VerifyCachedKey(const std::shared_ptr<CacheStore>& store, const std::string& key, uint64_t size,
                                     uint64_t unit, const ContentCheck& check) {
  if (unit == 0) unit = store->Stats().block_size;
  if ((unit & (unit - 1)) != 0) return Status::InvalidArgument("verify unit " + std::to_string(unit) + " is not a power of two");
  const auto ranges = store->CachedRanges(key);
  auto source = std::make_shared<OfflineSource>(key, size);
  OVBD_ASSIGN_OR_RETURN(auto file, NewCachedFile(store, key, source));
  VerifyReport report;
  report.key = key;
  std::vector<uint8_t> buf;
  for (const auto& [start, end] : ranges) {
    for (uint64_t at = start; at < end;) {
      const uint64_t unit_start = at / unit * unit;
      const uint64_t unit_end = std::min(unit_start + unit, size);
      const uint64_t piece_end = std::min(unit_end, end);
      buf.resize(piece_end - at);
      Status s = file->ReadAt(at, buf);
      if (s.ok()) report.checked_bytes += buf.size();
      const bool whole = at == unit_start && piece_end == unit_end;
      if (s.ok() && check && whole) {
        s = check(unit_start, buf);
        if (s.ok()) report.content_checked_bytes += buf.size();
      }
      if (!s.ok()) {
        file->Invalidate(at, piece_end - at);
        report.problems.push_back({at, piece_end - at, s.ToString()});
      }
      at = piece_end;
    }
  }
  return report;
}

}  // namespace ovbd::cache
