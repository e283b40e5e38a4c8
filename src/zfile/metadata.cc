#include "zfile/metadata.h"

#include <cstdio>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/checked.h"
#include "base/crc32c.h"
#include "zfile/codec.h"
#include "zfile/format.h"
#include "zfile/refetch.h"

namespace ovbd::zfile {
namespace {

std::string Num(uint64_t v) { return std::to_string(v); }

std::string Hex32(uint32_t v) {
  char buf[16];
  snprintf(buf, sizeof(buf), "0x%08x", v);
  return buf;
}

Result<HeaderTrailer> ReadHeaderTrailer(const ReadableFile& file, uint64_t offset, bool want_header) {
  HeaderTrailerBytes bytes;
  const char* what = want_header ? "header" : "trailer";
  Status s = file.ReadAt(offset, bytes);
  if (!s.ok()) return s.WithContext(std::string("reading the ") + what + " at offset " + Num(offset));
  HeaderTrailer ht = DecodeHeaderTrailer(bytes);
  s = ValidateHeaderTrailer(ht, want_header);
  if (!s.ok()) return s.WithContext(std::string(what) + " at offset " + Num(offset));
  return ht;
}

// The record carrying the metadata: the header if overwritten, else the trailer.
Result<HeaderTrailer> ReadMetadataRecord(const ReadableFile& file, Info* info) {
  const uint64_t size = file.Size();
  if (size < kHeaderTrailerSize) {
    return Status::Corruption("file is " + Num(size) + " bytes, too short for a ZFile header");
  }
  OVBD_ASSIGN_OR_RETURN(HeaderTrailer header, ReadHeaderTrailer(file, 0, true));
  info->header_flags = header.flags;
  if (header.Has(kFlagHeaderOverwrite)) return header;
  if (size < 2 * kHeaderTrailerSize) {
    return Status::Corruption("file is " + Num(size) + " bytes, too short for a ZFile header and trailer");
  }
  OVBD_ASSIGN_OR_RETURN(HeaderTrailer trailer, ReadHeaderTrailer(file, size - kHeaderTrailerSize, false));
  info->trailer_flags = trailer.flags;
  return trailer;
}

// Caps on the index fields, before anything is allocated.
Status CheckIndexFields(const HeaderTrailer& m, uint64_t file_size) {
  if (m.index_size > kMaxIndexSize) {
    return Status::Corruption("index_size " + Num(m.index_size) + " exceeds the cap " + Num(kMaxIndexSize));
  }
  const uint64_t trailer_offset = file_size - kHeaderTrailerSize;
  if (m.index_offset < kHeaderTrailerSize || m.index_offset > trailer_offset) {
    return Status::Corruption("index_offset " + Num(m.index_offset) + " outside [512, " + Num(trailer_offset) + "]");
  }
  if (m.index_size * 4 > trailer_offset - m.index_offset) {  // no overflow: index_size <= 1e9
    return Status::Corruption("jump table of " + Num(m.index_size) + " entries at offset " + Num(m.index_offset) +
                              " runs past the trailer at " + Num(trailer_offset));
  }
  const uint64_t blocks = m.original_size / m.block_size + (m.original_size % m.block_size != 0 ? 1 : 0);
  if (blocks != m.index_size) {
    return Status::Corruption("original_size " + Num(m.original_size) + " needs " + Num(blocks) + " blocks of " +
                              Num(m.block_size) + " bytes, but index_size is " + Num(m.index_size));
  }
  return Status::OK();
}

Result<JumpTable> LoadJumpTable(const ReadableFile& file, const HeaderTrailer& m) {
  std::vector<uint8_t> raw(m.index_size * 4);
  Status s = file.ReadAt(m.index_offset, raw);
  if (!s.ok()) return s.WithContext("reading the jump table at offset " + Num(m.index_offset));
  if (m.Has(kFlagCalcDigest)) {
    const uint32_t crc = Crc32c(raw);
    if (crc != m.index_crc) {
      return Status::Corruption("jump table at offset " + Num(m.index_offset) + ": CRC mismatch (index_crc " +
                                Hex32(m.index_crc) + ", computed " + Hex32(crc) + ")");
    }
  }
  JumpTable::Limits limits;
  limits.first_offset = kHeaderTrailerSize;  // + dict_size, which is always 0 here
  limits.min_entry = m.verify ? kBlockCrcSize + 1 : 1;
  limits.max_entry = static_cast<uint32_t>(MaxCompressedSize(static_cast<Algorithm>(m.algo), m.block_size) +
                                           (m.verify ? kBlockCrcSize : 0));
  limits.end_offset = m.index_offset;
  return JumpTable::Build(raw, limits);
}

Info MakeInfo(const HeaderTrailer& m, const Info& flags_only, uint64_t file_size) {
  Info info = flags_only;
  info.header_overwritten = m.Has(kFlagHeader);
  info.has_digest = m.Has(kFlagCalcDigest);
  info.algorithm = static_cast<Algorithm>(m.algo);
  info.block_size = m.block_size;
  info.crc = m.verify != 0;
  info.index_offset = m.index_offset;
  info.block_count = m.index_size;
  info.original_size = m.original_size;
  info.index_crc = m.index_crc;
  info.file_size = file_size;
  return info;
}

Result<Metadata> LoadMetadataNoContext(const ReadableFile& file) {
  Info flags;
  OVBD_ASSIGN_OR_RETURN(HeaderTrailer m, ReadMetadataRecord(file, &flags));
  const std::string record = m.Has(kFlagHeader)
                                 ? std::string("overwritten header at offset 0")
                                 : "trailer at offset " + Num(file.Size() - kHeaderTrailerSize);
  Status s = ValidateOptions(m);
  if (!s.ok()) return s.WithContext(record);
  s = CheckIndexFields(m, file.Size());
  if (!s.ok()) return s.WithContext(record);
  Metadata meta;
  OVBD_ASSIGN_OR_RETURN(meta.table, LoadJumpTable(file, m));
  meta.info = MakeInfo(m, flags, file.Size());
  return meta;
}

// Remembers the ranges read through it, so that a failed check can drop exactly those.
class RangeLog final : public ReadableFile {
 public:
  explicit RangeLog(const ReadableFile& base) : base_(base) {}
  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) const override {
    {
      std::lock_guard lock(mu_);
      ranges_.emplace_back(offset, buf.size());
    }
    return base_.ReadAt(offset, buf);
  }
  uint64_t Size() const override { return base_.Size(); }
  const std::string& Name() const override { return base_.Name(); }
  // Invalidates every range read since the last call; true if a reread of any may differ.
  bool InvalidateRead() const {
    std::lock_guard lock(mu_);
    bool may_differ = false;
    for (const auto& [offset, length] : ranges_) may_differ |= base_.Invalidate(offset, length);
    ranges_.clear();
    return may_differ;
  }

 private:
  const ReadableFile& base_;
  mutable std::mutex mu_;
  mutable std::vector<std::pair<uint64_t, uint64_t>> ranges_;
};

}  // namespace

Result<Metadata> LoadMetadata(const ReadableFile& file, const ReadOptions& options) {
  RangeLog log(file);
  std::optional<Metadata> meta;
  Status s = WithRefetch(
      options,
      [&] {
        Result<Metadata> r = LoadMetadataNoContext(log);
        if (!r.ok()) return r.status();
        meta = std::move(r).value();
        return Status::OK();
      },
      [&] { return log.InvalidateRead(); });
  if (!s.ok()) return s.WithContext(file.Name());
  return std::move(*meta);
}

}  // namespace ovbd::zfile
