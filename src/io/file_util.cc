// Small adapters and helpers over the file interfaces.
#include <algorithm>
#include <filesystem>

#include "base/checked.h"
#include "ovbd/io.h"

namespace ovbd {
namespace {

// Presents [offset, offset+length) of a base file.
class SliceFile final : public ReadableFile {
 public:
  SliceFile(std::shared_ptr<const ReadableFile> base, uint64_t offset, uint64_t length)
      : base_(std::move(base)), offset_(offset), length_(length), name_(base_->Name()) {}

  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) const override {
    if (!RangeWithin(offset, buf.size(), length_)) {
      return Status::OutOfRange(name_ + ": read of " + std::to_string(buf.size()) + " bytes at offset " +
                                std::to_string(offset) + " is past the end (" + std::to_string(length_) + ")");
    }
    return base_->ReadAt(offset_ + offset, buf);
  }
  uint64_t Size() const override { return length_; }
  const std::string& Name() const override { return name_; }
  void Prefetch(uint64_t offset, uint64_t length) const override { base_->Prefetch(offset_ + offset, length); }
  bool Invalidate(uint64_t offset, uint64_t length) const override {
    if (offset >= length_ || length == 0) return false;
    return base_->Invalidate(offset_ + offset, std::min(length, length_ - offset));
  }

 private:
  std::shared_ptr<const ReadableFile> base_;
  uint64_t offset_;
  uint64_t length_;
  std::string name_;
};

// Appends into a RandomRWFile from a start offset.
class RWFileWriter final : public WritableFile {
 public:
  RWFileWriter(RandomRWFile* file, uint64_t start) : file_(file), start_(start) {}
  Status Append(std::span<const uint8_t> data) override {
    OVBD_RETURN_IF_ERROR(file_->WriteAt(start_ + pos_, data));
    pos_ += data.size();
    return Status::OK();
  }
  uint64_t Position() const override { return pos_; }
  bool Seekable() const override { return true; }
  Status Rewrite(uint64_t offset, std::span<const uint8_t> data) override {
    if (!RangeWithin(offset, data.size(), pos_)) {
      return Status::InvalidArgument(Name() + ": rewrite beyond the bytes written");
    }
    return file_->WriteAt(start_ + offset, data);
  }
  Status Sync() override { return file_->Sync(); }
  Status Close() override { return Status::OK(); }
  const std::string& Name() const override { return file_->Name(); }

 private:
  RandomRWFile* file_;
  uint64_t start_;
  uint64_t pos_ = 0;
};

}  // namespace

std::unique_ptr<WritableFile> NewRWFileWriter(RandomRWFile* file, uint64_t start) {
  return std::make_unique<RWFileWriter>(file, start);
}

Result<std::unique_ptr<ReadableFile>> NewSliceFile(std::shared_ptr<const ReadableFile> base,
                                                   uint64_t offset, uint64_t length) {
  if (!RangeWithin(offset, length, base->Size())) {
    return Status::OutOfRange(base->Name() + ": slice [" + std::to_string(offset) + ", +" +
                              std::to_string(length) + ") is past the end (" +
                              std::to_string(base->Size()) + ")");
  }
  return std::unique_ptr<ReadableFile>(new SliceFile(std::move(base), offset, length));
}

Result<std::vector<uint8_t>> ReadAll(const ReadableFile& file) {
  std::vector<uint8_t> bytes(file.Size());
  OVBD_RETURN_IF_ERROR(file.ReadAt(0, bytes));
  return bytes;
}

Status CopyFile(const ReadableFile& in, WritableFile* out, const ProgressFn& progress, size_t chunk) {
  const uint64_t total = in.Size();
  std::vector<uint8_t> buf(std::min<uint64_t>(chunk, std::max<uint64_t>(total, 1)));
  for (uint64_t done = 0; done < total;) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), total - done));
    std::span<uint8_t> piece(buf.data(), n);
    OVBD_RETURN_IF_ERROR(in.ReadAt(done, piece));
    OVBD_RETURN_IF_ERROR(out->Append(piece));
    done += n;
    if (progress) progress(done, total);
  }
  return Status::OK();
}

std::string CanonicalPath(const std::string& path) {
  std::error_code ec;
  auto p = std::filesystem::weakly_canonical(path, ec);
  return ec ? path : p.string();
}

}  // namespace ovbd
