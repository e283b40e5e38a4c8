// The FUSE low-level operations of the single-file export (see fuse_export.h for the mapping of
// each call to the BlockDevice). Internal to ovbd_fuse.
//
//   inode 1 (FUSE_ROOT_ID)  the mount's root directory: lookup, getattr, readdir, statfs
//   inode 2 (kFileIno)      the device file: open, read, write, flush, fsync, fallocate, release
#pragma once

#define FUSE_USE_VERSION 314
#include <fuse3/fuse_lowlevel.h>

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <ctime>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "ovbd/block_device.h"

namespace ovbd::fuse {

inline constexpr fuse_ino_t kFileIno = 2;

// One per open() of the file; fuse_file_info::fh points to it. `dirty`: the handle wrote since
// its last flush/fsync (close flushes the device only then).
struct Handle {
  std::atomic<bool> dirty{false};
};

// What the handlers need; passed to fuse_session_new() as userdata and outliving the session.
struct FileSystem {
  std::shared_ptr<BlockDevice> device;
  std::atomic<uint64_t> size{0};  // FuseExport::SetSize changes it while serving
  bool read_only = false;
  std::string file_name;
  uint32_t max_io = 1u << 20;
  uid_t uid = 0;  // owner of both inodes: the user who mounted
  gid_t gid = 0;
  timespec mounted_at{};
  // Owns the handles: release() frees one, and those the kernel never released (an aborted
  // connection) go with the FileSystem.
  std::mutex handles_mu;
  std::unordered_map<Handle*, std::unique_ptr<Handle>> handles;
};

// The operations table; every handler casts fuse_req_userdata() to FileSystem.
const fuse_lowlevel_ops& Operations();

}  // namespace ovbd::fuse
