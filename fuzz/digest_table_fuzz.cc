// Fuzz target: a digest table blob (docs/format/digest-table.md) from hostile bytes.
//
//   bytes -> remote::DecodeDigestTable -> (ok) chunk count = ceil(blob_size / chunk_size) <= cap
//                                              EncodeDigestTable == bytes   (one encoding per table)
//
// The decoder must turn every malformed table into a Status with a message (no crash, no UB, no
// allocation sized by an unchecked field).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <vector>

#include "ovbd/digest_table.h"

namespace {

void Fail(const char* what) {
  std::fprintf(stderr, "digest_table_fuzz: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace remote = ovbd::remote;
  std::span<const uint8_t> bytes(data, size);
  auto table = remote::DecodeDigestTable(bytes, "fuzz");
  if (!table.ok()) {
    if (table.status().message().empty()) Fail("error without a message");
    return 0;
  }
  const uint64_t c = table->chunk_size;
  if (table->ChunkCount() > remote::kMaxDigestChunks) Fail("chunk count above the cap accepted");
  if (table->ChunkCount() != table->blob_size / c + (table->blob_size % c != 0)) Fail("chunk count does not fit the blob size");
  std::vector<uint8_t> encoded = remote::EncodeDigestTable(*table);
  if (!std::equal(encoded.begin(), encoded.end(), bytes.begin(), bytes.end())) Fail("re-encodes to different bytes");
  return 0;
}
