// ImportRaw: a raw disk image as a committed blob. Each 4 KiB block that is all zeros becomes a
// hole; the others are data (the last block may be short: it is zero-padded to 512 bytes).
// Adjacent data blocks merge into segments exactly as a commit would merge them.
#include <algorithm>
#include <string>
#include <vector>

#include "base/checked.h"
#include "lsmt/blob_writer.h"
#include "lsmt/commit_options.h"
#include "ovbd/lsmt.h"

namespace ovbd::lsmt {
namespace {

constexpr size_t kImportBlock = 4096;
constexpr size_t kImportChunk = 1 << 20;  // a multiple of kImportBlock

bool AllZero(std::span<const uint8_t> bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](uint8_t b) { return b == 0; });
}

// Adds the non-zero blocks of one chunk (device bytes [offset, offset+chunk.size())), appending
// each run of consecutive data blocks with one AppendData.
Status ImportChunk(uint64_t offset, std::span<const uint8_t> chunk, BlobWriter* writer) {
  size_t run_begin = 0;
  size_t run_end = 0;  // [run_begin, run_end) = pending data bytes
  for (size_t at = 0; at < chunk.size(); at += kImportBlock) {
    std::span<const uint8_t> block = chunk.subspan(at, std::min(kImportBlock, chunk.size() - at));
    if (AllZero(block)) continue;
    if (at != run_end) {
      OVBD_RETURN_IF_ERROR(writer->AppendData(chunk.subspan(run_begin, run_end - run_begin)));
      run_begin = at;
    }
    writer->AddSegment(Segment{(offset + at) / kSectorSize,
                               static_cast<uint32_t>(block.size() / kSectorSize), 0, false, 0});
    run_end = at + block.size();
  }
  return writer->AppendData(chunk.subspan(run_begin, run_end - run_begin));
}

}  // namespace

Status ImportRaw(const ReadableFile& raw, WritableFile* out, const CommitOptions& options) {
  if (out == nullptr) return Status::InvalidArgument("ImportRaw: null output");
  const uint64_t size = raw.Size();
  const uint64_t vsize = RoundUp(size, kSectorSize);
  if (vsize / kSectorSize > kMaxOffset) {
    return Status::InvalidArgument(raw.Name() + ": " + std::to_string(size) + " bytes is too large");
  }
  auto meta = CommitMeta(options, vsize, "");
  if (!meta.ok()) return meta.status().WithContext("import " + raw.Name());
  BlobWriter writer(out, *meta);
  OVBD_RETURN_IF_ERROR(writer.WriteHeader());
  std::vector<uint8_t> buf(kImportChunk);
  for (uint64_t offset = 0; offset < size; offset += kImportChunk) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(kImportChunk, size - offset));
    size_t padded = static_cast<size_t>(RoundUp(n, kSectorSize));
    std::fill(buf.begin() + n, buf.begin() + padded, 0);
    OVBD_RETURN_IF_ERROR(raw.ReadAt(offset, std::span<uint8_t>(buf.data(), n)));
    OVBD_RETURN_IF_ERROR(ImportChunk(offset, std::span<const uint8_t>(buf.data(), padded), &writer));
    if (options.progress) options.progress(offset + n, size);
  }
  return writer.Finish();
}

}  // namespace ovbd::lsmt
