// A volume: one running image, as every frontend (NBD serve, FUSE/loop attach, cat, later a
// daemon, a containerd snapshotter or ublk) opens and shares it.
//
//   VolumeSpec (LAYER... [+ upper] | config.v1.json) + VolumeOptions (typed)
//        │ Open: no threads are left running
//        v
//   Volume ── lowers: local PATH ─────────────────────────────────> blob ──┐
//        │            registry blob ──> digest checks ──> cache ──> blob ──┼─> lsmt::Image ──> BlockDevice
//        │            (trace recording, download switch, error tap)        │   (+ upper)       (device())
//        ├── Start: cache fill workers, whole-blob checks, trace replay, downloads
//        ├── Control / StatusJson / Flush: what the control socket asks
//        └── Stop: background work ends, a recorded trace is saved
//
// Lifecycle (as nbdkit's get_ready/after_fork): Open in any process; Start in the process that
// serves, after any fork (threads do not survive one); Stop before the volume is released (the
// destructor stops too, without saving the trace). No library below needs to know that a caller
// forks. Start blocks every signal in the threads it starts: a serving thread that waits for
// SIGTERM with sigwait gets it.
//
// Online operations (docs/lifecycle.md): snapshot, merge, replace and resize change the stack
// while it is served. device() is a SwitchableDevice: each change builds the next stack, then
// swaps it in with writes paused for the swap only; the manifest (config.v1.json) is rewritten
// atomically so that a crash at any instant reopens the old stack or the new one.
//
// Thread safety: device() is served from any number of threads. Control, StatusJson, Flush and
// the operations may be called from any thread, concurrently with serving; stack changes are
// serialized by the volume. Open, Start and Stop are called by the owner, one at a time.
#pragma once

#include <chrono>
#include <functional>
#include <thread>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "ovbd/block_device.h"
#include "ovbd/image.h"
#include "ovbd/io.h"
#include "ovbd/manifest.h"
#include "ovbd/status.h"
#include "ovbd/switchable_device.h"
#include "ovbd/zfile.h"

namespace ovbd::volume {

// How remote lowers are read, cached and prefetched, and how the image is served. Sizes are
// bytes, durations std::chrono.
struct VolumeOptions {
  // The local cache of registry blobs (one serving process per directory: it is flock'ed), its
  // cap, its block size (a power of two, 4K..16M) and the sequential refill size (0 = none).
  std::string cache_dir = "/var/cache/ovbd";
  uint64_t cache_size = 4ull << 30;
  uint32_t cache_block_size = 16u << 10;
  uint64_t refill_size = 256u << 10;
  // Registry access.
  std::string proxy;        // HTTP proxy, "" = none
  std::string credentials;  // docker-style config.json or cred.json, "" = none
  bool insecure = false;    // do not verify the registry's TLS certificate
  std::chrono::seconds remote_timeout{60};  // a read retries an unreachable registry this long
  unsigned remote_parallel = 4;             // range requests in flight per read
  // Trace record/replay of registry reads; with neither, the config's recordTracePath is
  // replayed if the file exists, else recorded.
  std::string record_trace;
  std::string replay_trace;
  unsigned prefetch_parallel = 16;
  // Background download of whole registry layers to CACHE_DIR/layers. When `download` is
  // false, the config's "download" object decides (and its delay and maxMBps apply).
  bool download = false;
  uint64_t download_rate = 0;  // bytes per second, 0 = unlimited
  std::chrono::seconds download_delay{0};
  // Read registry blobs that nothing verifies piece by piece (no digest table, not a ZFile
  // with CRCs) lazily anyway, instead of downloading them whole before the first read.
  bool trust_unverified = false;
  bool read_only = false;     // serve read-only even with a writable layer
  bool report_result = true;  // write the config's resultFile (not for a one-off reader)
};

// What the image is: layers on a command line, or an overlaybd config.v1.json.
struct VolumeSpec {
  // Bottom first: PATH or PATH:LENGTH, or a registry blob "oci://HOST[:PORT]/REPO@sha256:HEX"
  // ("oci+http://" without TLS).
  std::vector<std::string> layers;
  std::optional<image::UpperPaths> upper;
  std::string config;  // config.v1.json; excludes `layers` and `upper`
};

// A lower as a command line or a config names it: a local path (PATH or PATH:LENGTH), an
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

class Lowers;  // src/volume/lowers.h

// The online operations (docs/lifecycle.md). A layer is named by its index (bottom = 0) or by
// its checkpoint name.
struct MergeRequest {
  std::string from, to;  // inclusive; at least two layers
  std::optional<zfile::Options> zfile;  // compress the merged layer
  bool keep = false;  // leave the merged layers' files (default: removed once the swap is durable)
};

class Volume {
 public:
  // Opens every lower (bottom first; registry layers through the cache, in parallel threads
  // that end before Open returns), the upper and the device. With a config, its resultFile gets
  // "success" or "failed:<reason>" (if options.report_result). Errors name the layer or file.
  // A writable open of a config (the manifest) first finishes a snapshot that a crash
  // interrupted and removes the leftovers of interrupted operations (notes() says what).
  static Result<std::unique_ptr<Volume>> Open(const VolumeSpec& spec, const VolumeOptions& options);
  ~Volume();
  Volume(const Volume&) = delete;
  Volume& operator=(const Volume&) = delete;

  // Starts the background work (see above). Idempotent; a no-op after Stop.
  Status Start();
  // Stops the background work (a running merge is cancelled) and saves a recorded trace (its
  // error is returned). Idempotent.
  Status Stop();

  // Cancels a running merge or replace (its caller gets an error) and waits for its thread;
  // what a frontend calls before it stops answering control requests. Stop calls it too.
  void CancelJob();

  // What frontends export: the device of the current stack, switched under the clients by
  // online operations. Never null.
  const std::shared_ptr<BlockDevice>& device() const { return device_; }
  // The current stack as a file (readers such as cat).
  std::shared_ptr<const ReadableFile> image() const;
  bool writable() const;
  // Makes every completed write durable; OK and nothing to do when the device is read-only.
  Status Flush();

  // Bottom first, as named (paths as given, registry references), and the upper's data file
  // ("" = none): for status and the attach state.
  std::vector<std::string> layer_names() const;
  std::string upper_data() const;
  // The manifest's current content, when opened from a config.
  std::optional<image::ImageConfig> config() const;
  // What Open found and did (a finished snapshot, removed leftovers), for the frontend to report.
  const std::vector<std::string>& notes() const { return notes_; }

  // ---- online operations: each needs a config (the manifest) and changes it durably ----
  // The writable layer becomes the newest lower (sealed in place), named `name` ("" = a
  // timestamp), and a fresh one continues on top. Writes wait only for an O(1) swap.
  // `new_config` (overlaybd's live-snapshot form): a config naming the current lowers, then
  // the current upper's data file, and a new empty upper (made by `ovbd create`); it becomes
  // the manifest from then on. The old config is rewritten to the same stack first.
  Result<nlohmann::ordered_json> Snapshot(const std::string& name, const std::string& new_config = "");
  // Merges lowers from..to into one new layer in the background, then swaps it in. Returns
  // the job's status at once; WaitJob waits for its end.
  Result<nlohmann::ordered_json> StartMerge(const MergeRequest& request);
  // Replaces a lower by `file` once their content is checked identical (in the background).
  Result<nlohmann::ordered_json> StartReplace(const std::string& layer, const std::string& file);
  // The last job's outcome once it ended (its error, or its result).
  Result<nlohmann::ordered_json> WaitJob();
  // Sets the virtual size: growing always works, shrinking only if no data lies past the new
  // end. Frontends learn it through OnResize.
  Result<nlohmann::ordered_json> Resize(uint64_t size);
  // Called (from the resizing thread) with the new size after every resize.
  void OnResize(std::function<void(uint64_t)> listener);

  // {"device", "layers", "upper", "io", "cache", "remote_layers", "manifest", "job", ...}: the
  // volume's part of `ovbd ctl status`.
  nlohmann::ordered_json StatusJson() const;
  // A control request {"command": NAME, ...}: status, flush, snapshot {name}, merge {from, to,
  // zfile, keep, wait}, replace {layer, file, wait}, job {wait}, resize {size}. The reply
  // object, or the error (an unknown command is InvalidArgument naming the known ones).
  // Thread-safe; a waiting merge blocks only its own caller.
  Result<nlohmann::json> Control(const nlohmann::json& request);

 private:
  struct StackLayer;
  struct Job;
  Volume();
  Status OpenStack(std::vector<LayerRef> refs, const std::string& config_trace, const image::DownloadConfig& download,
                   const std::optional<image::UpperPaths>& upper, const VolumeOptions& options);
  Status PrepareManifest(const std::string& path, const VolumeOptions& options);
  Status CheckStackOp(const char* op) const;  // needs op_mu_
  Result<image::Manifest> CheckSnapshotConfig(const std::string& path) const;  // needs op_mu_
  Result<size_t> LayerIndex(const std::string& selector) const;  // needs op_mu_
  Result<nlohmann::ordered_json> StartJob(const std::string& op, size_t from, size_t to,
                                          std::function<Result<nlohmann::ordered_json>(Job&)> work);
  Result<nlohmann::ordered_json> RunMerge(Job& job, const MergeRequest& request);
  Result<nlohmann::ordered_json> RunReplace(Job& job, const std::string& file);
  // Swaps lowers job.from..job.to for `replacement` (under op_mu_): image, manifest, device.
  Status SwapLowers(const Job& job, StackLayer replacement);
  nlohmann::ordered_json StackJson() const;  // needs state_mu_
  nlohmann::ordered_json JobJson() const;

  std::unique_ptr<Lowers> lowers_;
  std::shared_ptr<SwitchableDevice> switch_;
  std::shared_ptr<BlockDevice> device_;  // switch_
  ImageDeviceOptions device_options_;
  std::vector<std::string> notes_;

  std::mutex op_mu_;             // one stack change at a time (snapshot, swap, resize)
  mutable std::mutex state_mu_;  // guards what status reads: the fields below
  std::shared_ptr<lsmt::Image> image_;
  std::vector<StackLayer> stack_;  // bottom first, as image_ stacks them
  std::optional<image::Manifest> manifest_;
  std::optional<image::UpperPaths> upper_;
  std::string unfinished_;  // set when a snapshot failed half-way: stack ops are refused
  uint64_t snapshots_ = 0;
  double last_pause_ms_ = 0;
  std::vector<std::function<void(uint64_t)>> resize_listeners_;
  std::shared_ptr<Job> job_;  // the last job; one runs at a time
  std::thread job_thread_;
};

}  // namespace ovbd::volume
