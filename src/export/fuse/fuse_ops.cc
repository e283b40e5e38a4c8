// The handlers behind fuse_ops.h. Each one checks its request (inode, handle, range), calls the
// device at most once and replies exactly once. Requests come from the kernel, which already
// enforced permissions (default_permissions) and the ro mount flag; the range checks still stand
// because a request may race with nothing here but is never trusted to be in range.
#include "export/fuse/fuse_ops.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>

namespace ovbd::fuse {

namespace {

constexpr double kTimeout = 60.0;  // entry/attr cache: nothing ever changes but times
constexpr uint32_t kBlock = 4096;  // st_blksize, statfs f_bsize (the loop driver's discard granularity)

FileSystem& Fs(fuse_req_t req) { return *static_cast<FileSystem*>(fuse_req_userdata(req)); }
Handle& HandleOf(const fuse_file_info* fi) { return *reinterpret_cast<Handle*>(fi->fh); }

struct stat Attr(const FileSystem& fs, fuse_ino_t ino) {
  struct stat st {};
  st.st_ino = ino;
  st.st_uid = fs.uid;
  st.st_gid = fs.gid;
  st.st_atim = st.st_mtim = st.st_ctim = fs.mounted_at;
  st.st_blksize = kBlock;
  if (ino == FUSE_ROOT_ID) {
    st.st_mode = S_IFDIR | 0755;
    st.st_nlink = 2;
    return st;
  }
  st.st_mode = S_IFREG | (fs.read_only ? 0400 : 0600);
  st.st_nlink = 1;
  const uint64_t size = fs.size.load();
  st.st_size = static_cast<off_t>(size);
  st.st_blocks = static_cast<blkcnt_t>((size + 511) / 512);
  return st;
}

void ForgetHandle(FileSystem& fs, const fuse_file_info* fi) {
  std::lock_guard<std::mutex> lock(fs.handles_mu);
  fs.handles.erase(reinterpret_cast<Handle*>(fi->fh));
}

bool KnownIno(fuse_ino_t ino) { return ino == FUSE_ROOT_ID || ino == kFileIno; }

void ReplyStatus(fuse_req_t req, const Status& s) { fuse_reply_err(req, s.ok() ? 0 : s.posix_errno()); }

// The part of [off, off+len) inside the file: its length, 0 if it starts at or past the end.
uint64_t Clip(const FileSystem& fs, off_t off, uint64_t len) {
  const auto start = static_cast<uint64_t>(off);
  const uint64_t size = fs.size.load();
  if (start >= size) return 0;
  return std::min<uint64_t>(len, size - start);
}

void Init(void* userdata, fuse_conn_info* conn) {
  auto& fs = *static_cast<FileSystem*>(userdata);
  conn->max_write = fs.max_io;  // libfuse lowers it to what its buffers hold
  conn->max_read = fs.max_io;   // must repeat the max_read mount option
  conn->max_readahead = 0;   // direct_io: the kernel reads what it is asked, nothing more
  conn->max_background = 64; // async direct I/O from the loop driver in flight at once
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
}

void Lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  const FileSystem& fs = Fs(req);
  if (parent != FUSE_ROOT_ID || fs.file_name != name) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  fuse_entry_param e{};
  e.ino = kFileIno;
  e.generation = 1;
  e.attr = Attr(fs, kFileIno);
  e.attr_timeout = e.entry_timeout = kTimeout;
  fuse_reply_entry(req, &e);
}

void GetAttr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  if (!KnownIno(ino)) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  const struct stat st = Attr(Fs(req), ino);
  fuse_reply_attr(req, &st, kTimeout);
}

// Times may be "set" (touch works, nothing is stored); size, mode and owner are fixed.
void SetAttr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info*) {
  const FileSystem& fs = Fs(req);
  if (!KnownIno(ino)) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  const bool resize = (to_set & FUSE_SET_ATTR_SIZE) != 0 &&
                      (ino != kFileIno || static_cast<uint64_t>(attr->st_size) != fs.size.load());
  if (resize || (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) != 0) {
    fuse_reply_err(req, EPERM);
    return;
  }
  const struct stat st = Attr(fs, ino);
  fuse_reply_attr(req, &st, kTimeout);
}

void ReadDir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  const FileSystem& fs = Fs(req);
  if (ino != FUSE_ROOT_ID) {
    fuse_reply_err(req, ENOTDIR);
    return;
  }
  const struct {
    const char* name;
    fuse_ino_t ino;
  } entries[] = {{".", FUSE_ROOT_ID}, {"..", FUSE_ROOT_ID}, {fs.file_name.c_str(), kFileIno}};
  std::string buf(std::min<size_t>(size, 4096), '\0');
  size_t used = 0;
  for (off_t i = std::max<off_t>(off, 0); i < 3; ++i) {
    const struct stat st = Attr(fs, entries[i].ino);
    const size_t need = fuse_add_direntry(req, buf.data() + used, buf.size() - used, entries[i].name, &st, i + 1);
    if (need > buf.size() - used) break;
    used += need;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void Open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  const FileSystem& fs = Fs(req);
  if (ino != kFileIno) {
    fuse_reply_err(req, ino == FUSE_ROOT_ID ? EISDIR : ENOENT);
    return;
  }
  if (fs.read_only && (fi->flags & O_ACCMODE) != O_RDONLY) {
    fuse_reply_err(req, EROFS);
    return;
  }
  auto handle = std::make_unique<Handle>();
  fi->fh = reinterpret_cast<uint64_t>(handle.get());
  fi->direct_io = 1;
  fi->keep_cache = 0;
  {
    std::lock_guard<std::mutex> lock(Fs(req).handles_mu);
    Fs(req).handles.emplace(handle.get(), std::move(handle));
  }
  if (fuse_reply_open(req, fi) != 0) ForgetHandle(Fs(req), fi);  // interrupted: no release follows
}

void Read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  FileSystem& fs = Fs(req);
  if (ino != kFileIno || off < 0 || size > fs.max_io) {  // the kernel keeps to max_read
    fuse_reply_err(req, EINVAL);
    return;
  }
  const uint64_t n = Clip(fs, off, size);
  auto buf = std::make_unique_for_overwrite<uint8_t[]>(n);
  Status s = n == 0 ? Status::OK() : fs.device->Read(static_cast<uint64_t>(off), {buf.get(), n});
  if (!s.ok()) {
    ReplyStatus(req, s);
    return;
  }
  fuse_reply_buf(req, reinterpret_cast<const char*>(buf.get()), n);
}

// A write that starts inside the file and runs past its end is cut short (the size is fixed);
// one that starts at or past the end gets ENOSPC, like a full disk.
void Write(fuse_req_t req, fuse_ino_t ino, const char* data, size_t size, off_t off, fuse_file_info* fi) {
  FileSystem& fs = Fs(req);
  if (ino != kFileIno || off < 0 || size > fs.max_io || fs.read_only) {
    fuse_reply_err(req, fs.read_only ? EROFS : EINVAL);
    return;
  }
  const uint64_t n = Clip(fs, off, size);
  if (n == 0 && size > 0) {
    fuse_reply_err(req, ENOSPC);
    return;
  }
  const bool fua = (fi->flags & O_DSYNC) != 0;
  Status s = fs.device->Write(static_cast<uint64_t>(off), {reinterpret_cast<const uint8_t*>(data), n}, fua);
  if (!s.ok()) {
    ReplyStatus(req, s);
    return;
  }
  if (!fua) HandleOf(fi).dirty.store(true, std::memory_order_relaxed);
  fuse_reply_write(req, n);
}

Status FlushDevice(FileSystem& fs) { return fs.read_only ? Status::OK() : fs.device->Flush(); }

void Flush(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  FileSystem& fs = Fs(req);
  if (!HandleOf(fi).dirty.exchange(false)) {
    fuse_reply_err(req, 0);
    return;
  }
  Status s = FlushDevice(fs);
  if (!s.ok()) HandleOf(fi).dirty.store(true);
  ReplyStatus(req, s);
}

void Fsync(fuse_req_t req, fuse_ino_t, int, fuse_file_info* fi) {
  FileSystem& fs = Fs(req);
  HandleOf(fi).dirty.store(false);
  Status s = FlushDevice(fs);
  if (!s.ok()) HandleOf(fi).dirty.store(true);
  ReplyStatus(req, s);
}

void Release(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  ForgetHandle(Fs(req), fi);
  fuse_reply_err(req, 0);
}

void FsyncDir(fuse_req_t req, fuse_ino_t, int, fuse_file_info*) { ReplyStatus(req, FlushDevice(Fs(req))); }

// The loop driver turns discard into PUNCH_HOLE|KEEP_SIZE and write-zeroes into ZERO_RANGE
// (REQ_NOUNMAP, so the zeros must stay allocated: Zero with allow_hole = false) or PUNCH_HOLE.
Status Fallocate(FileSystem& fs, int mode, off_t off, off_t len) {
  if (off < 0 || len <= 0) return Status::InvalidArgument("fallocate: bad range");
  const uint64_t n = Clip(fs, off, static_cast<uint64_t>(len));
  const auto start = static_cast<uint64_t>(off);
  switch (mode) {
    case 0:
    case FALLOC_FL_KEEP_SIZE:  // preallocation: every byte of the file already exists
      if (mode == 0 && n < static_cast<uint64_t>(len)) return Status::NoSpace("fallocate past the end");
      return Status::OK();
    case FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE:
      if (!fs.device->Capabilities().can_trim) return Status::NotSupported("no trim");
      return n == 0 ? Status::OK() : fs.device->Trim(start, n, false);
    case FALLOC_FL_ZERO_RANGE:
    case FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE:
      if (mode == FALLOC_FL_ZERO_RANGE && n < static_cast<uint64_t>(len)) {
        return Status::NoSpace("fallocate past the end");
      }
      return n == 0 ? Status::OK() : fs.device->Zero(start, n, false, false);
    default:
      return Status::NotSupported("fallocate mode");
  }
}

void FallocateOp(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len, fuse_file_info* fi) {
  FileSystem& fs = Fs(req);
  if (ino != kFileIno || fs.read_only) {
    fuse_reply_err(req, fs.read_only ? EROFS : EINVAL);
    return;
  }
  // Never ENOSYS: the kernel would stop sending fallocate (and so discards) for good.
  Status s = Fallocate(fs, mode, off, len);
  if (s.ok()) HandleOf(fi).dirty.store(true, std::memory_order_relaxed);
  ReplyStatus(req, s);
}

void StatFs(fuse_req_t req, fuse_ino_t) {
  const FileSystem& fs = Fs(req);
  struct statvfs sv {};
  sv.f_bsize = sv.f_frsize = kBlock;
  sv.f_blocks = (fs.size.load() + kBlock - 1) / kBlock;
  sv.f_files = 2;
  sv.f_namemax = 255;
  fuse_reply_statfs(req, &sv);
}

fuse_lowlevel_ops MakeOperations() {
  fuse_lowlevel_ops ops{};
  ops.init = Init;
  ops.lookup = Lookup;
  ops.getattr = GetAttr;
  ops.setattr = SetAttr;
  ops.readdir = ReadDir;
  ops.open = Open;
  ops.read = Read;
  ops.write = Write;
  ops.flush = Flush;
  ops.fsync = Fsync;
  ops.release = Release;
  ops.fsyncdir = FsyncDir;
  ops.fallocate = FallocateOp;
  ops.statfs = StatFs;
  return ops;
}

}  // namespace

const fuse_lowlevel_ops& Operations() {
  static const fuse_lowlevel_ops ops = MakeOperations();
  return ops;
}

}  // namespace ovbd::fuse
