// UUID text: 36 characters, dashes at 8/13/18/23, hex digits elsewhere. The format stores it
// uppercase (photon's uuid4_unparse_upper) and reads any case; the all-zero UUID means "none".
#include <cctype>
#include <random>
#include <string>
#include <string_view>

#include "ovbd/lsmt.h"

namespace ovbd::lsmt {
namespace {

constexpr size_t kUuidTextSize = 36;

bool IsDashPosition(size_t i) { return i == 8 || i == 13 || i == 18 || i == 23; }

}  // namespace

Result<std::string> NormalizeUuid(std::string_view text) {
  if (text.empty()) return std::string();
  if (text.size() != kUuidTextSize) {
    return Status::InvalidArgument("uuid \"" + std::string(text) + "\": expected 36 characters");
  }
  std::string out(text);
  bool all_zero = true;
  for (size_t i = 0; i < out.size(); i++) {
    char c = out[i];
    if (IsDashPosition(i)) {
      if (c != '-') return Status::InvalidArgument("uuid \"" + std::string(text) + "\": expected '-'");
      continue;
    }
    if (!std::isxdigit(static_cast<unsigned char>(c))) {
      return Status::InvalidArgument("uuid \"" + std::string(text) + "\": not a hex digit");
    }
    out[i] = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    all_zero = all_zero && c == '0';
  }
  if (all_zero) return std::string();
  return out;
}

std::string NewRandomUuid() {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::random_device device;
  uint8_t bytes[16];
  for (size_t i = 0; i < sizeof(bytes); i += 4) {
    uint32_t v = device();
    for (size_t j = 0; j < 4; j++) bytes[i + j] = static_cast<uint8_t>(v >> (8 * j));
  }
  bytes[6] = static_cast<uint8_t>((bytes[6] & 0x0F) | 0x40);  // version 4
  bytes[8] = static_cast<uint8_t>((bytes[8] & 0x3F) | 0x80);  // RFC 4122 variant
  std::string out;
  for (size_t i = 0; i < sizeof(bytes); i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
    out += kHex[bytes[i] >> 4];
    out += kHex[bytes[i] & 0x0F];
  }
  return out;
}

}  // namespace ovbd::lsmt
