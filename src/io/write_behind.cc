// Write-behind output: a producer-side buffer, a bounded queue and one writer thread.
#include "io/write_behind.h"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

namespace ovbd {
namespace {

// Larger than PosixWritableFile's 1 MiB buffer, so each buffer goes straight to write(2).
constexpr size_t kBufferBytes = 2 << 20;
constexpr size_t kMaxQueuedBuffers = 8;

class WriteBehindFile final : public WritableFile {
 public:
  WriteBehindFile(WritableFile* base, uint64_t sync_every)
      : base_(base), sync_every_(sync_every), start_(base->Position()) {
    current_.reserve(kBufferBytes);
    thread_ = std::thread([this] { WriterLoop(); });
  }
  ~WriteBehindFile() override { (void)Close(); }

  Status Append(std::span<const uint8_t> data) override;
  uint64_t Position() const override { return start_ + appended_; }
  bool Seekable() const override { return false; }
  Status Rewrite(uint64_t, std::span<const uint8_t>) override {
    return Status::NotSupported(Name() + ": output written behind cannot be rewritten");
  }
  Status Sync() override;
  Status Close() override;
  const std::string& Name() const override { return base_->Name(); }

 private:
  // Queues current_ (if not empty), waiting while the queue is full.
  Status Push();
  // Pushes and waits until the writer thread has written everything.
  Status Drain();
  // The writer thread: writes queued buffers in order, syncing every sync_every_ bytes.
  void WriterLoop();
  // Writes one buffer to base_ (no lock held); `unsynced` counts bytes since the last Sync.
  Status WriteOne(const std::vector<uint8_t>& buf, uint64_t* unsynced);

  WritableFile* const base_;
  const uint64_t sync_every_;
  const uint64_t start_;
  uint64_t appended_ = 0;          // producer only
  std::vector<uint8_t> current_;   // producer only: the buffer being filled
  bool closed_ = false;            // producer only
  Status close_status_;            // producer only

  std::mutex mu_;
  std::condition_variable work_cv_;  // the writer waits for a buffer or stop
  std::condition_variable room_cv_;  // the producer waits for room or for the writer to be idle
  std::deque<std::vector<uint8_t>> queue_;
  std::vector<std::vector<uint8_t>> spare_;  // written buffers, reused by the producer
  bool busy_ = false;                        // the writer is writing a buffer
  bool stop_ = false;
  Status error_;                             // first error of base_
  std::thread thread_;
};

Status WriteBehindFile::Append(std::span<const uint8_t> data) {
  if (closed_) return Status::InvalidArgument(Name() + ": append after close");
  while (!data.empty()) {
    const size_t n = std::min(data.size(), kBufferBytes - current_.size());
    current_.insert(current_.end(), data.begin(), data.begin() + static_cast<ptrdiff_t>(n));
    appended_ += n;
    data = data.subspan(n);
    if (current_.size() == kBufferBytes) OVBD_RETURN_IF_ERROR(Push());
  }
  return Status::OK();
}

Status WriteBehindFile::Push() {
  std::unique_lock<std::mutex> lock(mu_);
  if (current_.empty()) return error_;
  room_cv_.wait(lock, [this] { return queue_.size() < kMaxQueuedBuffers || !error_.ok(); });
  if (!error_.ok()) return error_;
  queue_.push_back(std::move(current_));
  current_ = std::vector<uint8_t>();
  if (!spare_.empty()) {
    current_ = std::move(spare_.back());
    spare_.pop_back();
  }
  lock.unlock();
  work_cv_.notify_one();
  current_.reserve(kBufferBytes);
  return Status::OK();
}

Status WriteBehindFile::Drain() {
  OVBD_RETURN_IF_ERROR(Push());
  std::unique_lock<std::mutex> lock(mu_);
  room_cv_.wait(lock, [this] { return queue_.empty() && !busy_; });
  return error_;
}

Status WriteBehindFile::Sync() {
  if (closed_) return Status::InvalidArgument(Name() + ": sync after close");
  OVBD_RETURN_IF_ERROR(Drain());
  return base_->Sync();  // the writer is idle until the next Append
}

Status WriteBehindFile::Close() {
  if (closed_) return close_status_;
  closed_ = true;
  close_status_ = Drain();
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_one();
  thread_.join();
  return close_status_;
}

Status WriteBehindFile::WriteOne(const std::vector<uint8_t>& buf, uint64_t* unsynced) {
  OVBD_RETURN_IF_ERROR(base_->Append(buf));
  *unsynced += buf.size();
  if (sync_every_ == 0 || *unsynced < sync_every_) return Status::OK();
  *unsynced = 0;
  return base_->Sync();
}

void WriteBehindFile::WriterLoop() {
  uint64_t unsynced = 0;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    work_cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopped, nothing left
    std::vector<uint8_t> buf = std::move(queue_.front());
    queue_.pop_front();
    busy_ = true;
    const bool failed = !error_.ok();
    lock.unlock();
    Status s = failed ? Status::OK() : WriteOne(buf, &unsynced);  // after an error: discard
    buf.clear();
    lock.lock();
    if (!s.ok() && error_.ok()) error_ = std::move(s);
    spare_.push_back(std::move(buf));
    busy_ = false;
    room_cv_.notify_one();
  }
}

}  // namespace

std::unique_ptr<WritableFile> NewWriteBehindFile(WritableFile* base, uint64_t sync_every) {
  return std::make_unique<WriteBehindFile>(base, sync_every);
}

}  // namespace ovbd
