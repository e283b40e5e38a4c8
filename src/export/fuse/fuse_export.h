// FuseExport: one BlockDevice as one regular file in a FUSE mount (libfuse3, low-level API).
//
//   MOUNTPOINT/            directory, 0755, read-only (no create, unlink, rename, ...)
//   MOUNTPOINT/image       regular file, size = device size, 0600 (0400 when read-only)
//
//   kernel (loop driver, dd, qemu, ...) ──/dev/fuse──> session threads ──> BlockDevice
//     read              -> Read            (short at end of file, 0 bytes past it)
//     write             -> Write(fua = O_SYNC|O_DSYNC on the handle)
//     fsync, fsyncdir   -> Flush
//     flush (on close)  -> Flush, only if this handle wrote something since its last flush
//     fallocate(PUNCH_HOLE|KEEP_SIZE) -> Trim       (the loop driver's discard)
//     fallocate(ZERO_RANGE[|KEEP_SIZE]) -> Zero(allow_hole = false)   (write-zeroes, NOUNMAP)
//     fallocate(0 | KEEP_SIZE) inside the file -> nothing to do (the space exists)
//     anything else: ENOSYS (no such op), EOPNOTSUPP (fallocate mode), EPERM (size, mode
//     and owner changes), EROFS/EACCES (writes to a read-only export)
//
// Every request is checked once here (offset, length, handle); device errors map to errno with
// Status::posix_errno(). The file is opened with direct_io: the page cache above (the loop device,
// a filesystem on it) already caches, so data is not cached twice.
//
// Thread model: the session runs on its own threads (libfuse's multi-threaded loop, up to
// max_threads); the device is called from all of them at once (BlockDevice is thread-safe).
// Start, Shutdown and Abort may be called from any thread, Shutdown and Abort concurrently with
// each other. Do not call Shutdown from a session thread (a device callback): it waits for them.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "ovbd/block_device.h"
#include "ovbd/status.h"

namespace ovbd::fuse {

struct FuseExportOptions {
  std::string file_name = "image";  // one path component: no '/', not "." or ".."
  bool read_only = false;           // serve read-only even if the device is writable
  unsigned max_threads = 8;         // session threads (libfuse's limit on concurrent requests)
  uint32_t max_io = 1u << 20;       // largest read/write request asked of the kernel (<= 1 MiB)
  // Called once, from a session thread, when the session ends for any reason (Shutdown, an
  // external umount, an aborted connection). Must not call Shutdown itself; it may signal a
  // thread that does.
  std::function<void()> on_session_end;
};

class FuseExport {
 public:
  // Mounts the export at `mountpoint` (an existing directory) and starts serving. When this
  // returns ok the file is usable. Fails with the cause (e.g. no /dev/fuse, not permitted).
  static Result<std::unique_ptr<FuseExport>> Start(std::shared_ptr<BlockDevice> device,
                                                   const std::string& mountpoint,
                                                   FuseExportOptions options = {});
  // If Shutdown() has not completed: Abort() then Shutdown() (status dropped), so destruction
  // never waits for users of the file. Call Shutdown() first for a graceful stop.
  ~FuseExport();
  FuseExport(const FuseExport&) = delete;
  FuseExport& operator=(const FuseExport&) = delete;

  const std::string& mountpoint() const;
  const std::string& file_path() const;  // mountpoint + "/" + file_name
  bool read_only() const;

  // Stops serving, gracefully: unmounts as soon as nobody holds the file open (polling; a loop
  // device bound to the file counts as holding it), waits for the session threads to finish,
  // then flushes the device. Returns the flush status (ok for a read-only export). Idempotent:
  // later calls return the first result. Blocks while the file stays open; Abort() ends that.
  Status Shutdown();
  // Forces the end: aborts the FUSE connection (current users of the file get ENOTCONN/EIO)
  // and unmounts. Returns at once; a running or later Shutdown() then completes.
  void Abort();
  // True once the session has ended (for any reason).
  bool Ended() const;
  // The file's new size after the device was resized (an online resize): the kernel's cached
  // attributes are invalidated and read again, so the next stat, and a loop device's
  // LOOP_SET_CAPACITY, see it.
  Status SetSize(uint64_t size);

 private:
  struct State;
  explicit FuseExport(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace ovbd::fuse
