#include "lsmt/format.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "base/coding.h"

namespace ovbd::lsmt {
namespace {

constexpr uint64_t kOffsetMask = (1ULL << 50) - 1;
constexpr uint64_t kMOffsetMask = (1ULL << 55) - 1;
constexpr std::string_view kNullUuidText = "00000000-0000-0000-0000-000000000000";

// The text up to the first NUL of a fixed-size field.
std::string_view FieldText(std::span<const uint8_t> bytes, size_t offset, size_t size) {
  const char* p = reinterpret_cast<const char*>(bytes.data() + offset);
  return std::string_view(p, strnlen(p, size));
}

std::string Hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%X", v);
  return buf;
}

void PutText(uint8_t* out, size_t size, std::string_view text) {
  std::memcpy(out, text.data(), std::min(size, text.size()));
}

// The uuids are informational (nothing reads data by them, and overlaybd ignores a failed
// parse), so text that is not a UUID reads as the null UUID instead of failing the open.
std::string DecodeUuidField(std::span<const uint8_t> bytes, size_t offset) {
  auto uuid = NormalizeUuid(FieldText(bytes, offset, kUuidFieldSize));
  return uuid.ok() ? std::move(uuid).value() : std::string();
}

}  // namespace

std::vector<uint8_t> EncodeHeaderTrailer(const HeaderTrailer& ht) {
  std::vector<uint8_t> out(kHeaderSize, 0);
  uint8_t* p = out.data();
  std::copy(kMagic0.begin(), kMagic0.end(), p + kOffMagic0);
  std::copy(kMagic1.begin(), kMagic1.end(), p + kOffMagic1);
  EncodeLE32(p + kOffSize, kHeaderStructSize);
  EncodeLE32(p + kOffFlags, ht.flags);
  EncodeLE64(p + kOffIndexOffset, ht.index_offset);
  EncodeLE64(p + kOffIndexSize, ht.index_size);
  EncodeLE64(p + kOffVirtualSize, ht.virtual_size);
  PutText(p + kOffUuid, kUuidFieldSize - 1, ht.uuid.empty() ? kNullUuidText : ht.uuid);
  PutText(p + kOffParentUuid, kUuidFieldSize - 1,
          ht.parent_uuid.empty() ? kNullUuidText : ht.parent_uuid);
  p[kOffVersion] = ht.version;
  p[kOffSubVersion] = ht.sub_version;
  PutText(p + kOffUserTag, kMaxUserTag, ht.user_tag);
  return out;
}

bool HasMagic(std::span<const uint8_t> bytes) {
  return bytes.size() >= kOffMagic1 + kMagic1.size() &&
         std::equal(kMagic0.begin(), kMagic0.end(), bytes.begin() + kOffMagic0) &&
         std::equal(kMagic1.begin(), kMagic1.end(), bytes.begin() + kOffMagic1);
}

Result<HeaderTrailer> DecodeHeaderTrailer(std::span<const uint8_t> bytes) {
  if (bytes.size() < kHeaderStructSize) return Status::Corruption("header/trailer is truncated");
  if (!HasMagic(bytes)) return Status::Corruption("bad magic (not an LSMT header/trailer)");
  HeaderTrailer ht;
  const uint8_t* p = bytes.data();
  ht.flags = DecodeLE32(p + kOffFlags);
  if (ht.flags & ~kKnownFlags) {
    // A future feature bit would change what the record means; overlaybd never sets one.
    return Status::NotSupported("flags " + Hex32(ht.flags) + ": unknown bits " + Hex32(ht.flags & ~kKnownFlags));
  }
  ht.index_offset = DecodeLE64(p + kOffIndexOffset);
  ht.index_size = DecodeLE64(p + kOffIndexSize);
  ht.virtual_size = DecodeLE64(p + kOffVirtualSize);
  ht.uuid = DecodeUuidField(bytes, kOffUuid);
  ht.parent_uuid = DecodeUuidField(bytes, kOffParentUuid);
  ht.version = p[kOffVersion];
  ht.sub_version = p[kOffSubVersion];
  if (ht.version != 1) {
    return Status::NotSupported("format version " + std::to_string(ht.version) +
                                " (only version 1 is known)");
  }
  if (ht.virtual_size % kSectorSize != 0 || ht.virtual_size > kMaxVirtualSize) {
    // A block device has whole sectors, and no index entry maps a sector past 2^50-1; overlaybd
    // takes the value unchecked, but no overlaybd tool writes such a size.
    return Status::NotSupported("virtual_size " + std::to_string(ht.virtual_size) +
                                " is not a multiple of 512 up to " + std::to_string(kMaxVirtualSize) + " bytes");
  }
  ht.user_tag = std::string(FieldText(bytes, kOffUserTag, kMaxUserTag));
  return ht;
}

void EncodeSegment(const Segment& s, uint8_t* out) {
  uint64_t lo = (s.offset & kOffsetMask) | (static_cast<uint64_t>(s.length & 0x3FFF) << 50);
  uint64_t hi = (s.moffset & kMOffsetMask) | (static_cast<uint64_t>(s.zeroed ? 1 : 0) << 55) |
                (static_cast<uint64_t>(s.tag) << 56);
  EncodeLE64(out, lo);
  EncodeLE64(out + 8, hi);
}

Segment DecodeSegment(const uint8_t* in) {
  uint64_t lo = DecodeLE64(in);
  uint64_t hi = DecodeLE64(in + 8);
  Segment s;
  s.offset = lo & kOffsetMask;
  s.length = static_cast<uint32_t>(lo >> 50);
  s.moffset = hi & kMOffsetMask;
  s.zeroed = ((hi >> 55) & 1) != 0;
  s.tag = static_cast<uint8_t>(hi >> 56);
  return s;
}

Status CheckSegmentShape(const Segment& s) {
  if (s.length == 0 || s.length > kMaxSegmentLength) {
    return Status::Corruption("length " + std::to_string(s.length) + " is outside 1..16383 sectors");
  }
  if (s.offset + s.length > kMaxOffset) {  // offset < 2^50, length < 2^14: cannot overflow
    return Status::Corruption("end sector " + std::to_string(s.offset + s.length) +
                              " is past the 2^50-1 limit");
  }
  return Status::OK();
}

Status CheckSegmentMOffset(const Segment& s, uint64_t begin, uint64_t end) {
  bool ok = s.zeroed ? (begin <= s.moffset && s.moffset <= end)
                     : (begin <= s.moffset && s.moffset <= end && s.length <= end - s.moffset);
  if (ok) return Status::OK();
  return Status::Corruption("moffset " + std::to_string(s.moffset) + " (+" +
                            std::to_string(s.length) + ") is outside the data area [" +
                            std::to_string(begin) + ", " + std::to_string(end) + ") sectors");
}

std::string DescribeSegment(const Segment& s) {
  return "offset=" + std::to_string(s.offset) + " length=" + std::to_string(s.length) +
         " moffset=" + std::to_string(s.moffset) + " zeroed=" + (s.zeroed ? "1" : "0");
}

static_assert(kSegmentBytes == 2 * sizeof(uint64_t));

}  // namespace ovbd::lsmt
