// ByteStream over a non-blocking socket with poll() and a shutdown eventfd.
#include "export/nbd/socket_stream.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>

namespace ovbd::nbd {

SocketStream::SocketStream(int fd, int wake_fd) : fd_(fd), wake_fd_(wake_fd) {
  const int flags = fcntl(fd_, F_GETFL);
  if (flags >= 0) (void)fcntl(fd_, F_SETFL, flags | O_NONBLOCK);
}

SocketStream::~SocketStream() { close(fd_); }

Status SocketStream::ReadFull(std::span<uint8_t> buf) {
  size_t got = 0;
  while (got < buf.size()) {
    OVBD_ASSIGN_OR_RETURN(const size_t n, ReadSome(buf.subspan(got)));
    got += n;
  }
  return Status::OK();
}

Result<size_t> SocketStream::ReadSome(std::span<uint8_t> buf) {
  if (buf.empty()) return size_t{0};
  for (;;) {
    OVBD_RETURN_IF_ERROR(CheckDeadline());  // before every recv: a trickle does not extend it
    const ssize_t n = recv(fd_, buf.data(), buf.size(), 0);
    if (n > 0) return static_cast<size_t>(n);
    if (n == 0) return Status::Unavailable("nbd: client closed the connection");
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return Status::FromErrno(errno, "nbd: recv");
    OVBD_RETURN_IF_ERROR(WaitReadable());
  }
}

bool SocketStream::PollReadable(int timeout_ms) {
  pollfd fds[2] = {{fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
  const nfds_t count = wake_fd_ >= 0 ? 2 : 1;
  if (poll(fds, count, PollTimeout(timeout_ms)) <= 0) return false;  // the deadline bounds it too
  if (count == 2 && (fds[1].revents & POLLIN)) return false;
  return fds[0].revents != 0;
}

Status SocketStream::WaitReadable() {
  pollfd fds[2] = {{fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
  const nfds_t count = wake_fd_ >= 0 ? 2 : 1;
  if (poll(fds, count, PollTimeout(-1)) < 0 && errno != EINTR) return Status::FromErrno(errno, "nbd: poll");
  if (count == 2 && (fds[1].revents & POLLIN)) return Status::Unavailable("nbd: server shutting down");
  return Status::OK();  // readable, hung up, interrupted or timed out: recv or the deadline tells
}

Status SocketStream::WriteAll(std::span<const uint8_t> data) {
  size_t sent = 0;
  while (sent < data.size()) {
    OVBD_RETURN_IF_ERROR(CheckDeadline());
    const ssize_t n = send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n >= 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return Status::FromErrno(errno, "nbd: send");
    OVBD_RETURN_IF_ERROR(WaitWritable());
  }
  return Status::OK();
}

// Before shutdown: wait for the socket or the wake fd without limit. After it: wait for the socket
// only, up to the grace deadline.
Status SocketStream::WaitWritable() {
  pollfd fds[2] = {{fd_, POLLOUT, 0}, {wake_fd_, POLLIN, 0}};
  nfds_t count = (wake_fd_ >= 0 && !write_deadline_set_) ? 2 : 1;
  int timeout_ms = -1;
  if (write_deadline_set_) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(write_deadline_ - Clock::now());
    if (left.count() <= 0) return Status::IOError("nbd: client does not read its replies at shutdown");
    timeout_ms = static_cast<int>(left.count());
  }
  if (poll(fds, count, PollTimeout(timeout_ms)) < 0 && errno != EINTR) return Status::FromErrno(errno, "nbd: poll");
  if (count == 2 && (fds[1].revents & POLLIN)) {
    write_deadline_set_ = true;
    write_deadline_ = Clock::now() + kShutdownWriteGrace;
  }
  return Status::OK();
}

void SocketStream::SetDeadline(Clock::time_point deadline, std::string message) {
  deadline_set_ = true;
  deadline_ = deadline;
  deadline_message_ = std::move(message);
}

void SocketStream::ClearDeadline() { deadline_set_ = false; }

Status SocketStream::CheckDeadline() {
  if (!deadline_set_ || Clock::now() < deadline_) return Status::OK();
  deadline_passed_ = true;
  return Status::Unavailable(deadline_message_);
}

// Rounded up: a timeout rounded down to 0 ms would spin in poll() for the last millisecond.
int SocketStream::PollTimeout(int other) const {
  if (!deadline_set_) return other;
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline_ - Clock::now()).count();
  const int ms = static_cast<int>(std::clamp<int64_t>(left, 0, INT_MAX));
  return (other >= 0 && other < ms) ? other : ms;
}

void SocketStream::Shutdown() { (void)shutdown(fd_, SHUT_RDWR); }

}  // namespace ovbd::nbd
