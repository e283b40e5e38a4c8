// LSMT on-disk encoding: the 4096-byte header/trailer and the 16-byte index entry
// (normative spec: docs/format/lsmt.md; facts: shared/format/overlaybd.md §2.2, §2.4).
//
//   HeaderTrailer (4096 B, fields little-endian, bytes 390..4095 zero)
//   0 magic0 8 | 8 magic1 16 | 24 size=390 u32 | 28 flags u32 | 32 index_offset u64 (bytes)
//   40 index_size u64 (entries) | 48 virtual_size u64 | 56 uuid char[37] | 93 parent char[37]
//   130 reserved u16 | 132 version u8 | 133 sub_version u8 | 134 user_tag char[256]
//
//   SegmentMapping (16 B) = two LE u64:
//   lo = offset (50 bits) | length << 50          hi = moffset (55 bits) | zeroed << 55 | tag << 56
//
// Decoding never trusts the bytes: DecodeHeaderTrailer checks magic and the text fields; the
// caller checks flags and index ranges. Errors carry no file name; callers add it.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "ovbd/lsmt.h"
#include "ovbd/status.h"

namespace ovbd::lsmt {

inline constexpr size_t kSegmentBytes = 16;
inline constexpr uint32_t kHeaderStructSize = 390;
inline constexpr size_t kUuidFieldSize = 37;
inline constexpr uint64_t kSectorsPerHeader = kHeaderSize / kSectorSize;  // first data sector

// Field offsets inside the header/trailer.
inline constexpr size_t kOffMagic0 = 0;
inline constexpr size_t kOffMagic1 = 8;
inline constexpr size_t kOffSize = 24;
inline constexpr size_t kOffFlags = 28;
inline constexpr size_t kOffIndexOffset = 32;
inline constexpr size_t kOffIndexSize = 40;
inline constexpr size_t kOffVirtualSize = 48;
inline constexpr size_t kOffUuid = 56;
inline constexpr size_t kOffParentUuid = 93;
inline constexpr size_t kOffReserved = 130;
inline constexpr size_t kOffVersion = 132;
inline constexpr size_t kOffSubVersion = 133;
inline constexpr size_t kOffUserTag = 134;
static_assert(kOffUserTag + kMaxUserTag == kHeaderStructSize);
static_assert(kOffParentUuid + kUuidFieldSize == kOffReserved);
static_assert(kOffUuid + kUuidFieldSize == kOffParentUuid);

inline constexpr std::array<uint8_t, 8> kMagic0 = {0x4C, 0x53, 0x4D, 0x54, 0x00, 0x01, 0x02, 0x00};
inline constexpr std::array<uint8_t, 16> kMagic1 = {0x65, 0x7E, 0x63, 0xD2, 0x94, 0x44, 0x08, 0x4C,
                                                    0xA2, 0xD2, 0xC8, 0xEC, 0x4F, 0xCF, 0xAE, 0x8A};

// Bits 0..5 are defined (3 "gc_layer" and 5 "info_valid" are never used and ignored; 4 SPARSE_RW
// is ignored in read-only blobs and refused in writable layers). Any other bit is NotSupported.
inline constexpr uint32_t kKnownFlags = 0x3F;

// Flag combinations the writers produce.
inline constexpr uint32_t kFlagsCommittedHeader = kFlagHeader | kFlagDataFile | kFlagSealed;  // 0x07
inline constexpr uint32_t kFlagsTrailer = kFlagDataFile | kFlagSealed;                        // 0x06
inline constexpr uint32_t kFlagsRwDataHeader = kFlagHeader | kFlagDataFile;                   // 0x03
inline constexpr uint32_t kFlagsRwIndexHeader = kFlagHeader;                                  // 0x01

// Encodes all 4096 bytes. uuid "" is written as the null UUID; the user tag is cut at 256 bytes.
std::vector<uint8_t> EncodeHeaderTrailer(const HeaderTrailer& ht);
// True when the bytes start with magic0 + magic1.
bool HasMagic(std::span<const uint8_t> bytes);
// Decodes a header or trailer (`bytes` must hold at least kHeaderStructSize bytes). Corruption if
// the magic is wrong; NotSupported for a flag bit above 5, a version other than 1 or a virtual_size
// that is not a multiple of 512 up to kMaxVirtualSize (0 is valid: "no size"). A uuid field
// whose text is not a UUID decodes as "" (the null UUID).
Result<HeaderTrailer> DecodeHeaderTrailer(std::span<const uint8_t> bytes);

void EncodeSegment(const Segment& s, uint8_t* out);  // writes kSegmentBytes
Segment DecodeSegment(const uint8_t* in);            // reads kSegmentBytes
inline bool IsPadding(const Segment& s) { return s.offset == kInvalidOffset; }
// The invalid mapping used for padding: offset = 2^50-1, everything else 0.
inline Segment PaddingSegment() { return Segment{kInvalidOffset, 0, 0, false, 0}; }

// Shape checks shared by the RO loader and the RW replay. `what` names the entry in messages.
// length in 1..16383 and offset+length <= kMaxOffset.
Status CheckSegmentShape(const Segment& s);
// Data: begin <= moffset and moffset+length <= end. Zeroed: begin <= moffset <= end.
Status CheckSegmentMOffset(const Segment& s, uint64_t begin, uint64_t end);

// "offset=.. length=.. moffset=.. zeroed=.." for error messages.
std::string DescribeSegment(const Segment& s);

}  // namespace ovbd::lsmt
