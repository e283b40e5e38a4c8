// The attach process: set up export + loop device, wait for a stop signal, stop cleanly.
#include "cli/attach_serve.h"

#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <thread>

#include "export/control/control_server.h"
#include "export/fuse/attach_state.h"
#include "export/fuse/fuse_export.h"
#include "export/fuse/loop_device.h"

namespace ovbd::cli {
namespace {

constexpr int kSessionEnded = SIGUSR1;  // sent by the FUSE session thread when the mount went away
constexpr int kStopped = SIGUSR2;       // sent by the stopping thread when Shutdown returned

sigset_t AttachSignals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, kSessionEnded, kStopped}) sigaddset(&set, sig);
  return set;
}

// Everything the attach process owns, released in reverse order on any failure.
struct Attached {
  std::string run_dir;
  bool own_mountpoint = false;  // run dir/mnt, ours to remove
  std::unique_ptr<fuse::FuseExport> exported;
  std::unique_ptr<fuse::LoopDevice> loop;
  std::unique_ptr<control::ControlServer> control;  // stopped first: its requests use the rest

  ~Attached() {
    control.reset();
    loop.reset();
    exported.reset();
    if (!run_dir.empty()) {
      fuse::RemoveRunDirEntries(run_dir, {fuse::kStateFile, fuse::kControlFile, own_mountpoint ? fuse::kMountDir : ""});
    }
  }
};

Result<std::string> PrepareMountpoint(const AttachOptions& o, Attached* a) {
  if (!o.fuse_only.empty()) return fuse::AbsolutePath(o.fuse_only);
  const std::string mnt = a->run_dir + "/" + fuse::kMountDir;
  if (::mkdir(mnt.c_str(), 0700) != 0) return Status::FromErrno(errno, "mkdir " + mnt);
  a->own_mountpoint = true;
  return mnt;
}

std::vector<std::string> AbsolutePaths(std::vector<std::string> paths) {
  for (std::string& p : paths) p = fuse::AbsolutePath(p);
  return paths;
}

// The control socket: the volume's requests; a resize also grows the FUSE file and the loop
// device (what `losetup -c` would do), so `resize2fs` on the device works at once.
Status StartControl(const AttachedImage& img, Attached* a, AttachReady* ready) {
  volume::Volume* v = img.volume;
  v->OnResize([a](uint64_t size) {
    Status s = a->exported->SetSize(size);
    if (s.ok() && a->loop) s = a->loop->SetCapacity();
    if (!s.ok()) std::fprintf(stderr, "ovbd attach: resize to %llu: %s\n", static_cast<unsigned long long>(size),
                              s.ToString().c_str());
  });
  ready->control = a->run_dir + "/" + fuse::kControlFile;
  auto handler = [v, ready_copy = *ready](const nlohmann::json& request) -> nlohmann::json {
    Result<nlohmann::json> reply = v->Control(request);
    if (!reply.ok()) return {{"ok", false}, {"error", reply.status().message()}};
    nlohmann::json j = std::move(reply).value();
    if (request.value("command", std::string()) == "status") {
      j["attach"] = {{"device", ready_copy.device}, {"file", ready_copy.file}, {"pid", ready_copy.pid}};
    }
    j["ok"] = true;
    return j;
  };
  OVBD_ASSIGN_OR_RETURN(a->control, control::ControlServer::Start(ready->control, handler));
  return Status::OK();
}

Status SetUp(const AttachedImage& img, const AttachOptions& o, Attached* a, AttachReady* ready) {
  fuse::RemoveStaleRunDirs();
  OVBD_ASSIGN_OR_RETURN(a->run_dir, fuse::CreateRunDir());
  OVBD_ASSIGN_OR_RETURN(std::string mnt, PrepareMountpoint(o, a));
  fuse::FuseExportOptions fo;
  fo.on_session_end = [] { ::kill(::getpid(), kSessionEnded); };
  OVBD_ASSIGN_OR_RETURN(a->exported, fuse::FuseExport::Start(img.device, mnt, std::move(fo)));
  ready->file = a->exported->file_path();
  if (o.fuse_only.empty()) {
    fuse::LoopOptions lo{o.block_size, a->exported->read_only(), o.direct_io};
    OVBD_ASSIGN_OR_RETURN(a->loop, fuse::LoopDevice::Attach(ready->file, lo));
    ready->device = a->loop->path();
    ready->direct_io = a->loop->direct_io();
    ready->block_size = a->loop->block_size();
  }
  ready->run_dir = a->run_dir;
  ready->pid = ::getpid();
  if (img.volume != nullptr) OVBD_RETURN_IF_ERROR(StartControl(img, a, ready));
  fuse::AttachState state{ready->pid,
                          0,
                          ready->file,
                          mnt,
                          ready->device,
                          a->exported->read_only(),
                          AbsolutePaths(img.layers),
                          img.upper.empty() ? "" : fuse::AbsolutePath(img.upper)};
  OVBD_ASSIGN_OR_RETURN(state.start_time, fuse::ProcessStartTime(ready->pid));
  return fuse::WriteState(a->run_dir, state);
}

int WaitSignal(const sigset_t& set) {
  int sig = 0;
  while (sigwait(&set, &sig) != 0) {
  }
  return sig;
}

// Unbinds the loop device and shuts the export down on a helper thread, so that a second stop
// signal can still abort a Shutdown that waits for the file to be released.
Status Stop(Attached* a, const sigset_t& set) {
  Status unbound = a->loop ? a->loop->Detach() : Status::OK();
  Status stopped;
  std::thread stopper([&] {
    stopped = a->exported->Shutdown();
    ::kill(::getpid(), kStopped);
  });
  for (int sig = WaitSignal(set); sig != kStopped; sig = WaitSignal(set)) {
    if (sig != kSessionEnded) a->exported->Abort();
  }
  stopper.join();
  OVBD_RETURN_IF_ERROR(unbound);
  return stopped;
}

}  // namespace

Status ServeAttached(const AttachedImage& img, const AttachOptions& options,
                     const std::function<void(const AttachReady&)>& ready) {
  const sigset_t set = AttachSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  Attached a;
  AttachReady info;
  OVBD_RETURN_IF_ERROR(SetUp(img, options, &a, &info));
  ready(info);
  WaitSignal(set);
  if (img.volume != nullptr) img.volume->CancelJob();
  a.control.reset();
  Status stopped = Stop(&a, set);
  (void)fuse::WriteResult(a.run_dir, stopped);
  struct stat st {};
  const bool detach_collects = ::stat((a.run_dir + "/" + fuse::kDetachingFile).c_str(), &st) == 0;
  if (!detach_collects) {
    fuse::RemoveRunDirEntries(a.run_dir, {fuse::kResultFile});  // nobody will read it
  }
  a.loop.reset();
  a.exported.reset();
  fuse::RemoveRunDirEntries(a.run_dir, {fuse::kStateFile, fuse::kControlFile, a.own_mountpoint ? fuse::kMountDir : ""});
  a.run_dir.clear();
  return stopped;
}

}  // namespace ovbd::cli
