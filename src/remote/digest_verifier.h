// Verifies a blob's sha256 as its bytes arrive in order.
//
//   Add(offset, bytes): bytes that continue the hashed prefix advance the hash (overlap with the
//   prefix is skipped); reads elsewhere are ignored. When the prefix reaches the blob's size the
//   digest is compared: a mismatch makes that Add Corruption and starts over (the next in-order
//   pass is checked again), so bytes corrupted once in transit do not fail the blob forever.
//   Forget(range): bytes of the hashed prefix will be fetched again (a reader's check failed on
//   them): the hash starts over.
//
// A blob read out of order is never verified (the cache above verifies nothing either); that is
// the documented limit. Thread-safe.
#pragma once

#include <cstdint>
#include <mutex>
#include <span>
#include <string>

#include "base/hash.h"
#include "ovbd/status.h"

namespace ovbd::remote {

class DigestVerifier {
 public:
  // `digest`: "sha256:<hex>" already checked; `size`: the blob's size; `name` for messages.
  DigestVerifier(std::string digest, uint64_t size, std::string name);
  Status Add(uint64_t offset, std::span<const uint8_t> bytes);
  void Forget(uint64_t offset, uint64_t length);
  bool verified() const;
  // Completed in-order passes whose digest did not match.
  uint64_t mismatches() const;

 private:
  const std::string digest_;
  const uint64_t size_;
  const std::string name_;
  mutable std::mutex mu_;
  Sha256 hasher_;
  uint64_t hashed_ = 0;
  bool done_ = false;
  uint64_t mismatches_ = 0;
  void RestartLocked();
};

}  // namespace ovbd::remote
