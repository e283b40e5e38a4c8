// A ReadableFile whose backing file can be replaced, atomically for readers, by one with the
// same content (e.g. a cached remote blob by its downloaded, verified local copy).
//
//   reader ──> SwitchableFile ──before Switch──> first file
//                    └──────────after───────────> replacement (same Size)
//
// Thread-safe: reads, Prefetch and Invalidate go to whichever file is current when they start;
// a read in flight during Switch finishes on the old file (which it keeps alive).
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "ovbd/io.h"
#include "ovbd/status.h"

namespace ovbd {

class SwitchableFile : public ReadableFile {
 public:
  explicit SwitchableFile(std::shared_ptr<const ReadableFile> initial);
  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) const override;
  uint64_t Size() const override { return size_; }
  // Stays the first file's.
  const std::string& Name() const override { return name_; }
  void Prefetch(uint64_t offset, uint64_t length) const override;
  bool Invalidate(uint64_t offset, uint64_t length) const override;
  // Replaces the backing file (Size must match: InvalidArgument otherwise).
  Status Switch(std::shared_ptr<const ReadableFile> file);
  bool switched() const { return switched_.load(); }

 private:
  std::shared_ptr<const ReadableFile> Current() const;
  mutable std::mutex mu_;
  std::shared_ptr<const ReadableFile> current_;
  const uint64_t size_;
  const std::string name_;
  std::atomic<bool> switched_{false};
};

}  // namespace ovbd
