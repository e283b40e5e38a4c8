// Commit (notes §2.5, §3.5): the live content of an image, in logical order, as one read-only
// blob. Data runs that are contiguous in one source blob are copied in 1 MiB reads, whatever the
// segment boundaries; zeroed segments are kept (they hide lower layers) and copy nothing.
#include <algorithm>
#include <string>
#include <vector>

#include "lsmt/blob_writer.h"
#include "lsmt/commit_options.h"
#include "ovbd/lsmt.h"

namespace ovbd::lsmt {

Result<HeaderTrailer> CommitMeta(const CommitOptions& options, uint64_t virtual_size,
                                 const std::string& default_parent) {
  if (options.user_tag.size() > kMaxUserTag) {
    return Status::InvalidArgument("user tag is " + std::to_string(options.user_tag.size()) +
                                   " bytes; the limit is 256");
  }
  HeaderTrailer meta;
  meta.virtual_size = virtual_size;
  meta.user_tag = options.user_tag;
  if (options.uuid) {
    OVBD_ASSIGN_OR_RETURN(meta.uuid, NormalizeUuid(*options.uuid));
  }
  meta.parent_uuid = default_parent;
  if (options.parent_uuid) {
    OVBD_ASSIGN_OR_RETURN(meta.parent_uuid, NormalizeUuid(*options.parent_uuid));
  }
  return meta;
}

namespace {

constexpr size_t kCopyChunk = 1 << 20;

uint64_t DataBytes(const std::vector<Segment>& segments) {
  uint64_t sectors = 0;
  for (const Segment& s : segments) sectors += s.zeroed ? 0 : s.length;
  return sectors * kSectorSize;
}

// Segments [i, j) that continue each other in the same source blob.
size_t RunEnd(const std::vector<Segment>& segments, size_t i) {
  size_t j = i + 1;
  while (j < segments.size() && !segments[j].zeroed && segments[j].tag == segments[i].tag &&
         segments[j].moffset == segments[j - 1].moffset + segments[j - 1].length) {
    j++;
  }
  return j;
}

class Copier {
 public:
  Copier(const Image& image, BlobWriter* writer, const ProgressFn& progress, uint64_t total)
      : image_(image), writer_(writer), progress_(progress), total_(total), buf_(kCopyChunk) {}

  // Copies `sectors` sectors of layer `tag` starting at sector `moffset`.
  Status CopyRun(uint8_t tag, uint64_t moffset, uint64_t sectors) {
    uint64_t offset = moffset * kSectorSize;
    uint64_t left = sectors * kSectorSize;
    while (left > 0) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(left, buf_.size()));
      std::span<uint8_t> piece(buf_.data(), n);
      OVBD_RETURN_IF_ERROR(image_.ReadLayerData(tag, offset, piece));
      OVBD_RETURN_IF_ERROR(writer_->AppendData(piece));
      offset += n;
      left -= n;
      done_ += n;
      if (progress_) progress_(done_, total_);
    }
    return Status::OK();
  }

 private:
  const Image& image_;
  BlobWriter* writer_;
  const ProgressFn& progress_;
  uint64_t total_;
  uint64_t done_ = 0;
  std::vector<uint8_t> buf_;
};

Status WriteSegments(const Image& image, const std::vector<Segment>& segments, BlobWriter* writer,
                     const ProgressFn& progress) {
  Copier copier(image, writer, progress, DataBytes(segments));
  for (size_t i = 0; i < segments.size();) {
    if (segments[i].zeroed) {
      writer->AddSegment(segments[i++]);
      continue;
    }
    size_t j = RunEnd(segments, i);
    uint64_t sectors = 0;
    for (size_t k = i; k < j; k++) {
      writer->AddSegment(segments[k]);
      sectors += segments[k].length;
    }
    OVBD_RETURN_IF_ERROR(copier.CopyRun(segments[i].tag, segments[i].moffset, sectors));
    i = j;
  }
  return Status::OK();
}

}  // namespace

Status Commit(const Image& image, WritableFile* out, const CommitOptions& options) {
  if (out == nullptr) return Status::InvalidArgument("Commit: null output");
  uint64_t vsize = image.top_meta().virtual_size > 0 ? image.top_meta().virtual_size : image.Size();
  auto meta = CommitMeta(options, vsize, image.bottom_meta().parent_uuid);
  if (!meta.ok()) return meta.status().WithContext("commit");
  BlobWriter writer(out, *meta);
  OVBD_RETURN_IF_ERROR(writer.WriteHeader());
  OVBD_RETURN_IF_ERROR(WriteSegments(image, image.Segments(), &writer, options.progress));
  return writer.Finish();
}

}  // namespace ovbd::lsmt
