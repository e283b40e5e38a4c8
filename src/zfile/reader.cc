// The ZFile read path. A read is cut into runs of consecutive blocks whose compressed entries
// total at most kMaxRunBytes; each run is fetched with one ReadAt of the compressed file into a
// per-thread buffer. The CRCs of all blocks of the run are checked first, then the blocks are
// decompressed, while the run is still in L1/L2: straight into the caller's buffer when the read
// covers the whole block, or into a per-thread block buffer from which the wanted part is copied
// (the head and tail of an unaligned read).
//
// Why a loop of CRCs, then a loop of decompressions: alternating the (AVX-512) CRC code and the
// (scalar) LZ4 decoder block by block made sequential 4 KiB-block reads ~10% slower than
// running each in its own tight loop over the same cache-hot bytes.
//
// A run that fails its CRCs or its decompression is dropped from the compressed file below
// (Invalidate) and, if that file says a reread may differ, read again (zfile/refetch.h): bytes
// corrupted in transit and cached are refetched instead of failing every later read.
#include <algorithm>
#include <cstring>
#include <string>

#include "base/checked.h"
#include "base/coding.h"
#include "base/crc32c.h"
#include "ovbd/zfile.h"
#include "zfile/codec.h"
#include "zfile/format.h"
#include "zfile/metadata.h"
#include "zfile/refetch.h"
#include "zfile/scratch.h"

namespace ovbd::zfile {
namespace {

// Compressed bytes fetched per ReadAt of the compressed file: enough to make the per-call cost
// of ReadAt (a syscall for a posix file) negligible, small enough that the run stays in L2
// between the copy, the CRC pass and the decompression pass. (16 KiB..1 MiB measured the same
// for in-memory files; 128 KiB is ~60 blocks of 4 KiB at ratio 2.)
constexpr uint64_t kMaxRunBytes = 128 << 10;

std::string Num(uint64_t v) { return std::to_string(v); }

std::string Hex32(uint32_t v) {
  char buf[16];
  snprintf(buf, sizeof(buf), "0x%08x", v);
  return buf;
}

class ZFileReader final : public Reader {
 public:
  ZFileReader(std::shared_ptr<const ReadableFile> file, Metadata meta, const ReadOptions& options)
      : file_(std::move(file)), table_(std::move(meta.table)), options_(options) {
    info_ = meta.info;
  }

  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) const override;
  uint64_t Size() const override { return info_.original_size; }
  const std::string& Name() const override { return file_->Name(); }
  void Prefetch(uint64_t offset, uint64_t length) const override;
  Status VerifyAll(const ProgressFn& progress) const override;
  const ReadableFile& compressed() const override { return *file_; }

 private:
  // Blocks [first, end) form a run no larger than kMaxRunBytes (or one block); returns end.
  uint64_t RunEnd(uint64_t first, uint64_t limit) const;
  // Reads the compressed entries of blocks [first, end) with one ReadAt.
  Result<const uint8_t*> FetchRun(uint64_t first, uint64_t end, Scratch* scratch) const;
  uint64_t BlockLength(uint64_t block) const {
    const uint64_t start = block * info_.block_size;
    return std::min<uint64_t>(info_.block_size, info_.original_size - start);
  }
  // Checks the CRCs of blocks [first, end), whose entries lie back to back at `run` (no-op
  // without CRCs). Corruption names the first bad block.
  Status CheckRunCrcs(uint64_t first, uint64_t end, const uint8_t* run) const;
  // Decompresses the entry of `block` (CRC already checked) into exactly `out`.
  Status DecodeBlock(uint64_t block, const uint8_t* entry, std::span<uint8_t> out) const;
  Status BlockError(uint64_t block, const Status& cause) const;
  // Decodes the part of `block` that overlaps the read [offset, offset + buf.size()).
  Status DecodeIntoRead(uint64_t block, const uint8_t* entry, uint64_t offset, std::span<uint8_t> buf,
                        Scratch* scratch) const;
  // Fetches blocks [first, end) and decodes them into the read [offset, offset + buf.size()).
  Status ReadRun(uint64_t first, uint64_t end, uint64_t offset, std::span<uint8_t> buf, Scratch* scratch) const;
  Status ReadRunOnce(uint64_t first, uint64_t end, uint64_t offset, std::span<uint8_t> buf, Scratch* scratch) const;
  // Fetches, checks and decodes blocks [first, end) into scratch (VerifyAll).
  Status VerifyRunOnce(uint64_t first, uint64_t end, Scratch* scratch) const;
  // Drops the compressed entries of blocks [first, end) from the file below; true if a reread
  // may return other bytes.
  bool InvalidateRun(uint64_t first, uint64_t end) const {
    return file_->Invalidate(table_.Offset(first), table_.Offset(end) - table_.Offset(first));
  }

  std::shared_ptr<const ReadableFile> file_;
  JumpTable table_;
  ReadOptions options_;
};

uint64_t ZFileReader::RunEnd(uint64_t first, uint64_t limit) const {
  const uint64_t start = table_.Offset(first);
  uint64_t end = first + 1;
  while (end < limit && table_.Offset(end + 1) - start <= kMaxRunBytes) end++;
  return end;
}

Result<const uint8_t*> ZFileReader::FetchRun(uint64_t first, uint64_t end, Scratch* scratch) const {
  const uint64_t start = table_.Offset(first);
  const uint64_t len = table_.Offset(end) - start;
  uint8_t* p = scratch->Compressed(len);
  Status s = file_->ReadAt(start, std::span<uint8_t>(p, len));
  if (!s.ok()) {
    return s.WithContext(Name() + ": reading blocks " + Num(first) + ".." + Num(end - 1) + " at compressed offset " +
                         Num(start));
  }
  return static_cast<const uint8_t*>(p);
}

Status ZFileReader::BlockError(uint64_t block, const Status& cause) const {
  return cause.WithContext(Name() + ": block " + Num(block) + " at compressed offset " + Num(table_.Offset(block)) +
                           " (" + Num(table_.EntrySize(block)) + " bytes)");
}

Status ZFileReader::CheckRunCrcs(uint64_t first, uint64_t end, const uint8_t* run) const {
  if (!info_.crc) return Status::OK();
  const uint8_t* entry = run;
  for (uint64_t b = first; b < end; b++) {
    const size_t n = table_.EntrySize(b) - kBlockCrcSize;  // entries are > 4 bytes (checked at open)
    const uint32_t stored = DecodeLE32(entry + n);
    const uint32_t computed = Crc32cExtend(kBlockCrcSeed, entry, n);
    if (stored != computed) {
      return BlockError(b, Status::Corruption("CRC mismatch (stored " + Hex32(stored) + ", computed " +
                                              Hex32(computed) + ")"));
    }
    entry += n + kBlockCrcSize;
  }
  return Status::OK();
}

Status ZFileReader::DecodeBlock(uint64_t block, const uint8_t* entry, std::span<uint8_t> out) const {
  const size_t n = table_.EntrySize(block) - (info_.crc ? kBlockCrcSize : 0);
  Status s = DecompressBlock(info_.algorithm, std::span<const uint8_t>(entry, n), out);
  if (!s.ok()) return BlockError(block, s);
  return Status::OK();
}

Status ZFileReader::DecodeIntoRead(uint64_t block, const uint8_t* entry, uint64_t offset, std::span<uint8_t> buf,
                                   Scratch* scratch) const {
  const uint64_t block_start = block * info_.block_size;
  const uint64_t block_len = BlockLength(block);
  const uint64_t lo = std::max(offset, block_start) - block_start;
  const uint64_t hi = std::min(offset + buf.size(), block_start + block_len) - block_start;
  uint8_t* dst = buf.data() + (block_start + lo - offset);
  if (lo == 0 && hi == block_len) return DecodeBlock(block, entry, std::span<uint8_t>(dst, block_len));
  uint8_t* tmp = scratch->Block(block_len);
  OVBD_RETURN_IF_ERROR(DecodeBlock(block, entry, std::span<uint8_t>(tmp, block_len)));
  std::memcpy(dst, tmp + lo, hi - lo);
  return Status::OK();
}

Status ZFileReader::ReadAt(uint64_t offset, std::span<uint8_t> buf) const {
  if (!RangeWithin(offset, buf.size(), Size())) {
    return Status::OutOfRange(Name() + ": read of " + Num(buf.size()) + " bytes at offset " + Num(offset) +
                              " past the decompressed size " + Num(Size()));
  }
  if (buf.empty()) return Status::OK();
  const uint64_t bs = info_.block_size;
  const uint64_t end_block = (offset + buf.size() - 1) / bs + 1;
  Scratch scratch;
  // A read of several runs tells the file all of its compressed range first: a file that
  // fetches from far away (a cached registry blob) can fetch it in one go, not run by run.
  if (const uint64_t first = offset / bs; RunEnd(first, end_block) < end_block) {
    file_->Prefetch(table_.Offset(first), table_.Offset(end_block) - table_.Offset(first));
  }
  for (uint64_t first = offset / bs; first < end_block;) {
    const uint64_t end = RunEnd(first, end_block);
    OVBD_RETURN_IF_ERROR(ReadRun(first, end, offset, buf, &scratch));
    first = end;
  }
  return Status::OK();
}

Status ZFileReader::ReadRun(uint64_t first, uint64_t end, uint64_t offset, std::span<uint8_t> buf,
                            Scratch* scratch) const {
  return WithRefetch(
      options_, [&] { return ReadRunOnce(first, end, offset, buf, scratch); },
      [&] { return InvalidateRun(first, end); });
}

Status ZFileReader::ReadRunOnce(uint64_t first, uint64_t end, uint64_t offset, std::span<uint8_t> buf,
                                Scratch* scratch) const {
  OVBD_ASSIGN_OR_RETURN(const uint8_t* entry, FetchRun(first, end, scratch));
  OVBD_RETURN_IF_ERROR(CheckRunCrcs(first, end, entry));
  for (uint64_t b = first; b < end; b++) {
    OVBD_RETURN_IF_ERROR(DecodeIntoRead(b, entry, offset, buf, scratch));
    entry += table_.EntrySize(b);
  }
  return Status::OK();
}

void ZFileReader::Prefetch(uint64_t offset, uint64_t length) const {
  if (length == 0 || offset >= Size()) return;
  length = std::min(length, Size() - offset);
  const uint64_t first = offset / info_.block_size;
  const uint64_t end = (offset + length - 1) / info_.block_size + 1;
  file_->Prefetch(table_.Offset(first), table_.Offset(end) - table_.Offset(first));
}

Status ZFileReader::VerifyAll(const ProgressFn& progress) const {
  const uint64_t total = table_.count();
  Scratch scratch;
  for (uint64_t first = 0; first < total;) {
    const uint64_t end = RunEnd(first, total);
    OVBD_RETURN_IF_ERROR(WithRefetch(
        options_, [&] { return VerifyRunOnce(first, end, &scratch); }, [&] { return InvalidateRun(first, end); }));
    first = end;
    if (progress) progress(first, total);
  }
  return Status::OK();
}

Status ZFileReader::VerifyRunOnce(uint64_t first, uint64_t end, Scratch* scratch) const {
  OVBD_ASSIGN_OR_RETURN(const uint8_t* entry, FetchRun(first, end, scratch));
  OVBD_RETURN_IF_ERROR(CheckRunCrcs(first, end, entry));
  uint8_t* tmp = scratch->Block(info_.block_size);
  for (uint64_t b = first; b < end; b++) {
    OVBD_RETURN_IF_ERROR(DecodeBlock(b, entry, std::span<uint8_t>(tmp, BlockLength(b))));
    entry += table_.EntrySize(b);
  }
  return Status::OK();
}

}  // namespace

Result<bool> IsZFile(const ReadableFile& file) {
  if (file.Size() < kHeaderTrailerSize) return false;
  HeaderTrailerBytes bytes;
  OVBD_RETURN_IF_ERROR(file.ReadAt(0, bytes));
  const HeaderTrailer ht = DecodeHeaderTrailer(bytes);
  return ht.magic_ok && ht.Has(kFlagHeader);
}

Result<std::unique_ptr<Reader>> Open(std::shared_ptr<const ReadableFile> file) {
  return Open(std::move(file), ReadOptions{});
}

Result<std::unique_ptr<Reader>> Open(std::shared_ptr<const ReadableFile> file, const ReadOptions& options) {
  if (file == nullptr) return Status::InvalidArgument("zfile::Open: null file");
  if (options.attempts < 1) return Status::InvalidArgument("zfile::Open: ReadOptions.attempts must be >= 1");
  OVBD_ASSIGN_OR_RETURN(Metadata meta, LoadMetadata(*file, options));
  return std::unique_ptr<Reader>(std::make_unique<ZFileReader>(std::move(file), std::move(meta), options));
}

Result<std::unique_ptr<Reader>> Open(std::unique_ptr<ReadableFile> file) {
  return Open(std::shared_ptr<const ReadableFile>(std::move(file)));
}

}  // namespace ovbd::zfile
