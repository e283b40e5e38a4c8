// In-memory files for tests and fuzzing. A MemStorage is "the disk"; MemFiles are handles to it.
#include <algorithm>
#include <cstring>
#include <mutex>
#include <shared_mutex>

#include "ovbd/io.h"

namespace ovbd {
namespace {

Status OutOfRangeError(const std::string& name, uint64_t offset, size_t len, uint64_t size) {
  return Status::OutOfRange(name + ": read of " + std::to_string(len) + " bytes at offset " +
                            std::to_string(offset) + " is past the end (" + std::to_string(size) + ")");
}


class MemFile final : public RandomRWFile {
 public:
  MemFile(std::string name, std::shared_ptr<MemStorage> storage)
      : name_(std::move(name)), storage_(std::move(storage)) {}

  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) const override {
    std::shared_lock lock(storage_->mu);
    const auto& bytes = storage_->bytes;
    if (offset > bytes.size() || buf.size() > bytes.size() - offset) {
      return OutOfRangeError(name_, offset, buf.size(), bytes.size());
    }
    if (!buf.empty()) std::memcpy(buf.data(), bytes.data() + offset, buf.size());
    return Status::OK();
  }
  uint64_t Size() const override {
    std::shared_lock lock(storage_->mu);
    return storage_->bytes.size();
  }
  const std::string& Name() const override { return name_; }
  Status WriteAt(uint64_t offset, std::span<const uint8_t> buf) override {
    std::unique_lock lock(storage_->mu);
    auto& bytes = storage_->bytes;
    if (offset + buf.size() > bytes.size()) bytes.resize(offset + buf.size());
    if (!buf.empty()) std::memcpy(bytes.data() + offset, buf.data(), buf.size());
    return Status::OK();
  }
  Status Truncate(uint64_t size) override {
    std::unique_lock lock(storage_->mu);
    storage_->bytes.resize(size);
    return Status::OK();
  }
  Status Trim(uint64_t offset, uint64_t length) override {
    std::unique_lock lock(storage_->mu);
    auto& bytes = storage_->bytes;
    if (offset >= bytes.size()) return Status::OK();
    uint64_t end = std::min<uint64_t>(bytes.size(), offset + length);
    std::fill(bytes.begin() + static_cast<ptrdiff_t>(offset), bytes.begin() + static_cast<ptrdiff_t>(end), 0);
    return Status::OK();
  }
  Status Sync() override { return Status::OK(); }

 private:
  std::string name_;
  std::shared_ptr<MemStorage> storage_;
};

class MemWritableFile final : public WritableFile {
 public:
  MemWritableFile(std::string name, std::shared_ptr<MemStorage> storage)
      : name_(std::move(name)), storage_(std::move(storage)) {
    std::unique_lock lock(storage_->mu);
    storage_->bytes.clear();
  }
  Status Append(std::span<const uint8_t> data) override {
    if (closed_) return Status::InvalidArgument(name_ + ": append after close");
    std::unique_lock lock(storage_->mu);
    storage_->bytes.insert(storage_->bytes.end(), data.begin(), data.end());
    return Status::OK();
  }
  uint64_t Position() const override {
    std::shared_lock lock(storage_->mu);
    return storage_->bytes.size();
  }
  bool Seekable() const override { return true; }
  Status Rewrite(uint64_t offset, std::span<const uint8_t> data) override {
    std::unique_lock lock(storage_->mu);
    auto& bytes = storage_->bytes;
    if (offset > bytes.size() || data.size() > bytes.size() - offset) {
      return Status::InvalidArgument(name_ + ": rewrite beyond the bytes written");
    }
    std::copy(data.begin(), data.end(), bytes.begin() + static_cast<ptrdiff_t>(offset));
    return Status::OK();
  }
  Status Sync() override { return Status::OK(); }
  Status Close() override {
    closed_ = true;
    return Status::OK();
  }
  const std::string& Name() const override { return name_; }

 private:
  std::string name_;
  std::shared_ptr<MemStorage> storage_;
  bool closed_ = false;
};

}  // namespace

std::unique_ptr<RandomRWFile> NewMemFile(std::string name, std::shared_ptr<MemStorage> storage) {
  if (!storage) storage = std::make_shared<MemStorage>();
  return std::make_unique<MemFile>(std::move(name), std::move(storage));
}

std::unique_ptr<ReadableFile> NewMemReadableFile(std::string name, std::vector<uint8_t> bytes) {
  auto storage = std::make_shared<MemStorage>();
  storage->bytes = std::move(bytes);
  return std::make_unique<MemFile>(std::move(name), std::move(storage));
}

std::unique_ptr<WritableFile> NewMemWritableFile(std::string name, std::shared_ptr<MemStorage> storage) {
  return std::make_unique<MemWritableFile>(std::move(name), std::move(storage));
}

}  // namespace ovbd
