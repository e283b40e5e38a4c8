// NBD option negotiation (fixed newstyle), on a ByteStream.
//
//   S: greeting ──> C: client flags ──> loop { C: option ──> S: option reply(s) }
//                                         ├─ NBD_OPT_GO / NBD_OPT_EXPORT_NAME  -> transmission
//                                         └─ NBD_OPT_ABORT, EOF, protocol error -> close
//
// Options served: EXPORT_NAME, ABORT, LIST, INFO, GO, STRUCTURED_REPLY, LIST_META_CONTEXT and
// SET_META_CONTEXT (base:allocation only); any other option gets NBD_REP_ERR_UNSUP. The one export
// answers to its name and to "" (the default export). Limits (protocol.h): option data above
// kMaxOptionData closes the connection, names and queries above kMaxNameLength get
// NBD_REP_ERR_TOO_BIG (or close, for EXPORT_NAME, which cannot report errors), at most
// kMaxOptions options per connection.
#pragma once

#include <cstdint>
#include <string>

#include "export/nbd/stream.h"
#include "ovbd/status.h"

namespace ovbd::nbd {

// What the server offers: fixed for the life of the server.
struct ExportInfo {
  std::string name;
  std::string description;  // NBD_INFO_DESCRIPTION when non-empty
  uint64_t size = 0;
  uint16_t flags = 0;  // transmission flags (TransmissionFlags())
  uint32_t min_block = 1;
  uint32_t preferred_block = 4096;
  uint32_t max_payload = 32u << 20;
};

// What the client chose; the transmission phase follows it.
struct Negotiated {
  bool structured_replies = false;
  bool base_allocation = false;    // base:allocation selected, as context kBaseAllocationId
  bool block_size_agreed = false;  // the client asked for NBD_INFO_BLOCK_SIZE in NBD_OPT_GO
  bool operator==(const Negotiated&) const = default;
};

inline constexpr int kMaxOptions = 1024;

// Runs the handshake. Returns once the client entered the transmission phase; an error when the
// client aborted, disconnected, broke the protocol or named an unknown export in EXPORT_NAME.
// After an error the caller closes the connection. Every byte read is hostile.
Result<Negotiated> Negotiate(ByteStream& stream, const ExportInfo& info);

}  // namespace ovbd::nbd
