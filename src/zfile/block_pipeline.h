// Compresses blocks on N worker threads and hands them back in submission order, so the
// output does not depend on N.
//
//   caller:  Input() -> fill -> Submit(len) ... Oldest() -> write -> PopOldest()
//   slots:   a ring of `threads * 4` slots; [collected, submitted) are owned by the workers
//            until done, the rest by the caller
//
// With threads == 1 there are no workers: Submit compresses inline on the caller's thread.
// One caller thread only; not thread-safe otherwise.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "ovbd/status.h"
#include "ovbd/zfile.h"

namespace ovbd::zfile {

class BlockPipeline {
 public:
  BlockPipeline(Algorithm algorithm, bool crc, uint32_t block_size, int threads);
  ~BlockPipeline();
  BlockPipeline(const BlockPipeline&) = delete;
  BlockPipeline& operator=(const BlockPipeline&) = delete;

  // True when every slot holds a submitted block: PopOldest() before the next Input().
  bool Full() const { return submitted_ - collected_ == slots_.size(); }
  // Number of submitted blocks not yet popped.
  uint64_t Pending() const { return submitted_ - collected_; }
  // The input buffer (block_size bytes) of the next slot. Requires !Full().
  std::span<uint8_t> Input();
  // Hands the first `len` bytes of Input() to the workers.
  void Submit(size_t len);
  // Waits for the oldest submitted block; returns its entry (compressed bytes + CRC), valid
  // until PopOldest(). Requires Pending() > 0.
  Result<std::span<const uint8_t>> Oldest();
  void PopOldest();

 private:
  struct Slot {
    std::vector<uint8_t> input;
    size_t input_len = 0;
    std::vector<uint8_t> output;
    size_t output_len = 0;
    Status status;
    bool done = false;
  };

  void Compress(Slot* slot) const;
  void WorkerLoop();
  Slot& SlotOf(uint64_t seq) { return slots_[seq % slots_.size()]; }

  const Algorithm algorithm_;
  const bool crc_;
  std::vector<Slot> slots_;
  std::vector<std::thread> workers_;

  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  uint64_t submitted_ = 0;  // blocks handed over (guarded by mu_ when workers exist)
  uint64_t taken_ = 0;      // blocks a worker has started
  uint64_t collected_ = 0;  // blocks popped by the caller (only the caller touches it)
  bool stop_ = false;
};

}  // namespace ovbd::zfile
