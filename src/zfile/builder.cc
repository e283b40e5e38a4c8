// The streaming ZFile writer:
//
//   NewBuilder: header 0x13 (opt fields set, index fields 0)
//   Append:     cut into blocks -> BlockPipeline (N threads, in order) -> buffered output,
//               jump table entries collected in memory (4 bytes per block)
//   Finish:     last short block, jump table, trailer 0x16; header rewritten as 0x1B if asked
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

constexpr size_t kOutputBufferBytes = 1 << 20;
constexpr int kMaxThreads = 256;

class ZFileBuilder final : public Builder {
 public:
  ZFileBuilder(WritableFile* out, const Options& opts)
      : out_(out), opts_(opts), pipeline_(opts.algorithm, opts.crc, opts.block_size, opts.threads),
        start_(out->Position()) {
    out_buffer_.reserve(kOutputBufferBytes + kMaxBlockSize * 2);
  }

  Status Start() { return Fail(out_->Append(EncodeHeaderTrailer(MakeRecord(kHeaderFlags, false)))); }
  Status Append(std::span<const uint8_t> data) override;
  Result<Info> Finish() override;
  uint64_t InputBytes() const override { return input_bytes_; }

 private:
  HeaderTrailer MakeRecord(uint64_t flags, bool with_index) const;
  Status SubmitBlock();
  Status DrainOne();
  Status Flush();
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
  size_t fill_ = 0;                      // bytes in the slot being filled
  uint64_t blocks_ = 0;                  // blocks submitted
  uint64_t input_bytes_ = 0;
  uint64_t next_offset_ = kHeaderTrailerSize;  // ZFile offset of the next block entry
  uint32_t index_crc_ = 0;
  std::vector<uint8_t> jump_table_;      // encoded entries
  std::vector<uint8_t> out_buffer_;
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

Status ZFileBuilder::SubmitBlock() {
  if (blocks_ >= kMaxIndexSize) {
    return Status::NoSpace(out_->Name() + ": a ZFile holds at most " + std::to_string(kMaxIndexSize) + " blocks");
  }
  pipeline_.Submit(fill_);
  fill_ = 0;
  blocks_++;
  return Status::OK();
}

Status ZFileBuilder::DrainOne() {
  Result<std::span<const uint8_t>> entry = pipeline_.Oldest();
  if (!entry.ok()) return entry.status().WithContext(out_->Name());
  const size_t n = entry->size();
  out_buffer_.insert(out_buffer_.end(), entry->begin(), entry->end());
  pipeline_.PopOldest();
  uint8_t le[4];
  EncodeLE32(le, static_cast<uint32_t>(n));
  jump_table_.insert(jump_table_.end(), le, le + 4);
  next_offset_ += n;
  if (out_buffer_.size() >= kOutputBufferBytes) return Flush();
  return Status::OK();
}

Status ZFileBuilder::Flush() {
  Status s = out_->Append(out_buffer_);
  out_buffer_.clear();
  return s;
}

Status ZFileBuilder::Append(std::span<const uint8_t> data) {
  if (finished_) return Status::InvalidArgument(out_->Name() + ": ZFile Append after Finish");
  OVBD_RETURN_IF_ERROR(status_);
  while (!data.empty()) {
    if (fill_ == 0 && pipeline_.Full()) OVBD_RETURN_IF_ERROR(Fail(DrainOne()));
    std::span<uint8_t> in = pipeline_.Input();
    const size_t n = std::min(data.size(), in.size() - fill_);
    std::memcpy(in.data() + fill_, data.data(), n);
    fill_ += n;
    input_bytes_ += n;
    data = data.subspan(n);
    if (fill_ == in.size()) OVBD_RETURN_IF_ERROR(Fail(SubmitBlock()));
  }
  return Status::OK();
}

Status ZFileBuilder::WriteTail() {
  if (fill_ > 0) OVBD_RETURN_IF_ERROR(SubmitBlock());
  while (pipeline_.Pending() > 0) OVBD_RETURN_IF_ERROR(DrainOne());
  OVBD_RETURN_IF_ERROR(Flush());
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
  OVBD_ASSIGN_OR_RETURN(std::unique_ptr<Builder> builder, NewBuilder(out, options));
  constexpr uint64_t kChunk = 1 << 20;
  const uint64_t total = in.Size();
  std::vector<uint8_t> buf(std::min(total, kChunk));
  for (uint64_t done = 0; done < total;) {
    const size_t n = static_cast<size_t>(std::min(total - done, kChunk));
    std::span<uint8_t> chunk(buf.data(), n);
    OVBD_RETURN_IF_ERROR(in.ReadAt(done, chunk).WithContext("compressing " + in.Name()));
    OVBD_RETURN_IF_ERROR(builder->Append(chunk));
    done += n;
    if (progress) progress(done, total);
  }
  return builder->Finish();
}

}  // namespace ovbd::zfile
