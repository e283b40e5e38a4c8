// Compresses batches of consecutive blocks on N worker threads and hands them back in
// submission order, so the output does not depend on N.
//
//   caller:   Input() -> fill (up to batch_bytes()) -> Submit(len)  ...  Oldest() -> write -> PopOldest()
//   workers:  take the next submitted batch, compress each block and append its CRC, packed back
//             to back in the batch's output, then wake the caller (once per batch)
//   slots:    a ring of batches; [collected, submitted) belong to the workers until done, the
//             rest to the caller
//
//   batch:  input   | block 0 | block 1 | ... | block k-1 (last one short only at the end) |
//           output  | entry 0 | entry 1 | ... | entry k-1 |      entry = compressed [+ CRC]
//           sizes   | n0 | n1 | ... |                            (jump-table entries)
//
// Handing over a whole batch (~1 MiB of input) instead of one block keeps the lock, the wake-ups
// and the context switches per MiB, not per block. With threads == 1 there are no workers:
// Submit compresses inline on the caller's thread. One caller thread only; the caller's methods
// are not thread-safe.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "ovbd/status.h"
#include "ovbd/zfile.h"

namespace ovbd::zfile {

class BlockPipeline {
 public:
  // The compressed entries of one batch, in block order.
  struct Batch {
    std::span<const uint8_t> bytes;    // all entries back to back
    std::span<const uint32_t> sizes;   // size of each entry (compressed bytes + CRC)
  };

  // Number of batches a pipeline with `threads` holds: 1 without workers (threads <= 1), else
  // two per worker (one compressing, one queued) plus one being filled and one being written.
  static size_t SlotCount(int threads) {
    return threads > 1 ? static_cast<size_t>(threads) * 2 + 2 : 1;
  }

  // `batch_blocks` >= 1 blocks per batch; threads >= 1. Memory: SlotCount(threads) batches of
  // input and worst-case output, allocated up front (uninitialised, so only touched pages count).
  BlockPipeline(Algorithm algorithm, bool crc, uint32_t block_size, int threads, size_t batch_blocks);
  ~BlockPipeline();
  BlockPipeline(const BlockPipeline&) = delete;
  BlockPipeline& operator=(const BlockPipeline&) = delete;

  // Input bytes per batch: batch_blocks * block_size.
  size_t batch_bytes() const { return batch_bytes_; }
  // True when every slot holds a submitted batch: PopOldest() before the next Input().
  bool Full() const { return submitted_ - collected_ == slots_.size(); }
  // Number of submitted batches not yet popped.
  uint64_t Pending() const { return submitted_ - collected_; }
  // The input buffer (batch_bytes() bytes) of the next slot. Requires !Full().
  std::span<uint8_t> Input();
  // Hands the first `len` bytes of Input() (1 <= len <= batch_bytes()) to the workers as
  // ceil(len / block_size) blocks. Requires !Full().
  void Submit(size_t len);
  // Waits for the oldest submitted batch; returns its entries, valid until PopOldest(), or the
  // first codec error among its blocks. Requires Pending() > 0.
  Result<Batch> Oldest();
  void PopOldest();

 private:
  struct Slot {
    std::unique_ptr<uint8_t[]> input;
    size_t input_len = 0;
    std::unique_ptr<uint8_t[]> output;
    size_t output_len = 0;
    std::vector<uint32_t> sizes;
    Status status;
    bool done = false;  // guarded by mu_ when workers exist
  };

  // Compresses every block of `slot`; sets output_len, sizes and status. No lock held.
  void CompressBatch(Slot* slot) const;
  void WorkerLoop();
  Slot& SlotOf(uint64_t seq) { return slots_[seq % slots_.size()]; }

  const Algorithm algorithm_;
  const bool crc_;
  const uint32_t block_size_;
  const size_t batch_bytes_;
  const size_t entry_bound_;  // worst-case entry size of one block (compressed + CRC)
  std::vector<Slot> slots_;
  std::vector<std::thread> workers_;

  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  uint64_t submitted_ = 0;  // batches handed over (written under mu_ when workers exist)
  uint64_t taken_ = 0;      // batches a worker has started (guarded by mu_)
  uint64_t collected_ = 0;  // batches popped by the caller (only the caller touches it)
  bool stop_ = false;
};

}  // namespace ovbd::zfile
