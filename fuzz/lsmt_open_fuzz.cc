// Fuzz target: a read-only LSMT blob from hostile bytes.
//
//   bytes -> NewMemReadableFile -> lsmt::ReadLayerInfo -> (ok) lsmt::OpenImage([it]) -> reads
//
// Besides "no crash / no UB / no huge allocation", it checks what ReadLayerInfo promises: the
// kept segments are sorted, non-overlapping, 1..16383 sectors long, and data segments lie inside
// the blob's data area. A violated invariant aborts.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include "ovbd/io.h"
#include "ovbd/lsmt.h"

namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "lsmt_open_fuzz: invariant violated: %s\n", what);
    std::abort();
  }
}

// Reads [offset, offset+length) clipped to the image and to 64 KiB; any status is fine.
void ReadSome(const ovbd::ReadableFile& image, uint64_t offset, uint64_t length, std::vector<uint8_t>* buf) {
  const uint64_t size = image.Size();
  if (offset >= size) return;
  length = std::min<uint64_t>({length, size - offset, 64 * 1024});
  buf->resize(length);
  (void)image.ReadAt(offset, *buf);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ovbd;
  std::shared_ptr<const ReadableFile> blob = NewMemReadableFile("fuzz.lsmt", std::vector<uint8_t>(data, data + size));
  auto info = lsmt::ReadLayerInfo(*blob);
  if (!info.ok()) {
    Check(!info.status().message().empty(), "an error carries a message");
    return 0;
  }
  const auto& segs = info->segments;
  const uint64_t data_end = info->trailer.index_offset / lsmt::kSectorSize;
  for (size_t i = 0; i < segs.size(); i++) {
    const auto& s = segs[i];
    Check(s.length >= 1 && s.length <= lsmt::kMaxSegmentLength, "segment length in 1..16383");
    Check(s.tag == 0, "tags reset on load");
    Check(s.end() <= lsmt::kMaxOffset, "segment below the 2^50 sector limit");
    if (i > 0) Check(segs[i - 1].end() <= s.offset, "segments sorted and non-overlapping");
    if (!s.zeroed) Check(s.moffset >= 8 && s.moffset + s.length <= data_end, "data segment inside the data area");
  }

  auto image = lsmt::OpenImage({blob});
  if (!image.ok()) return 0;
  std::vector<uint8_t> buf;
  ReadSome(**image, 0, 65536, &buf);
  ReadSome(**image, 511, 1025, &buf);
  for (size_t i = 0; i < segs.size() && i < 8; i++) {
    ReadSome(**image, segs[i].offset * lsmt::kSectorSize, uint64_t{segs[i].length} * lsmt::kSectorSize, &buf);
    if (!segs[i].zeroed || buf.empty()) continue;
    // A zeroed segment of a single layer reads as zeros whenever the read succeeds.
    std::vector<uint8_t> z(std::min<uint64_t>(buf.size(), 4096));
    if ((*image)->ReadAt(segs[i].offset * lsmt::kSectorSize, z).ok()) {
      Check(std::all_of(z.begin(), z.end(), [](uint8_t b) { return b == 0; }), "zeroed segment reads zeros");
    }
  }
  if ((*image)->Size() > 4096) ReadSome(**image, (*image)->Size() - 4096, 4096, &buf);
  // The same blob stacked on itself merges indexes without trouble.
  if (segs.size() < 4096) {
    auto twice = lsmt::OpenImage({blob, blob});
    if (twice.ok()) ReadSome(**twice, 0, 65536, &buf);
  }
  return 0;
}
