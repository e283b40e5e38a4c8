// The serving half of `ovbd attach`: what the attach process does once the image is open.
//
//   block stop signals ─> run dir ─> FUSE export (run dir/mnt or --fuse-only DIR)
//   ─> loop device on its file (unless --fuse-only) ─> state file ─> ready(...)
//   ─> sigwait: SIGINT/SIGTERM/SIGHUP, or the FUSE mount vanished (SIGUSR1 from the session)
//   ─> stop: unbind the loop device, FuseExport::Shutdown() (waits until nobody uses the file,
//      then flushes the device; a second stop signal aborts the wait), write run dir/result,
//      remove state and mountpoint (the whole run dir unless `ovbd detach` is collecting the result)
//
// Setup failures undo what was done and return before ready() is called.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ovbd/block_device.h"
#include "ovbd/volume.h"
#include "ovbd/status.h"

namespace ovbd::cli {

// What is attached: the volume's device, and what the state file says it is made of.
struct AttachedImage {
  std::shared_ptr<BlockDevice> device;
  // Answers the control socket (run dir/control) and tells the export of resizes; may be null.
  volume::Volume* volume = nullptr;
  std::vector<std::string> layers;  // bottom first, as named
  std::string upper;                // upper data file, "" = none
};

struct AttachOptions {
  std::string fuse_only;      // mount here and skip the loop device; "" = run dir/mnt + loop
  uint32_t block_size = 512;  // loop device logical block size
  bool direct_io = true;      // loop device direct I/O on the file (if the kernel agrees)
};

struct AttachReady {
  std::string device;  // "/dev/loopN", "" with --fuse-only
  std::string file;    // the exported file
  std::string run_dir;
  std::string control;  // the control socket ("" without a volume)
  int pid = 0;
  bool direct_io = false;
  uint32_t block_size = 0;
};

// Serves `img.device` until stopped; returns how the stop went (the final flush). Must be called before
// the process creates any thread: it blocks the stop signals for every thread it starts.
Status ServeAttached(const AttachedImage& img, const AttachOptions& options,
                     const std::function<void(const AttachReady&)>& ready);

// `ovbd detach TARGET`: TARGET is /dev/loopN or a --fuse-only DIR (or its file). Waits up to
// timeout_s seconds (0 = no limit) for the attach process to end.
Status RunDetach(const std::string& target, unsigned timeout_s);

}  // namespace ovbd::cli
