// Encoding of the block table (format in block_table.h). Every field is decoded explicitly.
#include "cache/block_table.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "base/coding.h"
#include "base/crc32c.h"

namespace ovbd::cache {
namespace {

constexpr char kMagic[8] = {'O', 'V', 'B', 'D', 'C', 'A', 'C', 'H'};

uint32_t EntryCrc(uint64_t block, const uint8_t* bytes) {
  return Crc32c(std::span<const uint8_t>(bytes, 12), static_cast<uint32_t>(block) ^ kEntryCrcSeed);
}

}  // namespace

uint32_t BlockCrc(std::span<const uint8_t> data) { return Crc32c(data, kBlockCrcSeed); }

HeaderBytes EncodeHeader(const TableHeader& header) {
  HeaderBytes b{};
  std::memcpy(b.data(), kMagic, sizeof(kMagic));
  EncodeLE32(b.data() + 8, kTableVersion);
  EncodeLE32(b.data() + 12, header.block_size);
  EncodeLE64(b.data() + 16, header.source_size);
  EncodeLE32(b.data() + 28, Crc32c(std::span<const uint8_t>(b.data(), 28)));
  return b;
}

Result<TableHeader> DecodeHeader(std::span<const uint8_t, kTableHeaderSize> b) {
  if (std::memcmp(b.data(), kMagic, sizeof(kMagic)) != 0) {
    return Status::Corruption("cache table: bad magic");
  }
  if (DecodeLE32(b.data() + 28) != Crc32c(std::span<const uint8_t>(b.data(), 28))) {
    return Status::Corruption("cache table: header CRC mismatch");
  }
  if (DecodeLE32(b.data() + 8) != kTableVersion || DecodeLE32(b.data() + 24) != 0) {
    return Status::Corruption("cache table: unknown version " + std::to_string(DecodeLE32(b.data() + 8)));
  }
  return TableHeader{DecodeLE32(b.data() + 12), DecodeLE64(b.data() + 16)};
}

EntryBytes EncodeEntry(uint64_t block, const TableEntry& entry) {
  EntryBytes b{};
  if (entry.length == 0) return b;
  EncodeLE32(b.data(), entry.length);
  EncodeLE32(b.data() + 4, entry.crc);
  EncodeLE32(b.data() + 12, EntryCrc(block, b.data()));
  return b;
}

Result<TableEntry> DecodeEntry(uint64_t block, uint32_t expected_length,
                               std::span<const uint8_t, kTableEntrySize> b) {
  if (std::all_of(b.begin(), b.end(), [](uint8_t x) { return x == 0; })) return TableEntry{};
  TableEntry entry{DecodeLE32(b.data()), DecodeLE32(b.data() + 4)};
  if (DecodeLE32(b.data() + 12) != EntryCrc(block, b.data()) || DecodeLE32(b.data() + 8) != 0 ||
      entry.length != expected_length) {
    return Status::Corruption("cache table: entry " + std::to_string(block) + " is broken");
  }
  return entry;
}

}  // namespace ovbd::cache
