// Sequential writer of a committed read-only blob, the form commit/merge/import all produce
// (notes §2.5):
//
//   | header 0x07, index fields 0 | data, in logical order | index | trailer 0x06 |
//                                                           N real entries + padding to a
//                                                           multiple of 256 (4 KiB)
//
// Segments are added in logical order; each gets moffset = the data cursor (zeroed ones too, without
// advancing it), and is merged into the previous entry when they continue each other
// (compress_raw_index: end == offset, mend == moffset, same zeroed and tag, summed length < 16383).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "ovbd/io.h"
#include "ovbd/lsmt.h"

namespace ovbd::lsmt {

class BlobWriter {
 public:
  // `meta` gives virtual_size, uuid, parent_uuid, user_tag (validated by the caller).
  BlobWriter(WritableFile* out, const HeaderTrailer& meta) : out_(out), meta_(meta) {}

  Status WriteHeader();
  // Adds the next segment (offset >= the previous end). Its moffset is assigned here; a data
  // segment reserves length*512 bytes that the caller then passes to AppendData.
  void AddSegment(Segment s);
  Status AppendData(std::span<const uint8_t> data);
  // Writes the index and the trailer. InvalidArgument if the appended data does not match the
  // reserved sectors.
  Status Finish();

  size_t entries() const { return index_.size(); }

 private:
  // Data segments are recorded in pieces of this many sectors (32 KiB), as the reference does.
  static constexpr uint32_t kCopyPieceSectors = 64;
  void AddPiece(const Segment& s);

  WritableFile* out_;
  HeaderTrailer meta_;
  std::vector<Segment> index_;
  uint64_t reserved_sectors_ = 0;  // data sectors promised by AddSegment
  uint64_t data_bytes_ = 0;        // data bytes appended
};

}  // namespace ovbd::lsmt
