// NBD server: serves one BlockDevice as one export over Unix and/or TCP sockets.
// What it speaks, its limits and its error mapping: docs/nbd.md.
//
//   Run() thread (acceptor)         one thread per connection (reader)     shared WorkerPool
//   ───────────────────────         ──────────────────────────────────     ─────────────────
//   poll(listeners, wake fd)
//     accept ──> limits ──> spawn ─> Negotiate, under the handshake deadline; at GO: admitted
//     (transmission full: close;     (negotiating -> transmission, deadline cleared) or ERR_POLICY
//      handshakes full: evict the   loop: read request ──> check ──> Submit ──> Execute on device
//      oldest negotiating one)      (stops on DISC/EOF/     ^                    │
//                                    error/shutdown)        │ in-flight caps     v
//                                                           └── release ── writer thread (one per
//                                                                          connection): replies
//                                                                          written whole, in turn
//   Shutdown() (any thread, e.g. a sigwait thread): sets the stop flag and signals the wake
//   eventfd ─> the acceptor stops accepting, every reader stops reading new requests, in-flight
//   requests finish and their replies are sent, sockets close, Run() joins all and returns.
//
// Contract: Create, then Listen* (one or more), then Run (once, blocks). Shutdown and Stats are
// thread-safe. The device is shared by every connection (BlockDevice is thread-safe); the server
// adds no lock on the read path. The connection limits are explained in docs/nbd.md ("Handshake
// limits"). Destroy the Server only after Run() returned (or if it never ran).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "export/nbd/tls.h"
#include "ovbd/block_device.h"
#include "ovbd/status.h"

namespace ovbd::nbd {

struct ServerOptions {
  std::string export_name;      // the one export; "" (the default export) always maps to it too
  std::string description;      // NBD_INFO_DESCRIPTION if non-empty, and in the NBD_OPT_LIST entry
  bool read_only = false;       // refuse writes even if the device is writable
  unsigned workers = 0;         // request-serving threads; 0 = max(2, hardware_concurrency)
  // Connections in the transmission phase. While this many are, a new connection is closed at
  // once (ServerStats::refused) and a GO of one already negotiating gets NBD_REP_ERR_POLICY
  // (EXPORT_NAME: closed) (ServerStats::go_refused). At least 1.
  size_t max_connections = 64;
  // Connections still negotiating, capped apart from max_connections so that idle or slow
  // handshakes never take the place of clients in transmission. A connection arriving while this
  // many negotiate evicts the oldest of them (ServerStats::evicted): holding every slot does not
  // lock anyone out for longer than it takes the newcomer to finish. At least 1.
  size_t max_handshakes = 128;
  // From accept to entering transmission, in total; a connection still negotiating then is closed
  // (ServerStats::handshake_timeouts). 0 = no limit.
  std::chrono::milliseconds handshake_timeout{10000};
  // TLS credentials and mode (TlsContext::Load); null = no TLS (STARTTLS refused).
  std::shared_ptr<const TlsContext> tls;
};

// The connection and TLS counters are one consistent snapshot (taken under one lock); the
// request counters are read right after it.
struct ServerStats {
  uint64_t connections_total = 0;   // connections accepted and served since Run() began (not refused)
  uint32_t clients = 0;             // connections open now, in any phase
  uint32_t negotiating = 0;         // of those, in the handshake (not counting evicted ones closing)
  uint32_t transmitting = 0;        // of those, in the transmission phase
  uint64_t refused = 0;             // closed at accept: max_connections in transmission, or no thread
  uint64_t handshake_timeouts = 0;  // closed because the handshake outlived handshake_timeout
  uint64_t evicted = 0;             // negotiating connections closed to make room for a newer one
  uint64_t go_refused = 0;          // GO / EXPORT_NAME refused because max_connections were in transmission
  uint64_t tls_sessions = 0;            // STARTTLS handshakes that succeeded
  uint64_t tls_handshake_failures = 0;  // ... that failed (connection closed; at the deadline also
                                        // counted in handshake_timeouts)
  std::string tls_last_failure;         // why the newest one failed ("" if none did)
  // Requests answered with an error by the edge check, before the device (docs/nbd.md, "The edge
  // check"): out of range, on a read-only export, flags or commands not negotiated, ...
  uint64_t requests_refused = 0;
  // Served READ/WRITE/TRIM/WRITE_ZEROES not on 512-byte boundaries (nbd::UnalignedToSectors).
  uint64_t unaligned_requests = 0;
};

class Server {
 public:
  // The export advertises minimum block size 1 (BlockDevice takes any alignment), the device's
  // preferred_block and min(max_request, 64 MiB). InvalidArgument when those break the NBD rules
  // (preferred a power of two, max >= preferred) or the export name or description is longer
  // than 4096 bytes.
  static Result<std::unique_ptr<Server>> Create(std::shared_ptr<BlockDevice> device, ServerOptions options);

  // Listens on a Unix socket at path (mode 0600). A stale socket at path (nobody accepts on it)
  // is removed first; a live socket or any other kind of file there is AlreadyExists. The socket
  // file is removed when Run() returns.
  Status ListenUnix(const std::string& path);
  // Listens on host:port (host "" = all addresses; port 0 = any free port, see tcp_port()).
  Status ListenTcp(const std::string& host, uint16_t port);
  // The bound TCP port, 0 before ListenTcp.
  uint16_t tcp_port() const;

  // Accepts and serves until Shutdown(); returns after in-flight requests finished and every
  // connection closed. InvalidArgument without a listener, or when called twice.
  Status Run();
  // Thread-safe, idempotent, callable before Run() (Run then returns at once).
  void Shutdown();
  ServerStats Stats() const;
  ~Server();

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ovbd::nbd
