// FuseExport's life: mount, serve on libfuse's multi-threaded loop, stop.
//
//   Start:    fuse_session_new ─> fuse_session_mount ─> loop thread (fuse_session_loop_mt)
//             ─> stat(file) as a round trip: when Start returns, requests are being served
//   Shutdown: umount(2) retried while EBUSY (the file is open, e.g. by a
//             loop device) ─> the kernel tears the connection down with the superblock, every
//             session thread's read of /dev/fuse fails with ENODEV and the loop returns
//             ─> join ─> Flush
//   Abort:    umount(MNT_FORCE) aborts the connection even while busy (FUSE's umount_begin),
//             then umount(MNT_DETACH) takes the mount out of the namespace.
//
// Why not fuse_session_unmount(): it closes the /dev/fuse descriptor while the session threads
// still read from it, and unmounts lazily, so we could neither wait for users nor report EBUSY.
// It is only the fallback when umount(2) is not permitted (a non-root mount via fusermount3).
#include "export/fuse/fuse_export.h"

#include <pthread.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <mutex>
#include <optional>
#include <thread>

#include "export/fuse/fuse_ops.h"

namespace ovbd::fuse {
namespace {

// libfuse reports mount problems only through its log; keep the last message for our errors.
std::mutex g_log_mu;
std::string g_last_log;

void CaptureLog(enum fuse_log_level level, const char* fmt, va_list ap) {
  char line[512];
  vsnprintf(line, sizeof(line), fmt, ap);
  std::string text(line);
  while (!text.empty() && text.back() == '\n') text.pop_back();
  if (level <= FUSE_LOG_ERR) {
    std::lock_guard<std::mutex> lock(g_log_mu);
    g_last_log = text;
  }
  std::fprintf(stderr, "%s\n", text.c_str());
}

std::string TakeLastLog() {
  std::lock_guard<std::mutex> lock(g_log_mu);
  std::string out = g_last_log.empty() ? "see the messages above" : g_last_log;
  g_last_log.clear();
  return out;
}

Status CheckOptions(const std::string& mountpoint, const FuseExportOptions& o) {
  if (o.file_name.empty() || o.file_name == "." || o.file_name == ".." ||
      o.file_name.find('/') != std::string::npos || o.file_name.size() > 255) {
    return Status::InvalidArgument("bad file name '" + o.file_name + "'");
  }
  if (o.max_threads == 0 || o.max_io < 4096 || o.max_io > (1u << 20)) {
    return Status::InvalidArgument("max_threads must be > 0 and max_io in [4 KiB, 1 MiB]");
  }
  struct stat st {};
  if (::stat(mountpoint.c_str(), &st) != 0) return Status::FromErrno(errno, mountpoint);
  if (!S_ISDIR(st.st_mode)) return Status::InvalidArgument(mountpoint + ": not a directory");
  return Status::OK();
}

std::string MountOptions(const FileSystem& fs) {
  std::string o = "fsname=ovbd,subtype=ovbd,default_permissions,max_read=" + std::to_string(fs.max_io);
  if (fs.read_only) o += ",ro";
  return o;
}

void BlockStopSignals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2}) sigaddset(&set, sig);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

}  // namespace

struct FuseExport::State {
  FileSystem fs;
  std::string mountpoint;
  std::string file_path;
  unsigned max_threads = 8;
  std::function<void()> on_session_end;
  fuse_session* session = nullptr;
  std::thread loop;
  std::atomic<bool> ended{false};
  std::atomic<bool> abort_requested{false};
  std::mutex shutdown_mu;          // one Shutdown at a time
  std::optional<Status> result;    // set when Shutdown completed

  void RunLoop() {
    BlockStopSignals();  // signals are for the process's own handling thread
    fuse_loop_config* config = fuse_loop_cfg_create();
    fuse_loop_cfg_set_max_threads(config, max_threads);
    fuse_loop_cfg_set_clone_fd(config, 0);
    fuse_session_loop_mt(session, config);
    fuse_loop_cfg_destroy(config);
    ended.store(true);
    if (on_session_end) on_session_end();
  }

  // umount(2) as soon as nobody holds the file; returns when the mount is gone or Abort() ran.
  void UnmountWhenUnused() {
    for (;;) {
      if (::umount2(mountpoint.c_str(), UMOUNT_NOFOLLOW) == 0) return;
      if (errno == EPERM) {  // not ours to umount(2): libfuse's fusermount3 path (lazy)
        fuse_session_unmount(session);
        return;
      }
      if (errno != EBUSY || abort_requested.load()) return;  // EINVAL: already unmounted
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
};

FuseExport::FuseExport(std::unique_ptr<State> state) : state_(std::move(state)) {}

Result<std::unique_ptr<FuseExport>> FuseExport::Start(std::shared_ptr<BlockDevice> device,
                                                      const std::string& mountpoint, FuseExportOptions options) {
  OVBD_RETURN_IF_ERROR(CheckOptions(mountpoint, options));
  static std::once_flag log_once;
  std::call_once(log_once, [] { fuse_set_log_func(CaptureLog); });
  auto st = std::make_unique<State>();
  FileSystem& fs = st->fs;
  fs.size = device->Size();
  fs.read_only = options.read_only || !device->Capabilities().writable;
  fs.device = std::move(device);
  fs.file_name = options.file_name;
  fs.max_io = options.max_io;
  fs.uid = ::getuid();
  fs.gid = ::getgid();
  clock_gettime(CLOCK_REALTIME, &fs.mounted_at);
  st->mountpoint = mountpoint;
  st->file_path = mountpoint + "/" + options.file_name;
  st->max_threads = options.max_threads;
  st->on_session_end = std::move(options.on_session_end);

  const std::string mount_options = MountOptions(fs);
  const char* argv[] = {"ovbd", "-o", mount_options.c_str()};
  fuse_args args = FUSE_ARGS_INIT(3, const_cast<char**>(argv));
  st->session = fuse_session_new(&args, &Operations(), sizeof(fuse_lowlevel_ops), &st->fs);
  fuse_opt_free_args(&args);
  if (st->session == nullptr) return Status::IOError("FUSE session: " + TakeLastLog());
  if (fuse_session_mount(st->session, mountpoint.c_str()) != 0) {
    fuse_session_destroy(st->session);
    return Status::IOError("mount FUSE at " + mountpoint + ": " + TakeLastLog());
  }
  State* raw = st.get();
  st->loop = std::thread([raw] { raw->RunLoop(); });
  std::unique_ptr<FuseExport> out(new FuseExport(std::move(st)));
  struct stat probe {};
  if (::stat(out->file_path().c_str(), &probe) != 0) {
    Status s = Status::FromErrno(errno, "FUSE mount at " + mountpoint + " does not answer");
    out.reset();  // aborts and unmounts
    return s;
  }
  return out;
}

FuseExport::~FuseExport() {
  bool done = false;
  {
    std::lock_guard<std::mutex> lock(state_->shutdown_mu);
    done = state_->result.has_value();
  }
  if (!done) {
    Abort();
    (void)Shutdown();
  }
  // The connection is gone, so this only closes /dev/fuse and frees libfuse's copy of the
  // mountpoint (fuse_session_destroy does not).
  fuse_session_unmount(state_->session);
  fuse_session_destroy(state_->session);
}

const std::string& FuseExport::mountpoint() const { return state_->mountpoint; }
const std::string& FuseExport::file_path() const { return state_->file_path; }
bool FuseExport::read_only() const { return state_->fs.read_only; }
Status FuseExport::SetSize(uint64_t size) {
  state_->fs.size.store(size);
  if (state_->ended.load()) return Status::OK();
  const int rc = fuse_lowlevel_notify_inval_inode(state_->session, kFileIno, -1, 0);
  if (rc != 0 && rc != -ENOENT) return Status::FromErrno(-rc, "FUSE attribute invalidation of " + file_path());
  struct stat st {};
  if (::stat(file_path().c_str(), &st) != 0) return Status::FromErrno(errno, "stat " + file_path());
  if (static_cast<uint64_t>(st.st_size) != size) {
    return Status::IOError(file_path() + ": the kernel still sees " + std::to_string(st.st_size) + " bytes, not " +
                           std::to_string(size));
  }
  return Status::OK();
}

bool FuseExport::Ended() const { return state_->ended.load(); }

Status FuseExport::Shutdown() {
  std::lock_guard<std::mutex> lock(state_->shutdown_mu);
  if (state_->result) return *state_->result;
  // No fuse_session_exit() first: libfuse drops requests that arrive after it unanswered, and
  // the file may still be in use. The unmount itself ends the session (ENODEV).
  state_->UnmountWhenUnused();
  if (state_->loop.joinable()) state_->loop.join();
  FileSystem& fs = state_->fs;
  Status flushed = fs.read_only ? Status::OK() : fs.device->Flush();
  state_->result = flushed.WithContext("flush of " + fs.device->Name());
  return *state_->result;
}

void FuseExport::Abort() {
  state_->abort_requested.store(true);
  const char* mnt = state_->mountpoint.c_str();
  ::umount2(mnt, MNT_FORCE | UMOUNT_NOFOLLOW);  // aborts the connection even when busy
  ::umount2(mnt, MNT_DETACH | UMOUNT_NOFOLLOW);
}

}  // namespace ovbd::fuse
