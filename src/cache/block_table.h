// On-disk block table of one cached key: DIR/<key>.meta (docs/design.md, "Local cache").
//
//   offset 0   header (32 bytes)
//     0  magic "OVBDCACH"      8  version u32 = 1     12 block_size u32
//     16 source_size u64       24 reserved u32 = 0    28 CRC32C of bytes [0, 28)
//   offset 32 + 16*b   entry of block b
//     0  length u32 (0: absent; else the block's length)
//     4  CRC32C of the block's bytes (seed kBlockCrcSeed)
//     8  reserved u32 = 0
//     12 CRC32C of entry bytes [0, 12) seeded with (block index low 32 bits ^ kEntryCrcSeed)
//
// All integers little-endian. An entry that is not all-zero length but fails its own CRC, has a
// length other than the block's, or a nonzero reserved field is Corruption (the block is
// missing). A table shorter than the header plus all entries reads the missing entries as absent.
#pragma once

#include <array>
#include <cstdint>
#include <span>

#include "ovbd/status.h"

namespace ovbd::cache {

inline constexpr size_t kTableHeaderSize = 32;
inline constexpr size_t kTableEntrySize = 16;
inline constexpr uint32_t kTableVersion = 1;
inline constexpr uint32_t kBlockCrcSeed = 0x0B0DCAC4;
inline constexpr uint32_t kEntryCrcSeed = 0x7AB1E5ED;

struct TableHeader {
  uint32_t block_size = 0;
  uint64_t source_size = 0;
};

struct TableEntry {
  uint32_t length = 0;  // 0: absent
  uint32_t crc = 0;     // BlockCrc of the block's bytes
};

using HeaderBytes = std::array<uint8_t, kTableHeaderSize>;
using EntryBytes = std::array<uint8_t, kTableEntrySize>;

HeaderBytes EncodeHeader(const TableHeader& header);
// Corruption on a wrong magic, version, reserved field or CRC. Does not validate block_size
// against the store's options (the caller does).
Result<TableHeader> DecodeHeader(std::span<const uint8_t, kTableHeaderSize> bytes);

// The entry of a present block (length > 0), or of an absent one (length 0: all zeros).
EntryBytes EncodeEntry(uint64_t block, const TableEntry& entry);
// `expected_length` is the block's length from the source size. All-zero bytes: absent entry.
Result<TableEntry> DecodeEntry(uint64_t block, uint32_t expected_length,
                               std::span<const uint8_t, kTableEntrySize> bytes);

inline uint64_t EntryOffset(uint64_t block) { return kTableHeaderSize + block * kTableEntrySize; }
uint32_t BlockCrc(std::span<const uint8_t> data);

}  // namespace ovbd::cache
