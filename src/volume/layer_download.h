// Background download of whole registry blobs (serve/attach --download, or the config's
// "download": {"enable": true}): each remote layer is copied, at a rate limit, to
// CACHE_DIR/layers/<digest>; once the copy's sha256 equals the digest it is renamed into place
// and reads of that layer switch from the cache to the local file. A later start uses a complete
// copy directly (it was verified before the rename; ZFile CRCs still check every data block).
//
//   reader ──> SwitchableFile ──before──> cached remote blob (cache::CachedFile)
//                    └──────────after───> CACHE_DIR/layers/<digest> (verified copy)
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "io/switchable_file.h"
#include "ovbd/io.h"
#include "ovbd/status.h"

namespace ovbd::volume {

// CACHE_DIR/layers/<digest>.
std::string DownloadPath(const std::string& cache_dir, const std::string& digest);
// The complete, verified copy of `digest`, if there is one of `size` bytes; nullptr if not.
std::shared_ptr<const ReadableFile> OpenDownloaded(const std::string& cache_dir, const std::string& digest,
                                                   uint64_t size);

// Copies all of `source` to `path` (atomically, synced: the name promises the content) while
// hashing it; the copy is kept only if its sha256 equals `digest` (Corruption naming the source,
// the digest expected and the one got, otherwise). `pace(done)` is called after each 4 MiB
// piece and may sleep; returning false cancels (Unavailable). Creates the parent directory.
using PaceFn = std::function<bool(uint64_t done)>;
Status DownloadBlob(const ReadableFile& source, const std::string& digest, const std::string& path,
                    const PaceFn& pace = nullptr);
// DownloadBlob into `dir`/<digest> unless a copy of the right size is there already, retried
// up to `attempts` times (a registry that sent corrupted bytes once may send good ones next), then
// the copy, opened. For blobs that must be whole before use: layers that check nothing
// themselves, digest tables.
Result<std::shared_ptr<const ReadableFile>> FetchVerifiedCopy(const ReadableFile& source, const std::string& digest,
                                                              const std::string& dir, unsigned attempts = 3);

struct DownloadJob {
  std::string digest;                            // "sha256:<hex>"
  std::shared_ptr<const ReadableFile> source;    // the remote blob (not the cache: whole blobs
                                                 // would evict the working set)
  std::shared_ptr<SwitchableFile> target;
};

struct DownloadStats {
  size_t layers = 0;       // jobs
  size_t done = 0;         // verified and switched
  size_t failed = 0;
  uint64_t bytes = 0;      // downloaded so far
  std::string first_error;
  bool finished = false;
};

class Downloader {
 public:
  // Starts one thread that waits `delay_s`, then downloads the jobs one after another at no more
  // than `rate` bytes per second (0 = unlimited).
  static std::unique_ptr<Downloader> Start(std::string cache_dir, std::vector<DownloadJob> jobs,
                                           unsigned delay_s, uint64_t rate);
  ~Downloader();  // cancels and joins; a partial copy (.tmp) is removed and redone next time
  DownloadStats Stats() const;

 private:
  Downloader() = default;
  void Run(unsigned delay_s);
  Status DownloadOne(const DownloadJob& job);
  bool Sleep(std::chrono::milliseconds d);  // false if cancelled

  std::string dir_;
  std::vector<DownloadJob> jobs_;
  uint64_t rate_ = 0;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool cancel_ = false;
  DownloadStats stats_;
  std::thread thread_;
};

}  // namespace ovbd::volume
