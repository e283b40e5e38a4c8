// Ordered parallel copy on persistent threads:
//
//   chunk k = [k * chunk, (k+1) * chunk) of `in`; worker w reads chunks w, w+N, w+2N, ...
//   slots:  a ring of N + 2 chunk buffers; chunk k uses slot k % (N + 2) once chunk k - (N + 2)
//           is written: N chunks being read, one being written, one read ahead
//   caller: waits for chunk k, appends it to `out`, frees its slot, k+1 ...
//
// Each worker keeps its thread (and so its thread-local decoder state and scratch buffers) for
// the whole copy, and the workers only meet the caller once per chunk.
#include "cli/copy.h"

#include <algorithm>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace ovbd::cli {
namespace {

int EffectiveThreads(int threads) {
  if (threads > 0) return threads;
  unsigned cores = std::thread::hardware_concurrency();
  return static_cast<int>(std::clamp(cores, 1u, 8u));
}

// State shared by the caller (the writer) and the reading workers. The slots' chunk/ready/status,
// written_chunks_ and stop_ are guarded by mu_. A slot's buffer belongs to the worker reading
// into it until it sets `ready`, then to the caller until it advances written_chunks_ past it.
class OrderedCopy {
 public:
  OrderedCopy(const ReadableFile& in, size_t workers, size_t chunk)
      : in_(in), total_(in.Size()), chunk_(chunk), workers_(workers), slots_(workers + 2) {
    chunks_ = (total_ + chunk_ - 1) / chunk_;
  }

  Status Run(WritableFile* out, const ProgressFn& progress);

 private:
  struct Slot {
    std::unique_ptr<uint8_t[]> buf;
    uint64_t chunk = 0;   // the chunk the slot holds (valid when ready)
    bool ready = false;   // chunk read, status set
    Status status;
  };

  size_t ChunkLength(uint64_t k) const { return static_cast<size_t>(std::min<uint64_t>(chunk_, total_ - k * chunk_)); }
  // Reads chunks w, w+N, ... until done or stopped.
  void Worker(size_t w);
  // Waits until chunk k's slot is free for it (chunk k - slots written) or the copy stopped.
  bool WaitForSlot(uint64_t k);
  Status WriteAll(WritableFile* out, const ProgressFn& progress);
  void Stop();

  const ReadableFile& in_;
  const uint64_t total_;
  const size_t chunk_;
  const size_t workers_;
  uint64_t chunks_ = 0;
  std::vector<Slot> slots_;

  std::mutex mu_;
  std::condition_variable ready_cv_;  // the caller waits for a chunk to be read
  std::condition_variable free_cv_;   // workers wait for a slot to be written
  uint64_t written_chunks_ = 0;       // chunks [0, written_chunks_) are written
  bool stop_ = false;
};

bool OrderedCopy::WaitForSlot(uint64_t k) {
  std::unique_lock<std::mutex> lock(mu_);
  free_cv_.wait(lock, [&] { return stop_ || k < written_chunks_ + slots_.size(); });
  return !stop_;
}

void OrderedCopy::Worker(size_t w) {
  for (uint64_t k = w; k < chunks_; k += workers_) {
    if (!WaitForSlot(k)) return;
    Slot& slot = slots_[k % slots_.size()];
    if (!slot.buf) slot.buf = std::make_unique_for_overwrite<uint8_t[]>(ChunkLength(0));  // the largest chunk
    Status s = in_.ReadAt(k * chunk_, std::span<uint8_t>(slot.buf.get(), ChunkLength(k)));
    {
      std::lock_guard<std::mutex> lock(mu_);
      slot.chunk = k;
      slot.status = std::move(s);
      slot.ready = true;
    }
    ready_cv_.notify_one();
  }
}

Status OrderedCopy::WriteAll(WritableFile* out, const ProgressFn& progress) {
  uint64_t written = 0;
  for (uint64_t k = 0; k < chunks_; k++) {
    Slot& slot = slots_[k % slots_.size()];
    {
      std::unique_lock<std::mutex> lock(mu_);
      ready_cv_.wait(lock, [&] { return slot.ready && slot.chunk == k; });
    }
    OVBD_RETURN_IF_ERROR(slot.status);
    const size_t len = ChunkLength(k);
    OVBD_RETURN_IF_ERROR(out->Append(std::span<const uint8_t>(slot.buf.get(), len)));
    written += len;
    if (progress) progress(written, total_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      slot.ready = false;
      written_chunks_ = k + 1;
    }
    free_cv_.notify_all();  // the slot's next chunk belongs to one worker; others recheck cheaply
  }
  return Status::OK();
}

void OrderedCopy::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  free_cv_.notify_all();
}

Status OrderedCopy::Run(WritableFile* out, const ProgressFn& progress) {
  std::vector<std::thread> threads;
  const size_t n = static_cast<size_t>(std::min<uint64_t>(workers_, chunks_));
  for (size_t w = 0; w < n; w++) threads.emplace_back([this, w] { Worker(w); });
  Status s = WriteAll(out, progress);
  Stop();  // on success every worker has finished already; on failure they stop at their next chunk
  for (std::thread& t : threads) t.join();
  return s;
}

}  // namespace

Status ParallelCopy(const ReadableFile& in, WritableFile* out, int threads, const ProgressFn& progress,
                    size_t chunk) {
  if (chunk == 0) return Status::InvalidArgument("ParallelCopy: chunk size 0");
  OrderedCopy copy(in, static_cast<size_t>(EffectiveThreads(threads)), chunk);
  return copy.Run(out, progress);
}

}  // namespace ovbd::cli
