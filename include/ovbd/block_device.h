// BlockDevice: the one contract every export (NBD, FUSE, later ublk) serves.
//
//   NBD server ─┐
//   FUSE file  ─┼──> BlockDevice ──> ImageDevice ──> lsmt::Image (lowers + optional upper)
//   (ublk)     ─┘        ^
//                        └── MemDevice (tests, fuzzing)
//
// Units are bytes everywhere. Capabilities are probed once, before serving, and an export
// advertises exactly what they say (nbdkit's can_write/can_trim/... model).
//
// Thread model: every method may be called from any number of threads at once. Reads never take
// a device-wide lock. Writes that overlap each other, or a read, have no defined order (as on a
// disk); the caller (the NBD client, the kernel) orders them if it cares.
//
// Request checking: exports validate each request at the edge (range within Size(), alignment to
// min_block where the protocol promises it, length <= max_request, flags). A device still rejects
// anything out of range with OutOfRange and writes to a read-only device with NotSupported, so a
// missed check is an error reply, never memory damage.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ovbd/status.h"

namespace ovbd {

namespace lsmt {
class Image;
}

struct BlockDeviceCaps {
  bool writable = false;     // Write/Trim/Zero/Flush do something; else they are NotSupported
  bool can_trim = false;     // Trim frees the range (it then reads as zeros here)
  bool can_zero = false;     // Zero is cheaper than writing zeros (no data is stored)
  bool can_fua = false;      // the fua argument is honoured (the write is durable on return)
  bool can_flush = false;    // Flush makes every completed write durable
  bool can_extents = false;  // Extents reports holes and zeroed ranges
  // Flush on one connection covers writes completed on every other connection of the same
  // device, and all connections see one content: NBD's multi-conn promise.
  bool can_multi_conn = false;
  uint32_t min_block = 512;        // requests aligned to this never need read-modify-write
  uint32_t preferred_block = 4096;
  uint32_t max_request = 32u << 20;  // largest single Read/Write this device accepts
};

// One run of a device's allocation map. Extents() returns runs in order, covering the request.
struct Extent {
  uint64_t length = 0;
  bool hole = false;  // no layer stores data here (unmapped, or a zeroed/discarded range)
  bool zero = false;  // reads as zeros
  bool operator==(const Extent&) const = default;
};

// Counters for `status`; monotonically increasing, read without locks.
struct DeviceStats {
  uint64_t bytes_read = 0;
  uint64_t bytes_written = 0;
  uint64_t reads = 0;
  uint64_t writes = 0;
  uint64_t trims = 0;  // trims + write-zeroes
  uint64_t flushes = 0;
  uint64_t errors = 0;
};

class BlockDevice {
 public:
  virtual ~BlockDevice() = default;

  virtual uint64_t Size() const = 0;
  virtual const std::string& Name() const = 0;
  virtual BlockDeviceCaps Capabilities() const = 0;

  // Reads exactly buf.size() bytes at offset (any alignment). OutOfRange past Size().
  virtual Status Read(uint64_t offset, std::span<uint8_t> buf) = 0;
  // Writes data at offset (any alignment; unaligned edges cost a read-modify-write). With fua the
  // write is durable when this returns.
  virtual Status Write(uint64_t offset, std::span<const uint8_t> data, bool fua) = 0;
  // Frees [offset, offset+length); the range then reads as zeros. Unaligned edges are zeroed.
  virtual Status Trim(uint64_t offset, uint64_t length, bool fua) = 0;
  // Makes [offset, offset+length) read as zeros. allow_hole=false (NBD_CMD_FLAG_NO_HOLE) stores
  // real zero bytes instead of a zeroed mapping.
  virtual Status Zero(uint64_t offset, uint64_t length, bool fua, bool allow_hole) = 0;
  // Makes every completed write durable.
  virtual Status Flush() = 0;
  // Allocation map of [offset, offset+length): runs that sum to exactly length (clipped to Size()).
  virtual Result<std::vector<Extent>> Extents(uint64_t offset, uint64_t length) = 0;
  // At most max_extents (> 0) runs from the start of the range: every returned run is complete,
  // and they may cover less than length (NBD block status, REQ_ONE). The default trims Extents();
  // devices with large maps answer without walking the whole range.
  virtual Result<std::vector<Extent>> FirstExtents(uint64_t offset, uint64_t length, size_t max_extents);
  // Hint that the range will be read soon (NBD_CMD_CACHE). Default: nothing.
  virtual Status Cache(uint64_t /*offset*/, uint64_t /*length*/) { return Status::OK(); }

  virtual DeviceStats Stats() const = 0;
};

// Serves an lsmt::Image. Writable iff the image has an upper layer and !read_only. Trim and Zero
// become zeroed mappings in the upper layer; Flush syncs it (data, then index). Extents: data
// segments are allocated, zeroed segments and gaps are hole+zero.
struct ImageDeviceOptions {
  bool read_only = false;
};
std::unique_ptr<BlockDevice> NewImageDevice(std::shared_ptr<lsmt::Image> image,
                                            const ImageDeviceOptions& options = {});

// An in-memory device (tests, fuzzing, benchmarks). Every byte starts as zero; Extents reports
// written 4 KiB blocks as data and the rest as hole+zero.
std::unique_ptr<BlockDevice> NewMemDevice(uint64_t size, bool writable = true,
                                          const std::string& name = "mem");

}  // namespace ovbd
