// The runtime directory through which `ovbd detach` finds and stops an `ovbd attach` process.
//
//   $OVBD_RUN_DIR (default /run/ovbd, mode 0700)/
//     attach-XXXXXX/            one per attach (mkdtemp), owned by the attach process
//       state                   JSON: pid, start_time, file, mountpoint, device, read_only, layers, upper
//       mnt/                    the FUSE mountpoint (absent with --fuse-only DIR)
//       mnt/image               the exported file = the loop device's backing file
//       detaching               created (O_EXCL) by `ovbd detach` before it signals the process
//       result                  JSON {ok, error}: written by the attach process as it stops
//
// A loop device leads to its directory through the kernel (/sys/.../loop/backing_file ends in
// attach-XXXXXX/mnt/image); a --fuse-only DIR by a scan of the state files. The pid alone is
// never trusted: start_time (field 22 of /proc/PID/stat) must match too, so a recycled pid is
// not signalled. State files are parsed as hostile input (size cap, types checked).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ovbd/status.h"

namespace ovbd::fuse {

struct AttachState {
  int pid = 0;
  uint64_t start_time = 0;   // clock ticks after boot, /proc/PID/stat field 22
  std::string file;          // the exported file (absolute)
  std::string mountpoint;    // the FUSE mountpoint (absolute)
  std::string device;        // "/dev/loopN", or "" with --fuse-only
  bool read_only = false;
  std::vector<std::string> layers;
  std::string upper;         // upper data file, "" if none
};

inline constexpr const char* kStateFile = "state";
inline constexpr const char* kResultFile = "result";
inline constexpr const char* kDetachingFile = "detaching";
inline constexpr const char* kMountDir = "mnt";
inline constexpr const char* kControlFile = "control";  // the control socket (`ovbd ctl`)

// $OVBD_RUN_DIR or /run/ovbd.
std::string RunBaseDir();
// Creates (if needed) the base directory and a fresh attach-XXXXXX directory in it.
Result<std::string> CreateRunDir();
// Writes dir/state atomically (temporary file + rename).
Status WriteState(const std::string& dir, const AttachState& state);
Result<AttachState> ReadState(const std::string& dir);

// Start time of a live process; NotFound if there is no such process (or only its zombie).
Result<uint64_t> ProcessStartTime(int pid);
// The process that wrote `state` is still running (same pid and start time).
bool ProcessAlive(const AttachState& state);

// dir/result: how the attach process stopped. ReadResult returns that Status (NotFound if none).
Status WriteResult(const std::string& dir, const Status& stopped);
Status ReadResult(const std::string& dir);

// The attach directory whose state names `path` (absolute, normalized) as its mountpoint or file.
Result<std::string> FindRunDirByPath(const std::string& path);

// Removes attach directories whose process died (pid gone or recycled): lazily unmounts their
// FUSE mount (dead, ENOTCONN) and deletes their files. Directories without a state file (an
// attach still setting up) are left alone. Their loop devices were already unbound by the kernel
// (autoclear) when the process's descriptor closed.
void RemoveStaleRunDirs();

// `path` made absolute and lexically normalized, without touching the file system (a dead FUSE
// mount cannot be stat'ed).
std::string AbsolutePath(const std::string& path);

// Removes the given names inside dir (files or empty directories; missing and "" entries are
// skipped), then dir itself if it is empty.
void RemoveRunDirEntries(const std::string& dir, const std::vector<std::string>& names);

}  // namespace ovbd::fuse
