#include "base/units.h"

#include <cctype>
#include <cmath>
#include <cstdio>

namespace ovbd {

namespace {
int ShiftForSuffix(std::string_view s) {
  if (s.empty() || s == "B" || s == "b") return 0;
  char c = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
  std::string_view rest = s.substr(1);
  if (!(rest.empty() || rest == "B" || rest == "iB" || rest == "b")) return -1;
  switch (c) {
    case 'K': return 10;
    case 'M': return 20;
    case 'G': return 30;
    case 'T': return 40;
    case 'P': return 50;
    default: return -1;
  }
}
}  // namespace

Result<uint64_t> ParseSize(std::string_view text) {
  auto bad = [&](const char* why) {
    return Status::InvalidArgument("invalid size '" + std::string(text) + "': " + why);
  };
  size_t i = 0;
  uint64_t whole = 0;
  bool any_digit = false;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
    uint64_t d = static_cast<uint64_t>(text[i] - '0');
    if (whole > (UINT64_MAX - d) / 10) return bad("too large");
    whole = whole * 10 + d;
    any_digit = true;
    i++;
  }
  double frac = 0;
  if (i < text.size() && text[i] == '.') {
    i++;
    double scale = 0.1;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
      frac += scale * (text[i] - '0');
      scale /= 10;
      any_digit = true;
      i++;
    }
  }
  if (!any_digit) return bad("expected a number such as 4096, 64M or 1G");
  int shift = ShiftForSuffix(text.substr(i));
  if (shift < 0) return bad("unknown unit (use K, M, G, T or P)");
  if (shift < 64 && whole > (UINT64_MAX >> shift)) return bad("too large");
  uint64_t value = whole << shift;
  if (frac > 0) {
    double extra = std::ldexp(frac, shift);
    if (extra != std::floor(extra)) return bad("not a whole number of bytes");
    value += static_cast<uint64_t>(extra);
  }
  return value;
}

std::string FormatSize(uint64_t bytes) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int u = 0;
  double v = static_cast<double>(bytes);
  while (v >= 1024 && u < 5) {
    v /= 1024;
    u++;
  }
  char buf[32];
  if (u == 0) {
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  } else if (v == std::floor(v)) {
    std::snprintf(buf, sizeof buf, "%.0f %s", v, kUnits[u]);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[u]);
  }
  return buf;
}

}  // namespace ovbd
