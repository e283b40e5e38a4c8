#include "remote/digest_verifier.h"

namespace ovbd::remote {

DigestVerifier::DigestVerifier(std::string digest, uint64_t size, std::string name)
    : digest_(std::move(digest)), size_(size), name_(std::move(name)) {}

Status DigestVerifier::Add(uint64_t offset, std::span<const uint8_t> bytes) {
  std::lock_guard lock(mu_);
  if (done_ || offset > hashed_ || offset + bytes.size() <= hashed_) return Status::OK();
  auto fresh = bytes.subspan(static_cast<size_t>(hashed_ - offset));
  hasher_.Update(fresh);
  hashed_ += fresh.size();
  if (hashed_ < size_) return Status::OK();
  std::string actual = "sha256:" + hasher_.HexFinal();
  if (actual == digest_) {
    done_ = true;
    return Status::OK();
  }
  mismatches_++;
  RestartLocked();
  return Status::Corruption(name_ + ": content has digest " + actual + ", expected " + digest_);
}

void DigestVerifier::Forget(uint64_t offset, uint64_t length) {
  std::lock_guard lock(mu_);
  if (!done_ && length != 0 && offset < hashed_) RestartLocked();
}

void DigestVerifier::RestartLocked() {
  hasher_ = Sha256();
  hashed_ = 0;
}

bool DigestVerifier::verified() const {
  std::lock_guard lock(mu_);
  return done_;
}

uint64_t DigestVerifier::mismatches() const {
  std::lock_guard lock(mu_);
  return mismatches_;
}

}  // namespace ovbd::remote
