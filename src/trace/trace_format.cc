// Trace file encoding and strict decoding (docs/format/trace.md).
//
// The decoder reads the file line by line in one pass: header, layer lines, range lines, then the
// checksum line, which must be the last bytes. Every token has exactly one accepted spelling
// (single spaces, no sign, no leading zero, lowercase hex), so a decoded trace re-encodes to the
// input bytes; the fuzz target checks that. Caps are checked before anything is allocated.
#include <algorithm>
#include <array>
#include <charconv>
#include <cstdio>
#include <set>
#include <span>

#include "base/checked.h"
#include "base/crc32c.h"
#include "ovbd/trace.h"

namespace ovbd::trace {
namespace {

constexpr std::string_view kMagic = "ovbd-trace";
constexpr size_t kMaxDecimalDigits = 20;  // UINT64_MAX = 18446744073709551615
constexpr size_t kMinRangeLine = 8;       // "r 0 0 1\n"

// Worst case encoding: every cap reached, every number at its widest.
constexpr uint64_t kMaxEncodedSize = 13                             // "ovbd-trace 1\n"
                                     + 11                           // "layers 255\n"
                                     + kMaxLayers * (6 + 3 + 1 + kMaxKeyLength + 1)
                                     + 15                           // "ranges 1048576\n"
                                     + kMaxRanges * (2 + 3 + 1 + 20 + 1 + 20 + 1)
                                     + 16;                          // "crc32c xxxxxxxx\n"
static_assert(kMaxEncodedSize <= kMaxTraceFileSize, "a valid trace must fit the file cap");

// "\"text\"" for error messages: at most 48 chars, non-printable bytes as \xNN.
std::string Quote(std::string_view s) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size() && i < 48; i++) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "\\x%02x", c);
      out += hex;
    }
  }
  return out + (s.size() > 48 ? "\"..." : "\"");
}

bool ValidKey(std::string_view key) {
  if (key.empty() || key.size() > kMaxKeyLength) return false;
  for (char c : key) {
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  return true;
}

// A decimal number: 1..20 digits, no sign, no leading zero, no overflow.
bool ParseU64(std::string_view s, uint64_t* out) {
  if (s.empty() || s.size() > kMaxDecimalDigits || (s.size() > 1 && s[0] == '0')) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    if (!CheckedMul(v, 10, &v) || !CheckedAdd(v, static_cast<uint64_t>(c - '0'), &v)) return false;
  }
  *out = v;
  return true;
}

// Splits `line` at single spaces into exactly out.size() non-empty fields.
bool SplitFields(std::string_view line, std::span<std::string_view> out) {
  size_t n = 0;
  while (n < out.size()) {
    const size_t space = line.find(' ');
    out[n++] = line.substr(0, space);
    if (out[n - 1].empty()) return false;
    if (space == std::string_view::npos) return n == out.size();
    line.remove_prefix(space + 1);
  }
  return false;  // more fields than expected
}

std::string Hex8(uint32_t v) {
  char buf[9];
  std::snprintf(buf, sizeof(buf), "%08x", v);
  return buf;
}

bool ParseHex8(std::string_view s, uint32_t* out) {
  if (s.size() != 8) return false;
  uint32_t v = 0;
  for (char c : s) {
    const bool digit = c >= '0' && c <= '9';
    if (!digit && !(c >= 'a' && c <= 'f')) return false;
    v = (v << 4) | static_cast<uint32_t>(digit ? c - '0' : c - 'a' + 10);
  }
  *out = v;
  return true;
}

// Hands out the lines of the input and builds "line L (offset O): cause" errors.
class LineReader {
 public:
  explicit LineReader(std::string_view bytes) : bytes_(bytes) {}

  // The next line without its '\n'. Corruption if the input ends before a '\n'.
  Result<std::string_view> Next(std::string_view expected) {
    start_ = pos_;
    line_no_++;
    const size_t nl = bytes_.find('\n', pos_);
    if (nl == std::string_view::npos) {
      return Error(pos_ == bytes_.size() ? "file ends where " + std::string(expected) +
                                               " was expected (truncated)"
                                         : "last line has no newline (truncated)");
    }
    pos_ = nl + 1;
    return bytes_.substr(start_, nl - start_);
  }
  Status Error(std::string_view cause) const {
    return Status::Corruption("line " + std::to_string(line_no_) + " (offset " +
                              std::to_string(start_) + "): " + std::string(cause));
  }
  std::string_view BeforeLine() const { return bytes_.substr(0, start_); }
  size_t remaining() const { return bytes_.size() - pos_; }
  size_t pos() const { return pos_; }

 private:
  std::string_view bytes_;
  size_t pos_ = 0;
  size_t start_ = 0;
  size_t line_no_ = 0;
};

// Line 1: "ovbd-trace 1".
Status ParseMagic(LineReader& in, std::string_view bytes) {
  const std::string prefix = std::string(kMagic) + " ";
  if (bytes.substr(0, prefix.size()) != prefix) {
    return Status::InvalidArgument("line 1 (offset 0): not an ovbd trace file (expected \"" +
                                   prefix + "VERSION\", got " +
                                   Quote(bytes.substr(0, bytes.find('\n'))) + ")");
  }
  OVBD_ASSIGN_OR_RETURN(std::string_view line, in.Next("the header"));
  uint64_t version = 0;
  if (!ParseU64(line.substr(prefix.size()), &version)) {
    return in.Error("bad version number in " + Quote(line));
  }
  if (version != kTraceVersion) {
    return Status::NotSupported("line 1 (offset 0): trace format version " + std::to_string(version) +
                                " is not supported (this reader supports " +
                                std::to_string(kTraceVersion) + ")");
  }
  return Status::OK();
}

// "KEYWORD N" with N <= cap. `previous` is the keyword of the lines before it (if any), so
// that one line too many of those is reported as such.
Result<uint64_t> ParseCount(LineReader& in, std::string_view keyword, uint64_t cap,
                            std::string_view previous) {
  OVBD_ASSIGN_OR_RETURN(std::string_view line, in.Next("\"" + std::string(keyword) + " N\""));
  std::array<std::string_view, 2> f;
  if (!SplitFields(line, f) || f[0] != keyword) {
    if (!previous.empty() && line.starts_with(std::string(previous) + " ")) {
      return in.Error("more \"" + std::string(previous) + "\" lines than declared");
    }
    return in.Error("expected \"" + std::string(keyword) + " N\", got " + Quote(line));
  }
  uint64_t n = 0;
  if (!ParseU64(f[1], &n)) return in.Error("bad " + std::string(keyword) + " count " + Quote(f[1]));
  if (n > cap) {
    return in.Error(std::string(keyword) + " count " + std::to_string(n) + " exceeds the cap of " +
                    std::to_string(cap));
  }
  return n;
}

// A line that should have been item `index` of `count` but is something else.
Status CountMismatch(LineReader& in, std::string_view count_keyword, std::string_view line_keyword,
                     uint64_t index, uint64_t count, std::string_view line) {
  return in.Error("\"" + std::string(count_keyword) + " " + std::to_string(count) + "\" but only " +
                  std::to_string(index) + " \"" + std::string(line_keyword) +
                  "\" lines follow (got " + Quote(line) + ")");
}

// "layer I KEY", I == index.
Status ParseLayerLine(LineReader& in, uint64_t index, uint64_t count, std::set<std::string_view>& seen,
                      Trace& t) {
  OVBD_ASSIGN_OR_RETURN(std::string_view line, in.Next("a \"layer\" line"));
  std::array<std::string_view, 3> f;
  const bool split = SplitFields(line, f);
  if (!split && !line.starts_with("layer ")) {
    return CountMismatch(in, "layers", "layer", index, count, line);
  }
  if (!split || f[0] != "layer") return in.Error("expected \"layer ID KEY\", got " + Quote(line));
  uint64_t id = 0;
  if (!ParseU64(f[1], &id) || id != index) {
    return in.Error("layer id " + Quote(f[1]) + " is not " + std::to_string(index) +
                    " (layers are listed in order from 0)");
  }
  if (!ValidKey(f[2])) {
    return in.Error("layer key " + Quote(f[2]) + " is not 1.." + std::to_string(kMaxKeyLength) +
                    " printable characters without spaces");
  }
  if (!seen.insert(f[2]).second) return in.Error("duplicate layer key " + Quote(f[2]));
  t.layers.emplace_back(f[2]);
  return Status::OK();
}

Status ParseRangeFields(LineReader& in, const std::array<std::string_view, 4>& f, Trace& t) {
  TraceRange r;
  uint64_t layer = 0;
  if (!ParseU64(f[1], &layer)) return in.Error("bad layer id " + Quote(f[1]));
  if (layer >= t.layers.size()) {
    return in.Error("layer id " + std::to_string(layer) + " out of range (" +
                    std::to_string(t.layers.size()) + " layers)");
  }
  if (!ParseU64(f[2], &r.offset)) return in.Error("bad offset " + Quote(f[2]));
  if (!ParseU64(f[3], &r.length)) return in.Error("bad length " + Quote(f[3]));
  if (r.length == 0) return in.Error("range length is 0");
  uint64_t end = 0;
  if (!CheckedAdd(r.offset, r.length, &end)) return in.Error("offset + length overflows 64 bits");
  r.layer = static_cast<uint32_t>(layer);
  t.ranges.push_back(r);
  return Status::OK();
}

// "r LAYER OFFSET LENGTH".
Status ParseRangeLine(LineReader& in, uint64_t index, uint64_t count, Trace& t) {
  OVBD_ASSIGN_OR_RETURN(std::string_view line, in.Next("an \"r\" line"));
  std::array<std::string_view, 4> f;
  const bool split = SplitFields(line, f);
  if (!split && !line.starts_with("r ")) return CountMismatch(in, "ranges", "r", index, count, line);
  if (!split || f[0] != "r") return in.Error("expected \"r LAYER OFFSET LENGTH\", got " + Quote(line));
  return ParseRangeFields(in, f, t);
}

// "crc32c XXXXXXXX" over every byte before it; nothing may follow.
Status ParseChecksum(LineReader& in) {
  OVBD_ASSIGN_OR_RETURN(std::string_view line, in.Next("the \"crc32c\" line"));
  std::array<std::string_view, 2> f;
  if (!SplitFields(line, f) || f[0] != "crc32c") {
    if (line.starts_with("r ")) return in.Error("more \"r\" lines than declared");
    return in.Error("expected \"crc32c XXXXXXXX\", got " + Quote(line));
  }
  uint32_t stored = 0;
  if (!ParseHex8(f[1], &stored)) {
    return in.Error("bad checksum " + Quote(f[1]) + " (expected 8 lowercase hex digits)");
  }
  const uint32_t actual = TraceChecksum(in.BeforeLine());
  if (stored != actual) {
    return in.Error("checksum mismatch: file says crc32c " + Hex8(stored) + ", content has " +
                    Hex8(actual));
  }
  if (in.remaining() != 0) {
    return Status::Corruption("offset " + std::to_string(in.pos()) + ": " +
                              std::to_string(in.remaining()) + " trailing bytes after the checksum line");
  }
  return Status::OK();
}

Status ParseLayers(LineReader& in, Trace& t) {
  OVBD_ASSIGN_OR_RETURN(uint64_t n, ParseCount(in, "layers", kMaxLayers, ""));
  t.layers.reserve(n);
  std::set<std::string_view> seen;
  for (uint64_t i = 0; i < n; i++) OVBD_RETURN_IF_ERROR(ParseLayerLine(in, i, n, seen, t));
  return Status::OK();
}

Status ParseRanges(LineReader& in, Trace& t) {
  OVBD_ASSIGN_OR_RETURN(uint64_t n, ParseCount(in, "ranges", kMaxRanges, "layer"));
  t.ranges.reserve(std::min<uint64_t>(n, in.remaining() / kMinRangeLine));
  for (uint64_t i = 0; i < n; i++) OVBD_RETURN_IF_ERROR(ParseRangeLine(in, i, n, t));
  return Status::OK();
}

// Why `r` breaks §1.2, or nullptr.
const char* RangeProblem(const TraceRange& r, size_t layers) {
  uint64_t end = 0;
  if (r.layer >= layers) return "layer id out of range";
  if (r.length == 0) return "length is 0";
  if (!CheckedAdd(r.offset, r.length, &end)) return "offset + length overflows 64 bits";
  return nullptr;
}

void AppendNumber(std::string& out, uint64_t v) {
  char buf[kMaxDecimalDigits];
  const auto res = std::to_chars(buf, buf + sizeof(buf), v);
  out.append(buf, res.ptr);
}

}  // namespace

uint32_t TraceChecksum(std::string_view bytes) {
  return ~Crc32cExtend(~0u, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

Status ValidateTrace(const Trace& t) {
  if (t.layers.size() > kMaxLayers) {
    return Status::InvalidArgument("trace has " + std::to_string(t.layers.size()) +
                                   " layers, more than the cap of " + std::to_string(kMaxLayers));
  }
  if (t.ranges.size() > kMaxRanges) {
    return Status::InvalidArgument("trace has " + std::to_string(t.ranges.size()) +
                                   " ranges, more than the cap of " + std::to_string(kMaxRanges));
  }
  std::set<std::string_view> seen;
  for (size_t i = 0; i < t.layers.size(); i++) {
    const std::string where = "trace layer " + std::to_string(i) + ": ";
    if (!ValidKey(t.layers[i])) return Status::InvalidArgument(where + "bad key " + Quote(t.layers[i]));
    if (!seen.insert(t.layers[i]).second) {
      return Status::InvalidArgument(where + "duplicate key " + Quote(t.layers[i]));
    }
  }
  for (size_t i = 0; i < t.ranges.size(); i++) {
    const char* problem = RangeProblem(t.ranges[i], t.layers.size());
    if (problem) return Status::InvalidArgument("trace range " + std::to_string(i) + ": " + problem);
  }
  return Status::OK();
}

std::string EncodeTrace(const Trace& t) {
  std::string out = std::string(kMagic) + " " + std::to_string(kTraceVersion) + "\n";
  out += "layers " + std::to_string(t.layers.size()) + "\n";
  for (size_t i = 0; i < t.layers.size(); i++) {
    out += "layer " + std::to_string(i) + " " + t.layers[i] + "\n";
  }
  out += "ranges " + std::to_string(t.ranges.size()) + "\n";
  out.reserve(out.size() + t.ranges.size() * 24 + 16);
  for (const TraceRange& r : t.ranges) {
    out += "r ";
    AppendNumber(out, r.layer);
    out += ' ';
    AppendNumber(out, r.offset);
    out += ' ';
    AppendNumber(out, r.length);
    out += '\n';
  }
  out += "crc32c " + Hex8(TraceChecksum(out)) + "\n";
  return out;
}

Result<Trace> DecodeTrace(std::string_view bytes) {
  if (bytes.size() > kMaxTraceFileSize) {
    return Status::Corruption("trace is " + std::to_string(bytes.size()) +
                              " bytes, more than any valid trace (cap " +
                              std::to_string(kMaxTraceFileSize) + ")");
  }
  LineReader in(bytes);
  OVBD_RETURN_IF_ERROR(ParseMagic(in, bytes));
  Trace t;
  OVBD_RETURN_IF_ERROR(ParseLayers(in, t));
  OVBD_RETURN_IF_ERROR(ParseRanges(in, t));
  OVBD_RETURN_IF_ERROR(ParseChecksum(in));
  return t;
}

}  // namespace ovbd::trace
