#include "lsmt/blob_writer.h"

#include <algorithm>
#include <string>

#include "base/checked.h"
#include "lsmt/format.h"

namespace ovbd::lsmt {
namespace {

constexpr uint64_t kIndexAlignEntries = kHeaderSize / kSegmentBytes;  // 256
constexpr size_t kIndexWriteEntries = 64 * 1024;                      // 1 MiB per Append

// The sector after a segment's data in the blob. A zeroed entry owns no data, so the next entry
// continues it at the same moffset (this is how the split pieces of a long discard merge back).
uint64_t MEnd(const Segment& s) { return s.moffset + (s.zeroed ? 0 : s.length); }

bool Continues(const Segment& prev, const Segment& next) {
  return prev.end() == next.offset && MEnd(prev) == next.moffset && prev.zeroed == next.zeroed &&
         prev.tag == next.tag && prev.length + next.length < kMaxSegmentLength;
}

}  // namespace

Status BlobWriter::WriteHeader() {
  HeaderTrailer header = meta_;
  header.flags = kFlagsCommittedHeader;
  header.index_offset = 0;
  header.index_size = 0;
  return out_->Append(EncodeHeaderTrailer(header)).WithContext(out_->Name());
}

void BlobWriter::AddSegment(Segment s) {
  if (s.zeroed) {
    s.moffset = kSectorsPerHeader + reserved_sectors_;
    AddPiece(s);
    return;
  }
  // The reference copies a data segment in 32 KiB steps and records one entry per step before
  // merging neighbours (pcopy + compress_raw_index), so a long run is cut where the running sum
  // of 64-sector pieces would reach 16383. Adding the same pieces gives the same index.
  for (uint32_t done = 0; done < s.length;) {
    Segment piece = s;
    piece.offset = s.offset + done;
    piece.length = std::min<uint32_t>(kCopyPieceSectors, s.length - done);
    piece.moffset = kSectorsPerHeader + reserved_sectors_;
    reserved_sectors_ += piece.length;
    AddPiece(piece);
    done += piece.length;
  }
}

void BlobWriter::AddPiece(const Segment& s) {
  if (!index_.empty() && Continues(index_.back(), s)) {
    index_.back().length += s.length;
    return;
  }
  index_.push_back(s);
}

Status BlobWriter::AppendData(std::span<const uint8_t> data) {
  data_bytes_ += data.size();
  return out_->Append(data).WithContext(out_->Name());
}

Status BlobWriter::Finish() {
  if (data_bytes_ != reserved_sectors_ * kSectorSize) {
    return Status::InvalidArgument(out_->Name() + ": " + std::to_string(data_bytes_) +
                                   " data bytes written for " + std::to_string(reserved_sectors_) +
                                   " sectors of segments");
  }
  const uint64_t total = RoundUp(index_.size(), kIndexAlignEntries);
  if (total > kMaxRoIndexSize) {  // readers (ours and overlaybd) would refuse the blob
    return Status::NoSpace(out_->Name() + ": " + std::to_string(total) +
                           " index entries exceed the read-only cap of " + std::to_string(kMaxRoIndexSize));
  }
  std::vector<uint8_t> chunk;
  for (uint64_t first = 0; first < total; first += kIndexWriteEntries) {
    uint64_t n = std::min<uint64_t>(kIndexWriteEntries, total - first);
    chunk.assign(n * kSegmentBytes, 0);
    for (uint64_t i = 0; i < n; i++) {
      uint64_t k = first + i;
      EncodeSegment(k < index_.size() ? index_[k] : PaddingSegment(), &chunk[i * kSegmentBytes]);
    }
    OVBD_RETURN_IF_ERROR(out_->Append(chunk).WithContext(out_->Name()));
  }
  HeaderTrailer trailer = meta_;
  trailer.flags = kFlagsTrailer;
  trailer.index_offset = kHeaderSize + data_bytes_;
  trailer.index_size = total;
  return out_->Append(EncodeHeaderTrailer(trailer)).WithContext(out_->Name());
}

}  // namespace ovbd::lsmt
