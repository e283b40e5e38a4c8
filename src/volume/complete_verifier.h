// Whole-blob digest check for blobs read in random order (through the cache). Two decorators:
//
//   reader ──> CompleteVerifier (gate) ──> cache::CachedFile ──> FetchTap ──> registry blob
//                    ^ NoteRead                                     │ every successful fetch
//                    └──────────────────────────────────────────────┘
//
// The verifier collects the byte ranges the registry has delivered (plus, via NoteRead, what the
// cache already held at start); once they cover the blob, a background thread reads the blob
// once more through the cache (hits, mostly) and compares its sha256 with the digest.
//
// A mismatch means some cached bytes were corrupted in transit (or the registry served wrong
// bytes). It drops the whole blob from the cache (Invalidate(0, Size())), forgets the ranges
// delivered so far and goes back to partial: the ranges the tap reports from then on (fetches
// begun after the reset) are collected again, and the next full coverage is checked again, so
// the layer recovers by itself once the registry serves the right bytes. After
// kMaxMismatches mismatches the state is mismatch for good (no more checks; shown in status).
// Reads are never failed by this check, in any state: what they return is protected by the
// per-block checks below (ZFile block CRC32C, the registry digest table), and blobs without such
// checks are downloaded whole and verified before they are served. Data is also checked block
// by block by the cache (CRC32C of what it stored).
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "ovbd/io.h"
#include "ovbd/status.h"

namespace ovbd::volume {

class CompleteVerifier : public ReadableFile {
 public:
  enum class State { kPartial, kChecking, kVerified, kMismatch };
  // Mismatches after which the state stays kMismatch.
  static constexpr uint64_t kMaxMismatches = 3;
  static std::shared_ptr<CompleteVerifier> Create(std::shared_ptr<const ReadableFile> base, std::string digest);
  ~CompleteVerifier() override;
  // Bytes [offset, offset+length) of the blob are known to be delivered (fetched, or cached).
  void NoteRead(uint64_t offset, uint64_t length) const { Note(offset, length, generation()); }
  // The same for a fetch that began when generation() was `generation`: ignored if the verifier
  // has reset since (those bytes were dropped from the cache, or may have been).
  void NoteFetch(uint64_t offset, uint64_t length, uint64_t generation) const { Note(offset, length, generation); }
  // Counts the resets after a mismatch.
  uint64_t generation() const { return generation_.load(); }

  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) const override;
  uint64_t Size() const override { return base_->Size(); }
  const std::string& Name() const override { return base_->Name(); }
  void Prefetch(uint64_t offset, uint64_t length) const override { base_->Prefetch(offset, length); }
  bool Invalidate(uint64_t offset, uint64_t length) const override { return base_->Invalidate(offset, length); }

  // Checks start only once enabled (by the serving process: a thread started before attach
  // forks would not exist in the child). Starts the check now if the blob is already covered.
  void Enable();
  State state() const { return state_.load(); }
  // Checks whose sha256 did not match the digest so far.
  uint64_t mismatches() const { return mismatches_.load(); }
  static const char* StateName(State s);
  // Waits for a running check (tests, shutdown).
  void Join();

 private:
  CompleteVerifier(std::shared_ptr<const ReadableFile> base, std::string digest);
  void Note(uint64_t offset, uint64_t length, uint64_t generation) const;
  void StartCheckLocked() const;  // mu_ held
  void Check();
  // Reads the blob through the cache and hashes it: true on a match, nullopt if it could not
  // be read (or the verifier is stopping).
  std::optional<bool> HashMatches();
  void ForgetLocked();  // mu_ held: seen_ and covered_ start empty
  void OnMismatch();

  std::shared_ptr<const ReadableFile> base_;
  std::string digest_;
  mutable std::mutex mu_;
  mutable std::map<uint64_t, uint64_t> seen_;  // disjoint, non-adjacent [start, end) ranges read
  mutable uint64_t covered_ = 0;               // bytes in seen_
  mutable std::atomic<State> state_{State::kPartial};
  std::atomic<uint64_t> mismatches_{0};
  mutable std::atomic<uint64_t> generation_{0};
  mutable std::thread checker_;
  std::atomic<bool> stop_{false};
  mutable bool enabled_ = false;  // guarded by mu_
};

// Below the cache: forwards to the registry blob and reports every successful read to the
// verifier attached later (the verifier wraps the cache that wraps this tap), with the
// verifier's generation at the start of the read, so reads begun before a reset do not count.
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
  bool Invalidate(uint64_t offset, uint64_t length) const override { return source_->Invalidate(offset, length); }

 private:
  std::shared_ptr<const ReadableFile> source_;
  mutable std::mutex mu_;
  std::weak_ptr<CompleteVerifier> verifier_;
};

}  // namespace ovbd::volume
