// The ZFile header/trailer: 512 bytes at the start and at the end of every ZFile
// (docs/format/zfile.md, "HeaderTrailer"; notes: overlaybd.md section 1.2).
//
//   off  size  field                 off  size  field
//   0    8     magic0 "ZFile\0\1\0"   64   4     index_crc (CRC32C seed 0 of the jump table)
//   8    16    magic1 "tuji.yyf@Alibaba"  68  4   reserved
//   24   4     size (= 96)            72   4     block_size
//   28   4     digest                 76   1     algo (1 LZ4, 2 zstd)
//   32   8     flags                  77   1     level (ignored)   78 use_dict   79 pad
//   40   8     index_offset           80   4     opt reserved
//   48   8     index_size (entries)   84   4     dict_size
//   56   8     original_size          88   1     verify (per-block CRC)   89..511 zero
//
// All integers little-endian. digest = raw CRC32C (seed 0) of the 512 bytes with bytes 28..31
// zeroed. Encoding and decoding are explicit (no struct casts). Decoding never fails; the
// Validate* functions apply the reader's rules and return a cause without file context.
//
// Flag rules (what ovbd accepts; the reference reader ignores unknown bits):
//   bit 0 HEADER, bit 1 TYPE (must be 1), bit 2 SEALED (required on the trailer, ignored on the
//   header), bit 3 HEADER_OVERWRITE (header only), bit 4 CALC_DIGEST, bit 5 IDX_COMP
//   (NotSupported), bits 6..63 unknown: NotSupported, on the header and on the trailer.
#pragma once

#include <array>
#include <cstdint>
#include <span>

#include "ovbd/status.h"
#include "ovbd/zfile.h"

namespace ovbd::zfile {

inline constexpr size_t kHeaderTrailerSize = 512;
inline constexpr uint32_t kHeaderStructSize = 96;  // the `size` field

inline constexpr uint64_t kFlagHeader = 1u << 0;
inline constexpr uint64_t kFlagType = 1u << 1;
inline constexpr uint64_t kFlagSealed = 1u << 2;
inline constexpr uint64_t kFlagHeaderOverwrite = 1u << 3;
inline constexpr uint64_t kFlagCalcDigest = 1u << 4;
inline constexpr uint64_t kFlagIndexCompressed = 1u << 5;
inline constexpr uint64_t kKnownFlags = 0x3F;

// Flag values every writer produces.
inline constexpr uint64_t kHeaderFlags = kFlagHeader | kFlagType | kFlagCalcDigest;  // 0x13
inline constexpr uint64_t kTrailerFlags = kFlagType | kFlagSealed | kFlagCalcDigest;  // 0x16
inline constexpr uint64_t kOverwrittenHeaderFlags = kHeaderFlags | kFlagHeaderOverwrite;  // 0x1B

inline constexpr uint64_t kMaxIndexSize = 1'000'000'000;  // MAX_ZFILE_INDEX_SIZE
inline constexpr uint32_t kBlockCrcSeed = 100007;         // seed of the per-block CRC32C
inline constexpr uint32_t kBlockCrcSize = 4;

// Field offsets inside the 512 bytes.
inline constexpr size_t kOffMagic0 = 0;
inline constexpr size_t kOffMagic1 = 8;
inline constexpr size_t kOffSize = 24;
inline constexpr size_t kOffDigest = 28;
inline constexpr size_t kOffFlags = 32;
inline constexpr size_t kOffIndexOffset = 40;
inline constexpr size_t kOffIndexSize = 48;
inline constexpr size_t kOffOriginalSize = 56;
inline constexpr size_t kOffIndexCrc = 64;
inline constexpr size_t kOffReserved0 = 68;
inline constexpr size_t kOffBlockSize = 72;
inline constexpr size_t kOffAlgo = 76;
inline constexpr size_t kOffLevel = 77;
inline constexpr size_t kOffUseDict = 78;
inline constexpr size_t kOffOptReserved = 80;
inline constexpr size_t kOffDictSize = 84;
inline constexpr size_t kOffVerify = 88;
static_assert(kOffVerify + 1 + 7 == kHeaderStructSize, "HeaderTrailer struct is 96 bytes");
static_assert(kOffIndexCrc + 4 + 4 == kOffBlockSize, "CompressOptions starts at 72");
static_assert(kHeaderStructSize - kOffBlockSize == 24, "CompressOptions is 24 bytes");
static_assert(kHeaderStructSize <= kHeaderTrailerSize);

using HeaderTrailerBytes = std::array<uint8_t, kHeaderTrailerSize>;

// The decoded fields (the magic is not stored: see magic_ok).
struct HeaderTrailer {
  uint32_t size = kHeaderStructSize;
  uint32_t digest = 0;
  uint64_t flags = 0;
  uint64_t index_offset = 0;
  uint64_t index_size = 0;
  uint64_t original_size = 0;
  uint32_t index_crc = 0;
  uint32_t block_size = 0;
  uint8_t algo = 0;
  uint8_t level = 0;
  uint8_t use_dict = 0;
  uint32_t dict_size = 0;
  uint8_t verify = 0;
  // Set by Decode: both magics match / stored digest equals the computed one.
  bool magic_ok = false;
  bool digest_ok = false;
  uint32_t computed_digest = 0;

  bool Has(uint64_t flag) const { return (flags & flag) != 0; }
};

// Encodes `ht` (magic included). When flags has CALC_DIGEST the digest is computed, otherwise
// the digest field is written as ht.digest.
HeaderTrailerBytes EncodeHeaderTrailer(const HeaderTrailer& ht);
// Decodes every field; never fails.
HeaderTrailer DecodeHeaderTrailer(std::span<const uint8_t, kHeaderTrailerSize> bytes);
// Raw CRC32C (seed 0) of the 512 bytes with the digest field taken as zero.
uint32_t HeaderTrailerDigest(std::span<const uint8_t, kHeaderTrailerSize> bytes);

// Magic, size field, flag bits (unknown / IDX_COMP / TYPE), HEADER bit == want_header, the
// SEALED bit on a trailer and the digest when CALC_DIGEST is set.
Status ValidateHeaderTrailer(const HeaderTrailer& ht, bool want_header);
// algo, block_size, dict_size, verify of the record that carries the metadata.
Status ValidateOptions(const HeaderTrailer& ht);

// True for a power of two in [kMinBlockSize, kMaxBlockSize].
bool IsValidBlockSize(uint64_t block_size);

}  // namespace ovbd::zfile
