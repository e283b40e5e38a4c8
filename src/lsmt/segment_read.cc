#include "lsmt/segment_read.h"

#include <algorithm>
#include <cstring>

namespace ovbd::lsmt {

SectorRange CoveringSectors(uint64_t offset, uint64_t size) {
  uint64_t first = offset / kSectorSize;
  uint64_t end = (offset + size + kSectorSize - 1) / kSectorSize;  // callers bound offset+size
  return SectorRange{first, end - first};
}

Status FillFromSegments(const std::vector<Segment>& segments, uint64_t offset,
                        std::span<uint8_t> buf, const BlobReader& read) {
  std::memset(buf.data(), 0, buf.size());
  const uint64_t end = offset + buf.size();
  for (const Segment& s : segments) {
    if (s.zeroed) continue;
    uint64_t seg_begin = s.offset * kSectorSize;
    uint64_t seg_end = s.end() * kSectorSize;
    uint64_t begin = std::max(seg_begin, offset);
    uint64_t stop = std::min(seg_end, end);
    if (begin >= stop) continue;
    uint64_t blob_offset = s.moffset * kSectorSize + (begin - seg_begin);
    OVBD_RETURN_IF_ERROR(read(s.tag, blob_offset, buf.subspan(begin - offset, stop - begin)));
  }
  return Status::OK();
}

Status ReadZeroPadded(const ReadableFile& file, uint64_t offset, std::span<uint8_t> buf) {
  uint64_t size = file.Size();
  uint64_t available = offset >= size ? 0 : std::min<uint64_t>(buf.size(), size - offset);
  if (available > 0) OVBD_RETURN_IF_ERROR(file.ReadAt(offset, buf.first(available)));
  std::memset(buf.data() + available, 0, buf.size() - available);
  return Status::OK();
}

}  // namespace ovbd::lsmt
