// NBD option negotiation (fixed newstyle), on a ByteStream.
//
//   S: greeting ──> C: client flags ──> loop { C: option ──> S: option reply(s) }
//                                         ├─ NBD_OPT_GO / NBD_OPT_EXPORT_NAME  -> transmission
//                                         └─ NBD_OPT_ABORT, EOF, protocol error -> close
//
// Options served: EXPORT_NAME, ABORT, LIST, INFO, GO, STRUCTURED_REPLY, LIST_META_CONTEXT,
// SET_META_CONTEXT (base:allocation only) and STARTTLS (when TLS is on); any other option gets
// NBD_REP_ERR_UNSUP. With TLS required, every option but STARTTLS and ABORT gets
// NBD_REP_ERR_TLS_REQD until TLS is up, and EXPORT_NAME closes the connection. The one export
// answers to its name and to "" (the default export). Limits (protocol.h): option data above
// kMaxOptionData closes the connection, names and queries above kMaxNameLength get
// NBD_REP_ERR_TOO_BIG (or close, for EXPORT_NAME, which cannot report errors), at most
// kMaxOptions options per connection.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "export/nbd/stream.h"
#include "export/nbd/tls.h"
#include "ovbd/status.h"

namespace ovbd::nbd {

// What the server offers: fixed for the life of the server.
struct ExportInfo {
  std::string name;
  std::string description;  // NBD_INFO_DESCRIPTION when non-empty; after the name in NBD_REP_SERVER
  uint64_t size = 0;
  uint16_t flags = 0;  // transmission flags (TransmissionFlags()); SEND_DF is added per client
  uint32_t min_block = 1;
  uint32_t preferred_block = 4096;
  uint32_t max_payload = 32u << 20;
};

// What the client chose; the transmission phase follows it.
struct Negotiated {
  bool structured_replies = false;
  bool base_allocation = false;    // base:allocation selected, as context kBaseAllocationId
  bool block_size_agreed = false;  // the client asked for NBD_INFO_BLOCK_SIZE in NBD_OPT_GO
  bool tls = false;                // the session was upgraded by NBD_OPT_STARTTLS
  ByteStream* stream = nullptr;    // where transmission continues (the TLS stream after STARTTLS)
  bool operator==(const Negotiated&) const = default;
};

// Whether and how a connection may switch to TLS. start runs after NBD_REP_ACK to STARTTLS went
// out: the TLS handshake, then the stream negotiation continues on (owned by the caller). An
// error from it ends the connection (there is no way back to plaintext after the ACK).
struct TlsNegotiation {
  TlsMode mode = TlsMode::kOff;
  std::function<Result<ByteStream*>()> start;
};

inline constexpr int kMaxOptions = 1024;

// Asked once a client chose to enter transmission (NBD_OPT_GO or NBD_OPT_EXPORT_NAME for our
// export), before the reply that enters it; true admits the client. false refuses it: GO gets
// NBD_REP_ERR_POLICY and negotiation goes on (the client may try again), EXPORT_NAME, which cannot
// report errors, ends the handshake with Unavailable. The server uses it to cap connections in
// transmission and to end the handshake deadline. Empty: every client is admitted.
using AdmitFn = std::function<bool()>;

// Runs the handshake. Returns once the client entered the transmission phase; an error when the
// client aborted, disconnected, broke the protocol, named an unknown export in EXPORT_NAME or was
// refused there by `admit`. After an error the caller closes the connection. Every byte read is
// hostile. State negotiated before STARTTLS is forgotten once TLS is up (the specification's rule).
Result<Negotiated> Negotiate(ByteStream& stream, const ExportInfo& info, const TlsNegotiation& tls = {},
                             const AdmitFn& admit = {});

}  // namespace ovbd::nbd
