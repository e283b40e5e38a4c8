// Whole-blob digest check for blobs read in random order (through the cache). Two decorators:
//
//   reader ──> CompleteVerifier (gate) ──> cache::CachedFile ──> FetchTap ──> registry blob
//                    ^ NoteRead                                     │ every successful fetch
//                    └──────────────────────────────────────────────┘
//
// The verifier collects the byte ranges the registry has delivered (plus, via NoteRead, what the
// cache already held at start); once they cover the blob, a background thread reads the blob
// once more through the cache (hits, mostly) and compares its sha256 with the digest. A mismatch makes every later read of the blob Corruption (the NBD client gets
// EIO) and is reported in status; a match is reported too. Data served before the check was
// still checked block by block (cache CRC32C, ZFile CRC32C).
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ovbd/io.h"
#include "ovbd/status.h"

namespace ovbd::cli {

class CompleteVerifier : public ReadableFile {
 public:
  enum class State { kPartial, kChecking, kVerified, kMismatch };
  static std::shared_ptr<CompleteVerifier> Create(std::shared_ptr<const ReadableFile> base, std::string digest);
  ~CompleteVerifier() override;
  // Bytes [offset, offset+length) of the blob are known to be delivered (fetched, or cached).
  void NoteRead(uint64_t offset, uint64_t length) const { Note(offset, length); }

  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) const override;
  uint64_t Size() const override { return base_->Size(); }
  const std::string& Name() const override { return base_->Name(); }
  void Prefetch(uint64_t offset, uint64_t length) const override { base_->Prefetch(offset, length); }

  // Checks start only once enabled (by the serving process: a thread started before attach
  // forks would not exist in the child). Starts the check now if the blob is already covered.
  void Enable();
  State state() const { return state_.load(); }
  static const char* StateName(State s);
  // Waits for a running check (tests, shutdown).
  void Join();

 private:
  CompleteVerifier(std::shared_ptr<const ReadableFile> base, std::string digest);
  void Note(uint64_t offset, uint64_t length) const;
  void StartCheckLocked() const;  // mu_ held
  void Check();

  std::shared_ptr<const ReadableFile> base_;
  std::string digest_;
  mutable std::mutex mu_;
  mutable std::map<uint64_t, uint64_t> seen_;  // disjoint, non-adjacent [start, end) ranges read
  mutable uint64_t covered_ = 0;               // bytes in seen_
  mutable std::atomic<State> state_{State::kPartial};
  mutable std::thread checker_;
  std::atomic<bool> stop_{false};
  mutable bool enabled_ = false;  // guarded by mu_
};

// Below the cache: forwards to the registry blob and reports every successful read to the
// verifier attached later (the verifier wraps the cache that wraps this tap).
class FetchTap : public ReadableFile {
 public:
  explicit FetchTap(std::shared_ptr<const ReadableFile> source) : source_(std::move(source)) {}
  void Attach(const std::shared_ptr<CompleteVerifier>& v) {
    std::lock_guard lock(mu_);
    verifier_ = v;
  }
  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) const override;
  uint64_t Size() const override { return source_->Size(); }
  const std::string& Name() const override { return source_->Name(); }
  void Prefetch(uint64_t offset, uint64_t length) const override { source_->Prefetch(offset, length); }

 private:
  std::shared_ptr<const ReadableFile> source_;
  mutable std::mutex mu_;
  std::weak_ptr<CompleteVerifier> verifier_;
};

}  // namespace ovbd::cli
