// A ByteStream over a connected socket, woken by the server's shutdown eventfd.
//
// Reads block in poll() on the socket and the wake fd: once the wake fd is readable (Shutdown of
// the server) a read in progress fails, so the reader stops. Writes keep going after the wake-up,
// so in-flight replies still reach the client, but only for kShutdownWriteGrace: a client that
// does not read cannot hold the server's shutdown forever. send() uses MSG_NOSIGNAL: a closed
// peer is an EPIPE error, never SIGPIPE.
//
// A deadline (SetDeadline) bounds the total time of all reads and writes until it is cleared:
// the server sets one for the handshake, so a client that says nothing, or one byte at a time
// (slow loris), is cut off when it passes. It lives here, in the lowest layer, so that whatever
// runs on top of the raw reads and writes (option haggling, a TLS handshake) is bounded alike.
#pragma once

#include <chrono>
#include <string>

#include "export/nbd/stream.h"

namespace ovbd::nbd {

inline constexpr std::chrono::milliseconds kShutdownWriteGrace{10000};

class SocketStream final : public ByteStream {
 public:
  using Clock = std::chrono::steady_clock;

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
  // read (1..buf.size()); fails as ReadFull does (Unavailable at end of stream, the deadline).
  Result<size_t> ReadSome(std::span<uint8_t> buf);
  // Whether a byte (or the end of the stream) can be read within timeout_ms (-1: no limit),
  // without reading it. False on timeout, at server shutdown or at the deadline.
  bool PollReadable(int timeout_ms);
  int fd() const { return fd_; }

  // From now until ClearDeadline(), ReadFull, ReadSome and WriteAll fail with
  // Unavailable(message) once `deadline` has passed: the limit is on the total, not per call, so
  // bytes trickling in do not extend it. Set, cleared and queried only by the thread doing the
  // I/O, while no other thread reads or writes (the server: the connection's thread, during the
  // handshake, which a TLS handshake is part of).
  void SetDeadline(Clock::time_point deadline, std::string message);
  void ClearDeadline();
  // True once a read or write failed because the deadline had passed.
  bool deadline_passed() const { return deadline_passed_; }

 private:
  Status CheckDeadline();
  // The poll() timeout in ms: the time left to the deadline (rounded up), or `other` if that is
  // sooner or there is no deadline; -1 = none.
  int PollTimeout(int other) const;
  Status WaitReadable();
  Status WaitWritable();

  const int fd_;
  const int wake_fd_;
  bool write_deadline_set_ = false;  // only touched by the writing thread
  Clock::time_point write_deadline_;
  bool deadline_set_ = false;  // SetDeadline's; only touched by the thread doing the I/O
  bool deadline_passed_ = false;
  Clock::time_point deadline_;
  std::string deadline_message_;
};

}  // namespace ovbd::nbd
