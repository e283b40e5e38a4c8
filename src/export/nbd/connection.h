// One NBD client connection: the handshake, then the transmission phase.
//
//   reader (the thread calling Serve)          workers (Executor)         writer thread
//   ───────────────────────────────            ──────────────────         ─────────────
//   Negotiate()
//   loop: header ─> CheckRequest ─> wait for room ─> payload ─> Submit ─> Execute(device)
//                                                                          └─> queue reply ─> WriteAll
//                                                                                              └─> release room
//         alone in flight (queue depth 1): Execute and WriteAll on the reader itself (no hand-off)
//
// Replies leave whole, one at a time, from the one writer thread, so chunks of different replies
// never interleave; they may leave in any order (NBD allows it, cookies match them up). Workers
// never block on the socket: a client that stops reading its replies stalls only its own reader
// (through the in-flight caps), never the shared workers or other clients.
//
// In-flight caps (ConnectionLimits): at most max_requests requests and max_bytes bytes of payload
// and reply data between "header read" and "reply written"; a single request is always admitted
// when nothing else is in flight, so a max_payload request cannot dead-lock.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "export/nbd/handshake.h"
#include "export/nbd/request.h"
#include "export/nbd/stream.h"
#include "export/nbd/worker_pool.h"
#include "ovbd/block_device.h"

namespace ovbd::nbd {

struct ConnectionLimits {
  size_t max_requests = 64;
  uint64_t max_bytes = 64u << 20;
};

// Counters the server keeps over all its connections (ServerStats); each Connection adds to them
// from its reader thread, anyone may read them at any time.
struct EdgeCounters {
  std::atomic<uint64_t> requests_refused{0};    // CheckRequest answered an error (EINVAL, EPERM, ...)
  std::atomic<uint64_t> unaligned_requests{0};  // served requests UnalignedToSectors() flags
};

class Connection {
 public:
  // stream, device, info and executor must outlive the Connection. stopping (may be null) is
  // polled between requests: once true, no further request is read. tls says whether the client
  // may (or must) switch to TLS; the stream it returns is used from then on. counters (may be
  // null) must outlive the Connection too.
  Connection(ByteStream& stream, BlockDevice& device, const ExportInfo& info, Executor& executor,
             const std::atomic<bool>* stopping = nullptr, ConnectionLimits limits = {},
             TlsNegotiation tls = {}, EdgeCounters* counters = nullptr);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Serves the connection to its end: NBD_CMD_DISC, end of stream, a protocol violation, a failed
  // reply write, or *stopping. Returns only after every request read was executed and its reply
  // written (or dropped because the stream failed). OK after NBD_CMD_DISC or a stop; else why the
  // connection ended. The caller closes the stream afterwards. admit is Negotiate's (handshake.h).
  Status Serve(const AdmitFn& admit = {});

 private:
  struct Pending {
    std::vector<uint8_t> bytes;
    uint64_t footprint = 0;
  };

  Status ReadLoop();
  Status ReadOne(bool* disconnect);
  Status ReadPayload(const RequestHeader& request, Verdict* verdict, std::vector<uint8_t>* payload);
  void Submit(const RequestHeader& request, const Verdict& verdict, std::vector<uint8_t> payload,
              uint64_t footprint);
  // Waits until the request fits the in-flight caps and counts it; true if it is the only one.
  bool WaitForRoom(uint64_t footprint);
  void RunHere(const RequestHeader& request, const Verdict& verdict, const std::vector<uint8_t>& payload,
               uint64_t footprint);
  void FinishWrite(bool failed, uint64_t footprint);
  void Release(uint64_t footprint);
  void Enqueue(std::vector<uint8_t> reply, uint64_t footprint);
  void WriterLoop();
  void Drain();
  void Count(const RequestHeader& request, const Verdict& verdict);
  bool Stopping() const { return stopping_ != nullptr && stopping_->load(std::memory_order_acquire); }

  ByteStream* stream_;  // the socket's stream, or the TLS stream after STARTTLS
  BlockDevice& device_;
  const ExportInfo& info_;
  Executor& executor_;
  const std::atomic<bool>* stopping_;
  const ConnectionLimits limits_;
  const TlsNegotiation tls_;
  EdgeCounters* const counters_;
  Session session_;

  std::mutex mu_;
  std::condition_variable room_cv_;   // in-flight counters dropped
  std::condition_variable queue_cv_;  // a reply was queued, or the writer must stop
  std::deque<Pending> replies_;
  size_t inflight_requests_ = 0;
  uint64_t inflight_bytes_ = 0;
  bool writer_stop_ = false;
  bool broken_ = false;  // a reply write failed: the stream is shut down, replies are dropped
  bool writing_ = false;  // a reply is being written (by the writer thread or the reader)
  std::thread writer_;
};

}  // namespace ovbd::nbd
