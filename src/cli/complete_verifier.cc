#include "cli/complete_verifier.h"

#include <algorithm>

#include "base/hash.h"

namespace ovbd::cli {

std::shared_ptr<CompleteVerifier> CompleteVerifier::Create(std::shared_ptr<const ReadableFile> base,
                                                           std::string digest) {
  return std::shared_ptr<CompleteVerifier>(new CompleteVerifier(std::move(base), std::move(digest)));
}

CompleteVerifier::CompleteVerifier(std::shared_ptr<const ReadableFile> base, std::string digest)
    : base_(std::move(base)), digest_(std::move(digest)) {}

CompleteVerifier::~CompleteVerifier() {
  stop_ = true;
  Join();
}

void CompleteVerifier::Join() {
  std::thread t;
  {
    std::lock_guard lock(mu_);
    t = std::move(checker_);
  }
  if (t.joinable()) t.join();
}

const char* CompleteVerifier::StateName(State s) {
  switch (s) {
    case State::kPartial: return "partial";
    case State::kChecking: return "checking";
    case State::kVerified: return "verified";
    case State::kMismatch: return "mismatch";
  }
  return "?";
}

Status CompleteVerifier::ReadAt(uint64_t offset, std::span<uint8_t> buf) const {
  if (state_ == State::kMismatch) {
    return Status::Corruption(Name() + ": the blob's sha256 does not match " + digest_ + " (every read fails)");
  }
  return base_->ReadAt(offset, buf);
}

Status FetchTap::ReadAt(uint64_t offset, std::span<uint8_t> buf) const {
  OVBD_RETURN_IF_ERROR(source_->ReadAt(offset, buf));
  std::shared_ptr<CompleteVerifier> v;
  {
    std::lock_guard lock(mu_);
    v = verifier_.lock();
  }
  if (v && !buf.empty()) v->NoteRead(offset, buf.size());
  return Status::OK();
}

// Adds [offset, offset+length) to the ranges read; the read that completes the blob starts the
// check (joining an earlier check that gave up).
void CompleteVerifier::Note(uint64_t offset, uint64_t length) const {
  if (state_ != State::kPartial || length == 0) return;
  uint64_t start = offset;
  uint64_t end = std::min(offset + length, base_->Size());
  std::lock_guard lock(mu_);
  auto it = seen_.upper_bound(start);
  if (it != seen_.begin() && std::prev(it)->second >= start) --it;  // overlaps or touches the previous
  while (it != seen_.end() && it->first <= end) {                    // absorb every range it touches
    start = std::min(start, it->first);
    end = std::max(end, it->second);
    covered_ -= it->second - it->first;
    it = seen_.erase(it);
  }
  seen_.emplace(start, end);
  covered_ += end - start;
  StartCheckLocked();
}

void CompleteVerifier::Enable() {
  std::lock_guard lock(mu_);
  enabled_ = true;
  StartCheckLocked();
}

void CompleteVerifier::StartCheckLocked() const {
  if (!enabled_ || covered_ != base_->Size() || state_ != State::kPartial) return;
  if (checker_.joinable()) checker_.join();  // a check that gave up has already left the lock
  state_ = State::kChecking;
  checker_ = std::thread([this] { const_cast<CompleteVerifier*>(this)->Check(); });
}

void CompleteVerifier::Check() {
  Sha256 sha;
  std::vector<uint8_t> buf(1u << 20);
  const uint64_t size = base_->Size();
  for (uint64_t off = 0; off < size; off += buf.size()) {
    if (stop_) {
      state_ = State::kPartial;
      return;
    }
    std::span<uint8_t> chunk(buf.data(), static_cast<size_t>(std::min<uint64_t>(buf.size(), size - off)));
    if (!base_->ReadAt(off, chunk).ok()) {  // e.g. registry down: try again after more reads
      std::lock_guard lock(mu_);
      seen_.clear();
      covered_ = 0;
      state_ = State::kPartial;
      return;
    }
    sha.Update(chunk);
  }
  state_ = "sha256:" + sha.HexFinal() == digest_ ? State::kVerified : State::kMismatch;
}

}  // namespace ovbd::cli
