// What a file is, detected by content (for `ovbd info` and `ovbd check`):
//
//   [tar] -> [zfile] -> lsmt-ro | lsmt-rw-data | lsmt-rw-index | raw
//
// A sealed RW data file (index + trailer appended) is an lsmt-ro blob.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "ovbd/image.h"
#include "ovbd/lsmt.h"

namespace ovbd::cli {

struct SegmentCounts {
  uint64_t data = 0;
  uint64_t zeroed = 0;
  uint64_t padding = 0;
};

struct Probe {
  std::string path;
  uint64_t file_size = 0;
  image::Unwrapped unwrapped;
  std::string kind;                           // "lsmt-ro", "lsmt-rw-data", "lsmt-rw-index", "raw"
  std::optional<lsmt::HeaderTrailer> header;  // LSMT header at offset 0
  std::optional<lsmt::LayerInfo> layer;       // lsmt-ro
  SegmentCounts counts;                       // lsmt-ro: index entries; lsmt-rw-index: records
};

Result<Probe> ProbeFile(const std::string& path);
// "lsmt-ro in zfile in tar"
std::string DescribeKind(const Probe& probe);

}  // namespace ovbd::cli
