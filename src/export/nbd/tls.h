// TLS for the NBD server (GnuTLS): credentials loaded once, and the stream a connection switches
// to after NBD_OPT_STARTTLS was acknowledged.
//
//   TlsContext::Load(TlsOptions)            once per server: files read and checked, errors name them
//     └─ Handshake(SocketStream&) ──> TlsStream : ByteStream     per connection, after the ACK
//          records over SocketStream::ReadSome / WriteAll (so its wake-up and deadlines apply)
//
// Credentials are either X.509 (a directory laid out as nbdkit and qemu do: ca-cert.pem,
// server-cert.pem, server-key.pem, optional ca-crl.pem) or a pre-shared key file in psktool's
// format (lines "username:hexkey"). With verify_peer, a client must present a certificate that
// ca-cert.pem signed; the handshake fails otherwise. TLS 1.2 is the oldest version accepted.
//
// Threads: a TlsContext is read-only once loaded and shared by every connection. A TlsStream is
// read by one thread while another writes (GnuTLS allows one sender and one receiver at once);
// the connection never renegotiates.
#pragma once

#include <memory>
#include <string>

#include "export/nbd/socket_stream.h"
#include "export/nbd/stream.h"
#include "ovbd/status.h"

namespace ovbd::nbd {

// off: STARTTLS is refused (NBD_REP_ERR_POLICY). on: offered, plaintext also served.
// require: every option but STARTTLS and ABORT fails with NBD_REP_ERR_TLS_REQD until TLS is up.
enum class TlsMode { kOff, kOn, kRequire };

struct TlsOptions {
  TlsMode mode = TlsMode::kOff;
  std::string certificates_dir;  // X.509 credentials, or
  std::string psk_file;          // a pre-shared key file (exactly one of the two when mode != off)
  bool verify_peer = false;      // X.509 only: require a client certificate signed by ca-cert.pem
};

// "off", "on", "require" <-> TlsMode.
Result<TlsMode> ParseTlsMode(const std::string& text);
const char* TlsModeName(TlsMode mode);

class TlsContext {
 public:
  // Reads and checks the credentials. InvalidArgument for a bad combination of options, NotFound
  // or IOError (naming the file and GnuTLS's reason) for missing or unreadable files.
  static Result<std::shared_ptr<TlsContext>> Load(const TlsOptions& options);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  TlsMode mode() const { return options_.mode; }
  const TlsOptions& options() const { return options_; }

  // Runs the server side of the handshake on transport (which must outlive the result). An error
  // (PermissionDenied for a peer that failed authentication, IOError otherwise) means the
  // connection must be closed: STARTTLS was acknowledged, there is no way back to plaintext.
  Result<std::unique_ptr<ByteStream>> Handshake(SocketStream& transport) const;

 private:
  struct Creds;
  explicit TlsContext(TlsOptions options);
  TlsOptions options_;
  std::unique_ptr<Creds> creds_;
};

}  // namespace ovbd::nbd
