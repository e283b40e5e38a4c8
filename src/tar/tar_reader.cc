// Reading a one-member tar: detection and locating the payload (pax `size=` or ustar size).
#include <array>
#include <charconv>
#include <optional>
#include <string>
#include <vector>

#include "base/checked.h"
#include "ovbd/tar.h"
#include "tar/tar_header.h"

namespace ovbd::tar {
namespace {

// A pax extended header larger than this is not something overlaybd writes; refuse it before
// allocating.
constexpr uint64_t kMaxPaxSize = 1 << 20;

Status ReadBlock(const ReadableFile& file, uint64_t offset, std::array<uint8_t, kBlockSize>* block) {
  Status s = file.ReadAt(offset, *block);
  if (!s.ok()) return s.WithContext(file.Name() + ": tar header at offset " + std::to_string(offset));
  return Status::OK();
}

std::string Where(const ReadableFile& file, uint64_t offset) {
  return file.Name() + ": tar header at offset " + std::to_string(offset);
}

// Parses "NN key=value\n" records; returns the value of `size` if present.
Result<std::optional<uint64_t>> ParsePaxSize(std::string_view data, const std::string& where) {
  std::optional<uint64_t> size;
  size_t pos = 0;
  while (pos < data.size() && data[pos] != '\0') {
    std::string_view rest = data.substr(pos);
    size_t len = 0;
    auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), len);
    size_t digits = static_cast<size_t>(end - rest.data());
    if (ec != std::errc() || digits == 0 || len <= digits + 1 || len > rest.size() ||
        rest[digits] != ' ' || rest[len - 1] != '\n') {
      return Status::Corruption(where + ": malformed pax record at byte " + std::to_string(pos));
    }
    std::string_view record = rest.substr(digits + 1, len - digits - 2);
    size_t eq = record.find('=');
    if (eq == std::string_view::npos) {
      return Status::Corruption(where + ": pax record without '=' at byte " + std::to_string(pos));
    }
    if (record.substr(0, eq) == "size") {
      std::string_view value = record.substr(eq + 1);
      uint64_t v = 0;
      auto [vend, vec] = std::from_chars(value.data(), value.data() + value.size(), v);
      if (vec != std::errc() || vend != value.data() + value.size() || value.empty()) {
        return Status::Corruption(where + ": pax size record is not a number");
      }
      size = v;
    }
    pos += len;
  }
  return size;
}

struct Member {
  uint64_t payload_offset = 0;
  uint64_t size = 0;
};

Result<std::optional<uint64_t>> ReadPaxSize(const ReadableFile& file, uint64_t header_offset,
                                            uint64_t pax_size) {
  std::string where = Where(file, header_offset);
  if (pax_size > kMaxPaxSize) {
    return Status::Corruption(where + ": pax header of " + std::to_string(pax_size) +
                              " bytes exceeds the limit of " + std::to_string(kMaxPaxSize));
  }
  if (!RangeWithin(header_offset + kBlockSize, pax_size, file.Size())) {
    return Status::Corruption(where + ": pax data runs past the end of the file");
  }
  std::string data(pax_size, '\0');
  Status s = file.ReadAt(header_offset + kBlockSize,
                         std::span(reinterpret_cast<uint8_t*>(data.data()), data.size()));
  if (!s.ok()) return s.WithContext(where);
  return ParsePaxSize(data, where);
}

Result<Member> LocateMember(const ReadableFile& file) {
  std::array<uint8_t, kBlockSize> block{};
  OVBD_RETURN_IF_ERROR(ReadBlock(file, 0, &block));
  if (!IsValidHeader(block)) return Status::Corruption(Where(file, 0) + ": not a ustar header");
  std::optional<uint64_t> pax_size;
  uint64_t header_offset = 0;
  if (block[kTypeflagOffset] == kTypePax) {
    OVBD_ASSIGN_OR_RETURN(uint64_t ext_size,
                          DecodeNumber(std::span(block).subspan(kSizeOffset, kSizeLength), "size"));
    OVBD_ASSIGN_OR_RETURN(pax_size, ReadPaxSize(file, 0, ext_size));
    header_offset = kBlockSize + RoundUp(ext_size, kBlockSize);
    OVBD_RETURN_IF_ERROR(ReadBlock(file, header_offset, &block));
    if (!IsValidHeader(block)) {
      return Status::Corruption(Where(file, header_offset) + ": no valid ustar header after the pax header");
    }
  }
  auto field = DecodeNumber(std::span(block).subspan(kSizeOffset, kSizeLength), "size");
  if (!field.ok()) return field.status().WithContext(Where(file, header_offset));
  Member m{header_offset + kBlockSize, pax_size.value_or(*field)};
  if (!RangeWithin(m.payload_offset, m.size, file.Size())) {
    return Status::Corruption(Where(file, header_offset) + ": payload of " + std::to_string(m.size) +
                              " bytes at offset " + std::to_string(m.payload_offset) +
                              " runs past the end of the file (" + std::to_string(file.Size()) + " bytes)");
  }
  return m;
}

}  // namespace

Result<bool> IsTar(const ReadableFile& file) {
  if (file.Size() < kBlockSize) return false;
  std::array<uint8_t, kBlockSize> block{};
  OVBD_RETURN_IF_ERROR(ReadBlock(file, 0, &block));
  return IsValidHeader(block);
}

Result<std::unique_ptr<ReadableFile>> OpenPayload(std::shared_ptr<const ReadableFile> file) {
  OVBD_ASSIGN_OR_RETURN(Member m, LocateMember(*file));
  return NewSliceFile(std::move(file), m.payload_offset, m.size);
}

}  // namespace ovbd::tar
