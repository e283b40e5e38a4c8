// Above a remote lower (after ZFile/LSMT unwrapping): counts the reads that failed, keeps the
// last reason for `ctl status` and logs them to stderr (the first 20, then every 1000th), so an
// EIO the client sees has its cause (blob, offset, check) in the log. Thread-safe.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "ovbd/io.h"
#include "ovbd/status.h"

namespace ovbd::volume {

class ReadErrorTap : public ReadableFile {
 public:
  explicit ReadErrorTap(std::shared_ptr<const ReadableFile> base) : base_(std::move(base)) {}
  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) const override;
  uint64_t Size() const override { return base_->Size(); }
  const std::string& Name() const override { return base_->Name(); }
  void Prefetch(uint64_t offset, uint64_t length) const override { base_->Prefetch(offset, length); }
  bool Invalidate(uint64_t offset, uint64_t length) const override { return base_->Invalidate(offset, length); }
  uint64_t errors() const { return errors_.load(); }
  std::string last_error() const;

 private:
  std::shared_ptr<const ReadableFile> base_;
  mutable std::atomic<uint64_t> errors_{0};
  mutable std::mutex mu_;
  mutable std::string last_;
};

}  // namespace ovbd::volume
