// Re-checking what a cache directory holds (ovbd cache verify), offline: no source is asked.
//
//   for each cached range of KEY ── read unit by unit through a CachedFile over an offline source
//        │                           (every block CRC32C-checked, as a hit is)
//        └── whole units ── check(offset, bytes): the blob's own content check (a digest table)
//   a unit that fails either ── dropped from the cache (the next read fetches it again)
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ovbd/cache.h"
#include "ovbd/status.h"

namespace ovbd::cache {

// Content check of one unit [offset, offset + bytes.size()) of a blob; OK or the cause.
using ContentCheck = std::function<Status(uint64_t offset, std::span<const uint8_t> bytes)>;

struct VerifyProblem {
  uint64_t offset = 0;
  uint64_t length = 0;
  std::string cause;
};

struct VerifyReport {
  std::string key;
  uint64_t checked_bytes = 0;         // cached bytes read back (each block CRC32C-checked)
  uint64_t content_checked_bytes = 0; // of which also passed through `check`
  std::vector<VerifyProblem> problems;  // units dropped, ascending
};

// Verifies the cached blocks of `key` (an existing key of `store`, whose size is `size`). With a
// `check`, every unit of `unit` bytes (a power of two; the last one may be shorter) wholly in the
// cache is passed to it; units only partly cached get the CRC32C check only. Without a check,
// `unit` is the store's block size. Problems are dropped from the cache and reported; the
// returned status is an error only when the check itself could not run (I/O errors of the
// cache files are problems of their unit).
Result<VerifyReport> VerifyCachedKey(const std::shared_ptr<CacheStore>& store, const std::string& key, uint64_t size,
                                     uint64_t unit = 0, const ContentCheck& check = nullptr);

}  // namespace ovbd::cache
