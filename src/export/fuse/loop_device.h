// LoopDevice: a regular file (here: the FUSE export's file) bound to a kernel loop device.
//
//   /dev/loop-control ──LOOP_CTL_GET_FREE──> N
//   /dev/loopN ──LOOP_CONFIGURE{fd, block size, read-only, direct I/O, autoclear}──> bound
//   sysfs: /sys/dev/block/MAJ:MIN/loop/{backing_file, dio}   (who serves a device)
//
// The LoopDevice keeps /dev/loopN open for its whole life and binds it with LO_FLAGS_AUTOCLEAR:
// if the owning process dies, the kernel unbinds the device at its last close (at once if nobody
// uses it, else when its user, e.g. a mounted filesystem, lets go), so a crash leaves no stale
// loop device behind. Needs CAP_SYS_ADMIN and Linux >= 5.8 (LOOP_CONFIGURE).
//
// Not thread-safe: one owner calls Detach().
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "ovbd/status.h"

namespace ovbd::fuse {

struct LoopOptions {
  uint32_t block_size = 512;  // logical block size: 512, 1024, 2048 or 4096
  bool read_only = false;     // the file is opened O_RDONLY and the device is read-only
  bool direct_io = true;      // ask for direct I/O on the file; kept off if the kernel refuses
};

class LoopDevice {
 public:
  // Binds `file` to a free loop device (retrying if another process takes the same one).
  static Result<std::unique_ptr<LoopDevice>> Attach(const std::string& file, const LoopOptions& options);
  ~LoopDevice();  // Detach(), status dropped
  LoopDevice(const LoopDevice&) = delete;
  LoopDevice& operator=(const LoopDevice&) = delete;

  const std::string& path() const { return path_; }  // "/dev/loopN"
  bool direct_io() const { return direct_io_; }       // what the kernel actually enabled
  uint32_t block_size() const { return block_size_; }

  // Unbinds the device (LOOP_CLR_FD) and closes it. While the device is still open elsewhere
  // (mounted), the kernel unbinds it at that last close instead. Idempotent.
  Status Detach();
  // LOOP_SET_CAPACITY: the device takes the backing file's current size (after an online
  // resize; what `losetup -c` does).
  Status SetCapacity();

 private:
  LoopDevice(int fd, std::string path, uint32_t block_size) : fd_(fd), path_(std::move(path)), block_size_(block_size) {}
  int fd_ = -1;
  std::string path_;
  uint32_t block_size_ = 512;
  bool direct_io_ = false;
};

// The file a loop device is bound to (as the kernel shows it: /sys/.../loop/backing_file).
// InvalidArgument if `device` is not a loop block device, NotFound if it does not exist or is not
// bound to anything.
Result<std::string> LoopBackingFile(const std::string& device);

// Unbinds a loop device by path (LOOP_CLR_FD; deferred to its last close while it is in use).
// For cleaning up after a process that died; ok if it was not bound.
Status ClearLoopDevice(const std::string& device);

// True if a block device is held exclusively (mounted, swapped on, or opened with O_EXCL).
Result<bool> BlockDeviceBusy(const std::string& device);

}  // namespace ovbd::fuse
