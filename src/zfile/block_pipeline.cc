#include "zfile/block_pipeline.h"

#include "base/coding.h"
#include "base/crc32c.h"
#include "zfile/codec.h"
#include "zfile/format.h"

namespace ovbd::zfile {

BlockPipeline::BlockPipeline(Algorithm algorithm, bool crc, uint32_t block_size, int threads)
    : algorithm_(algorithm), crc_(crc) {
  const size_t workers = threads > 1 ? static_cast<size_t>(threads) : 0;
  slots_.resize(workers == 0 ? 1 : workers * 4);
  for (Slot& s : slots_) {
    s.input.resize(block_size);
    s.output.resize(MaxCompressedSize(algorithm, block_size) + kBlockCrcSize);
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

std::span<uint8_t> BlockPipeline::Input() { return SlotOf(submitted_).input; }

void BlockPipeline::Compress(Slot* slot) const {
  Result<size_t> n = CompressBlock(algorithm_, std::span<const uint8_t>(slot->input.data(), slot->input_len),
                                   std::span<uint8_t>(slot->output.data(), slot->output.size() - kBlockCrcSize));
  if (!n.ok()) {
    slot->status = n.status();
    return;
  }
  slot->status = Status::OK();
  slot->output_len = *n;
  if (crc_) {
    EncodeLE32(slot->output.data() + *n, Crc32cExtend(kBlockCrcSeed, slot->output.data(), *n));
    slot->output_len += kBlockCrcSize;
  }
}

void BlockPipeline::Submit(size_t len) {
  Slot& slot = SlotOf(submitted_);
  slot.input_len = len;
  if (workers_.empty()) {
    Compress(&slot);
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
    Compress(&slot);
    lock.lock();
    slot.done = true;
    done_cv_.notify_all();
  }
}

Result<std::span<const uint8_t>> BlockPipeline::Oldest() {
  Slot& slot = SlotOf(collected_);
  if (!workers_.empty()) {
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait(lock, [&slot] { return slot.done; });
  }
  if (!slot.status.ok()) return slot.status;
  return std::span<const uint8_t>(slot.output.data(), slot.output_len);
}

void BlockPipeline::PopOldest() { collected_++; }

}  // namespace ovbd::zfile
