// A stack of layers as one device (notes §2.6, §3.7).
//
//   tag 0        upper RwLayer (optional)   ── consulted first, its live index
//   tag 1..n     lowers, top first          ── one merged SegmentIndex fills the gaps
//
// Without an upper the lowers take tags 0..n-1. Reads resolve the requested sectors into
// segments with these global tags and hand them to FillFromSegments (any byte alignment).
#include <algorithm>
#include <string>
#include <vector>

#include "base/checked.h"
#include "lsmt/segment_read.h"
#include "ovbd/lsmt.h"

namespace ovbd::lsmt {
namespace {

class StackImage final : public Image {
 public:
  StackImage(std::vector<std::shared_ptr<const ReadableFile>> lowers, std::vector<HeaderTrailer> headers,
             std::unique_ptr<SegmentIndex> ro, std::unique_ptr<RwLayer> upper, uint64_t size)
      : lowers_(std::move(lowers)),
        headers_(std::move(headers)),
        ro_(std::move(ro)),
        upper_(std::move(upper)),
        size_(size),
        name_(upper_ ? upper_->data_file().Name() : lowers_.back()->Name()) {}

  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) const override;
  uint64_t Size() const override { return size_; }
  const std::string& Name() const override { return name_; }
  // NBD_CMD_CACHE and friends: hints the lower-layer parts of the range to their files.
  void Prefetch(uint64_t offset, uint64_t length) const override {
    if (offset >= size_ || length == 0) return;
    length = std::min(length, size_ - offset);
    SectorRange range = CoveringSectors(offset, length);
    PrefetchLowers(Resolve(range.offset, range.length), offset, length, 1);
  }

  bool writable() const override { return upper_ != nullptr; }
  Status Write(uint64_t offset, std::span<const uint8_t> data) override;
  Status Discard(uint64_t offset, uint64_t length) override;
  Status Flush() override { return upper_ ? upper_->Sync() : Status::OK(); }
  Status SealUpper() override {
    if (!upper_) return Status::NotSupported(name_ + ": no writable layer to seal");
    OVBD_RETURN_IF_ERROR(upper_->Sync());
    return upper_->Seal();
  }
  size_t layer_count() const override { return lowers_.size() + (upper_ ? 1 : 0); }
  std::vector<Segment> Segments() const override { return Resolve(0, kMaxOffset); }
  std::vector<Segment> SegmentsIn(uint64_t offset, uint64_t length) const override {
    return Resolve(offset, length);
  }
  Status ReadLayerData(uint8_t tag, uint64_t offset, std::span<uint8_t> buf) const override;
  const HeaderTrailer& top_meta() const override { return upper_ ? upper_->meta() : headers_.back(); }
  const HeaderTrailer& bottom_meta() const override {
    return headers_.empty() ? upper_->meta() : headers_.front();
  }

 private:
  // Segments covering [offset, offset+length) sectors, clipped, sorted, with global tags.
  std::vector<Segment> Resolve(uint64_t offset, uint64_t length) const;
  Status CheckWrite(uint64_t offset, uint64_t length, const char* op) const;
  // The lower layer file a segment tag names, or null (the upper, or no such layer).
  const ReadableFile* LowerOf(uint8_t tag) const;
  // Passes the lower-layer parts of [offset, offset+length) to their files' Prefetch, if the
  // range has at least `min_segments` of them.
  void PrefetchLowers(const std::vector<Segment>& segments, uint64_t offset, uint64_t length,
                      long min_segments = 2) const;

  std::vector<std::shared_ptr<const ReadableFile>> lowers_;  // bottom first
  std::vector<HeaderTrailer> headers_;                       // lowers' headers, bottom first
  std::unique_ptr<SegmentIndex> ro_;                         // tags: 0 = top lower
  std::unique_ptr<RwLayer> upper_;
  uint64_t size_;
  std::string name_;
};

std::vector<Segment> StackImage::Resolve(uint64_t offset, uint64_t length) const {
  std::vector<Segment> out;
  const uint8_t shift = upper_ ? 1 : 0;
  auto add_lower = [&](uint64_t begin, uint64_t end) {
    if (!ro_ || begin >= end) return;
    const size_t first = out.size();
    ro_->AppendOverlapping(begin, end - begin, &out);
    if (shift == 0) return;
    for (size_t i = first; i < out.size(); ++i) {
      out[i].tag = static_cast<uint8_t>(out[i].tag + shift);
    }
  };
  if (!upper_) {
    add_lower(offset, offset + length);
    return out;
  }
  uint64_t cursor = offset;
  for (const Segment& s : upper_->Lookup(offset, length)) {
    add_lower(cursor, s.offset);
    out.push_back(s);
    out.back().tag = 0;
    cursor = s.end();
  }
  add_lower(cursor, offset + length);
  return out;
}

Status StackImage::ReadAt(uint64_t offset, std::span<uint8_t> buf) const {
  if (!RangeWithin(offset, buf.size(), size_)) {
    return Status::OutOfRange(name_ + ": read at " + std::to_string(offset) + " length " +
                              std::to_string(buf.size()) + " is past the virtual size " +
                              std::to_string(size_));
  }
  if (buf.empty()) return Status::OK();
  SectorRange range = CoveringSectors(offset, buf.size());
  const std::vector<Segment> segments = Resolve(range.offset, range.length);
  PrefetchLowers(segments, offset, buf.size());
  return FillFromSegments(segments, offset, buf,
                          [this](uint8_t tag, uint64_t at, std::span<uint8_t> out) {
                            return ReadLayerData(tag, at, out);
                          });
}

// A read that spans several segments of lower layers names them all to their files before
// reading the first: files that fetch from far away (cached registry blobs) then fetch them in
// parallel instead of one after the other. Segments of one layer less than kPrefetchGap apart
// (the data between them hidden by upper layers) are named as one range: one request instead
// of several, for a few more bytes. Local files get a readahead hint.
void StackImage::PrefetchLowers(const std::vector<Segment>& segments, uint64_t offset, uint64_t length,
                                long min_segments) const {
  constexpr uint64_t kPrefetchGap = 64 << 10;
  const auto is_lower = [this](const Segment& s) { return !s.zeroed && LowerOf(s.tag) != nullptr; };
  if (std::count_if(segments.begin(), segments.end(), is_lower) < min_segments) return;
  struct Pending {
    const ReadableFile* file = nullptr;  // null: none
    uint64_t begin = 0, end = 0;         // blob range
  };
  std::vector<Pending> pending;  // at most one per layer
  const auto flush = [](Pending& p) {
    if (p.file != nullptr) p.file->Prefetch(p.begin, p.end - p.begin);
    p = Pending();
  };
  const uint64_t end = offset + length;
  for (const Segment& s : segments) {
    if (!is_lower(s)) continue;
    const uint64_t begin = std::max(s.offset * kSectorSize, offset);
    const uint64_t stop = std::min(s.end() * kSectorSize, end);
    if (begin >= stop) continue;
    const ReadableFile* file = LowerOf(s.tag);
    const uint64_t blob_begin = s.moffset * kSectorSize + (begin - s.offset * kSectorSize);
    const uint64_t blob_end = blob_begin + (stop - begin);
    auto p = std::find_if(pending.begin(), pending.end(), [file](const Pending& x) { return x.file == file; });
    if (p != pending.end() && blob_begin >= p->begin && blob_begin <= p->end + kPrefetchGap) {
      p->end = std::max(p->end, blob_end);
      continue;
    }
    if (p != pending.end()) flush(*p);
    if (p == pending.end()) p = pending.insert(pending.end(), Pending());
    *p = Pending{file, blob_begin, blob_end};
  }
  for (Pending& p : pending) flush(p);
}

const ReadableFile* StackImage::LowerOf(uint8_t tag) const {
  if (upper_ && tag == 0) return nullptr;
  const size_t index = tag - (upper_ ? 1u : 0u);  // 0 = the top lower
  return index < lowers_.size() ? lowers_[lowers_.size() - 1 - index].get() : nullptr;
}

Status StackImage::ReadLayerData(uint8_t tag, uint64_t offset, std::span<uint8_t> buf) const {
  if (upper_ && tag == 0) return ReadZeroPadded(upper_->data_file(), offset, buf);
  const ReadableFile* lower = LowerOf(tag);
  if (lower == nullptr) return Status::InvalidArgument(name_ + ": no layer with tag " + std::to_string(tag));
  return ReadZeroPadded(*lower, offset, buf);
}

Status StackImage::CheckWrite(uint64_t offset, uint64_t length, const char* op) const {
  if (!upper_) return Status::NotSupported(name_ + ": " + op + " on a read-only image");
  if (!RangeWithin(offset, length, size_)) {
    return Status::OutOfRange(name_ + ": " + op + " at " + std::to_string(offset) + " length " +
                              std::to_string(length) + " is past the virtual size " +
                              std::to_string(size_));
  }
  return Status::OK();
}

Status StackImage::Write(uint64_t offset, std::span<const uint8_t> data) {
  OVBD_RETURN_IF_ERROR(CheckWrite(offset, data.size(), "write"));
  return upper_->Write(offset, data);
}

Status StackImage::Discard(uint64_t offset, uint64_t length) {
  OVBD_RETURN_IF_ERROR(CheckWrite(offset, length, "discard"));
  return upper_->Discard(offset, length);
}

// The virtual size of the top-most layer that has one (upper first, then lowers top-down).
uint64_t StackVirtualSize(const std::vector<LayerInfo>& infos, const RwLayer* upper) {
  if (upper != nullptr && upper->VirtualSize() > 0) return upper->VirtualSize();
  for (auto it = infos.rbegin(); it != infos.rend(); ++it) {
    if (it->trailer.virtual_size > 0) return it->trailer.virtual_size;
  }
  return 0;
}

Result<std::unique_ptr<SegmentIndex>> MergeLowers(std::vector<LayerInfo>* infos) {
  std::vector<std::vector<Segment>> top_first(infos->size());
  for (size_t i = 0; i < infos->size(); i++) {
    top_first[infos->size() - 1 - i] = std::move((*infos)[i].segments);
  }
  return BuildMergedIndex(top_first);
}

Status CheckStackShape(const std::vector<std::shared_ptr<const ReadableFile>>& lowers, bool has_upper) {
  if (lowers.empty() && !has_upper) return Status::InvalidArgument("OpenImage: no layers");
  OVBD_RETURN_IF_ERROR(CheckLayerCount(lowers.size()).WithContext("OpenImage"));
  for (size_t i = 0; i < lowers.size(); i++) {
    if (!lowers[i]) return Status::InvalidArgument("OpenImage: lower layer " + std::to_string(i) + " is null");
  }
  return Status::OK();
}

// The LayerInfo of raw content: data mappings of at most kMaxSegmentLength sectors, moffset =
// offset (the content is its own data area).
LayerInfo RawLayerInfo(const ReadableFile& file) {
  LayerInfo info;
  const uint64_t sectors = RoundUp(file.Size(), kSectorSize) / kSectorSize;
  info.header.virtual_size = info.trailer.virtual_size = sectors * kSectorSize;
  info.file_size = file.Size();
  for (uint64_t at = 0; at < sectors; at += kMaxSegmentLength) {
    const auto length = static_cast<uint32_t>(std::min<uint64_t>(kMaxSegmentLength, sectors - at));
    info.segments.push_back(Segment{at, length, at, false, 0});
  }
  return info;
}

Result<LayerInfo> LowerInfo(const LowerLayer& lower, size_t i) {
  if (lower.raw) return RawLayerInfo(*lower.file);
  auto info = ReadLayerInfo(*lower.file);
  if (!info.ok()) return info.status().WithContext("lower layer " + std::to_string(i));
  return info;
}

}  // namespace

Status CheckLayerCount(size_t lowers) {
  if (lowers <= kMaxStackLayers) return Status::OK();
  return Status::InvalidArgument(std::to_string(lowers) + " read-only layers exceed the limit of " +
                                 std::to_string(kMaxStackLayers) + " (a writable upper comes on top of them)");
}

Result<std::unique_ptr<Image>> OpenStack(std::vector<LowerLayer> lowers, std::unique_ptr<RwLayer> upper) {
  std::vector<std::shared_ptr<const ReadableFile>> files;
  for (const LowerLayer& l : lowers) files.push_back(l.file);
  OVBD_RETURN_IF_ERROR(CheckStackShape(files, upper != nullptr));
  std::vector<LayerInfo> infos;
  std::vector<HeaderTrailer> headers;
  for (size_t i = 0; i < lowers.size(); i++) {
    OVBD_ASSIGN_OR_RETURN(LayerInfo info, LowerInfo(lowers[i], i));
    headers.push_back(info.header);
    infos.push_back(std::move(info));
  }
  const uint64_t size = StackVirtualSize(infos, upper.get());
  std::unique_ptr<SegmentIndex> ro;
  if (!infos.empty()) {
    auto merged = MergeLowers(&infos);
    if (!merged.ok()) return merged.status().WithContext("OpenImage: merging the lower indexes");
    ro = std::move(merged).value();
  }
  return std::unique_ptr<Image>(
      new StackImage(std::move(files), std::move(headers), std::move(ro), std::move(upper), size));
}

Result<std::unique_ptr<Image>> OpenImage(std::vector<std::shared_ptr<const ReadableFile>> lowers,
                                         std::unique_ptr<RwLayer> upper) {
  std::vector<LowerLayer> layers;
  for (auto& f : lowers) layers.push_back(LowerLayer{std::move(f), false});
  return OpenStack(std::move(layers), std::move(upper));
}

}  // namespace ovbd::lsmt
