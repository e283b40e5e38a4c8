// A ByteStream over a connected socket, woken by the server's shutdown eventfd.
//
// Reads block in poll() on the socket and the wake fd: once the wake fd is readable (Shutdown of
// the server) a read in progress fails, so the reader stops. Writes keep going after the wake-up,
// so in-flight replies still reach the client, but only for kShutdownWriteGrace: a client that
// does not read cannot hold the server's shutdown forever. send() uses MSG_NOSIGNAL: a closed
// peer is an EPIPE error, never SIGPIPE.
#pragma once

#include <chrono>

#include "export/nbd/stream.h"

namespace ovbd::nbd {

inline constexpr std::chrono::milliseconds kShutdownWriteGrace{10000};

class SocketStream final : public ByteStream {
 public:
  // Takes ownership of fd (closed in the destructor) and makes it non-blocking. wake_fd is not
  // owned; -1 for none.
  SocketStream(int fd, int wake_fd);
  ~SocketStream() override;
  SocketStream(const SocketStream&) = delete;
  SocketStream& operator=(const SocketStream&) = delete;

  Status ReadFull(std::span<uint8_t> buf) override;
  Status WriteAll(std::span<const uint8_t> data) override;
  void Shutdown() override;

  // For a layer above (TLS): waits until at least one byte is there and returns how many were
  // read (1..buf.size()); fails as ReadFull does (Unavailable at end of stream).
  Result<size_t> ReadSome(std::span<uint8_t> buf);
  // Whether a byte (or the end of the stream) can be read within timeout_ms (-1: no limit),
  // without reading it. False on timeout or at server shutdown.
  bool PollReadable(int timeout_ms);
  int fd() const { return fd_; }

 private:
  Status WaitReadable();
  Status WaitWritable();

  const int fd_;
  const int wake_fd_;
  bool write_deadline_set_ = false;  // only touched by the writing thread
  std::chrono::steady_clock::time_point write_deadline_;
};

}  // namespace ovbd::nbd
