// POSIX implementations of ReadableFile, RandomRWFile and WritableFile.
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <mutex>

#include "ovbd/io.h"

namespace ovbd {
namespace {

Status PreadFull(int fd, const std::string& name, uint64_t offset, std::span<uint8_t> buf) {
  size_t done = 0;
  while (done < buf.size()) {
    ssize_t n = ::pread(fd, buf.data() + done, buf.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, name + ": read at offset " + std::to_string(offset + done));
    }
    if (n == 0) {
      return Status::OutOfRange(name + ": unexpected end of file at offset " +
                                std::to_string(offset + done));
    }
    done += static_cast<size_t>(n);
  }
  return Status::OK();
}

Status PwriteFull(int fd, const std::string& name, uint64_t offset, std::span<const uint8_t> buf) {
  size_t done = 0;
  while (done < buf.size()) {
    ssize_t n = ::pwrite(fd, buf.data() + done, buf.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, name + ": write at offset " + std::to_string(offset + done));
    }
    done += static_cast<size_t>(n);
  }
  return Status::OK();
}

Result<uint64_t> FdSize(int fd, const std::string& name) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return Status::FromErrno(errno, name + ": stat");
  if (S_ISBLK(st.st_mode)) {
    uint64_t bytes = 0;
    if (::ioctl(fd, BLKGETSIZE64, &bytes) != 0) return Status::FromErrno(errno, name + ": BLKGETSIZE64");
    return bytes;
  }
  return static_cast<uint64_t>(st.st_size);
}

class PosixReadableFile final : public ReadableFile {
 public:
  PosixReadableFile(int fd, std::string name, uint64_t size) : fd_(fd), name_(std::move(name)), size_(size) {}
  ~PosixReadableFile() override { ::close(fd_); }

  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) const override {
    if (offset > size_ || buf.size() > size_ - offset) {
      return Status::OutOfRange(name_ + ": read of " + std::to_string(buf.size()) + " bytes at offset " +
                                std::to_string(offset) + " is past the end (" + std::to_string(size_) + ")");
    }
    return PreadFull(fd_, name_, offset, buf);
  }
  uint64_t Size() const override { return size_; }
  const std::string& Name() const override { return name_; }
  void Prefetch(uint64_t offset, uint64_t length) const override {
    (void)::posix_fadvise(fd_, static_cast<off_t>(offset), static_cast<off_t>(length), POSIX_FADV_WILLNEED);
  }

 private:
  int fd_;
  std::string name_;
  uint64_t size_;
};

class PosixRWFile final : public RandomRWFile {
 public:
  PosixRWFile(int fd, std::string name, uint64_t size) : fd_(fd), name_(std::move(name)), size_(size) {}
  ~PosixRWFile() override { ::close(fd_); }

  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) const override {
    uint64_t size = size_.load();
    if (offset > size || buf.size() > size - offset) {
      return Status::OutOfRange(name_ + ": read of " + std::to_string(buf.size()) + " bytes at offset " +
                                std::to_string(offset) + " is past the end (" + std::to_string(size) + ")");
    }
    return PreadFull(fd_, name_, offset, buf);
  }
  uint64_t Size() const override { return size_.load(); }
  const std::string& Name() const override { return name_; }

  Status WriteAt(uint64_t offset, std::span<const uint8_t> buf) override {
    OVBD_RETURN_IF_ERROR(PwriteFull(fd_, name_, offset, buf));
    uint64_t end = offset + buf.size();
    uint64_t cur = size_.load();
    while (end > cur && !size_.compare_exchange_weak(cur, end)) {
    }
    return Status::OK();
  }
  Status Truncate(uint64_t size) override {
    if (::ftruncate(fd_, static_cast<off_t>(size)) != 0) {
      return Status::FromErrno(errno, name_ + ": truncate to " + std::to_string(size));
    }
    size_.store(size);
    return Status::OK();
  }
  Status Trim(uint64_t offset, uint64_t length) override {
    if (length == 0) return Status::OK();
    if (::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                    static_cast<off_t>(length)) == 0) {
      return Status::OK();
    }
    if (errno != EOPNOTSUPP && errno != ENOSYS) {
      return Status::FromErrno(errno, name_ + ": punch hole at offset " + std::to_string(offset));
    }
    // The storage cannot punch holes (e.g. a block device): write zeros instead.
    std::vector<uint8_t> zeros(std::min<uint64_t>(length, 1 << 20));
    for (uint64_t done = 0; done < length;) {
      uint64_t n = std::min<uint64_t>(zeros.size(), length - done);
      OVBD_RETURN_IF_ERROR(PwriteFull(fd_, name_, offset + done, std::span(zeros.data(), n)));
      done += n;
    }
    return Status::OK();
  }
  Status Reserve(uint64_t offset, uint64_t length) override {
    if (length == 0) return Status::OK();
    if (::fallocate(fd_, FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset), static_cast<off_t>(length)) == 0) {
      return Status::OK();
    }
    if (errno == EOPNOTSUPP || errno == ENOSYS) return Status::NotSupported(name_ + ": cannot reserve storage");
    return Status::FromErrno(errno, name_ + ": reserving " + std::to_string(length) + " bytes at offset " +
                                        std::to_string(offset));
  }
  Status Sync() override {
    if (::fdatasync(fd_) != 0) return Status::FromErrno(errno, name_ + ": fdatasync");
    return Status::OK();
  }

 private:
  int fd_;
  std::string name_;
  std::atomic<uint64_t> size_;
};

class PosixWritableFile final : public WritableFile {
 public:
  PosixWritableFile(int fd, std::string name, bool owned, bool seekable)
      : fd_(fd), name_(std::move(name)), owned_(owned), seekable_(seekable) {
    buf_.reserve(kBufferSize);
  }
  ~PosixWritableFile() override { (void)Close(); }

  Status Append(std::span<const uint8_t> data) override {
    if (closed_) return Status::InvalidArgument(name_ + ": append after close");
    if (buf_.size() + data.size() > kBufferSize) {
      OVBD_RETURN_IF_ERROR(FlushBuffer());
      if (data.size() >= kBufferSize) {  // large writes go straight through
        OVBD_RETURN_IF_ERROR(WriteOut(data));
        pos_ += data.size();
        return Status::OK();
      }
    }
    buf_.insert(buf_.end(), data.begin(), data.end());
    pos_ += data.size();
    return Status::OK();
  }
  uint64_t Position() const override { return pos_; }
  bool Seekable() const override { return seekable_; }
  Status Rewrite(uint64_t offset, std::span<const uint8_t> data) override {
    if (!seekable_) return Status::NotSupported(name_ + ": output is not seekable (a pipe?)");
    if (offset > pos_ || data.size() > pos_ - offset) {
      return Status::InvalidArgument(name_ + ": rewrite beyond the bytes written");
    }
    OVBD_RETURN_IF_ERROR(FlushBuffer());
    return PwriteFull(fd_, name_, offset, data);
  }
  Status Sync() override {
    OVBD_RETURN_IF_ERROR(FlushBuffer());
    if (seekable_ && ::fdatasync(fd_) != 0) return Status::FromErrno(errno, name_ + ": fdatasync");
    return Status::OK();
  }
  Status Close() override {
    if (closed_) return Status::OK();
    Status s = FlushBuffer();
    closed_ = true;
    if (owned_ && ::close(fd_) != 0 && s.ok()) s = Status::FromErrno(errno, name_ + ": close");
    return s;
  }
  const std::string& Name() const override { return name_; }

 private:
  static constexpr size_t kBufferSize = 1 << 20;

  Status FlushBuffer() {
    if (buf_.empty()) return Status::OK();
    Status s = WriteOut(buf_);
    buf_.clear();
    return s;
  }
  Status WriteOut(std::span<const uint8_t> data) {
    // Sequential write at the file position (works for pipes too).
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::write(fd_, data.data() + done, data.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        return Status::FromErrno(errno, name_ + ": write");
      }
      done += static_cast<size_t>(n);
    }
    return Status::OK();
  }

  int fd_;
  std::string name_;
  bool owned_;
  bool seekable_;
  bool closed_ = false;
  uint64_t pos_ = 0;
  std::vector<uint8_t> buf_;
};

}  // namespace

Result<std::unique_ptr<ReadableFile>> OpenReadableFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, path);
  auto size = FdSize(fd, path);
  if (!size.ok()) {
    ::close(fd);
    return size.status();
  }
  return std::unique_ptr<ReadableFile>(new PosixReadableFile(fd, path, *size));
}

Result<std::unique_ptr<RandomRWFile>> OpenRandomRWFile(const std::string& path, RWOpenOptions opts) {
  int flags = O_RDWR | O_CLOEXEC;
  if (opts.create) flags |= O_CREAT;
  if (opts.exclusive) flags |= O_EXCL;
  if (opts.truncate) flags |= O_TRUNC;
  int fd = ::open(path.c_str(), flags, 0644);
  if (fd < 0) return Status::FromErrno(errno, path);
  auto size = FdSize(fd, path);
  if (!size.ok()) {
    ::close(fd);
    return size.status();
  }
  return std::unique_ptr<RandomRWFile>(new PosixRWFile(fd, path, *size));
}

Result<std::unique_ptr<WritableFile>> CreateWritableFile(const std::string& path, bool overwrite) {
  if (path == "-") {
    struct stat st;
    bool seekable = ::fstat(STDOUT_FILENO, &st) == 0 && S_ISREG(st.st_mode);
    return std::unique_ptr<WritableFile>(new PosixWritableFile(STDOUT_FILENO, "<stdout>", false, seekable));
  }
  int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (overwrite ? O_TRUNC : O_EXCL);
  int fd = ::open(path.c_str(), flags, 0644);
  if (fd < 0) return Status::FromErrno(errno, path);
  struct stat st;
  bool seekable = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  return std::unique_ptr<WritableFile>(new PosixWritableFile(fd, path, true, seekable));
}

}  // namespace ovbd
