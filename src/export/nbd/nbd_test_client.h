// A small raw-socket NBD client for the server tests: every message is built and parsed by hand
// (with protocol.h's coding helpers), so tests can also send what a real client never would.
// Every receive has a deadline: a server that does not answer fails the test instead of hanging.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "export/nbd/protocol.h"

namespace ovbd::nbd::nbdtest {

struct OptionReply {
  uint32_t option = 0;
  uint32_t type = 0;
  std::vector<uint8_t> data;
};

struct Chunk {  // one structured reply chunk, or a simple reply (type kSimple)
  static constexpr uint32_t kSimple = 0xffffffff;
  uint32_t type = kSimple;
  uint16_t flags = 0;
  uint64_t cookie = 0;
  uint32_t error = 0;             // simple reply error, or the error of an error chunk
  std::vector<uint8_t> payload;   // structured: the chunk payload
};

struct GoResult {
  uint64_t size = 0;
  uint16_t flags = 0;
  uint32_t min_block = 0, preferred_block = 0, max_payload = 0;
  std::string name, description;
};

class TestClient {
 public:
  // Connects to a Unix socket; ok() tells whether it worked.
  explicit TestClient(const std::string& socket_path);
  ~TestClient();
  TestClient(const TestClient&) = delete;
  TestClient& operator=(const TestClient&) = delete;
  bool ok() const { return fd_ >= 0; }

  // Raw I/O. Recv returns false on EOF, error or after the deadline.
  bool Send(const std::vector<uint8_t>& bytes);
  bool Recv(size_t n, std::vector<uint8_t>* out);
  // True when the server closed the connection (EOF or reset) within the deadline (or
  // timeout_ms), reading and dropping anything sent before.
  bool WaitClosed();
  bool WaitClosed(int timeout_ms);
  void Close();  // closes our side

  // Handshake pieces.
  bool ReadGreeting(uint16_t* handshake_flags);
  bool SendClientFlags(uint32_t flags);
  bool SendOption(uint32_t option, const std::vector<uint8_t>& data);
  std::optional<OptionReply> ReadOptionReply();
  // Greeting + flags (FIXED_NEWSTYLE|NO_ZEROES) + optional STRUCTURED_REPLY and
  // SET_META_CONTEXT(base:allocation) + GO(name) asking for NAME, DESCRIPTION and BLOCK_SIZE.
  std::optional<GoResult> Handshake(const std::string& name = "", bool structured = false,
                                    bool base_allocation = false, bool ask_block_size = true);

  // Transmission.
  bool SendRequest(uint16_t type, uint16_t flags, uint64_t cookie, uint64_t offset, uint32_t length,
                   const std::vector<uint8_t>& payload = {});
  // A simple reply; with data_length > 0 and error 0, also that many data bytes.
  std::optional<Chunk> ReadSimpleReply(uint32_t data_length = 0);
  // One structured chunk (or a simple reply, when the magic says so).
  std::optional<Chunk> ReadChunk();

  // Convenience for simple-reply sessions: returns the wire error (0 = ok), or -1 on a broken
  // connection.
  int64_t Write(uint64_t offset, const std::vector<uint8_t>& data, uint16_t flags = 0);
  int64_t Read(uint64_t offset, uint32_t length, std::vector<uint8_t>* out);
  int64_t Command(uint16_t type, uint64_t offset, uint32_t length, uint16_t flags = 0);

 private:
  int fd_ = -1;
  uint64_t next_cookie_ = 1;
};

// Option data builders.
std::vector<uint8_t> InfoRequestData(const std::string& name, const std::vector<uint16_t>& infos);
std::vector<uint8_t> MetaContextData(const std::string& name, const std::vector<std::string>& queries);

}  // namespace ovbd::nbd::nbdtest
