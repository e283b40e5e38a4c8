// The streaming ZFile writer:
//
//   NewBuilder: header 0x13 (opt fields set, index fields 0)
//   Append:     copied into the pipeline's input batch (~1 MiB); a full batch goes to the
//               BlockPipeline (N threads, in order); finished batches are appended to `out`
//               as they come back, jump table entries collected in memory (4 bytes per block)
//   Finish:     last (short) batch, jump table, trailer 0x16; header rewritten as 0x1B if asked
//   Compress:   reads the input straight into the pipeline's batches (no intermediate buffer),
//               so with N workers the caller's thread reads and writes while they compress
//
// Offsets inside the ZFile are relative to the output position at NewBuilder, so a ZFile can
// follow other bytes in the same output (e.g. a tar header).
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "base/coding.h"
#include "base/crc32c.h"
#include "ovbd/zfile.h"
#include "zfile/block_pipeline.h"
#include "zfile/format.h"

namespace ovbd::zfile {
namespace {

constexpr int kMaxThreads = 256;
// Input bytes per pipeline batch: large enough that hand-over costs vanish (one lock and one
// wake-up per batch), small enough that a batch and its output stay in a core's L2 cache.
constexpr size_t kBatchBytes = 1 << 20;
// Cap on the input held by all pipeline slots together (matters only for many threads).
constexpr size_t kMaxPipelineBytes = 64 << 20;

size_t BatchBlocks(const Options& o) {
  const size_t bytes = std::min(kBatchBytes, kMaxPipelineBytes / BlockPipeline::SlotCount(o.threads));
  return std::max<size_t>(1, bytes / o.block_size);
}

class ZFileBuilder final : public Builder {
 public:
  ZFileBuilder(WritableFile* out, const Options& opts)
      : out_(out),
        opts_(opts),
        pipeline_(opts.algorithm, opts.crc, opts.block_size, opts.threads, BatchBlocks(opts)),
        start_(out->Position()) {}

  Status Start() { return Fail(out_->Append(EncodeHeaderTrailer(MakeRecord(kHeaderFlags, false)))); }
  Status Append(std::span<const uint8_t> data) override;
  Result<Info> Finish() override;
  uint64_t InputBytes() const override { return input_bytes_; }
  // Appends all of `in`, read directly into the pipeline's input batches.
  Status AppendFile(const ReadableFile& in, const ProgressFn& progress);

 private:
  HeaderTrailer MakeRecord(uint64_t flags, bool with_index) const;
  // The unfilled part of the current batch; drains the oldest batch first if every slot is busy.
  Result<std::span<uint8_t>> FreeInput();
  // Records `n` bytes written into FreeInput(); submits the batch when it is full.
  Status Filled(size_t n);
  Status SubmitBatch();
  Status DrainOne();
  Status WriteTail();
  Info MakeInfo() const;
  Status Fail(Status s) {
    if (!s.ok() && status_.ok()) status_ = s;
    return s;
  }

  WritableFile* out_;
  const Options opts_;
  BlockPipeline pipeline_;
  const uint64_t start_;
  size_t fill_ = 0;                      // bytes in the batch being filled
  uint64_t blocks_ = 0;                  // blocks submitted
  uint64_t input_bytes_ = 0;
  uint64_t next_offset_ = kHeaderTrailerSize;  // ZFile offset of the next block entry
  uint32_t index_crc_ = 0;
  std::vector<uint8_t> jump_table_;      // encoded entries
  Status status_;
  bool finished_ = false;
};

HeaderTrailer ZFileBuilder::MakeRecord(uint64_t flags, bool with_index) const {
  HeaderTrailer ht;
  ht.flags = flags;
  ht.block_size = opts_.block_size;
  ht.algo = static_cast<uint8_t>(opts_.algorithm);
  ht.verify = opts_.crc ? 1 : 0;
  if (with_index) {
    ht.index_offset = next_offset_;
    ht.index_size = blocks_;
    ht.original_size = input_bytes_;
    ht.index_crc = index_crc_;
  }
  return ht;
}

Status ZFileBuilder::SubmitBatch() {
  const uint64_t n = (fill_ + opts_.block_size - 1) / opts_.block_size;
  if (blocks_ + n > kMaxIndexSize) {
    return Status::NoSpace(out_->Name() + ": a ZFile holds at most " + std::to_string(kMaxIndexSize) + " blocks");
  }
  pipeline_.Submit(fill_);
  fill_ = 0;
  blocks_ += n;
  return Status::OK();
}

Status ZFileBuilder::DrainOne() {
  Result<BlockPipeline::Batch> batch = pipeline_.Oldest();
  if (!batch.ok()) return batch.status().WithContext(out_->Name());
  OVBD_RETURN_IF_ERROR(out_->Append(batch->bytes));
  const size_t at = jump_table_.size();
  jump_table_.resize(at + 4 * batch->sizes.size());
  for (size_t i = 0; i < batch->sizes.size(); i++) EncodeLE32(jump_table_.data() + at + 4 * i, batch->sizes[i]);
  next_offset_ += batch->bytes.size();
  pipeline_.PopOldest();
  return Status::OK();
}

Result<std::span<uint8_t>> ZFileBuilder::FreeInput() {
  if (fill_ == 0 && pipeline_.Full()) OVBD_RETURN_IF_ERROR(Fail(DrainOne()));
  return pipeline_.Input().subspan(fill_);
}

Status ZFileBuilder::Filled(size_t n) {
  fill_ += n;
  input_bytes_ += n;
  if (fill_ == pipeline_.batch_bytes()) return Fail(SubmitBatch());
  return Status::OK();
}

Status ZFileBuilder::Append(std::span<const uint8_t> data) {
  if (finished_) return Status::InvalidArgument(out_->Name() + ": ZFile Append after Finish");
  OVBD_RETURN_IF_ERROR(status_);
  while (!data.empty()) {
    OVBD_ASSIGN_OR_RETURN(std::span<uint8_t> in, FreeInput());
    const size_t n = std::min(data.size(), in.size());
    std::memcpy(in.data(), data.data(), n);
    data = data.subspan(n);
    OVBD_RETURN_IF_ERROR(Filled(n));
  }
  return Status::OK();
}

Status ZFileBuilder::AppendFile(const ReadableFile& in, const ProgressFn& progress) {
  const uint64_t total = in.Size();
  for (uint64_t done = 0; done < total;) {
    OVBD_ASSIGN_OR_RETURN(std::span<uint8_t> buf, FreeInput());
    buf = buf.first(static_cast<size_t>(std::min<uint64_t>(buf.size(), total - done)));
    OVBD_RETURN_IF_ERROR(in.ReadAt(done, buf).WithContext("compressing " + in.Name()));
    OVBD_RETURN_IF_ERROR(Filled(buf.size()));
    done += buf.size();
    if (progress) progress(done, total);
  }
  return Status::OK();
}

Status ZFileBuilder::WriteTail() {
  if (fill_ > 0) OVBD_RETURN_IF_ERROR(SubmitBatch());
  while (pipeline_.Pending() > 0) OVBD_RETURN_IF_ERROR(DrainOne());
  index_crc_ = Crc32c(jump_table_);
  OVBD_RETURN_IF_ERROR(out_->Append(jump_table_));
  OVBD_RETURN_IF_ERROR(out_->Append(EncodeHeaderTrailer(MakeRecord(kTrailerFlags, true))));
  if (!opts_.overwrite_header) return Status::OK();
  return out_->Rewrite(start_, EncodeHeaderTrailer(MakeRecord(kOverwrittenHeaderFlags, true)));
}

Info ZFileBuilder::MakeInfo() const {
  Info info;
  info.header_flags = opts_.overwrite_header ? kOverwrittenHeaderFlags : kHeaderFlags;
  info.trailer_flags = kTrailerFlags;
  info.header_overwritten = opts_.overwrite_header;
  info.has_digest = true;
  info.algorithm = opts_.algorithm;
  info.block_size = opts_.block_size;
  info.crc = opts_.crc;
  info.index_offset = next_offset_;
  info.block_count = blocks_;
  info.original_size = input_bytes_;
  info.index_crc = index_crc_;
  info.file_size = next_offset_ + jump_table_.size() + kHeaderTrailerSize;
  return info;
}

Result<Info> ZFileBuilder::Finish() {
  if (finished_) return Status::InvalidArgument(out_->Name() + ": ZFile Finish called twice");
  finished_ = true;
  OVBD_RETURN_IF_ERROR(status_);
  OVBD_RETURN_IF_ERROR(Fail(WriteTail()));
  return MakeInfo();
}

Status CheckOptions(const WritableFile* out, const Options& o) {
  if (out == nullptr) return Status::InvalidArgument("zfile: null output file");
  if (o.algorithm != Algorithm::kLz4 && o.algorithm != Algorithm::kZstd) {
    return Status::InvalidArgument("zfile: unknown algorithm " + std::to_string(static_cast<int>(o.algorithm)));
  }
  if (!IsValidBlockSize(o.block_size)) {
    return Status::InvalidArgument("zfile: block size " + std::to_string(o.block_size) +
                                   " is not a power of two in [4096, 65536]");
  }
  if (o.threads < 1 || o.threads > kMaxThreads) {
    return Status::InvalidArgument("zfile: threads " + std::to_string(o.threads) + " not in [1, 256]");
  }
  if (o.overwrite_header && !out->Seekable()) {
    return Status::InvalidArgument(out->Name() + ": overwrite_header needs a seekable output");
  }
  return Status::OK();
}

}  // namespace

Result<std::unique_ptr<Builder>> NewBuilder(WritableFile* out, const Options& options) {
  OVBD_RETURN_IF_ERROR(CheckOptions(out, options));
  auto builder = std::make_unique<ZFileBuilder>(out, options);
  OVBD_RETURN_IF_ERROR(builder->Start());
  return std::unique_ptr<Builder>(std::move(builder));
}

Result<Info> Compress(const ReadableFile& in, WritableFile* out, const Options& options, const ProgressFn& progress) {
  OVBD_RETURN_IF_ERROR(CheckOptions(out, options));
  ZFileBuilder builder(out, options);
  OVBD_RETURN_IF_ERROR(builder.Start());
  OVBD_RETURN_IF_ERROR(builder.AppendFile(in, progress));
  return builder.Finish();
}

}  // namespace ovbd::zfile
