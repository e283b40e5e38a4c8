// GnuTLS credentials and the TLS stream of one NBD connection.
#include "export/nbd/tls.h"

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cerrno>
#include <fstream>

namespace ovbd::nbd {
namespace {

// TLS 1.2 and 1.3 only (the NBD specification: older versions not by default).
constexpr const char* kPriorityX509 = "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2";
constexpr const char* kPriorityPsk = "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:+ECDHE-PSK:+DHE-PSK:+PSK";

std::string GnutlsError(int rc) { return gnutls_strerror(rc); }

bool IsReadableFile(const std::string& path) {
  struct stat st{};
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

Status RequireFile(const std::string& path, const std::string& what) {
  if (IsReadableFile(path)) return Status::OK();
  return Status::NotFound("tls: " + what + " " + path + " does not exist or is not a regular file");
}

// psktool writes "username:hexkey" lines; GnuTLS reads the file itself at every handshake, so
// check it here once, where a mistake can still be reported with its line.
Status CheckPskFile(const std::string& path) {
  OVBD_RETURN_IF_ERROR(RequireFile(path, "PSK file"));
  std::ifstream in(path);
  if (!in) return Status::IOError("tls: cannot read PSK file " + path);
  std::string line;
  int number = 0;
  int keys = 0;
  while (std::getline(in, line)) {
    number++;
    if (line.empty()) continue;
    const auto colon = line.find(':');
    const std::string key = colon == std::string::npos ? "" : line.substr(colon + 1);
    const bool hex = !key.empty() && key.size() % 2 == 0 &&
                     key.find_first_not_of("0123456789abcdefABCDEF") == std::string::npos;
    if (colon == 0 || !hex) {
      return Status::InvalidArgument("tls: PSK file " + path + " line " + std::to_string(number) +
                                     ": expected USERNAME:HEXKEY (as psktool writes)");
    }
    keys++;
  }
  if (keys == 0) return Status::InvalidArgument("tls: PSK file " + path + " holds no key");
  return Status::OK();
}

// The transport below GnuTLS: the connection's socket. A failure is kept so the stream reports
// the socket's reason (peer gone, deadline, shutdown) rather than GnuTLS's generic one. The
// reader and the writer each keep their own.
struct Transport {
  SocketStream* socket = nullptr;
  Status read_status;
  Status write_status;
  bool closing = false;  // at close_notify: never wait for a peer that does not read
};

ssize_t Pull(gnutls_transport_ptr_t ptr, void* data, size_t size) {
  auto* t = static_cast<Transport*>(ptr);
  auto got = t->socket->ReadSome({static_cast<uint8_t*>(data), size});
  if (got.ok()) return static_cast<ssize_t>(*got);
  t->read_status = got.status();
  errno = EIO;
  return -1;
}

ssize_t Push(gnutls_transport_ptr_t ptr, const void* data, size_t size) {
  auto* t = static_cast<Transport*>(ptr);
  if (t->closing) {
    const ssize_t n = send(t->socket->fd(), data, size, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) errno = EPIPE;
    return n;
  }
  Status s = t->socket->WriteAll({static_cast<const uint8_t*>(data), size});
  if (s.ok()) return static_cast<ssize_t>(size);
  t->write_status = s;
  errno = EPIPE;
  return -1;
}

int PullTimeout(gnutls_transport_ptr_t ptr, unsigned int ms) {
  auto* t = static_cast<Transport*>(ptr);
  const int timeout = ms == GNUTLS_INDEFINITE_TIMEOUT ? -1 : static_cast<int>(ms);
  return t->socket->PollReadable(timeout) ? 1 : 0;
}

class TlsStream final : public ByteStream {
 public:
  explicit TlsStream(SocketStream& socket) { transport_.socket = &socket; }
  ~TlsStream() override {
    if (session_ == nullptr) return;
    if (established_ && transport_.write_status.ok()) {
      transport_.closing = true;
      (void)gnutls_bye(session_, GNUTLS_SHUT_WR);  // close_notify, best effort
    }
    gnutls_deinit(session_);
  }
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  Status Start(const TlsOptions& options, gnutls_certificate_credentials_t x509,
               gnutls_psk_server_credentials_t psk, gnutls_priority_t priority);

  Status ReadFull(std::span<uint8_t> buf) override {
    size_t got = 0;
    while (got < buf.size()) {
      const ssize_t n = gnutls_record_recv(session_, buf.data() + got, buf.size() - got);
      if (n > 0) {
        got += static_cast<size_t>(n);
        continue;
      }
      if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) continue;
      if (!transport_.read_status.ok()) return transport_.read_status;
      if (n == 0) return Status::Unavailable("nbd: client closed the TLS session");
      return Status::IOError("nbd: TLS receive: " + GnutlsError(static_cast<int>(n)));
    }
    return Status::OK();
  }

  Status WriteAll(std::span<const uint8_t> data) override {
    size_t sent = 0;
    while (sent < data.size()) {
      const ssize_t n = gnutls_record_send(session_, data.data() + sent, data.size() - sent);
      if (n > 0) {
        sent += static_cast<size_t>(n);
        continue;
      }
      if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) continue;
      if (!transport_.write_status.ok()) return transport_.write_status;
      return Status::IOError("nbd: TLS send: " + GnutlsError(static_cast<int>(n)));
    }
    return Status::OK();
  }

  void Shutdown() override { transport_.socket->Shutdown(); }

 private:
  Status HandshakeError(int rc) const;

  Transport transport_;
  gnutls_session_t session_ = nullptr;
  bool established_ = false;
};

Status TlsStream::Start(const TlsOptions& options, gnutls_certificate_credentials_t x509,
                        gnutls_psk_server_credentials_t psk, gnutls_priority_t priority) {
  int rc = gnutls_init(&session_, GNUTLS_SERVER);
  if (rc != GNUTLS_E_SUCCESS) {
    session_ = nullptr;
    return Status::IOError("nbd: TLS session: " + GnutlsError(rc));
  }
  rc = gnutls_priority_set(session_, priority);
  if (rc == GNUTLS_E_SUCCESS && x509 != nullptr) {
    rc = gnutls_credentials_set(session_, GNUTLS_CRD_CERTIFICATE, x509);
    gnutls_certificate_server_set_request(session_, options.verify_peer ? GNUTLS_CERT_REQUIRE : GNUTLS_CERT_IGNORE);
    if (options.verify_peer) gnutls_session_set_verify_cert(session_, nullptr, 0);
  }
  if (rc == GNUTLS_E_SUCCESS && psk != nullptr) rc = gnutls_credentials_set(session_, GNUTLS_CRD_PSK, psk);
  if (rc != GNUTLS_E_SUCCESS) return Status::IOError("nbd: TLS session setup: " + GnutlsError(rc));
  gnutls_handshake_set_timeout(session_, 0);  // the socket's own deadline bounds the handshake
  gnutls_transport_set_ptr(session_, &transport_);
  gnutls_transport_set_pull_function(session_, Pull);
  gnutls_transport_set_push_function(session_, Push);
  gnutls_transport_set_pull_timeout_function(session_, PullTimeout);
  do {
    rc = gnutls_handshake(session_);
  } while (rc < 0 && gnutls_error_is_fatal(rc) == 0);
  if (rc < 0) return HandshakeError(rc);
  established_ = true;
  return Status::OK();
}

Status TlsStream::HandshakeError(int rc) const {
  if (!transport_.read_status.ok()) return transport_.read_status.WithContext("nbd: TLS handshake");
  if (!transport_.write_status.ok()) return transport_.write_status.WithContext("nbd: TLS handshake");
  std::string why = GnutlsError(rc);
  if (rc == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR || rc == GNUTLS_E_NO_CERTIFICATE_FOUND) {
    gnutls_datum_t text{};
    const unsigned status = gnutls_session_get_verify_cert_status(session_);
    if (status != 0 && gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &text, 0) == 0) {
      why += ": " + std::string(reinterpret_cast<const char*>(text.data), text.size);
      gnutls_free(text.data);
    }
    return Status::IOError("nbd: TLS handshake: client not authenticated: " + why);
  }
  return Status::IOError("nbd: TLS handshake failed: " + why);
}

}  // namespace

struct TlsContext::Creds {
  gnutls_certificate_credentials_t x509 = nullptr;
  gnutls_psk_server_credentials_t psk = nullptr;
  gnutls_priority_t priority = nullptr;
  ~Creds() {
    if (x509 != nullptr) gnutls_certificate_free_credentials(x509);
    if (psk != nullptr) gnutls_psk_free_server_credentials(psk);
    if (priority != nullptr) gnutls_priority_deinit(priority);
  }
};

namespace {

Status LoadX509(const TlsOptions& options, gnutls_certificate_credentials_t* out) {
  const std::string dir = options.certificates_dir;
  const std::string ca = dir + "/ca-cert.pem", crl = dir + "/ca-crl.pem";
  const std::string cert = dir + "/server-cert.pem", key = dir + "/server-key.pem";
  OVBD_RETURN_IF_ERROR(RequireFile(cert, "server certificate"));
  OVBD_RETURN_IF_ERROR(RequireFile(key, "server key"));
  if (options.verify_peer) OVBD_RETURN_IF_ERROR(RequireFile(ca, "CA certificate (needed by --tls-verify-peer)"));
  int rc = gnutls_certificate_allocate_credentials(out);
  if (rc != GNUTLS_E_SUCCESS) return Status::IOError("tls: credentials: " + GnutlsError(rc));
  rc = gnutls_certificate_set_x509_key_file(*out, cert.c_str(), key.c_str(), GNUTLS_X509_FMT_PEM);
  if (rc < 0) return Status::InvalidArgument("tls: " + cert + " with " + key + ": " + GnutlsError(rc));
  if (IsReadableFile(ca)) {
    rc = gnutls_certificate_set_x509_trust_file(*out, ca.c_str(), GNUTLS_X509_FMT_PEM);
    if (rc < 0) return Status::InvalidArgument("tls: " + ca + ": " + GnutlsError(rc));
    if (rc == 0 && options.verify_peer) return Status::InvalidArgument("tls: " + ca + " holds no certificate");
  }
  if (IsReadableFile(crl)) {
    rc = gnutls_certificate_set_x509_crl_file(*out, crl.c_str(), GNUTLS_X509_FMT_PEM);
    if (rc < 0) return Status::InvalidArgument("tls: " + crl + ": " + GnutlsError(rc));
  }
  (void)gnutls_certificate_set_known_dh_params(*out, GNUTLS_SEC_PARAM_MEDIUM);
  return Status::OK();
}

Status LoadPsk(const TlsOptions& options, gnutls_psk_server_credentials_t* out) {
  OVBD_RETURN_IF_ERROR(CheckPskFile(options.psk_file));
  int rc = gnutls_psk_allocate_server_credentials(out);
  if (rc != GNUTLS_E_SUCCESS) return Status::IOError("tls: credentials: " + GnutlsError(rc));
  rc = gnutls_psk_set_server_credentials_file(*out, options.psk_file.c_str());
  if (rc < 0) return Status::InvalidArgument("tls: " + options.psk_file + ": " + GnutlsError(rc));
  (void)gnutls_psk_set_server_known_dh_params(*out, GNUTLS_SEC_PARAM_MEDIUM);
  return Status::OK();
}

Status CheckOptions(const TlsOptions& options) {
  if (options.mode == TlsMode::kOff) return Status::InvalidArgument("tls: credentials loaded with TLS off");
  const bool x509 = !options.certificates_dir.empty(), psk = !options.psk_file.empty();
  if (x509 && psk) return Status::InvalidArgument("tls: give X.509 certificates or a PSK file, not both");
  if (!x509 && !psk) return Status::InvalidArgument("tls: TLS needs certificates (a directory) or a PSK file");
  if (psk && options.verify_peer) {
    return Status::InvalidArgument("tls: peer verification applies to X.509 certificates; a PSK verifies both sides");
  }
  return Status::OK();
}

}  // namespace

Result<TlsMode> ParseTlsMode(const std::string& text) {
  if (text == "off") return TlsMode::kOff;
  if (text == "on") return TlsMode::kOn;
  if (text == "require") return TlsMode::kRequire;
  return Status::InvalidArgument("tls mode '" + text + "': expected off, on or require");
}

const char* TlsModeName(TlsMode mode) {
  switch (mode) {
    case TlsMode::kOff: return "off";
    case TlsMode::kOn: return "on";
    case TlsMode::kRequire: return "require";
  }
  return "off";
}

TlsContext::TlsContext(TlsOptions options) : options_(std::move(options)), creds_(std::make_unique<Creds>()) {}
TlsContext::~TlsContext() = default;

Result<std::shared_ptr<TlsContext>> TlsContext::Load(const TlsOptions& options) {
  OVBD_RETURN_IF_ERROR(CheckOptions(options));
  std::shared_ptr<TlsContext> context(new TlsContext(options));
  Creds& creds = *context->creds_;
  if (!options.certificates_dir.empty()) {
    OVBD_RETURN_IF_ERROR(LoadX509(options, &creds.x509));
  } else {
    OVBD_RETURN_IF_ERROR(LoadPsk(options, &creds.psk));
  }
  const char* priority = creds.psk != nullptr ? kPriorityPsk : kPriorityX509;
  const int rc = gnutls_priority_init(&creds.priority, priority, nullptr);
  if (rc != GNUTLS_E_SUCCESS) return Status::IOError("tls: priority string: " + GnutlsError(rc));
  return context;
}

Result<std::unique_ptr<ByteStream>> TlsContext::Handshake(SocketStream& transport) const {
  auto stream = std::make_unique<TlsStream>(transport);
  OVBD_RETURN_IF_ERROR(stream->Start(options_, creds_->x509, creds_->psk, creds_->priority));
  return std::unique_ptr<ByteStream>(std::move(stream));
}

}  // namespace ovbd::nbd
