#include "zfile/block_pipeline.h"

#include <algorithm>

#include "base/coding.h"
#include "base/crc32c.h"
#include "zfile/codec.h"
#include "zfile/format.h"

namespace ovbd::zfile {

BlockPipeline::BlockPipeline(Algorithm algorithm, bool crc, uint32_t block_size, int threads, size_t batch_blocks)
    : algorithm_(algorithm),
      crc_(crc),
      block_size_(block_size),
      batch_bytes_(std::max<size_t>(batch_blocks, 1) * block_size),
      entry_bound_(MaxCompressedSize(algorithm, block_size) + kBlockCrcSize) {
  const size_t workers = threads > 1 ? static_cast<size_t>(threads) : 0;
  const size_t blocks = batch_bytes_ / block_size;
  slots_.resize(SlotCount(threads));
  // Uninitialised memory: pages are only touched (and faulted in) when a batch uses them.
  for (Slot& s : slots_) {
    s.input = std::make_unique_for_overwrite<uint8_t[]>(batch_bytes_);
    s.output = std::make_unique_for_overwrite<uint8_t[]>(blocks * entry_bound_);
    s.sizes.reserve(blocks);
  }
  for (size_t i = 0; i < workers; i++) workers_.emplace_back([this] { WorkerLoop(); });
}

BlockPipeline::~BlockPipeline() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
}

std::span<uint8_t> BlockPipeline::Input() { return std::span<uint8_t>(SlotOf(submitted_).input.get(), batch_bytes_); }

void BlockPipeline::CompressBatch(Slot* slot) const {
  slot->sizes.clear();
  slot->output_len = 0;
  slot->status = Status::OK();
  for (size_t pos = 0; pos < slot->input_len; pos += block_size_) {
    const size_t len = std::min<size_t>(block_size_, slot->input_len - pos);
    uint8_t* dst = slot->output.get() + slot->output_len;
    // The output holds entry_bound_ bytes per block, so at least that much is left here.
    Result<size_t> n = CompressBlock(algorithm_, std::span<const uint8_t>(slot->input.get() + pos, len),
                                     std::span<uint8_t>(dst, entry_bound_ - kBlockCrcSize));
    if (!n.ok()) {
      slot->status = n.status();
      return;
    }
    size_t entry = *n;
    if (crc_) {
      EncodeLE32(dst + entry, Crc32cExtend(kBlockCrcSeed, dst, entry));  // while dst is in L1
      entry += kBlockCrcSize;
    }
    slot->sizes.push_back(static_cast<uint32_t>(entry));
    slot->output_len += entry;
  }
}

void BlockPipeline::Submit(size_t len) {
  Slot& slot = SlotOf(submitted_);
  slot.input_len = len;
  if (workers_.empty()) {
    CompressBatch(&slot);
    slot.done = true;
    submitted_++;
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    slot.done = false;
    submitted_++;
  }
  work_cv_.notify_one();
}

void BlockPipeline::WorkerLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    work_cv_.wait(lock, [this] { return stop_ || taken_ < submitted_; });
    if (stop_) return;
    Slot& slot = SlotOf(taken_++);
    lock.unlock();
    CompressBatch(&slot);
    lock.lock();
    slot.done = true;
    lock.unlock();
    done_cv_.notify_one();  // only the caller waits on done_cv_: one wake-up per batch
    lock.lock();
  }
}

Result<BlockPipeline::Batch> BlockPipeline::Oldest() {
  Slot& slot = SlotOf(collected_);
  if (!workers_.empty()) {
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait(lock, [&slot] { return slot.done; });
  }
  if (!slot.status.ok()) return slot.status;
  return Batch{std::span<const uint8_t>(slot.output.get(), slot.output_len),
               std::span<const uint32_t>(slot.sizes)};
}

void BlockPipeline::PopOldest() { collected_++; }

}  // namespace ovbd::zfile
