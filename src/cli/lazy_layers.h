// Opening the lowers of a served image, local or in a registry (lazy loading, docs/remote.md):
//
//   local PATH ──────────────────────────────────────────────> blob ──> image::OpenLowerFile
//   digest / oci:// ──> remote::OpenBlob ──> cache::CachedFile ──┤
//                                              │   └──(--record-trace) RecordingFile ──> blob
//                                              └── trace::Prefetcher (--replay-trace), started
//                                                  in the serving process
//
// A LayerSession owns what must live as long as the image: the cache store (one per directory,
// flock'ed), the recorder and the prefetcher. Finish() saves a recorded trace.
#pragma once

#include <atomic>
#include <map>
#include <mutex>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json_fwd.hpp>

#include "ovbd/cache.h"
#include "ovbd/digest_table.h"
#include "ovbd/remote.h"
#include "ovbd/image.h"
#include "ovbd/lsmt.h"
#include "ovbd/status.h"
#include "volume/complete_verifier.h"
#include "volume/layer_download.h"
#include "volume/read_error_tap.h"

namespace ovbd::trace {
class TraceRecorder;
class Prefetcher;
struct Trace;
}  // namespace ovbd::trace

namespace ovbd::cli {

using volume::CompleteVerifier;
using volume::DownloadJob;
using volume::Downloader;
using volume::ReadErrorTap;

// Options of remote lowers, the cache and trace prefetch (serve, attach, cat).
struct LazyArgs {
  std::string cache_dir = "/var/cache/ovbd";
  std::string cache_size = "4G";
  std::string cache_block_size = "16K";
  std::string refill_size = "256K";
  std::string proxy;
  std::string credentials;
  bool insecure = false;
  unsigned remote_timeout_s = 60;
  unsigned remote_parallel = 4;
  std::string record_trace;
  std::string replay_trace;
  unsigned prefetch_parallel = 16;
  bool download = false;               // or the config's "download": {"enable": true}
  std::string download_rate = "0";     // bytes per second, 0 = unlimited
  unsigned download_delay_s = 0;
  // Serve registry blobs that nothing can verify piece by piece (no digest table, not a ZFile
  // with CRCs) lazily anyway, instead of downloading them whole before the first read.
  bool trust_unverified = false;
};
// `with_trace`: also --record-trace/--replay-trace/--prefetch-parallel and --download*.
void AddLazyArgs(CLI::App* cmd, LazyArgs* args, bool with_trace);

// A lower as the command line or a config names it: a local path (PATH or PATH:LENGTH), an
// "oci://" / "oci+http://" reference, or a digest under a repoBlobUrl.
struct LayerRef {
  std::string path;
  std::string oci;
  std::string digest;
  std::string repo_blob_url;
  std::optional<uint64_t> size;
  std::optional<image::BlobRef> digest_table;  // the config's lowers[i].digestTable
  bool remote() const { return path.empty(); }
  std::string Name() const;  // for messages and status
};
bool IsOciReference(const std::string& arg);
std::vector<LayerRef> RefsFromArgs(const std::vector<std::string>& layers);
std::vector<LayerRef> RefsFromConfig(const image::ImageConfig& config);

class LayerSession {
 public:
  // Opens every lower (bottom first). `config_trace`: the config's recordTracePath (replayed if
  // the file exists, else recorded), used when neither --record-trace nor --replay-trace is given.
  static Result<std::unique_ptr<LayerSession>> Open(const LazyArgs& args, std::vector<LayerRef> refs,
                                                    const std::string& config_trace,
                                                    const image::DownloadConfig& config_download = {});
  ~LayerSession();

  std::vector<lsmt::LowerLayer> TakeLowers() { return std::move(lowers_); }
  // Starts the cache's fill workers, the digest checks, the trace replay and the background
  // download, if any (threads: call it in the process that serves; they take no signals).
  void StartBackground();
  // Stops the replay; saves a recorded trace. Idempotent.
  Status Finish();
  // {"cache": {...}, "remote_layers": [...], "trace": {...}} for `ovbd ctl status`.
  nlohmann::ordered_json StatusJson() const;
  const std::vector<LayerRef>& refs() const { return refs_; }

 private:
  void StartThreads();
  LayerSession() = default;
  Status OpenAll(const LazyArgs& args);
  Result<std::shared_ptr<const ReadableFile>> OpenRemote(const LazyArgs& args, size_t index);
  Status SetUpTrace(const LazyArgs& args, const std::string& config_trace);
  void PrefetchTables(const LazyArgs& args);
  Result<std::shared_ptr<const remote::DigestTable>> LoadDigestTable(const LazyArgs& args, size_t index,
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
  unsigned download_delay_s_ = 0;
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

}  // namespace ovbd::cli
