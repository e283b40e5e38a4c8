// Opening the lowers of a volume, local or in a registry (lazy loading, docs/remote.md):
//
//   local PATH ──────────────────────────────────────────────> blob ──> image::OpenLowerFile
//   digest / oci:// ──> remote::OpenBlob ──> cache::CachedFile ──┤
//                                              │   └──(record_trace) RecordingFile ──> blob
//                                              └── trace::Prefetcher (replay_trace), started
//                                                  in the serving process
//
// Lowers owns what must live as long as the image: the cache store (one per directory,
// flock'ed), the digest checks, the recorder, the prefetcher and the downloader. Internal to
// the volume module (include/ovbd/volume.h).
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "ovbd/cache.h"
#include "ovbd/digest_table.h"
#include "ovbd/remote.h"
#include "ovbd/image.h"
#include "ovbd/lsmt.h"
#include "ovbd/status.h"
#include "ovbd/volume.h"
#include "volume/complete_verifier.h"
#include "volume/layer_download.h"
#include "volume/read_error_tap.h"

namespace ovbd::trace {
class TraceRecorder;
class Prefetcher;
struct Trace;
}  // namespace ovbd::trace

namespace ovbd::volume {

class Lowers {
 public:
  // Opens every lower (bottom first). `config_trace`: the config's recordTracePath (replayed if
  // the file exists, else recorded), used when opts names neither a trace to record nor one to
  // replay. `config_download` applies unless opts.download is set.
  static Result<std::unique_ptr<Lowers>> Open(const VolumeOptions& opts, std::vector<LayerRef> refs,
                                              const std::string& config_trace,
                                              const image::DownloadConfig& config_download = {});
  ~Lowers();

  std::vector<lsmt::LowerLayer> TakeLowers() { return std::move(lowers_); }
  // Starts the cache's fill workers, the digest checks, the trace replay and the background
  // download, if any (threads: call it in the process that serves; they take no signals).
  // Idempotent; nothing after Finish.
  void StartBackground();
  // Stops the background work; saves a recorded trace. Idempotent.
  Status Finish();
  // {"cache": {...}, "remote_layers": [...], "trace": {...}} for `ovbd ctl status`.
  nlohmann::ordered_json StatusJson() const;
  const std::vector<LayerRef>& refs() const { return refs_; }

 private:
  void StartThreads();
  Lowers() = default;
  Status OpenAll(const VolumeOptions& opts);
  Result<std::shared_ptr<const ReadableFile>> OpenRemote(const VolumeOptions& opts, size_t index);
  Status SetUpTrace(const VolumeOptions& opts, const std::string& config_trace);
  void PrefetchTables(const VolumeOptions& opts);
  Result<std::shared_ptr<const remote::DigestTable>> LoadDigestTable(const VolumeOptions& opts, size_t index,
                                                                     const remote::RemoteOptions& options);
  // Unwraps lower `index` and decides how its bytes are verified; a blob that cannot be checked
  // piece by piece is marked for a whole download (needs_download_).
  Result<std::optional<lsmt::LowerLayer>> OpenLazily(size_t index, const std::shared_ptr<const ReadableFile>& blob);
  Status DownloadUnverifiable(std::vector<std::optional<lsmt::LowerLayer>>* opened);

  std::vector<LayerRef> refs_;
  std::vector<lsmt::LowerLayer> lowers_;
  std::shared_ptr<cache::CacheStore> store_;
  // digest -> the cached blob behind its digest check (what reads and the prefetch go through)
  std::map<std::string, std::shared_ptr<CompleteVerifier>> verifiers_;
  std::string record_path_;
  std::shared_ptr<trace::TraceRecorder> recorder_;
  std::vector<uint32_t> trace_ids_;  // recorder layer id of each remote lower, in order
  std::unique_ptr<trace::Trace> replay_;
  std::unique_ptr<trace::Prefetcher> prefetcher_;
  unsigned prefetch_parallel_ = 4;
  std::string cache_dir_;
  bool download_ = false;
  std::chrono::seconds download_delay_{0};
  uint64_t download_rate_ = 0;
  std::vector<DownloadJob> download_jobs_;
  std::unique_ptr<Downloader> downloader_;
  size_t local_copies_ = 0;  // remote lowers served from a complete earlier download
  bool trust_unverified_ = false;
  // Per ref: what proves its bytes ("digest table", "zfile crc", ...; "" for local paths), the
  // registry blob itself (for whole downloads), and whether it must be downloaded before use.
  std::vector<std::string> checks_;
  std::vector<std::shared_ptr<const ReadableFile>> raw_sources_;
  std::vector<uint8_t> needs_download_;  // not vector<bool>: set by parallel openers
  std::shared_ptr<remote::VerifyStats> verify_stats_;
  std::vector<std::shared_ptr<ReadErrorTap>> error_taps_;  // per ref; null for local paths
  bool finished_ = false;
};

}  // namespace ovbd::volume
