// SocketStream's deadline on a socketpair: silent peers, trickling peers, peers that do not read.
#include "export/nbd/socket_stream.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

namespace ovbd::nbd {
namespace {

using Clock = SocketStream::Clock;
using std::chrono::milliseconds;

struct Pair {
  Pair() {
    int fds[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    stream = std::make_unique<SocketStream>(fds[0], -1);
    peer = fds[1];
  }
  ~Pair() { close(peer); }
  std::unique_ptr<SocketStream> stream;
  int peer = -1;
};

double SecondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

TEST(SocketStreamDeadline, SilentPeerFailsAtTheDeadline) {
  Pair p;
  const auto start = Clock::now();
  p.stream->SetDeadline(start + milliseconds(300), "nbd: handshake not finished within 0.3 s");
  std::vector<uint8_t> buf(4);
  const Status s = p.stream->ReadFull(buf);
  EXPECT_EQ(s.code(), Code::kUnavailable);
  EXPECT_EQ(s.message(), "nbd: handshake not finished within 0.3 s");
  EXPECT_TRUE(p.stream->deadline_passed());
  EXPECT_GE(SecondsSince(start), 0.29);
  EXPECT_LT(SecondsSince(start), 2.0);
}

// One byte every 50 ms, forever: each recv makes progress, yet the total time is bounded.
TEST(SocketStreamDeadline, TricklingPeerFailsAtTheDeadline) {
  Pair p;
  std::atomic<bool> stop{false};
  std::thread loris([&] {
    const uint8_t byte = 7;
    while (!stop.load() && send(p.peer, &byte, 1, MSG_NOSIGNAL) == 1) std::this_thread::sleep_for(milliseconds(50));
  });
  const auto start = Clock::now();
  p.stream->SetDeadline(start + milliseconds(400), "too slow");
  std::vector<uint8_t> buf(1000);
  EXPECT_EQ(p.stream->ReadFull(buf).message(), "too slow");
  EXPECT_GE(SecondsSince(start), 0.39);
  EXPECT_LT(SecondsSince(start), 2.0);
  stop = true;
  loris.join();
}

TEST(SocketStreamDeadline, PeerThatDoesNotReadFailsTheWrite) {
  Pair p;
  p.stream->SetDeadline(Clock::now() + milliseconds(200), "not read");
  const std::vector<uint8_t> big(16 << 20, 1);  // far more than the socket buffers hold
  EXPECT_EQ(p.stream->WriteAll(big).message(), "not read");
}

TEST(SocketStreamDeadline, PassedDeadlineFailsEvenWithDataReady) {
  Pair p;
  ASSERT_EQ(send(p.peer, "abcd", 4, 0), 4);
  p.stream->SetDeadline(Clock::now() - milliseconds(1), "late");
  std::vector<uint8_t> buf(4);
  EXPECT_EQ(p.stream->ReadFull(buf).code(), Code::kUnavailable);
}

// What a TLS layer above uses: PollReadable without a limit of its own returns at the deadline,
// and ReadSome then fails with the deadline's message.
TEST(SocketStreamDeadline, PollReadableAndReadSomeStopAtTheDeadline) {
  Pair p;
  const auto start = Clock::now();
  p.stream->SetDeadline(start + milliseconds(200), "late");
  EXPECT_FALSE(p.stream->PollReadable(-1));
  EXPECT_GE(SecondsSince(start), 0.19);
  std::vector<uint8_t> buf(4);
  EXPECT_EQ(p.stream->ReadSome(buf).status().message(), "late");
}

TEST(SocketStreamDeadline, ClearedDeadlineNoLongerApplies) {
  Pair p;
  p.stream->SetDeadline(Clock::now() + milliseconds(100), "late");
  p.stream->ClearDeadline();
  std::thread later([&] {
    std::this_thread::sleep_for(milliseconds(300));
    (void)!send(p.peer, "abcd", 4, 0);
  });
  std::vector<uint8_t> buf(4);
  EXPECT_TRUE(p.stream->ReadFull(buf).ok());
  EXPECT_FALSE(p.stream->deadline_passed());
  later.join();
}

}  // namespace
}  // namespace ovbd::nbd
