// A stack of layers as one device (notes §2.6, §3.7).
//
//   tag 0        upper RwLayer (optional)   ── consulted first, its live index
//   tag 1..k     frozen uppers (snapshots)  ── then theirs, top first (StackedUnder)
//   tag k+1..    lowers, top first          ── one merged SegmentIndex fills the gaps
//
// Without an upper the lowers take tags 0..n-1. A frozen upper is an online snapshot's old
// writable layer: the next image is the old one under a fresh upper, made in O(1) while writes
// are paused, before the frozen layer is sealed and merged into a rebuilt index. Reads resolve the requested sectors into
// segments with these global tags and hand them to FillFromSegments (any byte alignment).
#include <algorithm>
#include <string>
#include <vector>

#include "base/checked.h"
#include "lsmt/segment_read.h"
#include "ovbd/lsmt.h"

namespace ovbd::lsmt {
namespace {

// What a stack is made of, shared between the images that online changes derive from one
// another (StackedUnder, Reopened): files, indexes and live layers are never copied.
struct StackParts {
  std::vector<std::shared_ptr<const ReadableFile>> lowers;  // bottom first
  std::vector<HeaderTrailer> headers;                       // lowers' headers, bottom first
  std::vector<uint64_t> sizes;                              // lowers' virtual sizes, bottom first
  std::shared_ptr<const SegmentIndex> ro;                   // tags: 0 = top lower
  // Layers read from their live index, top first: live[0] takes the writes when `writable`;
  // the others are frozen uppers of earlier snapshots (no longer written, being sealed).
  std::vector<std::shared_ptr<RwLayer>> live;
  bool writable = false;
};

// The virtual size of the top-most layer that has one (live layers first, then lowers top-down).
uint64_t PartsVirtualSize(const StackParts& p) {
  for (const auto& l : p.live) {
    if (l->VirtualSize() > 0) return l->VirtualSize();
  }
  for (auto it = p.sizes.rbegin(); it != p.sizes.rend(); ++it) {
    if (*it > 0) return *it;
  }
  return 0;
}

class StackImage final : public Image {
 public:
  explicit StackImage(StackParts parts)
      : p_(std::move(parts)),
        size_(PartsVirtualSize(p_)),
        name_(!p_.live.empty() ? p_.live.front()->data_file().Name() : p_.lowers.back()->Name()) {}

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

  bool writable() const override { return p_.writable; }
  Status Write(uint64_t offset, std::span<const uint8_t> data) override;
  Status Discard(uint64_t offset, uint64_t length) override;
  // Every live layer: a frozen one may still hold writes that completed before the snapshot
  // that froze it, and a flush covers every completed write.
  Status Flush() override {
    for (const auto& l : p_.live) OVBD_RETURN_IF_ERROR(l->Sync());
    return Status::OK();
  }
  Status SealUpper() override {
    if (!p_.writable) return Status::NotSupported(name_ + ": no writable layer to seal");
    OVBD_RETURN_IF_ERROR(p_.live.front()->Sync());
    return p_.live.front()->Seal();
  }
  size_t layer_count() const override { return p_.lowers.size() + p_.live.size(); }
  std::vector<Segment> Segments() const override { return Resolve(0, kMaxOffset); }
  std::vector<Segment> SegmentsIn(uint64_t offset, uint64_t length) const override {
    return Resolve(offset, length);
  }
  Status ReadLayerData(uint8_t tag, uint64_t offset, std::span<uint8_t> buf) const override;
  const HeaderTrailer& top_meta() const override {
    return !p_.live.empty() ? p_.live.front()->meta() : p_.headers.back();
  }
  const HeaderTrailer& bottom_meta() const override {
    return p_.headers.empty() ? p_.live.back()->meta() : p_.headers.front();
  }
  std::shared_ptr<RwLayer> upper() const override { return p_.writable ? p_.live.front() : nullptr; }
  Result<std::unique_ptr<Image>> StackedUnder(std::shared_ptr<RwLayer> upper) const override;
  std::unique_ptr<Image> Reopened() const override { return std::make_unique<StackImage>(p_); }

 private:
  // Segments covering [offset, offset+length) sectors, clipped, sorted, with global tags.
  std::vector<Segment> Resolve(uint64_t offset, uint64_t length) const;
  // Appends the segments of [begin, end) sectors as seen from live layer `level` down.
  void ResolveFrom(size_t level, uint64_t begin, uint64_t end, std::vector<Segment>* out) const;
  Status CheckWrite(uint64_t offset, uint64_t length, const char* op) const;
  // The lower layer file a segment tag names, or null (a live layer, or no such layer).
  const ReadableFile* LowerOf(uint8_t tag) const;
  // Passes the lower-layer parts of [offset, offset+length) to their files' Prefetch, if the
  // range has at least `min_segments` of them.
  void PrefetchLowers(const std::vector<Segment>& segments, uint64_t offset, uint64_t length,
                      long min_segments = 2) const;

  const StackParts p_;
  const uint64_t size_;
  const std::string name_;
};

Result<std::unique_ptr<Image>> StackImage::StackedUnder(std::shared_ptr<RwLayer> upper) const {
  if (!upper) return Status::InvalidArgument(name_ + ": StackedUnder: null upper");
  OVBD_RETURN_IF_ERROR(CheckLayerCount(p_.lowers.size() + p_.live.size()).WithContext(name_));
  StackParts next = p_;
  next.live.insert(next.live.begin(), std::move(upper));
  next.writable = true;
  return std::unique_ptr<Image>(new StackImage(std::move(next)));
}

std::vector<Segment> StackImage::Resolve(uint64_t offset, uint64_t length) const {
  std::vector<Segment> out;
  ResolveFrom(0, offset, offset + std::min(length, kMaxOffset - offset), &out);
  return out;
}

void StackImage::ResolveFrom(size_t level, uint64_t begin, uint64_t end, std::vector<Segment>* out) const {
  if (begin >= end) return;
  if (level == p_.live.size()) {
    if (!p_.ro) return;
    const size_t first = out->size();
    p_.ro->AppendOverlapping(begin, end - begin, out);
    for (size_t i = first; i < out->size(); ++i) (*out)[i].tag = static_cast<uint8_t>((*out)[i].tag + level);
    return;
  }
  uint64_t cursor = begin;
  for (const Segment& s : p_.live[level]->Lookup(begin, end - begin)) {
    ResolveFrom(level + 1, cursor, s.offset, out);
    out->push_back(s);
    out->back().tag = static_cast<uint8_t>(level);
    cursor = s.end();
  }
  ResolveFrom(level + 1, cursor, end, out);
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
  if (tag < p_.live.size()) return nullptr;
  const size_t index = tag - p_.live.size();  // 0 = the top lower
  return index < p_.lowers.size() ? p_.lowers[p_.lowers.size() - 1 - index].get() : nullptr;
}

Status StackImage::ReadLayerData(uint8_t tag, uint64_t offset, std::span<uint8_t> buf) const {
  if (tag < p_.live.size()) return ReadZeroPadded(p_.live[tag]->data_file(), offset, buf);
  const ReadableFile* lower = LowerOf(tag);
  if (lower == nullptr) return Status::InvalidArgument(name_ + ": no layer with tag " + std::to_string(tag));
  return ReadZeroPadded(*lower, offset, buf);
}

Status StackImage::CheckWrite(uint64_t offset, uint64_t length, const char* op) const {
  if (!p_.writable) return Status::NotSupported(name_ + ": " + op + " on a read-only image");
  if (!RangeWithin(offset, length, size_)) {
    return Status::OutOfRange(name_ + ": " + op + " at " + std::to_string(offset) + " length " +
                              std::to_string(length) + " is past the virtual size " +
                              std::to_string(size_));
  }
  return Status::OK();
}

Status StackImage::Write(uint64_t offset, std::span<const uint8_t> data) {
  OVBD_RETURN_IF_ERROR(CheckWrite(offset, data.size(), "write"));
  return p_.live.front()->Write(offset, data);
}

Status StackImage::Discard(uint64_t offset, uint64_t length) {
  OVBD_RETURN_IF_ERROR(CheckWrite(offset, length, "discard"));
  return p_.live.front()->Discard(offset, length);
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

Result<std::unique_ptr<Image>> OpenStack(std::vector<LowerLayer> lowers, std::shared_ptr<RwLayer> upper) {
  StackParts parts;
  for (const LowerLayer& l : lowers) parts.lowers.push_back(l.file);
  OVBD_RETURN_IF_ERROR(CheckStackShape(parts.lowers, upper != nullptr));
  std::vector<LayerInfo> infos;
  for (size_t i = 0; i < lowers.size(); i++) {
    OVBD_ASSIGN_OR_RETURN(LayerInfo info, LowerInfo(lowers[i], i));
    parts.headers.push_back(info.header);
    parts.sizes.push_back(info.trailer.virtual_size);
    infos.push_back(std::move(info));
  }
  if (!infos.empty()) {
    auto merged = MergeLowers(&infos);
    if (!merged.ok()) return merged.status().WithContext("OpenImage: merging the lower indexes");
    parts.ro = std::move(merged).value();
  }
  if (upper) {
    parts.live.push_back(std::move(upper));
    parts.writable = true;
  }
  return std::unique_ptr<Image>(new StackImage(std::move(parts)));
}

Result<std::unique_ptr<Image>> OpenStack(std::vector<LowerLayer> lowers, std::unique_ptr<RwLayer> upper) {
  return OpenStack(std::move(lowers), std::shared_ptr<RwLayer>(std::move(upper)));
}

Result<std::unique_ptr<Image>> OpenImage(std::vector<std::shared_ptr<const ReadableFile>> lowers,
                                         std::unique_ptr<RwLayer> upper) {
  std::vector<LowerLayer> layers;
  for (auto& f : lowers) layers.push_back(LowerLayer{std::move(f), false});
  return OpenStack(std::move(layers), std::move(upper));
}

}  // namespace ovbd::lsmt
