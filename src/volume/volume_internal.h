// What the parts of the volume (volume.cc, snapshot.cc, jobs.cc) share: a layer of the running
// stack, a background job, and the file helpers of the online operations.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "ovbd/image.h"
#include "ovbd/lsmt.h"
#include "ovbd/manifest.h"
#include "ovbd/volume.h"

namespace ovbd::volume {

// One lower of the running stack, index-aligned with the manifest's lowers.
struct Volume::StackLayer {
  std::string name;  // as named: a path, or a registry reference
  std::string file;  // the local path; "" for a registry blob
  lsmt::LowerLayer layer;
  std::optional<image::Checkpoint> checkpoint;
};

// A merge or a replace: built in its own thread, swapped in under op_mu_.
struct Volume::Job {
  uint64_t id = 0;
  std::string op;           // "merge" | "replace"
  size_t from = 0, to = 0;  // the lowers it replaces, inclusive
  std::vector<const ReadableFile*> sources;  // their files when it started (the swap checks them)
  std::atomic<uint64_t> done{0}, total{0};    // bytes of the work
  std::atomic<bool> cancel{false};
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point ended;  // guarded by mu; set when state leaves running
  mutable std::mutex mu;
  std::condition_variable cv;
  std::string state = "running";  // running | done | failed (guarded by mu)
  Status status;                  // guarded by mu
  nlohmann::ordered_json result;  // guarded by mu
};

// The current UTC time as a checkpoint's "created" (2026-12-07T15:42:00Z) and as a default
// checkpoint name (20261207T154200Z).
std::string UtcNow();
std::string UtcStamp();

// The manifest's pending snapshot, finished: the old upper sealed (unless it already is) and
// stacked as the newest lower with the checkpoint, the pending upper the writable layer. Saved.
Result<image::Manifest> FinishPendingSnapshot(const image::Manifest& manifest);

// Fault injection for tests: a job thread calls it (if set) with the job's op just before the
// swap, after its layer is built or checked.
extern std::function<void(const std::string& op)> g_job_before_swap;

// Opens a local layer file as a lower (errors name it).
Result<lsmt::LowerLayer> OpenLocalLower(const std::string& path);

}  // namespace ovbd::volume
