// The byte stream the handshake and the transmission phase are written against, so tests and the
// fuzzer drive them from memory and the server from a socket (socket_stream.h).
//
//   Negotiate / Connection ──> ByteStream ──┬── SocketStream (poll + eventfd wake-up)
//                                           └── MemoryStream (input bytes, captured output)
//
// Thread model: one thread reads while one other thread writes (the connection's reader and
// writer); Read and Write are never called concurrently with themselves. Shutdown() may be
// called from any thread.
#pragma once

#include <cstdint>
#include <cstring>
#include <mutex>
#include <span>
#include <vector>

#include "ovbd/status.h"

namespace ovbd::nbd {

class ByteStream {
 public:
  virtual ~ByteStream() = default;
  // Fills buf completely. An error when the peer closed before (Unavailable), on an I/O error
  // (IOError) or when the server is shutting down (Unavailable).
  virtual Status ReadFull(std::span<uint8_t> buf) = 0;
  // Writes all of data, or fails (IOError; the peer is gone or stopped reading at shutdown).
  virtual Status WriteAll(std::span<const uint8_t> data) = 0;
  // Ends both directions: a blocked ReadFull returns, further I/O fails.
  virtual void Shutdown() = 0;
};

// Reads from a fixed byte string, records what is written. For tests and the fuzzer.
class MemoryStream final : public ByteStream {
 public:
  explicit MemoryStream(std::vector<uint8_t> input) : input_(std::move(input)) {}

  Status ReadFull(std::span<uint8_t> buf) override {
    std::lock_guard lock(mu_);
    if (closed_ || buf.size() > input_.size() - pos_) {
      pos_ = input_.size();
      return Status::Unavailable("nbd: end of client stream");
    }
    if (!buf.empty()) std::memcpy(buf.data(), input_.data() + pos_, buf.size());
    pos_ += buf.size();
    return Status::OK();
  }
  Status WriteAll(std::span<const uint8_t> data) override {
    std::lock_guard lock(mu_);
    if (closed_) return Status::IOError("nbd: stream closed");
    output_.insert(output_.end(), data.begin(), data.end());
    return Status::OK();
  }
  void Shutdown() override {
    std::lock_guard lock(mu_);
    closed_ = true;
  }
  std::vector<uint8_t> output() const {
    std::lock_guard lock(mu_);
    return output_;
  }
  size_t consumed() const {
    std::lock_guard lock(mu_);
    return pos_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<uint8_t> input_;
  size_t pos_ = 0;
  bool closed_ = false;
  std::vector<uint8_t> output_;
};

}  // namespace ovbd::nbd
