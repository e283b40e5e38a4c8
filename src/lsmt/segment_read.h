// The one read helper of the LSMT module: turns a byte range of a virtual device plus the
// segments (sectors) that cover it into reads of layer blobs.
//
//   device bytes  [offset ........................................ offset+n)
//   sectors     |  s0  |  s1  |  s2  | ...                      |  sk  |
//   segments       [data tag 1 ]  hole  [zeroed]  [data tag 0   ]
//                  read blob bytes      zeros     read blob bytes
//
// Works at any byte alignment: each data segment contributes the byte intersection of its sector
// range with the request, read from its blob at moffset*512 + (position - offset*512). Holes and
// zeroed segments read as zeros. So no head/body/tail bounce buffers are needed anywhere.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "ovbd/io.h"
#include "ovbd/lsmt.h"

namespace ovbd::lsmt {

// Reads `buf.size()` bytes of the blob a segment's tag names at byte `offset`.
using BlobReader = std::function<Status(uint8_t tag, uint64_t offset, std::span<uint8_t> buf)>;

// First sector and sector count covering the bytes [offset, offset+size).
struct SectorRange {
  uint64_t offset = 0;
  uint64_t length = 0;
};
SectorRange CoveringSectors(uint64_t offset, uint64_t size);

// Fills buf = device bytes [offset, offset+buf.size()) from `segments` (sorted, non-overlapping,
// in sectors). Bytes not covered by a data segment become zero.
Status FillFromSegments(const std::vector<Segment>& segments, uint64_t offset,
                        std::span<uint8_t> buf, const BlobReader& read);

// Reads from `file` at `offset`; the part of buf past the end of the file is zero-filled (a data
// entry reaching past the end of its blob reads zeros there, notes §2.6).
Status ReadZeroPadded(const ReadableFile& file, uint64_t offset, std::span<uint8_t> buf);

}  // namespace ovbd::lsmt
