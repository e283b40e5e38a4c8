// Helpers shared by the ZFile tests: build a ZFile in memory, open bytes, poke header fields.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "base/coding.h"
#include "base/crc32c.h"
#include "ovbd/io.h"
#include "ovbd/zfile.h"
#include "zfile/format.h"

namespace ovbd::zfile::testing {

// A WritableFile over a MemStorage that says it cannot seek (a pipe).
class PipeWriter final : public WritableFile {
 public:
  explicit PipeWriter(std::shared_ptr<MemStorage> storage)
      : base_(NewMemWritableFile("pipe", std::move(storage))) {}
  Status Append(std::span<const uint8_t> data) override { return base_->Append(data); }
  uint64_t Position() const override { return base_->Position(); }
  bool Seekable() const override { return false; }
  Status Rewrite(uint64_t, std::span<const uint8_t>) override { return Status::NotSupported("pipe"); }
  Status Sync() override { return Status::OK(); }
  Status Close() override { return base_->Close(); }
  const std::string& Name() const override { return base_->Name(); }

 private:
  std::unique_ptr<WritableFile> base_;
};

// Compresses `data`, appending it in pieces of `chunk` bytes (0: all at once).
inline std::vector<uint8_t> BuildZFile(const std::vector<uint8_t>& data, const Options& opts, size_t chunk = 0,
                                       Info* info_out = nullptr) {
  auto storage = std::make_shared<MemStorage>();
  auto out = NewMemWritableFile("built.zfile", storage);
  auto builder = NewBuilder(out.get(), opts);
  EXPECT_TRUE(builder.ok()) << builder.status().ToString();
  if (!builder.ok()) return {};
  if (chunk == 0) chunk = data.size() > 0 ? data.size() : 1;
  for (size_t off = 0; off < data.size(); off += chunk) {
    const size_t n = std::min(chunk, data.size() - off);
    Status s = (*builder)->Append(std::span<const uint8_t>(data.data() + off, n));
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  auto info = (*builder)->Finish();
  EXPECT_TRUE(info.ok()) << info.status().ToString();
  if (info.ok() && info_out != nullptr) *info_out = *info;
  EXPECT_TRUE(out->Close().ok());
  return storage->bytes;
}

inline Result<std::unique_ptr<Reader>> OpenBytes(std::vector<uint8_t> bytes, const std::string& name = "t.zfile") {
  return Open(NewMemReadableFile(name, std::move(bytes)));
}

// Reads the whole decompressed content; EXPECTs success.
inline std::vector<uint8_t> ReadAllOrFail(const ReadableFile& f) {
  std::vector<uint8_t> out(f.Size());
  Status s = f.ReadAt(0, out);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

// Offset of the trailer (last 512 bytes).
inline size_t TrailerOffset(const std::vector<uint8_t>& z) { return z.size() - kHeaderTrailerSize; }

// Recomputes the digest of the 512-byte record at `at`.
inline void FixDigest(std::vector<uint8_t>* z, size_t at) {
  std::span<const uint8_t, kHeaderTrailerSize> rec(z->data() + at, kHeaderTrailerSize);
  EncodeLE32(z->data() + at + kOffDigest, HeaderTrailerDigest(rec));
}

inline void Poke32(std::vector<uint8_t>* z, size_t at, uint32_t v) { EncodeLE32(z->data() + at, v); }
inline void Poke64(std::vector<uint8_t>* z, size_t at, uint64_t v) { EncodeLE64(z->data() + at, v); }

// Recomputes index_crc of the jump table (after poking entries) in the trailer and its digest.
inline void FixIndexCrc(std::vector<uint8_t>* z) {
  const size_t t = TrailerOffset(*z);
  const uint64_t index_offset = DecodeLE64(z->data() + t + kOffIndexOffset);
  const uint64_t index_size = DecodeLE64(z->data() + t + kOffIndexSize);
  Poke32(z, t + kOffIndexCrc, Crc32cExtend(0, z->data() + index_offset, index_size * 4));
  FixDigest(z, t);
}

}  // namespace ovbd::zfile::testing
