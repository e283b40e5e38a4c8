// Content detection for info/check. The LSMT header is decoded with the lsmt module's format
// helpers; the RO layer is validated with lsmt::ReadLayerInfo.
#include "cli/probe.h"

#include <sys/stat.h>

#include <algorithm>
#include <vector>

#include "lsmt/format.h"

namespace ovbd::cli {
namespace {

Result<lsmt::HeaderTrailer> ReadLsmtHeader(const ReadableFile& content, const std::string& path) {
  if (content.Size() < lsmt::kHeaderSize) {
    return Status::Corruption(path + ": LSMT header: file is shorter than 4096 bytes");
  }
  std::vector<uint8_t> bytes(lsmt::kHeaderSize);
  OVBD_RETURN_IF_ERROR(content.ReadAt(0, bytes));
  auto header = lsmt::DecodeHeaderTrailer(bytes);
  if (!header.ok()) return header.status().WithContext(path + ": LSMT header");
  return header;
}

SegmentCounts CountSegments(const lsmt::LayerInfo& layer) {
  SegmentCounts c;
  for (const auto& s : layer.segments) (s.zeroed ? c.zeroed : c.data)++;
  c.padding = layer.padding_entries;
  return c;
}

// Records of an RW index file: [4096, size) in 16-byte records.
Result<SegmentCounts> CountIndexRecords(const ReadableFile& index, const std::string& path) {
  SegmentCounts c;
  uint64_t count = (index.Size() - lsmt::kHeaderSize) / lsmt::kSegmentBytes;
  if (count > lsmt::kMaxRwIndexRecords) {
    return Status::Corruption(path + ": " + std::to_string(count) + " index records exceed the limit");
  }
  std::vector<uint8_t> buf(64 * 1024 * lsmt::kSegmentBytes);
  for (uint64_t i = 0; i < count;) {
    uint64_t n = std::min<uint64_t>(count - i, buf.size() / lsmt::kSegmentBytes);
    std::span<uint8_t> span(buf.data(), n * lsmt::kSegmentBytes);
    OVBD_RETURN_IF_ERROR(index.ReadAt(lsmt::kHeaderSize + i * lsmt::kSegmentBytes, span));
    for (uint64_t j = 0; j < n; j++) {
      lsmt::Segment s = lsmt::DecodeSegment(span.data() + j * lsmt::kSegmentBytes);
      if (lsmt::IsPadding(s)) {
        c.padding++;
        continue;
      }
      Status shape = lsmt::CheckSegmentShape(s);
      if (!shape.ok()) return shape.WithContext(path + ": index record " + std::to_string(i + j));
      (s.zeroed ? c.zeroed : c.data)++;
    }
    i += n;
  }
  return c;
}

Status ClassifyLsmt(Probe* p) {
  const ReadableFile& content = *p->unwrapped.content;
  OVBD_ASSIGN_OR_RETURN(p->header, ReadLsmtHeader(content, p->path));
  if (!(p->header->flags & lsmt::kFlagDataFile)) {
    p->kind = "lsmt-rw-index";
    OVBD_ASSIGN_OR_RETURN(p->counts, CountIndexRecords(content, p->path));
    return Status::OK();
  }
  auto layer = lsmt::ReadLayerInfo(content);
  bool committed = p->header->flags & lsmt::kFlagSealed;
  if (!layer.ok() && (committed || p->unwrapped.zfile || p->unwrapped.tar)) {
    return layer.status().WithContext(p->path);
  }
  if (!layer.ok()) {
    p->kind = "lsmt-rw-data";
    return Status::OK();
  }
  p->kind = "lsmt-ro";
  p->counts = CountSegments(*layer);
  p->layer = std::move(layer).value();
  return Status::OK();
}

}  // namespace

Result<Probe> ProbeFile(const std::string& path) {
  Probe p;
  p.path = path;
  OVBD_ASSIGN_OR_RETURN(p.unwrapped, image::OpenLayerPath(path));
  struct stat st{};
  if (::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
    p.file_size = static_cast<uint64_t>(st.st_size);
  } else {
    p.file_size = p.unwrapped.zfile ? p.unwrapped.zfile->file_size : p.unwrapped.content->Size();
  }
  if (!p.unwrapped.is_lsmt) {
    p.kind = "raw";
    return p;
  }
  Status s = ClassifyLsmt(&p);
  if (!s.ok()) return s;
  return p;
}

std::string DescribeKind(const Probe& probe) {
  std::string text = probe.kind;
  if (probe.unwrapped.zfile) text += " in zfile";
  if (probe.unwrapped.tar) text += " in tar";
  return text;
}

}  // namespace ovbd::cli
