// The digest table format (docs/format/digest-table.md): building, encoding, decoding.
//
// Decoding checks the rules in the order the spec lists them, so that the first broken rule
// decides the status (the tests pin each one); sizes read from the blob are checked against
// the cap and the blob's own length before anything is allocated.
#include "ovbd/digest_table.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "base/coding.h"
#include "base/crc32c.h"
#include "base/hash.h"

namespace ovbd::remote {
namespace {

// Header fields: offsets of docs/format/digest-table.md §2.
constexpr char kMagic[8] = {'O', 'V', 'B', 'D', 'D', 'G', 'T', '1'};
constexpr size_t kOffMagic = 0;
constexpr size_t kOffVersion = 8;
constexpr size_t kOffFlags = 12;
constexpr size_t kOffAlgorithm = 16;
constexpr size_t kOffChunkSize = 20;
constexpr size_t kOffBlobSize = 24;
constexpr size_t kOffChunkCount = 32;
constexpr size_t kOffReserved = 40;
constexpr size_t kOffCrc = 60;
constexpr size_t kReservedSize = kOffCrc - kOffReserved;
static_assert(kOffCrc + 4 == kDigestTableHeaderSize, "the CRC is the header's last field");
static_assert(kReservedSize == 20);

constexpr uint32_t kVersion = 1;
constexpr uint32_t kKnownFlags = 0;  // no flag is defined in version 1
constexpr uint32_t kAlgorithmSha256 = 1;
constexpr uint64_t kPushMaxChunks = 1u << 20;  // push keeps tables at <= 32 MiB of digests
constexpr size_t kBuildReadBytes = 4u << 20;

bool ValidChunkSize(uint64_t c) {
  return c >= kMinDigestChunkSize && c <= kMaxDigestChunkSize && std::has_single_bit(c);
}

uint64_t ChunksOf(uint64_t blob_size, uint64_t chunk_size) {
  return blob_size / chunk_size + (blob_size % chunk_size != 0 ? 1 : 0);
}

std::string At(const std::string& name, const char* field, size_t offset) {
  return name + ": digest table " + field + " (offset " + std::to_string(offset) + ")";
}

// §3 steps 1-3: length, magic, CRC. Nothing else is trusted before the CRC matched.
Status CheckFraming(std::span<const uint8_t> b, const std::string& name) {
  if (b.size() < kDigestTableHeaderSize) {
    return Status::Corruption(name + ": digest table of " + std::to_string(b.size()) +
                              " bytes is shorter than its 64-byte header");
  }
  if (std::memcmp(b.data() + kOffMagic, kMagic, sizeof(kMagic)) != 0) {
    return Status::Corruption(At(name, "magic", kOffMagic) + ": not \"OVBDDGT1\"");
  }
  uint32_t stored = DecodeLE32(b.data() + kOffCrc);
  uint32_t computed = Crc32c(b.first(kOffCrc));
  if (stored != computed) {
    return Status::Corruption(At(name, "header_crc", kOffCrc) + ": stored " + std::to_string(stored) +
                              ", computed " + std::to_string(computed));
  }
  return Status::OK();
}

// §3 steps 4-6: what this reader can read.
Status CheckSupported(std::span<const uint8_t> b, const std::string& name) {
  if (uint32_t v = DecodeLE32(b.data() + kOffVersion); v != kVersion) {
    return Status::NotSupported(At(name, "version", kOffVersion) + ": " + std::to_string(v) + " (supported: 1)");
  }
  if (uint32_t f = DecodeLE32(b.data() + kOffFlags); (f & ~kKnownFlags) != 0) {
    return Status::NotSupported(At(name, "flags", kOffFlags) + ": unknown bits " + std::to_string(f));
  }
  if (uint32_t a = DecodeLE32(b.data() + kOffAlgorithm); a != kAlgorithmSha256) {
    return Status::NotSupported(At(name, "hash_algorithm", kOffAlgorithm) + ": " + std::to_string(a) +
                                " (supported: 1 = sha256)");
  }
  return Status::OK();
}

// §3 steps 7-11: geometry. Returns the chunk count.
Result<uint64_t> CheckGeometry(std::span<const uint8_t> b, const std::string& name) {
  uint32_t chunk_size = DecodeLE32(b.data() + kOffChunkSize);
  if (!ValidChunkSize(chunk_size)) {
    return Status::Corruption(At(name, "chunk_size", kOffChunkSize) + ": " + std::to_string(chunk_size) +
                              " is not a power of two in 4096..16777216");
  }
  if (std::any_of(b.begin() + kOffReserved, b.begin() + kOffCrc, [](uint8_t x) { return x != 0; })) {
    return Status::Corruption(At(name, "reserved bytes", kOffReserved) + ": not zero");
  }
  uint64_t blob_size = DecodeLE64(b.data() + kOffBlobSize);
  uint64_t count = DecodeLE64(b.data() + kOffChunkCount);
  if (count != ChunksOf(blob_size, chunk_size)) {
    return Status::Corruption(At(name, "chunk_count", kOffChunkCount) + ": " + std::to_string(count) +
                              ", but a blob of " + std::to_string(blob_size) + " bytes has " +
                              std::to_string(ChunksOf(blob_size, chunk_size)) + " chunks");
  }
  if (count > kMaxDigestChunks) {
    return Status::NotSupported(At(name, "chunk_count", kOffChunkCount) + ": " + std::to_string(count) +
                                " is above the limit of " + std::to_string(kMaxDigestChunks));
  }
  if (b.size() != DigestTableBytes(count)) {
    return Status::Corruption(name + ": digest table is " + std::to_string(b.size()) + " bytes, " +
                              std::to_string(count) + " chunks need exactly " +
                              std::to_string(DigestTableBytes(count)));
  }
  return count;
}

Status HashRange(const ReadableFile& blob, uint64_t offset, std::span<uint8_t> buf, uint32_t chunk_size,
                 DigestTable& table) {
  OVBD_RETURN_IF_ERROR(blob.ReadAt(offset, buf));
  Sha256 sha;
  for (size_t pos = 0; pos < buf.size(); pos += chunk_size) {
    sha.Update(buf.subspan(pos, std::min<size_t>(chunk_size, buf.size() - pos)));
    table.chunks.push_back(sha.Final());
  }
  return Status::OK();
}

}  // namespace

uint32_t ChooseDigestChunkSize(uint64_t blob_size) {
  uint32_t c = kDefaultDigestChunkSize;
  while (c < kMaxDigestChunkSize && ChunksOf(blob_size, c) > kPushMaxChunks) c *= 2;
  return c;
}

Result<DigestTable> BuildDigestTable(const ReadableFile& blob, uint32_t chunk_size, const ProgressFn& progress) {
  if (!ValidChunkSize(chunk_size)) {
    return Status::InvalidArgument("digest table chunk size " + std::to_string(chunk_size) +
                                   " is not a power of two in 4 KiB..16 MiB");
  }
  DigestTable table;
  table.chunk_size = chunk_size;
  table.blob_size = blob.Size();
  uint64_t count = ChunksOf(table.blob_size, chunk_size);
  if (count > kMaxDigestChunks) {
    return Status::NotSupported(blob.Name() + ": " + std::to_string(count) + " chunks of " +
                                std::to_string(chunk_size) + " bytes are above the digest table limit of " +
                                std::to_string(kMaxDigestChunks));
  }
  table.chunks.reserve(count);
  std::vector<uint8_t> buf(std::max<size_t>(kBuildReadBytes, chunk_size));  // a multiple of chunk_size
  for (uint64_t off = 0; off < table.blob_size;) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), table.blob_size - off));
    OVBD_RETURN_IF_ERROR(HashRange(blob, off, std::span(buf.data(), n), chunk_size, table));
    off += n;
    if (progress) progress(off, table.blob_size);
  }
  return table;
}

std::vector<uint8_t> EncodeDigestTable(const DigestTable& table) {
  std::vector<uint8_t> out(DigestTableBytes(table.chunks.size()), 0);
  std::memcpy(out.data() + kOffMagic, kMagic, sizeof(kMagic));
  EncodeLE32(out.data() + kOffVersion, kVersion);
  EncodeLE32(out.data() + kOffFlags, 0);
  EncodeLE32(out.data() + kOffAlgorithm, kAlgorithmSha256);
  EncodeLE32(out.data() + kOffChunkSize, table.chunk_size);
  EncodeLE64(out.data() + kOffBlobSize, table.blob_size);
  EncodeLE64(out.data() + kOffChunkCount, table.chunks.size());
  EncodeLE32(out.data() + kOffCrc, Crc32c(std::span(out.data(), kOffCrc)));
  uint8_t* p = out.data() + kDigestTableHeaderSize;
  for (const auto& d : table.chunks) p = std::copy(d.begin(), d.end(), p);
  return out;
}

Result<DigestTable> DecodeDigestTable(std::span<const uint8_t> bytes, const std::string& name) {
  OVBD_RETURN_IF_ERROR(CheckFraming(bytes, name));
  OVBD_RETURN_IF_ERROR(CheckSupported(bytes, name));
  OVBD_ASSIGN_OR_RETURN(uint64_t count, CheckGeometry(bytes, name));
  DigestTable table;
  table.chunk_size = DecodeLE32(bytes.data() + kOffChunkSize);
  table.blob_size = DecodeLE64(bytes.data() + kOffBlobSize);
  table.chunks.resize(count);
  const uint8_t* p = bytes.data() + kDigestTableHeaderSize;
  for (auto& d : table.chunks) {
    std::memcpy(d.data(), p, d.size());
    p += d.size();
  }
  return table;
}

}  // namespace ovbd::remote
