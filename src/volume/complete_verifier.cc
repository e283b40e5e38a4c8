#include "volume/complete_verifier.h"

#include <algorithm>

#include "base/hash.h"

namespace ovbd::volume {

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

// Never failed by the digest check (see the header): the blocks are checked below.
Status CompleteVerifier::ReadAt(uint64_t offset, std::span<uint8_t> buf) const { return base_->ReadAt(offset, buf); }

Status FetchTap::ReadAt(uint64_t offset, std::span<uint8_t> buf) const {
  std::shared_ptr<CompleteVerifier> v;
  {
    std::lock_guard lock(mu_);
    v = verifier_.lock();
  }
  const uint64_t generation = v ? v->generation() : 0;  // before the read: see NoteFetch
  OVBD_RETURN_IF_ERROR(source_->ReadAt(offset, buf));
  if (v && !buf.empty()) v->NoteFetch(offset, buf.size(), generation);
  return Status::OK();
}

// Adds [offset, offset+length) to the ranges read; the read that completes the blob starts the
// check (joining an earlier check that gave up).
void CompleteVerifier::Note(uint64_t offset, uint64_t length, uint64_t generation) const {
  if (state_ != State::kPartial || length == 0) return;
  uint64_t start = offset;
  uint64_t end = std::min(offset + length, base_->Size());
  std::lock_guard lock(mu_);
  if (generation != generation_) return;  // begun before a reset: its bytes were dropped
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
  const std::optional<bool> match = HashMatches();
  if (!match.has_value()) {  // e.g. registry down: try again after more reads
    std::lock_guard lock(mu_);
    ForgetLocked();
    state_ = State::kPartial;
    return;
  }
  if (*match) {
    state_ = State::kVerified;
    return;
  }
  OnMismatch();
}

std::optional<bool> CompleteVerifier::HashMatches() {
  Sha256 sha;
  std::vector<uint8_t> buf(1u << 20);
  const uint64_t size = base_->Size();
  for (uint64_t off = 0; off < size; off += buf.size()) {
    if (stop_) return std::nullopt;
    std::span<uint8_t> chunk(buf.data(), static_cast<size_t>(std::min<uint64_t>(buf.size(), size - off)));
    if (!base_->ReadAt(off, chunk).ok()) return std::nullopt;
    sha.Update(chunk);
  }
  return "sha256:" + sha.HexFinal() == digest_;
}

void CompleteVerifier::ForgetLocked() {
  seen_.clear();
  covered_ = 0;
}

// The cache is invalidated under mu_, so that no fetch is noted between the reset and the drop
// (lock order: mu_, then the cache store's; nothing below calls back into this verifier while
// holding a lock of its own).
void CompleteVerifier::OnMismatch() {
  const bool last = ++mismatches_ >= kMaxMismatches;
  std::lock_guard lock(mu_);
  generation_++;
  ForgetLocked();
  (void)base_->Invalidate(0, base_->Size());  // the next reads fetch every block again
  state_ = last ? State::kMismatch : State::kPartial;
}

}  // namespace ovbd::volume
