// TLS credentials and the TLS stream over a real socket pair, with a GnuTLS client on the other
// end. X.509 with certificates made by certtool is covered by tests/nbd_tls_test.sh.
#include "export/nbd/tls.h"

#include <gnutls/gnutls.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

namespace ovbd::nbd {
namespace {

constexpr const char* kKeyAlice = "0123456789abcdef0123456789abcdef";
constexpr const char* kKeyWrong = "fedcba9876543210fedcba9876543210";

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/ovbd-tls-test.XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string Write(const std::string& name, const std::string& text) const {
    const std::string p = path_ + "/" + name;
    std::ofstream(p) << text;
    return p;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TlsOptions PskOptions(const std::string& file) {
  TlsOptions o;
  o.mode = TlsMode::kRequire;
  o.psk_file = file;
  return o;
}

TEST(NbdTlsLoad, RefusesBadCombinations) {
  TlsOptions o;
  EXPECT_EQ(TlsContext::Load(o).status().code(), Code::kInvalidArgument);  // mode off
  o.mode = TlsMode::kOn;
  EXPECT_EQ(TlsContext::Load(o).status().code(), Code::kInvalidArgument);  // no credentials
  o.certificates_dir = "/nonexistent";
  o.psk_file = "/nonexistent.psk";
  EXPECT_EQ(TlsContext::Load(o).status().code(), Code::kInvalidArgument);  // both
  o.certificates_dir.clear();
  o.verify_peer = true;
  EXPECT_EQ(TlsContext::Load(o).status().code(), Code::kInvalidArgument);  // verify with PSK
}

TEST(NbdTlsLoad, MissingFilesAreNamed) {
  TempDir dir;
  TlsOptions o;
  o.mode = TlsMode::kRequire;
  o.certificates_dir = dir.path();
  auto r = TlsContext::Load(o);
  ASSERT_EQ(r.status().code(), Code::kNotFound);
  EXPECT_NE(r.status().message().find(dir.path() + "/server-cert.pem"), std::string::npos) << r.status().ToString();
  dir.Write("server-cert.pem", "not a certificate");
  dir.Write("server-key.pem", "not a key");
  r = TlsContext::Load(o);
  ASSERT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("server-cert.pem"), std::string::npos) << r.status().ToString();
  o.verify_peer = true;
  r = TlsContext::Load(o);
  ASSERT_EQ(r.status().code(), Code::kNotFound);
  EXPECT_NE(r.status().message().find("ca-cert.pem"), std::string::npos) << r.status().ToString();
}

TEST(NbdTlsLoad, PskFileIsChecked) {
  TempDir dir;
  EXPECT_EQ(TlsContext::Load(PskOptions(dir.path() + "/none.psk")).status().code(), Code::kNotFound);
  auto bad = TlsContext::Load(PskOptions(dir.Write("bad.psk", "alice:0123\nbob:xyz\n")));
  ASSERT_EQ(bad.status().code(), Code::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("line 2"), std::string::npos) << bad.status().ToString();
  EXPECT_EQ(TlsContext::Load(PskOptions(dir.Write("empty.psk", "\n"))).status().code(),
            Code::kInvalidArgument);
  EXPECT_TRUE(TlsContext::Load(PskOptions(dir.Write("ok.psk", std::string("alice:") + kKeyAlice + "\n"))).ok());
}

TEST(NbdTlsMode, ParsesItsNames) {
  for (TlsMode m : {TlsMode::kOff, TlsMode::kOn, TlsMode::kRequire}) {
    auto parsed = ParseTlsMode(TlsModeName(m));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, m);
  }
  EXPECT_FALSE(ParseTlsMode("yes").ok());
}

// A GnuTLS PSK client on fd: handshake, then send `out` and read back `in_size` bytes.
struct ClientResult {
  int handshake = 0;
  std::string echoed;
};

ClientResult RunPskClient(int fd, const char* user, const char* key, const std::string& out) {
  ClientResult result;
  gnutls_psk_client_credentials_t creds = nullptr;
  gnutls_psk_allocate_client_credentials(&creds);
  gnutls_datum_t k{reinterpret_cast<unsigned char*>(const_cast<char*>(key)), static_cast<unsigned>(strlen(key))};
  gnutls_psk_set_client_credentials(creds, user, &k, GNUTLS_PSK_KEY_HEX);
  gnutls_session_t s = nullptr;
  gnutls_init(&s, GNUTLS_CLIENT | GNUTLS_NO_SIGNAL);  // the server may close first
  gnutls_priority_set_direct(s, "NORMAL:+ECDHE-PSK:+DHE-PSK:+PSK", nullptr);
  gnutls_credentials_set(s, GNUTLS_CRD_PSK, creds);
  gnutls_transport_set_int(s, fd);
  do {
    result.handshake = gnutls_handshake(s);
  } while (result.handshake < 0 && gnutls_error_is_fatal(result.handshake) == 0);
  if (result.handshake == 0) {
    for (size_t sent = 0; sent < out.size();) {  // one record (at most 16 KiB) per call
      const ssize_t n = gnutls_record_send(s, out.data() + sent, out.size() - sent);
      if (n <= 0) break;
      sent += static_cast<size_t>(n);
    }
    std::string in(out.size(), '\0');
    size_t got = 0;
    while (got < in.size()) {
      const ssize_t n = gnutls_record_recv(s, in.data() + got, in.size() - got);
      if (n <= 0) break;
      got += static_cast<size_t>(n);
    }
    result.echoed = in.substr(0, got);
    gnutls_bye(s, GNUTLS_SHUT_WR);
  }
  gnutls_deinit(s);
  gnutls_psk_free_client_credentials(creds);
  return result;
}

struct ServerResult {
  Status handshake;
  Status echo;
};

// Server side on fd: TLS handshake, then echo `size` bytes.
ServerResult RunEchoServer(const TlsContext& context, int fd, size_t size) {
  ServerResult result;
  SocketStream socket(fd, -1);
  auto stream = context.Handshake(socket);
  result.handshake = stream.status();
  if (!stream.ok()) return result;
  std::vector<uint8_t> buf(size);
  result.echo = (*stream)->ReadFull(buf);
  if (result.echo.ok()) result.echo = (*stream)->WriteAll(buf);
  return result;
}

TEST(NbdTlsStream, PskSessionCarriesBytesBothWays) {
  TempDir dir;
  auto context = TlsContext::Load(PskOptions(dir.Write("k.psk", std::string("alice:") + kKeyAlice + "\n")));
  ASSERT_TRUE(context.ok()) << context.status().ToString();
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  const std::string message(100000, 'x');  // several TLS records
  ServerResult server;
  std::thread t([&] { server = RunEchoServer(**context, fds[0], message.size()); });
  ClientResult client = RunPskClient(fds[1], "alice", kKeyAlice, message);
  t.join();
  close(fds[1]);
  EXPECT_EQ(client.handshake, 0) << gnutls_strerror(client.handshake);
  EXPECT_TRUE(server.handshake.ok()) << server.handshake.ToString();
  EXPECT_TRUE(server.echo.ok()) << server.echo.ToString();
  EXPECT_EQ(client.echoed, message);
}

TEST(NbdTlsStream, WrongKeyOrUnknownUserFailsTheHandshake) {
  TempDir dir;
  auto context = TlsContext::Load(PskOptions(dir.Write("k.psk", std::string("alice:") + kKeyAlice + "\n")));
  ASSERT_TRUE(context.ok());
  for (const auto& [user, key] : {std::pair{"alice", kKeyWrong}, std::pair{"mallory", kKeyAlice}}) {
    int fds[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    ServerResult server;
    std::thread t([&] { server = RunEchoServer(**context, fds[0], 4); });
    ClientResult client = RunPskClient(fds[1], user, key, "ping");
    shutdown(fds[1], SHUT_RDWR);
    t.join();
    close(fds[1]);
    EXPECT_NE(client.handshake, 0) << user;
    EXPECT_FALSE(server.handshake.ok()) << user;
    EXPECT_TRUE(client.echoed.empty()) << user;
  }
}

}  // namespace
}  // namespace ovbd::nbd
