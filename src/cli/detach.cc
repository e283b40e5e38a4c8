// ovbd detach: find the attach process behind a loop device or a --fuse-only directory, stop it,
// and report how its final flush went.
//
//   /dev/loopN ─sysfs backing_file─> RUN/attach-X/mnt/image ─> RUN/attach-X/state
//   DIR        ─scan RUN/attach-*/state for mountpoint or file─┘
//   ─> checks: process alive (pid + start time), device not mounted/held exclusively
//   ─> create RUN/attach-X/detaching ─> SIGTERM ─> wait for the process to end
//   ─> RUN/attach-X/result: ok, or the error (exit 1) ─> remove the directory
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include "cli/attach_serve.h"
#include "export/fuse/attach_state.h"
#include "export/fuse/loop_device.h"

namespace ovbd::cli {
namespace {

struct Located {
  std::string run_dir;
  fuse::AttachState state;
};

Status NotOurs(const std::string& device, const std::string& backing) {
  return Status::InvalidArgument(device + " is not an ovbd device (it is bound to " + backing + ")");
}

Result<Located> LocateLoop(const std::string& device) {
  OVBD_ASSIGN_OR_RETURN(std::string backing, fuse::LoopBackingFile(device));
  const std::filesystem::path p(backing);
  const std::filesystem::path run_dir = p.parent_path().parent_path();
  if (p.parent_path().filename() != fuse::kMountDir || run_dir.filename().string().rfind("attach-", 0) != 0) {
    return NotOurs(device, backing);
  }
  auto state = fuse::ReadState(run_dir.string());
  if (!state.ok() || state->file != backing) return NotOurs(device, backing);
  return Located{run_dir.string(), std::move(state).value()};
}

Result<Located> Locate(const std::string& target) {
  struct stat st {};
  const bool exists = ::stat(target.c_str(), &st) == 0;
  if (exists && S_ISBLK(st.st_mode)) return LocateLoop(target);
  if (!exists && errno == ENOENT) return Status::NotFound(target + ": no such device or directory");
  // A directory, a file, or a FUSE mount whose process died (stat fails with ENOTCONN).
  OVBD_ASSIGN_OR_RETURN(std::string run_dir, fuse::FindRunDirByPath(fuse::AbsolutePath(target)));
  OVBD_ASSIGN_OR_RETURN(fuse::AttachState state, fuse::ReadState(run_dir));
  return Located{run_dir, std::move(state)};
}

std::vector<std::string> RunDirNames(const Located& at) {
  std::vector<std::string> names = {fuse::kStateFile, fuse::kResultFile, fuse::kDetachingFile, fuse::kControlFile};
  if (at.state.mountpoint == at.run_dir + "/" + fuse::kMountDir) names.push_back(fuse::kMountDir);
  return names;
}

// The process died without cleaning up: undo what it left (loop binding, mount, directory).
Status CleanUpAfterDeadProcess(const Located& at) {
  if (!at.state.device.empty()) (void)fuse::ClearLoopDevice(at.state.device);
  ::umount2(at.state.mountpoint.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW);
  fuse::RemoveRunDirEntries(at.run_dir, RunDirNames(at));
  return Status::IOError("the attach process " + std::to_string(at.state.pid) +
                         " is gone (killed?); removed what it left behind (" +
                         (at.state.device.empty() ? at.state.mountpoint : at.state.device) +
                         "); writes it had not flushed may be lost");
}

Status CheckNotInUse(const fuse::AttachState& s) {
  if (s.device.empty()) return Status::OK();
  OVBD_ASSIGN_OR_RETURN(bool busy, fuse::BlockDeviceBusy(s.device));
  if (busy) {
    return Status::InvalidArgument(s.device + " is in use (mounted, or held open exclusively); unmount it first");
  }
  return Status::OK();
}

Status MarkDetaching(const std::string& run_dir) {
  const std::string marker = run_dir + "/" + fuse::kDetachingFile;
  const int fd = ::open(marker.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0 && errno == EEXIST) return Status::AlreadyExists("another 'ovbd detach' is already stopping it");
  if (fd < 0) return Status::FromErrno(errno, "create " + marker);
  ::close(fd);
  return Status::OK();
}

bool WaitForExit(const fuse::AttachState& s, unsigned timeout_s) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  while (fuse::ProcessAlive(s)) {
    if (timeout_s != 0 && std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

}  // namespace

Status RunDetach(const std::string& target, unsigned timeout_s) {
  OVBD_ASSIGN_OR_RETURN(Located at, Locate(target));
  const fuse::AttachState& s = at.state;
  if (!fuse::ProcessAlive(s)) return CleanUpAfterDeadProcess(at);
  OVBD_RETURN_IF_ERROR(CheckNotInUse(s));
  OVBD_RETURN_IF_ERROR(MarkDetaching(at.run_dir));
  if (::kill(s.pid, SIGTERM) != 0) {
    Status err = Status::FromErrno(errno, "signal attach process " + std::to_string(s.pid));
    fuse::RemoveRunDirEntries(at.run_dir, {fuse::kDetachingFile});
    return err;
  }
  if (!WaitForExit(s, timeout_s)) {
    fuse::RemoveRunDirEntries(at.run_dir, {fuse::kDetachingFile});  // it cleans up by itself when it ends
    return Status::IOError("the attach process " + std::to_string(s.pid) + " did not end within " +
                           std::to_string(timeout_s) + " s; is " + s.file +
                           " still open? It stops once the file is released (send SIGTERM again to force)");
  }
  Status result = fuse::ReadResult(at.run_dir);
  if (result.IsNotFound()) result = Status::IOError("the attach process ended without reporting its final flush");
  fuse::RemoveRunDirEntries(at.run_dir, RunDirNames(at));
  return result.WithContext(s.device.empty() ? s.file : s.device);
}

}  // namespace ovbd::cli
