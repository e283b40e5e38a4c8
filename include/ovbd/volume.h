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
// Thread safety: device() is served from any number of threads. Control, StatusJson and Flush
// may be called from any thread, concurrently with serving; Control requests are serialized by
// the volume (the lock later stack operations take). Open, Start and Stop are called by the
// owner, one at a time.
#pragma once

#include <chrono>
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
#include "ovbd/status.h"

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

class Volume {
 public:
  // Opens every lower (bottom first; registry layers through the cache, in parallel threads
  // that end before Open returns), the upper and the device. With a config, its resultFile gets
  // "success" or "failed:<reason>" (if options.report_result). Errors name the layer or file.
  static Result<std::unique_ptr<Volume>> Open(const VolumeSpec& spec, const VolumeOptions& options);
  ~Volume();
  Volume(const Volume&) = delete;
  Volume& operator=(const Volume&) = delete;

  // Starts the background work (see above). Idempotent; a no-op after Stop.
  Status Start();
  // Stops the background work and saves a recorded trace (its error is returned). Idempotent.
  Status Stop();

  // What frontends export. Never null.
  const std::shared_ptr<BlockDevice>& device() const { return device_; }
  // The merged image as a file (readers such as cat).
  std::shared_ptr<const ReadableFile> image() const { return image_; }
  bool writable() const;
  // Makes every completed write durable; OK and nothing to do when the device is read-only.
  Status Flush();

  // Bottom first, as named (paths as given, registry references), and the upper's data file
  // ("" = none): for status and the attach state.
  std::vector<std::string> layer_names() const;
  const std::string& upper_data() const { return upper_data_; }
  // Set when opened from a config.
  const std::optional<image::ImageConfig>& config() const { return config_; }

  // {"device", "layers", "upper", "io", "cache", "remote_layers", ...}: the volume's part of
  // `ovbd ctl status`.
  nlohmann::ordered_json StatusJson() const;
  // A control request {"command": NAME, ...}: "status" (StatusJson) and "flush" ({"flushed":
  // false} on a read-only device). The reply object, or the error (an unknown command is
  // InvalidArgument naming the known ones).
  Result<nlohmann::json> Control(const nlohmann::json& request);

 private:
  Volume();
  Status OpenStack(std::vector<LayerRef> refs, const std::string& config_trace, const image::DownloadConfig& download,
                   const std::optional<image::UpperPaths>& upper, const VolumeOptions& options);

  std::unique_ptr<Lowers> lowers_;
  std::shared_ptr<lsmt::Image> image_;
  std::shared_ptr<BlockDevice> device_;
  std::optional<image::ImageConfig> config_;
  std::string upper_data_;
  std::mutex control_mu_;  // one control operation at a time (later: stack swaps)
};

}  // namespace ovbd::volume
