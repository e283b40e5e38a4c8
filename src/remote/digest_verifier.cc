#include "remote/digest_verifier.h"

namespace ovbd::remote {

DigestVerifier::DigestVerifier(std::string digest, uint64_t size, std::string name)
    : digest_(std::move(digest)), size_(size), name_(std::move(name)) {}

Status DigestVerifier::Add(uint64_t offset, std::span<const uint8_t> bytes) {
  std::lock_guard lock(mu_);
  if (!done_ && offset <= hashed_ && offset + bytes.size() > hashed_) {
    auto fresh = bytes.subspan(static_cast<size_t>(hashed_ - offset));
    hasher_.Update(fresh);
    hashed_ += fresh.size();
    if (hashed_ >= size_) {
      done_ = true;
      std::string actual = "sha256:" + hasher_.HexFinal();
      corrupt_ = actual != digest_;
      if (corrupt_) {
        return Status::Corruption(name_ + ": content has digest " + actual + ", expected " + digest_);
      }
    }
  }
  if (corrupt_) return Status::Corruption(name_ + ": content does not match digest " + digest_);
  return Status::OK();
}

bool DigestVerifier::verified() const {
  std::lock_guard lock(mu_);
  return done_ && !corrupt_;
}

}  // namespace ovbd::remote
