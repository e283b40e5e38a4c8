// Temporary name, optional sync, rename (or link when nothing may be replaced), optional sync
// of the directory: the one place that moves an output into place.
//
// Why the directory sync: fdatasync makes the file's blocks durable, but the rename is a change
// to the directory; without fsync of the directory a power cut can leave the old name (or none)
// even though the file's data is on disk.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "ovbd/io.h"

namespace ovbd {

Result<std::unique_ptr<AtomicFile>> AtomicFile::Create(const std::string& path, const AtomicFileOptions& options) {
  struct stat st{};
  if (!options.replace && ::lstat(path.c_str(), &st) == 0) return Status::AlreadyExists(path + ": already exists");
  std::string temp = path + options.temp_suffix;
  OVBD_ASSIGN_OR_RETURN(auto file, CreateWritableFile(temp, /*overwrite=*/true));
  return Adopt(path, std::move(temp), std::move(file), options);
}

std::unique_ptr<AtomicFile> AtomicFile::Adopt(std::string path, std::string temp_path,
                                              std::unique_ptr<WritableFile> temp_file,
                                              const AtomicFileOptions& options) {
  return std::unique_ptr<AtomicFile>(new AtomicFile(std::move(path), std::move(temp_path), std::move(temp_file), options));
}

AtomicFile::~AtomicFile() {
  if (committed_) return;
  if (file_) (void)file_->Close();
  ::unlink(temp_.c_str());
}

Status AtomicFile::Commit() {
  if (committed_) return Status::OK();
  if (options_.sync) OVBD_RETURN_IF_ERROR(file_->Sync());
  OVBD_RETURN_IF_ERROR(file_->Close());
  OVBD_RETURN_IF_ERROR(MoveIntoPlace());
  committed_ = true;  // named now: a failed directory sync must not remove it
  if (options_.sync) OVBD_RETURN_IF_ERROR(SyncParentDirectory(path_));
  return Status::OK();
}

Status AtomicFile::MoveIntoPlace() {
  if (!options_.replace) {
    // link() fails if PATH appeared meanwhile: never replace a file the caller did not give up.
    if (::link(temp_.c_str(), path_.c_str()) == 0) {
      ::unlink(temp_.c_str());
      return Status::OK();
    }
    if (errno == EEXIST) return Status::AlreadyExists(path_ + ": already exists");
    // A file system without hard links: fall back to rename.
  }
  if (::rename(temp_.c_str(), path_.c_str()) != 0) {
    return Status::FromErrno(errno, "rename " + temp_ + " -> " + path_);
  }
  return Status::OK();
}

Status WriteFileAtomically(const std::string& path, std::span<const uint8_t> bytes, const AtomicFileOptions& options) {
  OVBD_ASSIGN_OR_RETURN(auto file, AtomicFile::Create(path, options));
  OVBD_RETURN_IF_ERROR(file->file()->Append(bytes));
  return file->Commit();
}

Status SyncParentDirectory(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, dir + ": open directory");
  Status s;
  if (::fsync(fd) != 0) s = Status::FromErrno(errno, dir + ": fsync of the directory");
  ::close(fd);
  return s;
}

Status SyncFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, path);
  Status s;
  if (::fdatasync(fd) != 0) s = Status::FromErrno(errno, path + ": fdatasync");
  ::close(fd);
  return s;
}

}  // namespace ovbd
