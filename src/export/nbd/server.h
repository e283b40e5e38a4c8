// NBD server: serves one BlockDevice as one export over Unix and/or TCP sockets.
// What it speaks, its limits and its error mapping: docs/nbd.md.
//
//   Run() thread (acceptor)         one thread per connection (reader)     shared WorkerPool
//   ───────────────────────         ──────────────────────────────────     ─────────────────
//   poll(listeners, wake fd)
//     accept ──> spawn ───────────> Negotiate (option haggling)
//                                   loop: read request ──> check ──> Submit ──> Execute on device
//                                   (stops on DISC/EOF/     ^                    │
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
// adds no lock on the read path. Destroy the Server only after Run() returned (or if it never ran).
#pragma once

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
  size_t max_connections = 64;  // further connections are closed at once
  // TLS credentials and mode (TlsContext::Load); null = no TLS (STARTTLS refused).
  std::shared_ptr<const TlsContext> tls;
};

struct ServerStats {
  uint64_t connections_total = 0;  // connections served since Run() began (not those refused)
  uint32_t clients = 0;            // connections open now
  uint64_t tls_sessions = 0;            // STARTTLS handshakes that succeeded
  uint64_t tls_handshake_failures = 0;  // ... that failed (connection closed)
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
