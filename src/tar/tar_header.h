// Encoding and decoding of one 512-byte ustar header block (POSIX.1-2001 ustar, as libtar and
// overlaybd write it). Field offsets are fixed by the standard; numbers are octal text, or
// base-256 (high bit of the first byte set) for big sizes.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "ovbd/status.h"

namespace ovbd::tar {

inline constexpr size_t kBlockSize = 512;

// Field offsets and lengths in a header block.
inline constexpr size_t kNameOffset = 0, kNameLength = 100;
inline constexpr size_t kModeOffset = 100;
inline constexpr size_t kUidOffset = 108;
inline constexpr size_t kGidOffset = 116;
inline constexpr size_t kSizeOffset = 124, kSizeLength = 12;
inline constexpr size_t kMtimeOffset = 136;
inline constexpr size_t kChksumOffset = 148, kChksumLength = 8;
inline constexpr size_t kTypeflagOffset = 156;
inline constexpr size_t kMagicOffset = 257;   // "ustar\0"
inline constexpr size_t kVersionOffset = 263; // "00"
inline constexpr size_t kUnameOffset = 265, kUnameLength = 32;
inline constexpr size_t kGnameOffset = 297;

inline constexpr char kTypeRegular = '0';
inline constexpr char kTypePax = 'x';

using Block = std::span<const uint8_t, kBlockSize>;
using MutableBlock = std::span<uint8_t, kBlockSize>;

// Sum of the header bytes with the checksum field counted as spaces.
uint32_t HeaderChecksum(Block block);
// Magic "ustar", version "00" and a checksum field equal to HeaderChecksum().
bool IsValidHeader(Block block);
// Decodes a numeric field: octal text (spaces/NULs around it) or base-256.
Result<uint64_t> DecodeNumber(std::span<const uint8_t> field, std::string_view name);

// libtar's two octal layouts: "%*o " + NUL (mode, uid, gid, chksum) and "%*o" with the last
// byte a space (size, mtime).
void EncodeOctal(std::span<uint8_t> field, uint64_t value);
void EncodeOctalNoNul(std::span<uint8_t> field, uint64_t value);
// Copies `text` (truncated to the field) into a zeroed field.
void EncodeString(std::span<uint8_t> field, std::string_view text);
// Writes magic, version and the checksum (call last).
void SealHeader(MutableBlock block);

}  // namespace ovbd::tar
