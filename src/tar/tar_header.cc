// ustar header fields. The layouts of numbers mirror libtar (which overlaybd's tar writer
// follows), so that a wrapped blob is byte-identical to overlaybd-commit -t output.
#include "tar/tar_header.h"

#include <cstdio>
#include <algorithm>
#include <cstring>

namespace ovbd::tar {
namespace {

constexpr std::string_view kMagic = "ustar";  // followed by NUL
constexpr std::string_view kVersion = "00";

bool IsOctalDigit(uint8_t c) { return c >= '0' && c <= '7'; }

Result<uint64_t> DecodeBase256(std::span<const uint8_t> field, std::string_view name) {
  if (field[0] & 0x40) return Status::Corruption(std::string(name) + ": negative base-256 number");
  uint64_t value = field[0] & 0x3F;
  for (size_t i = 1; i < field.size(); i++) {
    if (value >> 56) return Status::Corruption(std::string(name) + ": base-256 number overflows 64 bits");
    value = (value << 8) | field[i];
  }
  return value;
}

}  // namespace

uint32_t HeaderChecksum(Block block) {
  uint32_t sum = 0;
  for (size_t i = 0; i < kBlockSize; i++) {
    bool in_chksum = i >= kChksumOffset && i < kChksumOffset + kChksumLength;
    sum += in_chksum ? uint32_t{' '} : block[i];
  }
  return sum;
}

bool IsValidHeader(Block block) {
  if (std::memcmp(block.data() + kMagicOffset, kMagic.data(), kMagic.size()) != 0) return false;
  if (std::memcmp(block.data() + kVersionOffset, kVersion.data(), kVersion.size()) != 0) return false;
  auto stored = DecodeNumber(block.subspan(kChksumOffset, kChksumLength), "chksum");
  return stored.ok() && *stored == HeaderChecksum(block);
}

Result<uint64_t> DecodeNumber(std::span<const uint8_t> field, std::string_view name) {
  if (!field.empty() && (field[0] & 0x80)) return DecodeBase256(field, name);
  size_t i = 0;
  while (i < field.size() && field[i] == ' ') i++;
  uint64_t value = 0;
  for (; i < field.size() && IsOctalDigit(field[i]); i++) {
    if (value >> 61) return Status::Corruption(std::string(name) + ": octal number overflows 64 bits");
    value = value * 8 + (field[i] - '0');
  }
  for (; i < field.size(); i++) {
    if (field[i] != ' ' && field[i] != '\0') {
      return Status::Corruption(std::string(name) + ": invalid character in octal number");
    }
  }
  return value;  // an all-blank field is 0, as GNU tar reads it
}

void EncodeOctal(std::span<uint8_t> field, uint64_t value) {
  std::memset(field.data(), 0, field.size());
  std::string text(field.size() + 24, '\0');
  int n = std::snprintf(text.data(), text.size(), "%*llo ", static_cast<int>(field.size() - 2),
                        static_cast<unsigned long long>(value));
  std::memcpy(field.data(), text.data(), std::min(field.size() - 1, static_cast<size_t>(n)));
}

void EncodeOctalNoNul(std::span<uint8_t> field, uint64_t value) {
  std::string text(field.size() + 24, '\0');
  std::snprintf(text.data(), text.size(), "%*llo", static_cast<int>(field.size() - 1),
                static_cast<unsigned long long>(value));
  std::memcpy(field.data(), text.data(), field.size());
  field[field.size() - 1] = ' ';
}

void EncodeString(std::span<uint8_t> field, std::string_view text) {
  std::memset(field.data(), 0, field.size());
  std::memcpy(field.data(), text.data(), std::min(field.size(), text.size()));
}

void SealHeader(MutableBlock block) {
  std::memcpy(block.data() + kMagicOffset, kMagic.data(), kMagic.size() + 1);
  std::memcpy(block.data() + kVersionOffset, kVersion.data(), kVersion.size());
  EncodeOctal(block.subspan(kChksumOffset, kChksumLength), HeaderChecksum(block));
}

}  // namespace ovbd::tar
