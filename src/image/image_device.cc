// ImageDevice: an lsmt::Image served as a BlockDevice.
//
//   Read  ──> Image::ReadAt (no device lock; the image's own reader locks are shared)
//   Write ──> aligned body ──> Image::Write ──> upper RwLayer
//             unaligned edges: read-modify-write of the edge sectors (serialised among RMWs)
//   Trim/Zero ──> aligned body ──> Image::Discard (a zeroed mapping); edges zero-written
//   Extents ──> Image::SegmentsIn: data mappings = data; zeroed mappings and gaps = hole+zero
#include <algorithm>
#include <atomic>
#include <mutex>
#include <vector>

#include "base/checked.h"
#include "ovbd/block_device.h"
#include "ovbd/lsmt.h"

namespace ovbd {
namespace {

constexpr uint64_t kSector = lsmt::kSectorSize;
constexpr uint64_t kZeroChunk = 1u << 20;  // NO_HOLE zeroing writes this much at a time
constexpr uint64_t kFirstExtentWindow = 1u << 20;  // FirstExtents looks this far first, then doubles
constexpr uint64_t kMaxExtentWindow = 1ull << 30;

class ImageDevice final : public BlockDevice {
 public:
  ImageDevice(std::shared_ptr<lsmt::Image> image, const ImageDeviceOptions& options)
      : image_(std::move(image)), writable_(image_->writable() && !options.read_only) {}

  uint64_t Size() const override { return image_->Size(); }
  const std::string& Name() const override { return image_->Name(); }
  BlockDeviceCaps Capabilities() const override;

  Status Read(uint64_t offset, std::span<uint8_t> buf) override;
  Status Write(uint64_t offset, std::span<const uint8_t> data, bool fua) override;
  Status Trim(uint64_t offset, uint64_t length, bool fua) override { return Zero(offset, length, fua, true); }
  Status Zero(uint64_t offset, uint64_t length, bool fua, bool allow_hole) override;
  Status Flush() override;
  Result<std::vector<Extent>> Extents(uint64_t offset, uint64_t length) override {
    return FirstExtents(offset, length, 0);
  }
  Result<std::vector<Extent>> FirstExtents(uint64_t offset, uint64_t length, size_t max_extents) override;
  Status Cache(uint64_t offset, uint64_t length) override {
    OVBD_RETURN_IF_ERROR(CheckRange(offset, length, "cache"));
    image_->Prefetch(offset, length);
    return Status::OK();
  }
  DeviceStats Stats() const override;

 private:
  Status CheckRange(uint64_t offset, uint64_t length, const char* op) const;
  Status CheckWritable(uint64_t offset, uint64_t length, const char* op) const;
  // Writes `data` at `offset`, which need not be sector-aligned.
  Status WriteAny(uint64_t offset, std::span<const uint8_t> data);
  // Rewrites the sectors covering [offset, offset+data.size()) with `data` patched in.
  Status ReadModifyWrite(uint64_t offset, std::span<const uint8_t> data);
  Status WriteZeros(uint64_t offset, uint64_t length);
  void AppendExtents(uint64_t begin, uint64_t end, std::vector<Extent>* out) const;
  Status Counted(Status s) {
    if (!s.ok()) errors_.fetch_add(1, std::memory_order_relaxed);
    return s;
  }

  std::shared_ptr<lsmt::Image> image_;
  const bool writable_;
  std::mutex rmw_mu_;  // read-modify-writes of partial sectors, one at a time
  std::atomic<uint64_t> bytes_read_{0}, bytes_written_{0}, reads_{0}, writes_{0}, trims_{0}, flushes_{0},
      errors_{0};
};

BlockDeviceCaps ImageDevice::Capabilities() const {
  BlockDeviceCaps caps;
  caps.writable = caps.can_trim = caps.can_zero = caps.can_fua = caps.can_flush = writable_;
  caps.can_extents = true;
  // One process serves every connection from this one device, and Flush syncs the whole upper
  // layer, so a flush on any connection covers writes completed on all of them.
  caps.can_multi_conn = true;
  caps.min_block = static_cast<uint32_t>(kSector);
  return caps;
}

Status ImageDevice::CheckRange(uint64_t offset, uint64_t length, const char* op) const {
  if (RangeWithin(offset, length, Size())) return Status::OK();
  return Status::OutOfRange(Name() + ": " + op + " at " + std::to_string(offset) + " length " +
                            std::to_string(length) + " is past the device size " + std::to_string(Size()));
}

Status ImageDevice::CheckWritable(uint64_t offset, uint64_t length, const char* op) const {
  if (!writable_) return Status::NotSupported(Name() + ": " + op + " on a read-only device");
  return CheckRange(offset, length, op);
}

Status ImageDevice::Read(uint64_t offset, std::span<uint8_t> buf) {
  OVBD_RETURN_IF_ERROR(Counted(CheckRange(offset, buf.size(), "read")));
  reads_.fetch_add(1, std::memory_order_relaxed);
  bytes_read_.fetch_add(buf.size(), std::memory_order_relaxed);
  return Counted(image_->ReadAt(offset, buf));
}

Status ImageDevice::ReadModifyWrite(uint64_t offset, std::span<const uint8_t> data) {
  const uint64_t begin = offset / kSector * kSector;
  const uint64_t end = RoundUp(offset + data.size(), kSector);
  std::vector<uint8_t> sectors(end - begin);
  std::lock_guard lock(rmw_mu_);
  OVBD_RETURN_IF_ERROR(image_->ReadAt(begin, sectors));
  std::copy(data.begin(), data.end(), sectors.begin() + static_cast<ptrdiff_t>(offset - begin));
  return image_->Write(begin, sectors);
}

Status ImageDevice::WriteAny(uint64_t offset, std::span<const uint8_t> data) {
  if (data.empty()) return Status::OK();
  const uint64_t end = offset + data.size();
  const uint64_t body_begin = RoundUp(offset, kSector);
  const uint64_t body_end = end / kSector * kSector;
  if (body_begin >= body_end) return ReadModifyWrite(offset, data);  // within one or two sectors
  if (offset < body_begin) OVBD_RETURN_IF_ERROR(ReadModifyWrite(offset, data.first(body_begin - offset)));
  OVBD_RETURN_IF_ERROR(image_->Write(body_begin, data.subspan(body_begin - offset, body_end - body_begin)));
  if (body_end < end) OVBD_RETURN_IF_ERROR(ReadModifyWrite(body_end, data.subspan(body_end - offset)));
  return Status::OK();
}

Status ImageDevice::Write(uint64_t offset, std::span<const uint8_t> data, bool fua) {
  OVBD_RETURN_IF_ERROR(Counted(CheckWritable(offset, data.size(), "write")));
  writes_.fetch_add(1, std::memory_order_relaxed);
  bytes_written_.fetch_add(data.size(), std::memory_order_relaxed);
  OVBD_RETURN_IF_ERROR(Counted(WriteAny(offset, data)));
  return fua ? Flush() : Status::OK();
}

Status ImageDevice::WriteZeros(uint64_t offset, uint64_t length) {
  const std::vector<uint8_t> zeros(std::min(length, kZeroChunk));
  for (uint64_t done = 0; done < length;) {
    const uint64_t n = std::min<uint64_t>(zeros.size(), length - done);
    OVBD_RETURN_IF_ERROR(WriteAny(offset + done, std::span(zeros).first(n)));
    done += n;
  }
  return Status::OK();
}

Status ImageDevice::Zero(uint64_t offset, uint64_t length, bool fua, bool allow_hole) {
  OVBD_RETURN_IF_ERROR(Counted(CheckWritable(offset, length, "zero")));
  trims_.fetch_add(1, std::memory_order_relaxed);
  const uint64_t end = offset + length;
  const uint64_t body_begin = RoundUp(offset, kSector);
  const uint64_t body_end = end / kSector * kSector;
  Status s;
  if (!allow_hole || body_begin >= body_end) {
    s = WriteZeros(offset, length);
  } else {
    s = WriteZeros(offset, body_begin - offset);
    if (s.ok()) s = image_->Discard(body_begin, body_end - body_begin);
    if (s.ok()) s = WriteZeros(body_end, end - body_end);
  }
  OVBD_RETURN_IF_ERROR(Counted(s));
  return fua ? Flush() : Status::OK();
}

Status ImageDevice::Flush() {
  if (!writable_) return Status::NotSupported(Name() + ": flush on a read-only device");
  flushes_.fetch_add(1, std::memory_order_relaxed);
  return Counted(image_->Flush());
}

// Appends a run, merging it into the previous one when the state is the same.
void AddRun(std::vector<Extent>* out, uint64_t length, bool hole) {
  if (length == 0) return;
  if (!out->empty() && out->back().hole == hole) {
    out->back().length += length;
    return;
  }
  out->push_back(Extent{length, hole, hole});
}

// Appends the runs of [begin, end) (bytes) to *out.
void ImageDevice::AppendExtents(uint64_t begin, uint64_t end, std::vector<Extent>* out) const {
  const uint64_t first = begin / kSector;
  const uint64_t last = RoundUp(end, kSector) / kSector;
  uint64_t cursor = begin;  // bytes described so far end here
  for (const lsmt::Segment& s : image_->SegmentsIn(first, last - first)) {
    const uint64_t seg_begin = std::max(s.offset * kSector, begin);
    const uint64_t seg_end = std::min(s.end() * kSector, end);
    if (seg_begin >= seg_end) continue;
    AddRun(out, seg_begin - cursor, true);
    AddRun(out, seg_end - seg_begin, s.zeroed);
    cursor = seg_end;
  }
  AddRun(out, end - cursor, true);
}

// Walks the range in growing windows so a bounded request (REQ_ONE) costs what it returns, not
// what the whole range holds. A run cut at a window edge is merged with its continuation.
Result<std::vector<Extent>> ImageDevice::FirstExtents(uint64_t offset, uint64_t length, size_t max_extents) {
  OVBD_RETURN_IF_ERROR(Counted(CheckRange(offset, length, "extents")));
  std::vector<Extent> out;
  const uint64_t end = offset + length;
  uint64_t window = kFirstExtentWindow;
  for (uint64_t at = offset; at < end;) {
    const uint64_t window_end = (max_extents == 0) ? end : std::min(end, at + window);
    AppendExtents(at, window_end, &out);
    at = window_end;
    if (max_extents > 0 && out.size() > max_extents) {
      out.resize(max_extents);  // the runs kept are complete: a later run follows each
      break;
    }
    window = std::min(window * 2, kMaxExtentWindow);
  }
  return out;
}

DeviceStats ImageDevice::Stats() const {
  DeviceStats s;
  s.bytes_read = bytes_read_.load(std::memory_order_relaxed);
  s.bytes_written = bytes_written_.load(std::memory_order_relaxed);
  s.reads = reads_.load(std::memory_order_relaxed);
  s.writes = writes_.load(std::memory_order_relaxed);
  s.trims = trims_.load(std::memory_order_relaxed);
  s.flushes = flushes_.load(std::memory_order_relaxed);
  s.errors = errors_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace

std::unique_ptr<BlockDevice> NewImageDevice(std::shared_ptr<lsmt::Image> image, const ImageDeviceOptions& options) {
  return std::make_unique<ImageDevice>(std::move(image), options);
}

}  // namespace ovbd
