// Loading a read-only LSMT blob (notes §2.3): header at 0, trailer at EOF-4096, index in between.
// Every field is hostile: the caps are checked before anything is allocated, and each kept entry
// is checked for shape, order and moffset range before the blob is used.
#include <string>
#include <vector>

#include "base/coding.h"
#include "lsmt/format.h"
#include "ovbd/lsmt.h"

namespace ovbd::lsmt {
namespace {

Result<HeaderTrailer> ReadHeaderTrailerAt(const ReadableFile& blob, uint64_t offset) {
  std::vector<uint8_t> bytes(kHeaderSize);
  OVBD_RETURN_IF_ERROR(blob.ReadAt(offset, bytes));
  return DecodeHeaderTrailer(bytes);
}

// Flag bits 3..5 are not checked here: 3 and 5 are never used, and 4 (SPARSE_RW) only says how a
// writable layer's index is found. A sealed sparse layer (overlaybd's close_seal copies the bit
// into the trailer) has its index in the blob like any other; bits above 5 failed decoding.
Status CheckHeaderFlags(const HeaderTrailer& h) {
  if (!(h.flags & kFlagHeader)) return Status::Corruption("header flag bit 0 (header) is not set");
  if (!(h.flags & kFlagDataFile)) return Status::Corruption("header flag bit 1 (data file) is not set");
  return Status::OK();
}

Status CheckTrailer(const HeaderTrailer& t, uint64_t trailer_offset) {
  if (t.flags & kFlagHeader) return Status::Corruption("trailer has the header flag set");
  if (!(t.flags & kFlagDataFile)) return Status::Corruption("trailer flag bit 1 (data file) is not set");
  if (!(t.flags & kFlagSealed)) return Status::Corruption("trailer flag bit 2 (sealed) is not set");
  if (t.index_size > kMaxRoIndexSize) {
    return Status::Corruption("index_size " + std::to_string(t.index_size) + " exceeds the cap of " +
                              std::to_string(kMaxRoIndexSize) + " entries");
  }
  if (t.index_offset % kSectorSize != 0) {
    // Data ends at a sector boundary and the index follows it; every writer aligns it.
    return Status::Corruption("index_offset " + std::to_string(t.index_offset) + " is not a multiple of 512");
  }
  if (t.index_offset < kHeaderSize || t.index_offset > trailer_offset ||
      t.index_size * kSegmentBytes > trailer_offset - t.index_offset) {
    return Status::Corruption("index [" + std::to_string(t.index_offset) + ", +" +
                              std::to_string(t.index_size) + " entries) does not fit between the "
                              "header and the trailer at " + std::to_string(trailer_offset));
  }
  return Status::OK();
}

// Checks one kept entry against the previous kept entry and the data area.
Status CheckEntry(const Segment& s, const Segment* prev, uint64_t data_end_sector) {
  OVBD_RETURN_IF_ERROR(CheckSegmentShape(s));
  if (prev != nullptr && prev->end() > s.offset) {
    return Status::Corruption("not sorted or overlaps the previous entry (" + DescribeSegment(*prev) + ")");
  }
  return CheckSegmentMOffset(s, kSectorsPerHeader, data_end_sector);
}

// Decodes the index, dropping padding, resetting tags and validating every kept entry.
Status DecodeIndex(std::span<const uint8_t> bytes, uint64_t index_offset, LayerInfo* info) {
  const uint64_t data_end_sector = index_offset / kSectorSize;
  const size_t n = bytes.size() / kSegmentBytes;
  info->segments.reserve(n);
  for (size_t i = 0; i < n; i++) {
    Segment s = DecodeSegment(bytes.data() + i * kSegmentBytes);
    if (IsPadding(s)) {
      info->padding_entries++;
      continue;
    }
    s.tag = 0;
    const Segment* prev = info->segments.empty() ? nullptr : &info->segments.back();
    Status st = CheckEntry(s, prev, data_end_sector);
    if (!st.ok()) {
      return st.WithContext("index entry " + std::to_string(i) + " at byte " +
                            std::to_string(index_offset + i * kSegmentBytes) + " (" +
                            DescribeSegment(s) + ")");
    }
    info->segments.push_back(s);
  }
  return Status::OK();
}

Result<LayerInfo> ReadLayerInfoImpl(const ReadableFile& blob) {
  LayerInfo info;
  info.file_size = blob.Size();
  if (info.file_size < 2 * kHeaderSize) {
    return Status::Corruption("file size " + std::to_string(info.file_size) +
                              " is smaller than a header and a trailer (8192 bytes)");
  }
  auto header = ReadHeaderTrailerAt(blob, 0);
  if (!header.ok()) return header.status().WithContext("header at offset 0");
  OVBD_RETURN_IF_ERROR(CheckHeaderFlags(*header).WithContext("header at offset 0"));
  info.header = std::move(header).value();

  const uint64_t trailer_offset = info.file_size - kHeaderSize;
  const std::string where = "trailer at offset " + std::to_string(trailer_offset);
  auto trailer = ReadHeaderTrailerAt(blob, trailer_offset);
  if (!trailer.ok()) return trailer.status().WithContext(where);
  OVBD_RETURN_IF_ERROR(CheckTrailer(*trailer, trailer_offset).WithContext(where));
  info.trailer = std::move(trailer).value();

  std::vector<uint8_t> index(info.trailer.index_size * kSegmentBytes);  // capped above
  OVBD_RETURN_IF_ERROR(blob.ReadAt(info.trailer.index_offset, index));
  OVBD_RETURN_IF_ERROR(DecodeIndex(index, info.trailer.index_offset, &info));
  return info;
}

}  // namespace

Result<LayerInfo> ReadLayerInfo(const ReadableFile& blob) {
  auto info = ReadLayerInfoImpl(blob);
  if (!info.ok()) return info.status().WithContext(blob.Name());
  return info;
}

Result<bool> IsLsmtBlob(const ReadableFile& file) {
  if (file.Size() < kHeaderStructSize) return false;
  std::vector<uint8_t> bytes(kHeaderStructSize);
  OVBD_RETURN_IF_ERROR(file.ReadAt(0, bytes).WithContext(file.Name()));
  // Magic and the header bit only: a damaged blob is still "LSMT" so that ReadLayerInfo names
  // the damage instead of the blob being taken for raw content.
  return HasMagic(bytes) && (DecodeLE32(bytes.data() + kOffFlags) & kFlagHeader) != 0;
}

}  // namespace ovbd::lsmt
