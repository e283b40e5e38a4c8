// Fuzz target: reopening a writable LSMT layer (data file + index file) from hostile bytes.
//
//   byte 0      flags: bit0 = prepend a valid RW data-file header to the data part,
//                      bit1 = prepend a valid RW index-file header to the index part,
//                      bit2 = after a successful open, write + discard + reopen and check
//   bytes 1..2  length of the data part (little-endian, clamped)
//   rest        data part, then index part
//
// The template headers (1 MiB virtual size) let the fuzzer spend its time on the records instead
// of rediscovering 4096-byte headers. After OpenRwLayer succeeds, Segments() must be sorted and
// non-overlapping, reads must not crash, and with bit2 a write must read back after a reopen.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "ovbd/io.h"
#include "ovbd/lsmt.h"

namespace {

using Bytes = std::vector<uint8_t>;

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "rw_replay_fuzz: invariant violated: %s\n", what);
    std::abort();
  }
}

struct Templates {
  Bytes data_header;
  Bytes index_header;
};

const Templates& GetTemplates() {
  static const Templates t = [] {
    Templates out;
    auto data = std::make_shared<ovbd::MemStorage>();
    auto index = std::make_shared<ovbd::MemStorage>();
    ovbd::lsmt::CreateOptions opts;
    opts.virtual_size = 1 << 20;
    opts.uuid = "5EED0000-0000-4000-8000-000000000001";
    auto rw = ovbd::lsmt::CreateRwLayer(ovbd::NewMemFile("d", data), ovbd::NewMemFile("i", index), opts);
    Check(rw.ok(), "template RW layer can be created");
    rw->reset();
    out.data_header = data->bytes;
    out.index_header = index->bytes;
    return out;
  }();
  return t;
}

void CheckSegments(const ovbd::lsmt::RwLayer& layer) {
  auto segs = layer.Segments();
  for (size_t i = 0; i < segs.size(); i++) {
    Check(segs[i].length >= 1 && segs[i].length <= ovbd::lsmt::kMaxSegmentLength, "segment length in 1..16383");
    if (i > 0) Check(segs[i - 1].end() <= segs[i].offset, "segments sorted and non-overlapping");
  }
}

void ReadSome(const ovbd::lsmt::RwLayer& layer, uint64_t offset, uint64_t length) {
  const uint64_t vsize = layer.VirtualSize();
  if (vsize == 0 || offset >= vsize) return;
  length = std::min<uint64_t>({length, vsize - offset, 64 * 1024});
  Bytes buf(length);
  (void)layer.Read(offset, buf);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ovbd;
  if (size < 3) return 0;
  const uint8_t flags = data[0];
  const size_t split = std::min<size_t>(size - 3, data[1] | (size_t{data[2]} << 8));
  const uint8_t* rest = data + 3;
  Bytes data_bytes, index_bytes;
  if (flags & 1) data_bytes = GetTemplates().data_header;
  if (flags & 2) index_bytes = GetTemplates().index_header;
  data_bytes.insert(data_bytes.end(), rest, rest + split);
  index_bytes.insert(index_bytes.end(), rest + split, data + size);

  auto data_storage = std::make_shared<MemStorage>();
  auto index_storage = std::make_shared<MemStorage>();
  data_storage->bytes = std::move(data_bytes);
  index_storage->bytes = std::move(index_bytes);
  auto layer = lsmt::OpenRwLayer(NewMemFile("fuzz.data", data_storage), NewMemFile("fuzz.index", index_storage));
  if (!layer.ok()) return 0;
  CheckSegments(**layer);
  auto segs = (*layer)->Segments();
  ReadSome(**layer, 0, 65536);
  for (size_t i = 0; i < segs.size() && i < 8; i++) {
    ReadSome(**layer, segs[i].offset * lsmt::kSectorSize, uint64_t{segs[i].length} * lsmt::kSectorSize);
    auto found = (*layer)->Lookup(segs[i].offset, segs[i].length);
    Check(!found.empty(), "Lookup finds a live segment");
  }
  if (!(flags & 4)) return 0;

  // Append after replay, then reopen: the new write and discard must be there.
  const uint64_t vsize = (*layer)->VirtualSize();
  if (vsize < 8192 || vsize % 512 != 0) return 0;
  const uint64_t at = std::min<uint64_t>(size % 64, vsize / 512 - 8) * 512;
  Bytes sector(4096);
  for (size_t i = 0; i < sector.size(); i++) sector[i] = static_cast<uint8_t>(i * 7 + flags);
  if (!(*layer)->Write(at, sector).ok()) return 0;
  if (!(*layer)->Discard(at + 1024, 512).ok()) return 0;
  if (!(*layer)->Sync().ok()) return 0;
  layer->reset();
  auto again = lsmt::OpenRwLayer(NewMemFile("fuzz.data", data_storage), NewMemFile("fuzz.index", index_storage));
  Check(again.ok(), "a layer that opened and was written reopens");
  CheckSegments(**again);
  Bytes got(4096);
  Check((*again)->Read(at, got).ok(), "the written range reads back");
  std::memset(sector.data() + 1024, 0, 512);
  Check(got == sector, "the write (and discard) survive a reopen");
  return 0;
}
