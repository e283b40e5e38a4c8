// Raw-socket NBD test client.
#include "export/nbd/nbd_test_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace ovbd::nbd::nbdtest {
namespace {

constexpr int kDeadlineMs = 20000;  // generous: only a broken server ever reaches it

}  // namespace

TestClient::TestClient(const std::string& socket_path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof(addr.sun_path)) return;
  std::memcpy(addr.sun_path, socket_path.data(), socket_path.size());
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return;
  }
  fd_ = fd;
}

TestClient::~TestClient() { Close(); }

void TestClient::Close() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

bool TestClient::Send(const std::vector<uint8_t>& bytes) {
  size_t sent = 0;
  while (fd_ >= 0 && sent < bytes.size()) {
    const ssize_t n = send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return fd_ >= 0;
}

bool TestClient::Recv(size_t n, std::vector<uint8_t>* out) {
  out->resize(n);
  size_t got = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kDeadlineMs);
  while (fd_ >= 0 && got < n) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{fd_, POLLIN, 0};
    if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    const ssize_t r = recv(fd_, out->data() + got, n - got, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    got += static_cast<size_t>(r);
  }
  return fd_ >= 0;
}

bool TestClient::WaitClosed() { return WaitClosed(kDeadlineMs); }

bool TestClient::WaitClosed(int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (fd_ >= 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{fd_, POLLIN, 0};
    if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    uint8_t buf[4096];
    const ssize_t r = recv(fd_, buf, sizeof(buf), 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return true;  // EOF or reset
  }
  return false;
}

bool TestClient::ReadGreeting(uint16_t* handshake_flags) {
  std::vector<uint8_t> b;
  if (!Recv(kGreetingSize, &b)) return false;
  if (GetBE64(b.data()) != kInitMagic || GetBE64(b.data() + 8) != kOptionMagic) return false;
  *handshake_flags = GetBE16(b.data() + 16);
  return true;
}

bool TestClient::SendClientFlags(uint32_t flags) {
  std::vector<uint8_t> b;
  AppendBE32(&b, flags);
  return Send(b);
}

bool TestClient::SendOption(uint32_t option, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> b;
  AppendBE64(&b, kOptionMagic);
  AppendBE32(&b, option);
  AppendBE32(&b, static_cast<uint32_t>(data.size()));
  b.insert(b.end(), data.begin(), data.end());
  return Send(b);
}

std::optional<OptionReply> TestClient::ReadOptionReply() {
  std::vector<uint8_t> h;
  if (!Recv(kOptionReplyHeaderSize, &h) || GetBE64(h.data()) != kOptionReplyMagic) return std::nullopt;
  OptionReply reply;
  reply.option = GetBE32(h.data() + 8);
  reply.type = GetBE32(h.data() + 12);
  if (!Recv(GetBE32(h.data() + 16), &reply.data)) return std::nullopt;
  return reply;
}

std::optional<GoResult> TestClient::Handshake(const std::string& name, bool structured, bool base_allocation,
                                              bool ask_block_size) {
  uint16_t hflags = 0;
  if (!ReadGreeting(&hflags) || !SendClientFlags(kClientFlagFixedNewstyle | kClientFlagNoZeroes)) return std::nullopt;
  if (structured) {
    if (!SendOption(kOptStructuredReply, {})) return std::nullopt;
    auto r = ReadOptionReply();
    if (!r || r->type != kRepAck) return std::nullopt;
  }
  if (base_allocation) {
    if (!SendOption(kOptSetMetaContext, MetaContextData(name, {std::string(kBaseAllocation)}))) return std::nullopt;
    auto r = ReadOptionReply();
    if (!r || r->type != kRepMetaContext) return std::nullopt;
    auto ack = ReadOptionReply();
    if (!ack || ack->type != kRepAck) return std::nullopt;
  }
  std::vector<uint16_t> infos = {kInfoName, kInfoDescription};
  if (ask_block_size) infos.push_back(kInfoBlockSize);
  if (!SendOption(kOptGo, InfoRequestData(name, infos))) return std::nullopt;
  GoResult result;
  for (;;) {
    auto r = ReadOptionReply();
    if (!r) return std::nullopt;
    if (r->type == kRepAck) return result;
    if (r->type != kRepInfo || r->data.size() < 2) return std::nullopt;
    const uint16_t info = GetBE16(r->data.data());
    const uint8_t* p = r->data.data() + 2;
    const std::string text(r->data.begin() + 2, r->data.end());
    if (info == kInfoExport && r->data.size() == 12) {
      result.size = GetBE64(p);
      result.flags = GetBE16(p + 8);
    } else if (info == kInfoBlockSize && r->data.size() == 14) {
      result.min_block = GetBE32(p);
      result.preferred_block = GetBE32(p + 4);
      result.max_payload = GetBE32(p + 8);
    } else if (info == kInfoName) {
      result.name = text;
    } else if (info == kInfoDescription) {
      result.description = text;
    }
  }
}

bool TestClient::SendRequest(uint16_t type, uint16_t flags, uint64_t cookie, uint64_t offset, uint32_t length,
                             const std::vector<uint8_t>& payload) {
  auto b = EncodeRequest(RequestHeader{flags, type, cookie, offset, length});
  b.insert(b.end(), payload.begin(), payload.end());
  return Send(b);
}

std::optional<Chunk> TestClient::ReadSimpleReply(uint32_t data_length) {
  std::vector<uint8_t> h;
  if (!Recv(kSimpleReplySize, &h) || GetBE32(h.data()) != kSimpleReplyMagic) return std::nullopt;
  Chunk c;
  c.error = GetBE32(h.data() + 4);
  c.cookie = GetBE64(h.data() + 8);
  if (c.error == 0 && data_length > 0 && !Recv(data_length, &c.payload)) return std::nullopt;
  return c;
}

std::optional<Chunk> TestClient::ReadChunk() {
  std::vector<uint8_t> magic;
  if (!Recv(4, &magic)) return std::nullopt;
  std::vector<uint8_t> rest;
  if (GetBE32(magic.data()) == kSimpleReplyMagic) {
    if (!Recv(12, &rest)) return std::nullopt;
    Chunk c;
    c.error = GetBE32(rest.data());
    c.cookie = GetBE64(rest.data() + 4);
    return c;
  }
  if (GetBE32(magic.data()) != kStructuredReplyMagic || !Recv(16, &rest)) return std::nullopt;
  Chunk c;
  c.flags = GetBE16(rest.data());
  c.type = GetBE16(rest.data() + 2);
  c.cookie = GetBE64(rest.data() + 4);
  if (!Recv(GetBE32(rest.data() + 12), &c.payload)) return std::nullopt;
  if ((c.type & 0x8000) && c.payload.size() >= 4) c.error = GetBE32(c.payload.data());
  return c;
}

int64_t TestClient::Write(uint64_t offset, const std::vector<uint8_t>& data, uint16_t flags) {
  const uint64_t cookie = next_cookie_++;
  if (!SendRequest(kCmdWrite, flags, cookie, offset, static_cast<uint32_t>(data.size()), data)) return -1;
  auto reply = ReadSimpleReply();
  if (!reply || reply->cookie != cookie) return -1;
  return reply->error;
}

int64_t TestClient::Read(uint64_t offset, uint32_t length, std::vector<uint8_t>* out) {
  const uint64_t cookie = next_cookie_++;
  if (!SendRequest(kCmdRead, 0, cookie, offset, length)) return -1;
  auto reply = ReadSimpleReply(length);
  if (!reply || reply->cookie != cookie) return -1;
  *out = std::move(reply->payload);
  return reply->error;
}

int64_t TestClient::Command(uint16_t type, uint64_t offset, uint32_t length, uint16_t flags) {
  const uint64_t cookie = next_cookie_++;
  if (!SendRequest(type, flags, cookie, offset, length)) return -1;
  auto reply = ReadSimpleReply();
  if (!reply || reply->cookie != cookie) return -1;
  return reply->error;
}

std::vector<uint8_t> InfoRequestData(const std::string& name, const std::vector<uint16_t>& infos) {
  std::vector<uint8_t> b;
  AppendBE32(&b, static_cast<uint32_t>(name.size()));
  AppendBytes(&b, name);
  AppendBE16(&b, static_cast<uint16_t>(infos.size()));
  for (uint16_t i : infos) AppendBE16(&b, i);
  return b;
}

std::vector<uint8_t> MetaContextData(const std::string& name, const std::vector<std::string>& queries) {
  std::vector<uint8_t> b;
  AppendBE32(&b, static_cast<uint32_t>(name.size()));
  AppendBytes(&b, name);
  AppendBE32(&b, static_cast<uint32_t>(queries.size()));
  for (const auto& q : queries) {
    AppendBE32(&b, static_cast<uint32_t>(q.size()));
    AppendBytes(&b, q);
  }
  return b;
}

}  // namespace ovbd::nbd::nbdtest
