// VerifiedFile: a registry blob whose every returned byte matched its digest table.
//
// Why widen to whole chunks: a digest covers a whole chunk, so a read of part of one must read
// all of it to prove the part. Why one source read for many chunks: a BlobFile turns it into
// parallel range requests; re-reading only the chunks that failed keeps a flaky proxy from
// costing a whole large read again. Why re-read at all: a mismatch is most often a bad hop
// (a proxy, a P2P peer, a truncated connection) rather than a bad blob, and the bytes are
// never returned unless they match, so trying again is safe.
#include <algorithm>
#include <thread>

#include "base/hash.h"
#include "ovbd/digest_table.h"

namespace ovbd::remote {
namespace {

class VerifiedFile : public ReadableFile {
 public:
  VerifiedFile(std::shared_ptr<const ReadableFile> source, std::shared_ptr<const DigestTable> table,
               std::string name, VerifyOptions options, std::shared_ptr<VerifyStats> stats)
      : source_(std::move(source)), table_(std::move(table)), name_(std::move(name)),
        options_(options), stats_(std::move(stats)) {}

  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) const override;
  uint64_t Size() const override { return table_->blob_size; }
  const std::string& Name() const override { return name_; }
  void Prefetch(uint64_t offset, uint64_t length) const override;

 private:
  struct Range {
    uint64_t begin = 0;  // bytes of the blob, whole chunks (the last may be partial)
    uint64_t end = 0;
  };
  Range Widen(uint64_t offset, uint64_t length) const;
  Status VerifyChunks(Range range, std::span<uint8_t> bytes) const;
  Status VerifyChunk(uint64_t index, std::span<uint8_t> bytes) const;
  bool Matches(uint64_t index, std::span<const uint8_t> bytes, std::array<uint8_t, 32>* got) const;
  Status Mismatch(uint64_t index, uint64_t length, const std::array<uint8_t, 32>& got) const;
  void Count(std::atomic<uint64_t> VerifyStats::*counter) const {
    if (stats_) (stats_.get()->*counter).fetch_add(1, std::memory_order_relaxed);
  }

  const std::shared_ptr<const ReadableFile> source_;
  const std::shared_ptr<const DigestTable> table_;
  const std::string name_;
  const VerifyOptions options_;
  const std::shared_ptr<VerifyStats> stats_;
};

VerifiedFile::Range VerifiedFile::Widen(uint64_t offset, uint64_t length) const {
  const uint64_t c = table_->chunk_size;
  Range r;
  r.begin = offset / c * c;
  uint64_t end = offset + length;  // <= Size(): callers check
  r.end = std::min(table_->blob_size, (end / c + (end % c != 0 ? 1 : 0)) * c);
  return r;
}

Status VerifiedFile::ReadAt(uint64_t offset, std::span<uint8_t> buf) const {
  if (offset > Size() || buf.size() > Size() - offset) {
    return Status::OutOfRange(name_ + ": read of " + std::to_string(buf.size()) + " bytes at " +
                              std::to_string(offset) + " ends past the blob's " + std::to_string(Size()) + " bytes");
  }
  if (buf.empty()) return Status::OK();
  Range r = Widen(offset, buf.size());
  if (r.begin == offset && r.end - r.begin == buf.size()) {
    OVBD_RETURN_IF_ERROR(source_->ReadAt(r.begin, buf));  // aligned: no copy
    return VerifyChunks(r, buf);
  }
  std::vector<uint8_t> widened(r.end - r.begin);
  OVBD_RETURN_IF_ERROR(source_->ReadAt(r.begin, widened));
  OVBD_RETURN_IF_ERROR(VerifyChunks(r, widened));
  std::copy_n(widened.begin() + (offset - r.begin), buf.size(), buf.begin());
  return Status::OK();
}

Status VerifiedFile::VerifyChunks(Range range, std::span<uint8_t> bytes) const {
  const uint64_t c = table_->chunk_size;
  for (uint64_t pos = 0; pos < bytes.size(); pos += c) {
    auto chunk = bytes.subspan(pos, std::min<uint64_t>(c, bytes.size() - pos));
    OVBD_RETURN_IF_ERROR(VerifyChunk((range.begin + pos) / c, chunk));
  }
  return Status::OK();
}

// `bytes` holds chunk `index` as read once; re-reads it into `bytes` until it matches or the
// attempts are spent.
Status VerifiedFile::VerifyChunk(uint64_t index, std::span<uint8_t> bytes) const {
  std::array<uint8_t, 32> got;
  auto backoff = options_.backoff;
  for (unsigned attempt = 1;; attempt++) {
    if (Matches(index, bytes, &got)) {
      Count(&VerifyStats::verified_chunks);
      return Status::OK();
    }
    Count(&VerifyStats::mismatches);
    if (attempt >= options_.attempts) return Mismatch(index, bytes.size(), got);
    if (backoff.count() > 0) std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(60000));
    Count(&VerifyStats::refetches);
    OVBD_RETURN_IF_ERROR(source_->ReadAt(index * table_->chunk_size, bytes));
  }
}

bool VerifiedFile::Matches(uint64_t index, std::span<const uint8_t> bytes, std::array<uint8_t, 32>* got) const {
  Sha256 sha;
  sha.Update(bytes);
  *got = sha.Final();
  return *got == table_->chunks[index];
}

Status VerifiedFile::Mismatch(uint64_t index, uint64_t length, const std::array<uint8_t, 32>& got) const {
  uint64_t begin = index * table_->chunk_size;
  return Status::Corruption(name_ + ": chunk " + std::to_string(index) + " (bytes [" + std::to_string(begin) +
                            ", " + std::to_string(begin + length) + ")) does not match the digest table after " +
                            std::to_string(options_.attempts) + " reads: expected sha256 " +
                            ToHex(table_->chunks[index]) + ", got " + ToHex(got));
}

void VerifiedFile::Prefetch(uint64_t offset, uint64_t length) const {
  if (offset >= Size() || length == 0) return;
  Range r = Widen(offset, std::min(length, Size() - offset));
  source_->Prefetch(r.begin, r.end - r.begin);
}

Status CheckTable(const DigestTable& t) {
  const uint64_t c = t.chunk_size;
  if (c < kMinDigestChunkSize || c > kMaxDigestChunkSize || (c & (c - 1)) != 0) {
    return Status::InvalidArgument("digest table chunk size " + std::to_string(c) + " is not a power of two in 4 KiB..16 MiB");
  }
  uint64_t count = t.blob_size / c + (t.blob_size % c != 0 ? 1 : 0);
  if (t.chunks.size() != count) {
    return Status::InvalidArgument("digest table has " + std::to_string(t.chunks.size()) + " chunks, a blob of " +
                                   std::to_string(t.blob_size) + " bytes needs " + std::to_string(count));
  }
  return Status::OK();
}

}  // namespace

Result<std::unique_ptr<ReadableFile>> NewVerifiedFile(std::shared_ptr<const ReadableFile> source,
                                                      std::shared_ptr<const DigestTable> table,
                                                      std::string blob_name, VerifyOptions options,
                                                      std::shared_ptr<VerifyStats> stats) {
  if (!source || !table) return Status::InvalidArgument(blob_name + ": verified file needs a source and a digest table");
  if (options.attempts == 0) return Status::InvalidArgument(blob_name + ": verify attempts must be at least 1");
  Status s = CheckTable(*table);
  if (!s.ok()) return s.WithContext(blob_name);
  if (source->Size() != table->blob_size) {
    return Status::InvalidArgument(blob_name + ": blob is " + std::to_string(source->Size()) +
                                   " bytes, its digest table describes " + std::to_string(table->blob_size));
  }
  return std::unique_ptr<ReadableFile>(
      std::make_unique<VerifiedFile>(std::move(source), std::move(table), std::move(blob_name), options, std::move(stats)));
}

}  // namespace ovbd::remote
