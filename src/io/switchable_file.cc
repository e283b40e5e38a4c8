#include "io/switchable_file.h"

namespace ovbd {

SwitchableFile::SwitchableFile(std::shared_ptr<const ReadableFile> initial)
    : current_(std::move(initial)), size_(current_->Size()), name_(current_->Name()) {}

std::shared_ptr<const ReadableFile> SwitchableFile::Current() const {
  std::lock_guard lock(mu_);
  return current_;
}

Status SwitchableFile::ReadAt(uint64_t offset, std::span<uint8_t> buf) const {
  return Current()->ReadAt(offset, buf);
}

void SwitchableFile::Prefetch(uint64_t offset, uint64_t length) const { Current()->Prefetch(offset, length); }
bool SwitchableFile::Invalidate(uint64_t offset, uint64_t length) const {
  return Current()->Invalidate(offset, length);
}

Status SwitchableFile::Switch(std::shared_ptr<const ReadableFile> file) {
  if (file->Size() != size_) {
    return Status::InvalidArgument(file->Name() + ": " + std::to_string(file->Size()) + " bytes, expected " +
                                   std::to_string(size_));
  }
  {
    std::lock_guard lock(mu_);
    current_ = std::move(file);
  }
  switched_ = true;
  return Status::OK();
}

}  // namespace ovbd
