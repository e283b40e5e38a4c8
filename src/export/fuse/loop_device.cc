// Loop device binding through LOOP_CONFIGURE, and the sysfs look-ups `detach` needs.
#include "export/fuse/loop_device.h"

#include <fcntl.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace ovbd::fuse {
namespace {

constexpr int kAttempts = 16;  // LOOP_CTL_GET_FREE races with other losetup users

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

Result<std::string> ReadSmallFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::NotFound(path + ": cannot read");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

loop_config MakeConfig(int file_fd, const std::string& file, const LoopOptions& o, bool dio) {
  loop_config config{};
  config.fd = static_cast<uint32_t>(file_fd);
  config.block_size = o.block_size;
  config.info.lo_flags = LO_FLAGS_AUTOCLEAR | (o.read_only ? LO_FLAGS_READ_ONLY : 0) | (dio ? LO_FLAGS_DIRECT_IO : 0);
  std::strncpy(reinterpret_cast<char*>(config.info.lo_file_name), file.c_str(), LO_NAME_SIZE - 1);
  return config;
}

// Binds file_fd to loop device `n`: the open device fd, or -errno (EBUSY: taken meanwhile).
int ConfigureLoop(int n, int file_fd, const std::string& file, const LoopOptions& o) {
  const std::string path = "/dev/loop" + std::to_string(n);
  Fd dev(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (dev.get() < 0) return -errno;
  loop_config config = MakeConfig(file_fd, file, o, o.direct_io);
  int rc = ::ioctl(dev.get(), LOOP_CONFIGURE, &config);
  if (rc != 0 && errno == EINVAL && o.direct_io) {  // older kernels refuse direct I/O on some files
    config = MakeConfig(file_fd, file, o, false);
    rc = ::ioctl(dev.get(), LOOP_CONFIGURE, &config);
  }
  if (rc != 0) return -errno;
  return dev.release();
}

Status ValidateOptions(const LoopOptions& o) {
  const uint32_t b = o.block_size;
  if (b != 512 && b != 1024 && b != 2048 && b != 4096) {
    return Status::InvalidArgument("loop block size must be 512, 1024, 2048 or 4096");
  }
  return Status::OK();
}

constexpr unsigned kLoopMajor = 7;

// "/sys/dev/block/MAJ:MIN" of a loop device node.
Result<std::string> LoopSysfsDir(const std::string& device) {
  struct stat st {};
  if (::stat(device.c_str(), &st) != 0) return Status::NotFound(device + ": " + std::strerror(errno));
  if (!S_ISBLK(st.st_mode)) return Status::InvalidArgument(device + ": not a block device");
  if (major(st.st_rdev) != kLoopMajor) return Status::InvalidArgument(device + ": not a loop device");
  return "/sys/dev/block/" + std::to_string(major(st.st_rdev)) + ":" + std::to_string(minor(st.st_rdev));
}

// LOOP_CLR_FD while anyone else holds the device open (udev or blkid probing it after an
// unmount) only marks it to be cleared at the last close. Waits, bounded, until it is unbound, so
// that "detached" means what `losetup` will show. Call it after closing our own descriptor.
void WaitUnbound(const std::string& device) {
  auto dir = LoopSysfsDir(device);
  if (!dir.ok()) return;
  const std::string bound = *dir + "/loop";  // exists only while a file is bound
  for (int i = 0; i < 500 && ::access(bound.c_str(), F_OK) == 0; i++) ::usleep(10000);  // <= 5 s
}

}  // namespace

Result<std::unique_ptr<LoopDevice>> LoopDevice::Attach(const std::string& file, const LoopOptions& o) {
  OVBD_RETURN_IF_ERROR(ValidateOptions(o));
  Fd file_fd(::open(file.c_str(), (o.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC));
  if (file_fd.get() < 0) return Status::FromErrno(errno, "open " + file);
  Fd control(::open("/dev/loop-control", O_RDWR | O_CLOEXEC));
  if (control.get() < 0) return Status::FromErrno(errno, "open /dev/loop-control");
  int last_error = EBUSY;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    const int n = ::ioctl(control.get(), LOOP_CTL_GET_FREE);
    if (n < 0) return Status::FromErrno(errno, "no free loop device (LOOP_CTL_GET_FREE)");
    const int fd = ConfigureLoop(n, file_fd.get(), file, o);
    if (fd >= 0) {
      std::unique_ptr<LoopDevice> dev(new LoopDevice(fd, "/dev/loop" + std::to_string(n), o.block_size));
      auto dio = ReadSmallFile("/sys/block/loop" + std::to_string(n) + "/loop/dio");
      dev->direct_io_ = dio.ok() && *dio == "1";
      return dev;
    }
    last_error = -fd;
    if (last_error == ENOTTY) return Status::NotSupported("the kernel lacks LOOP_CONFIGURE (needs Linux 5.8)");
    if (last_error != EBUSY) {
      return Status::FromErrno(last_error, "bind " + file + " to /dev/loop" + std::to_string(n));
    }
  }
  return Status::FromErrno(last_error, "bind " + file + " to a loop device: all candidates were taken");
}

LoopDevice::~LoopDevice() { (void)Detach(); }

Status LoopDevice::SetCapacity() {
  if (fd_ < 0) return Status::InvalidArgument(path_ + ": not attached");
  if (::ioctl(fd_, LOOP_SET_CAPACITY, 0) != 0) return Status::FromErrno(errno, "LOOP_SET_CAPACITY on " + path_);
  return Status::OK();
}

Status LoopDevice::Detach() {
  if (fd_ < 0) return Status::OK();
  Status s;
  if (::ioctl(fd_, LOOP_CLR_FD) != 0 && errno != ENXIO) s = Status::FromErrno(errno, "detach " + path_);
  ::close(fd_);
  fd_ = -1;
  if (s.ok()) WaitUnbound(path_);
  return s;
}

Result<std::string> LoopBackingFile(const std::string& device) {
  OVBD_ASSIGN_OR_RETURN(std::string dir, LoopSysfsDir(device));
  auto backing = ReadSmallFile(dir + "/loop/backing_file");  // loop/ exists only while bound
  if (!backing.ok()) return Status::NotFound(device + ": loop device is not bound to a file");
  return *backing;
}

Status ClearLoopDevice(const std::string& device) {
  OVBD_RETURN_IF_ERROR(LoopSysfsDir(device).status());
  {
    Fd fd(::open(device.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) return Status::FromErrno(errno, "open " + device);
    if (::ioctl(fd.get(), LOOP_CLR_FD) != 0 && errno != ENXIO) return Status::FromErrno(errno, "detach " + device);
  }
  WaitUnbound(device);
  return Status::OK();
}

Result<bool> BlockDeviceBusy(const std::string& device) {
  const int fd = ::open(device.c_str(), O_RDONLY | O_EXCL | O_CLOEXEC);
  if (fd >= 0) {
    ::close(fd);
    return false;
  }
  if (errno == EBUSY) return true;
  return Status::FromErrno(errno, "open " + device);
}

}  // namespace ovbd::fuse
