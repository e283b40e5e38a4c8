// Fuzz target: the bytes are a ZFile in memory. Open it, read every block (whole-file read,
// then a few unaligned reads) and run VerifyAll. Any outcome but a crash, a hang or a sanitizer
// report is fine; a successful read must return exactly Size() bytes.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "ovbd/io.h"
#include "ovbd/zfile.h"

namespace {

// Keeps one input from allocating gigabytes of output: the decompressed size can claim far
// more than the input holds only if the blocks really decompress that far.
constexpr uint64_t kMaxReadBytes = 64ull << 20;

void ReadEverything(const ovbd::zfile::Reader& r) {
  const uint64_t size = r.Size();
  if (size > kMaxReadBytes) return;
  std::vector<uint8_t> buf(size);
  (void)r.ReadAt(0, buf);
  // A few unaligned reads crossing block boundaries.
  const uint64_t bs = r.info().block_size;
  for (uint64_t off = bs / 2; off < size; off += bs * 3 + 1) {
    const uint64_t len = std::min<uint64_t>(size - off, bs + 7);
    (void)r.ReadAt(off, std::span<uint8_t>(buf.data(), len));
  }
  (void)r.VerifyAll();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = ovbd::NewMemReadableFile("fuzz.zfile", std::vector<uint8_t>(data, data + size));
  (void)ovbd::zfile::IsZFile(*file);
  auto reader = ovbd::zfile::Open(std::move(file));
  if (reader.ok()) ReadEverything(**reader);
  return 0;
}
