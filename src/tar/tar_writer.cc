// Writing a one-member tar the way overlaybd-commit -t does (tar_file.cpp): a pax header
// carrying the real size, a ustar header whose size field says 0, the payload, padding to 512
// and two zero blocks. The headers are written as placeholders first ("xxtar" magic, so an
// interrupted file is not mistaken for a tar) and rewritten on Close().
#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "base/checked.h"
#include "ovbd/tar.h"
#include "tar/tar_header.h"

namespace ovbd::tar {
namespace {

constexpr uint64_t kHeadersSize = 3 * kBlockSize;  // pax header, pax data, ustar header
constexpr uint32_t kRegularMode = 0100644;
constexpr std::string_view kPaxName = "overlaybd.pax";
constexpr std::string_view kOwnerName = "root";  // uname/gname of uid/gid 0

// "NN size=<n>\n", where NN counts the whole record including its own digits.
std::string PaxSizeRecord(uint64_t size) {
  std::string body = " size=" + std::to_string(size) + "\n";
  size_t len = body.size() + 1;
  while (std::to_string(len).size() + body.size() != len) len = std::to_string(len).size() + body.size();
  return std::to_string(len) + body;
}

std::array<uint8_t, kHeadersSize> EncodeHeaders(const std::string& member_name, uint64_t size) {
  std::array<uint8_t, kHeadersSize> bytes{};
  std::span<uint8_t> all(bytes);
  std::string record = PaxSizeRecord(size);
  MutableBlock pax = all.subspan<0, kBlockSize>();
  EncodeString(pax.subspan(kNameOffset, kNameLength), kPaxName);
  EncodeOctalNoNul(pax.subspan(kSizeOffset, kSizeLength), record.size());
  pax[kTypeflagOffset] = kTypePax;
  SealHeader(pax);
  std::memcpy(bytes.data() + kBlockSize, record.data(), record.size());

  MutableBlock ustar = all.subspan<2 * kBlockSize, kBlockSize>();
  EncodeString(ustar.subspan(kNameOffset, kNameLength), member_name);
  EncodeOctal(ustar.subspan(kModeOffset, 8), kRegularMode);
  EncodeOctal(ustar.subspan(kUidOffset, 8), 0);
  EncodeOctal(ustar.subspan(kGidOffset, 8), 0);
  EncodeOctalNoNul(ustar.subspan(kSizeOffset, kSizeLength), 0);
  EncodeOctalNoNul(ustar.subspan(kMtimeOffset, 12), 0);
  ustar[kTypeflagOffset] = kTypeRegular;
  EncodeString(ustar.subspan(kUnameOffset, kUnameLength), kOwnerName);
  EncodeString(ustar.subspan(kGnameOffset, kUnameLength), kOwnerName);
  SealHeader(ustar);
  return bytes;
}

// The placeholder: same layout with magic "xxtar" / version "xx".
std::array<uint8_t, kHeadersSize> EncodePlaceholder(const std::string& member_name) {
  auto bytes = EncodeHeaders(member_name, 0);
  for (uint64_t block : {uint64_t{0}, 2 * kBlockSize}) {
    std::memcpy(bytes.data() + block + kMagicOffset, "xxtar", 5);
    std::memcpy(bytes.data() + block + kVersionOffset, "xx", 2);
  }
  return bytes;
}

class WrappingWriter : public WritableFile {
 public:
  WrappingWriter(WritableFile* out, std::string member_name)
      : out_(out), member_name_(std::move(member_name)), start_(out->Position()) {}
  ~WrappingWriter() override = default;

  Status Start() {
    auto placeholder = EncodePlaceholder(member_name_);
    return out_->Append(placeholder);
  }
  Status Append(std::span<const uint8_t> data) override {
    if (closed_) return Status::InvalidArgument(Name() + ": append after close");
    OVBD_RETURN_IF_ERROR(out_->Append(data));
    payload_size_ += data.size();
    return Status::OK();
  }
  uint64_t Position() const override { return payload_size_; }
  bool Seekable() const override { return true; }
  Status Rewrite(uint64_t offset, std::span<const uint8_t> data) override {
    if (!RangeWithin(offset, data.size(), payload_size_)) {
      return Status::OutOfRange(Name() + ": rewrite past the end of the tar payload");
    }
    return out_->Rewrite(start_ + kHeadersSize + offset, data);
  }
  Status Sync() override { return out_->Sync(); }
  Status Close() override;
  const std::string& Name() const override { return out_->Name(); }

 private:
  WritableFile* out_;
  std::string member_name_;
  uint64_t start_;
  uint64_t payload_size_ = 0;
  bool closed_ = false;
};

Status WrappingWriter::Close() {
  if (closed_) return Status::OK();
  closed_ = true;
  uint64_t padding = RoundUp(payload_size_, kBlockSize) - payload_size_;
  std::vector<uint8_t> tail(padding + 2 * kBlockSize, 0);
  OVBD_RETURN_IF_ERROR(out_->Append(tail));
  auto headers = EncodeHeaders(member_name_, payload_size_);
  return out_->Rewrite(start_, headers);
}

}  // namespace

Result<std::unique_ptr<WritableFile>> NewWrappingWriter(WritableFile* out, std::string member_name) {
  if (!out->Seekable()) {
    return Status::InvalidArgument(out->Name() +
                                   ": tar wrapping needs a seekable output (a regular file), not a pipe");
  }
  if (member_name.empty() || member_name.size() > kNameLength) {
    return Status::InvalidArgument("tar member name must have 1..100 bytes: '" + member_name + "'");
  }
  auto writer = std::make_unique<WrappingWriter>(out, std::move(member_name));
  OVBD_RETURN_IF_ERROR(writer->Start());
  return std::unique_ptr<WritableFile>(std::move(writer));
}

}  // namespace ovbd::tar
