// Loading what a ZFile says about itself (notes: overlaybd.md section 1.3):
//
//   header @0 --HEADER_OVERWRITE?--> yes: header fields, trailer not read
//                                    no:  trailer @ size-512 fields (incl. opt)
//   -> caps (index_size <= 1e9, jump table between index_offset and the trailer, block count
//      == ceil(original_size / block_size)) -> read jump table -> CRC -> JumpTable::Build
//
// Every check happens before the allocation it guards. Errors carry the file name and the
// offset/field at fault. A Corruption drops the bytes read from `file` (Invalidate) and, if a
// reread may differ, loads again as ReadOptions says (zfile/refetch.h).
#pragma once

#include <memory>

#include "ovbd/io.h"
#include "ovbd/zfile.h"
#include "zfile/jump_table.h"

namespace ovbd::zfile {

struct Metadata {
  Info info;
  JumpTable table;
};

Result<Metadata> LoadMetadata(const ReadableFile& file, const ReadOptions& options = {});

}  // namespace ovbd::zfile
