// One NBD connection: reader loop, in-flight accounting, writer thread.
#include "export/nbd/connection.h"

#include <array>
#include <new>

namespace ovbd::nbd {

Connection::Connection(ByteStream& stream, BlockDevice& device, const ExportInfo& info, Executor& executor,
                       const std::atomic<bool>* stopping, ConnectionLimits limits, TlsNegotiation tls,
                       EdgeCounters* counters)
    : stream_(&stream),
      device_(device),
      info_(info),
      executor_(executor),
      stopping_(stopping),
      limits_(limits),
      tls_(std::move(tls)),
      counters_(counters) {}

Connection::~Connection() {
  if (writer_.joinable()) Drain();
}

Status Connection::Serve(const AdmitFn& admit) {
  auto negotiated = Negotiate(*stream_, info_, tls_, admit);
  if (!negotiated.ok()) return negotiated.status();
  stream_ = negotiated->stream;
  session_ = MakeSession(info_, *negotiated);
  writer_ = std::thread([this] { WriterLoop(); });
  Status status = ReadLoop();
  Drain();
  return status;
}

Status Connection::ReadLoop() {
  for (;;) {
    if (Stopping()) return Status::OK();
    {
      std::lock_guard lock(mu_);
      if (broken_) return Status::IOError("nbd: writing a reply failed");
    }
    bool disconnect = false;
    OVBD_RETURN_IF_ERROR(ReadOne(&disconnect));
    if (disconnect) return Status::OK();
  }
}

Status Connection::ReadOne(bool* disconnect) {
  std::array<uint8_t, kRequestSize> bytes;
  OVBD_RETURN_IF_ERROR(stream_->ReadFull(bytes));
  OVBD_ASSIGN_OR_RETURN(const RequestHeader request, DecodeRequest(bytes));
  if (request.type == kCmdDisc) {
    *disconnect = true;
    return Status::OK();
  }
  Verdict verdict = CheckRequest(request, session_);
  Count(request, verdict);
  const uint64_t footprint = RequestFootprint(request, verdict);
  const bool alone = WaitForRoom(footprint);  // before the payload is allocated
  std::vector<uint8_t> payload;
  const Status status = ReadPayload(request, &verdict, &payload);
  if (!status.ok()) {
    Release(footprint);
    return status;
  }
  if (alone) {
    RunHere(request, verdict, payload, footprint);
  } else {
    Submit(request, verdict, std::move(payload), footprint);
  }
  return Status::OK();
}

void Connection::Count(const RequestHeader& request, const Verdict& verdict) {
  if (counters_ == nullptr) return;
  if (verdict.error != 0) {
    counters_->requests_refused.fetch_add(1, std::memory_order_relaxed);
  } else if (UnalignedToSectors(request, session_)) {
    counters_->unaligned_requests.fetch_add(1, std::memory_order_relaxed);
  }
}

// The request is the only one in flight (queue depth 1, or the first of a burst): executing it on
// this thread and writing its reply directly saves two thread hand-offs, and nothing waits behind
// it. If the writer thread is busy, the reply queues as usual.
void Connection::RunHere(const RequestHeader& request, const Verdict& verdict, const std::vector<uint8_t>& payload,
                         uint64_t footprint) {
  std::vector<uint8_t> reply = Execute(device_, session_, request, verdict, payload);
  {
    std::unique_lock lock(mu_);
    if (writing_ || !replies_.empty() || broken_) {
      replies_.push_back(Pending{std::move(reply), footprint});
      lock.unlock();
      queue_cv_.notify_one();
      return;
    }
    writing_ = true;
  }
  const bool failed = !stream_->WriteAll(reply).ok();
  if (failed) stream_->Shutdown();
  FinishWrite(failed, footprint);
}

// Bookkeeping after a reply left (or failed to): under mu_, wakes the reader and the writer.
void Connection::FinishWrite(bool failed, uint64_t footprint) {
  {
    std::lock_guard lock(mu_);
    writing_ = false;
    broken_ = broken_ || failed;
    inflight_requests_--;
    inflight_bytes_ -= footprint;
  }
  room_cv_.notify_all();
  queue_cv_.notify_one();  // a reply queued while this one was written
}

// A write's payload is always consumed: kept when the request will be served, else dropped in
// bounded chunks so the stream stays in sync.
Status Connection::ReadPayload(const RequestHeader& request, Verdict* verdict, std::vector<uint8_t>* payload) {
  const uint32_t length = PayloadLength(request);
  if (length == 0) return Status::OK();
  if (verdict->error == 0) {
    try {
      payload->resize(length);
    } catch (const std::bad_alloc&) {
      *verdict = Verdict{kENOMEM, "out of memory for the write payload"};
    }
  }
  if (verdict->error != 0) return DiscardPayload(*stream_, length);
  return stream_->ReadFull(*payload);
}

void Connection::Submit(const RequestHeader& request, const Verdict& verdict, std::vector<uint8_t> payload,
                        uint64_t footprint) {
  executor_.Submit([this, request, verdict, payload = std::move(payload), footprint] {
    Enqueue(Execute(device_, session_, request, verdict, payload), footprint);
  });
}

bool Connection::WaitForRoom(uint64_t footprint) {
  std::unique_lock lock(mu_);
  room_cv_.wait(lock, [&] {
    if (inflight_requests_ == 0) return true;
    return inflight_requests_ < limits_.max_requests && inflight_bytes_ + footprint <= limits_.max_bytes;
  });
  const bool alone = inflight_requests_ == 0;
  inflight_requests_++;
  inflight_bytes_ += footprint;
  return alone;
}

void Connection::Release(uint64_t footprint) {
  {
    std::lock_guard lock(mu_);
    inflight_requests_--;
    inflight_bytes_ -= footprint;
  }
  room_cv_.notify_all();
}

void Connection::Enqueue(std::vector<uint8_t> reply, uint64_t footprint) {
  {
    std::lock_guard lock(mu_);
    replies_.push_back(Pending{std::move(reply), footprint});
  }
  queue_cv_.notify_one();
}

void Connection::WriterLoop() {
  for (;;) {
    Pending reply;
    bool skip = false;
    {
      std::unique_lock lock(mu_);
      queue_cv_.wait(lock, [this] { return !writing_ && (writer_stop_ || !replies_.empty()); });
      if (replies_.empty()) return;
      reply = std::move(replies_.front());
      replies_.pop_front();
      skip = broken_;
      writing_ = true;
    }
    const bool failed = !skip && !stream_->WriteAll(reply.bytes).ok();
    if (failed) stream_->Shutdown();  // wakes the reader: the client is gone
    reply.bytes = {};
    FinishWrite(failed, reply.footprint);
  }
}

void Connection::Drain() {
  {
    std::unique_lock lock(mu_);
    room_cv_.wait(lock, [this] { return inflight_requests_ == 0; });
    writer_stop_ = true;
  }
  queue_cv_.notify_all();
  writer_.join();
}

}  // namespace ovbd::nbd
