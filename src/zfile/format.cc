#include "zfile/format.h"

#include <cstdio>
#include <cstring>
#include <string>

#include "base/coding.h"
#include "base/crc32c.h"

namespace ovbd::zfile {
namespace {

constexpr uint8_t kMagic0[8] = {'Z', 'F', 'i', 'l', 'e', 0, 1, 0};
constexpr uint8_t kMagic1[16] = {'t', 'u', 'j', 'i', '.', 'y', 'y', 'f',
                                 '@', 'A', 'l', 'i', 'b', 'a', 'b', 'a'};

std::string Hex(uint64_t v) {
  char buf[24];
  snprintf(buf, sizeof(buf), "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

bool IsValidBlockSize(uint64_t block_size) {
  return block_size >= kMinBlockSize && block_size <= kMaxBlockSize &&
         (block_size & (block_size - 1)) == 0;
}

uint32_t HeaderTrailerDigest(std::span<const uint8_t, kHeaderTrailerSize> bytes) {
  static constexpr uint8_t kZero[4] = {0, 0, 0, 0};
  uint32_t crc = Crc32cExtend(0, bytes.data(), kOffDigest);
  crc = Crc32cExtend(crc, kZero, sizeof(kZero));
  const size_t rest = kOffDigest + sizeof(kZero);
  return Crc32cExtend(crc, bytes.data() + rest, kHeaderTrailerSize - rest);
}

HeaderTrailerBytes EncodeHeaderTrailer(const HeaderTrailer& ht) {
  HeaderTrailerBytes b{};
  uint8_t* p = b.data();
  std::memcpy(p + kOffMagic0, kMagic0, sizeof(kMagic0));
  std::memcpy(p + kOffMagic1, kMagic1, sizeof(kMagic1));
  EncodeLE32(p + kOffSize, ht.size);
  EncodeLE64(p + kOffFlags, ht.flags);
  EncodeLE64(p + kOffIndexOffset, ht.index_offset);
  EncodeLE64(p + kOffIndexSize, ht.index_size);
  EncodeLE64(p + kOffOriginalSize, ht.original_size);
  EncodeLE32(p + kOffIndexCrc, ht.index_crc);
  EncodeLE32(p + kOffBlockSize, ht.block_size);
  p[kOffAlgo] = ht.algo;
  p[kOffLevel] = ht.level;
  p[kOffUseDict] = ht.use_dict;
  EncodeLE32(p + kOffDictSize, ht.dict_size);
  p[kOffVerify] = ht.verify;
  const uint32_t digest = ht.Has(kFlagCalcDigest) ? HeaderTrailerDigest(b) : ht.digest;
  EncodeLE32(p + kOffDigest, digest);
  return b;
}

HeaderTrailer DecodeHeaderTrailer(std::span<const uint8_t, kHeaderTrailerSize> bytes) {
  const uint8_t* p = bytes.data();
  HeaderTrailer ht;
  ht.magic_ok = std::memcmp(p + kOffMagic0, kMagic0, sizeof(kMagic0)) == 0 &&
                std::memcmp(p + kOffMagic1, kMagic1, sizeof(kMagic1)) == 0;
  ht.size = DecodeLE32(p + kOffSize);
  ht.digest = DecodeLE32(p + kOffDigest);
  ht.flags = DecodeLE64(p + kOffFlags);
  ht.index_offset = DecodeLE64(p + kOffIndexOffset);
  ht.index_size = DecodeLE64(p + kOffIndexSize);
  ht.original_size = DecodeLE64(p + kOffOriginalSize);
  ht.index_crc = DecodeLE32(p + kOffIndexCrc);
  ht.block_size = DecodeLE32(p + kOffBlockSize);
  ht.algo = p[kOffAlgo];
  ht.level = p[kOffLevel];
  ht.use_dict = p[kOffUseDict];
  ht.dict_size = DecodeLE32(p + kOffDictSize);
  ht.verify = p[kOffVerify];
  ht.computed_digest = HeaderTrailerDigest(bytes);
  ht.digest_ok = ht.computed_digest == ht.digest;
  return ht;
}

Status ValidateHeaderTrailer(const HeaderTrailer& ht, bool want_header) {
  if (!ht.magic_ok) return Status::Corruption("bad magic (not a ZFile)");
  if (ht.Has(kFlagHeader) != want_header) {
    return Status::Corruption(std::string("flags ") + Hex(ht.flags) +
                              (want_header ? ": HEADER bit not set" : ": HEADER bit set on the trailer"));
  }
  if ((ht.flags & ~kKnownFlags) != 0) {
    return Status::NotSupported("unknown flag bits " + Hex(ht.flags & ~kKnownFlags) + " in flags " +
                                Hex(ht.flags));
  }
  if (ht.Has(kFlagIndexCompressed)) {
    return Status::NotSupported("flags " + Hex(ht.flags) + ": compressed jump table (IDX_COMP)");
  }
  if (!ht.Has(kFlagType)) return Status::Corruption("flags " + Hex(ht.flags) + ": TYPE (data file) bit not set");
  if (!want_header && !ht.Has(kFlagSealed)) {
    return Status::Corruption("flags " + Hex(ht.flags) + ": trailer is not SEALED");
  }
  if (!want_header && ht.Has(kFlagHeaderOverwrite)) {
    return Status::Corruption("flags " + Hex(ht.flags) + ": HEADER_OVERWRITE bit set on the trailer");
  }
  if (ht.size != kHeaderStructSize) {
    return Status::Corruption("size field " + std::to_string(ht.size) + ", expected 96");
  }
  if (ht.Has(kFlagCalcDigest) && !ht.digest_ok) {
    return Status::Corruption("digest mismatch (stored " + Hex(ht.digest) + ", computed " +
                              Hex(ht.computed_digest) + ")");
  }
  return Status::OK();
}

Status ValidateOptions(const HeaderTrailer& ht) {
  if (ht.algo != static_cast<uint8_t>(Algorithm::kLz4) && ht.algo != static_cast<uint8_t>(Algorithm::kZstd)) {
    return Status::NotSupported("algorithm " + std::to_string(ht.algo) + " (only 1 LZ4 and 2 zstd)");
  }
  if (!IsValidBlockSize(ht.block_size)) {
    return Status::Corruption("block_size " + std::to_string(ht.block_size) +
                              " is not a power of two in [4096, 65536]");
  }
  if (ht.use_dict != 0) {
    return Status::NotSupported("use_dict " + std::to_string(ht.use_dict) + " (dictionaries are not supported)");
  }
  if (ht.dict_size != 0) {
    return Status::NotSupported("dict_size " + std::to_string(ht.dict_size) + " (dictionaries are not supported)");
  }
  if (ht.verify > 1) return Status::Corruption("verify field " + std::to_string(ht.verify) + " (must be 0 or 1)");
  return Status::OK();
}

}  // namespace ovbd::zfile
