// An in-memory BlockDevice for tests, fuzzing and benchmarks. One reader/writer lock: it is a
// fake, not a fast path.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <shared_mutex>

#include "base/checked.h"
#include "ovbd/block_device.h"

namespace ovbd {
namespace {

constexpr uint64_t kMapBlock = 4096;

class MemDevice final : public BlockDevice {
 public:
  MemDevice(uint64_t size, bool writable, std::string name)
      : bytes_(size), written_((size + kMapBlock - 1) / kMapBlock), writable_(writable), name_(std::move(name)) {}

  uint64_t Size() const override { return bytes_.size(); }
  const std::string& Name() const override { return name_; }
  BlockDeviceCaps Capabilities() const override {
    BlockDeviceCaps caps;
    caps.writable = writable_;
    caps.can_trim = caps.can_zero = caps.can_fua = caps.can_flush = writable_;
    caps.can_extents = true;
    caps.can_multi_conn = true;
    return caps;
  }

  Status Read(uint64_t offset, std::span<uint8_t> buf) override {
    OVBD_RETURN_IF_ERROR(Check(offset, buf.size(), "read", false));
    std::shared_lock lock(mu_);
    std::memcpy(buf.data(), bytes_.data() + offset, buf.size());
    Count(&reads_, &bytes_read_, buf.size());
    return Status::OK();
  }
  Status Write(uint64_t offset, std::span<const uint8_t> data, bool) override {
    OVBD_RETURN_IF_ERROR(Check(offset, data.size(), "write", true));
    std::unique_lock lock(mu_);
    std::memcpy(bytes_.data() + offset, data.data(), data.size());
    Mark(offset, data.size(), true);
    Count(&writes_, &bytes_written_, data.size());
    return Status::OK();
  }
  Status Trim(uint64_t offset, uint64_t length, bool fua) override { return Zero(offset, length, fua, true); }
  Status Zero(uint64_t offset, uint64_t length, bool, bool allow_hole) override {
    OVBD_RETURN_IF_ERROR(Check(offset, length, "zero", true));
    std::unique_lock lock(mu_);
    std::memset(bytes_.data() + offset, 0, length);
    if (allow_hole) Mark(offset, length, false);
    trims_.fetch_add(1, std::memory_order_relaxed);
    return Status::OK();
  }
  Status Flush() override {
    if (!writable_) return Status::NotSupported(name_ + ": flush on a read-only device");
    flushes_.fetch_add(1, std::memory_order_relaxed);
    return Status::OK();
  }
  Result<std::vector<Extent>> Extents(uint64_t offset, uint64_t length) override;
  DeviceStats Stats() const override {
    DeviceStats s;
    s.bytes_read = bytes_read_.load();
    s.bytes_written = bytes_written_.load();
    s.reads = reads_.load();
    s.writes = writes_.load();
    s.trims = trims_.load();
    s.flushes = flushes_.load();
    return s;
  }

 private:
  Status Check(uint64_t offset, uint64_t length, const char* op, bool write) const {
    if (write && !writable_) return Status::NotSupported(name_ + ": " + op + " on a read-only device");
    if (!RangeWithin(offset, length, bytes_.size())) {
      return Status::OutOfRange(name_ + ": " + op + " at " + std::to_string(offset) + " length " +
                                std::to_string(length) + " is past the size " + std::to_string(bytes_.size()));
    }
    return Status::OK();
  }
  // Marks the 4 KiB blocks wholly inside (zeroing) or touched by (writing) the range.
  void Mark(uint64_t offset, uint64_t length, bool data) {
    if (length == 0) return;
    if (data) {
      for (uint64_t b = offset / kMapBlock; b <= (offset + length - 1) / kMapBlock; b++) written_[b] = true;
      return;
    }
    for (uint64_t b = (offset + kMapBlock - 1) / kMapBlock; (b + 1) * kMapBlock <= offset + length; b++) {
      written_[b] = false;
    }
  }
  static void Count(std::atomic<uint64_t>* ops, std::atomic<uint64_t>* bytes, uint64_t n) {
    ops->fetch_add(1, std::memory_order_relaxed);
    bytes->fetch_add(n, std::memory_order_relaxed);
  }

  std::vector<uint8_t> bytes_;
  std::vector<bool> written_;  // per 4 KiB block: holds data
  const bool writable_;
  const std::string name_;
  mutable std::shared_mutex mu_;
  std::atomic<uint64_t> bytes_read_{0}, bytes_written_{0}, reads_{0}, writes_{0}, trims_{0}, flushes_{0};
};

Result<std::vector<Extent>> MemDevice::Extents(uint64_t offset, uint64_t length) {
  OVBD_RETURN_IF_ERROR(Check(offset, length, "extents", false));
  std::shared_lock lock(mu_);
  std::vector<Extent> out;
  uint64_t at = offset;
  const uint64_t end = offset + length;
  while (at < end) {
    const bool data = written_[at / kMapBlock];
    const uint64_t next = std::min(end, (at / kMapBlock + 1) * kMapBlock);
    if (!out.empty() && out.back().hole == !data) {
      out.back().length += next - at;
    } else {
      out.push_back(Extent{next - at, !data, !data});
    }
    at = next;
  }
  return out;
}

}  // namespace

std::unique_ptr<BlockDevice> NewMemDevice(uint64_t size, bool writable, const std::string& name) {
  return std::make_unique<MemDevice>(size, writable, name);
}

}  // namespace ovbd
