// docs/format/digest-table.md: round trips, the push chunk rule, and one test per decode rule
// with its exact status code.
#include "ovbd/digest_table.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <fstream>
#include <iterator>
#include <vector>

#include "base/coding.h"
#include "base/crc32c.h"
#include "base/hash.h"
#include "ovbd/cache.h"

namespace ovbd::remote {
namespace {

// docs/format/digest-table.md §5: a cache miss of one default block is one whole chunk.
static_assert(kDefaultDigestChunkSize == cache::kDefaultBlockSize);

std::vector<uint8_t> Pattern(size_t n, uint8_t seed = 1) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; i++) v[i] = static_cast<uint8_t>(i * 131 + seed + (i >> 12));
  return v;
}

DigestTable Build(const std::vector<uint8_t>& bytes, uint32_t chunk) {
  auto file = NewMemReadableFile("blob", bytes);
  auto t = BuildDigestTable(*file, chunk);
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return t.ok() ? *t : DigestTable{};
}

// Re-seals the header after a test pokes a field, so that the field's own rule is what fails.
void Reseal(std::vector<uint8_t>& b) { EncodeLE32(b.data() + 60, Crc32c(std::span(b.data(), 60))); }

Code DecodeCode(const std::vector<uint8_t>& b) { return DecodeDigestTable(b, "t").status().code(); }

std::vector<uint8_t> ValidTable(uint64_t blob_size = 40000, uint32_t chunk = 16384) {
  return EncodeDigestTable(Build(Pattern(blob_size), chunk));
}

TEST(DigestTable, BuildHashesEachChunkForEdgeSizes) {
  const uint32_t c = 4096;
  for (size_t size : {size_t{0}, size_t{1}, size_t{c - 1}, size_t{c}, size_t{c + 1}, size_t{5 * c + 17}}) {
    auto bytes = Pattern(size);
    DigestTable t = Build(bytes, c);
    ASSERT_EQ(t.blob_size, size);
    ASSERT_EQ(t.ChunkCount(), (size + c - 1) / c) << size;
    for (uint64_t i = 0; i < t.ChunkCount(); i++) {
      size_t n = std::min<size_t>(c, size - i * c);
      Sha256 sha;
      sha.Update(std::span(bytes).subspan(i * c, n));
      EXPECT_EQ(t.chunks[i], sha.Final()) << "size " << size << " chunk " << i;
    }
  }
}

TEST(DigestTable, BuildReadsInLargePiecesAcrossReadBoundaries) {
  auto bytes = Pattern((9u << 20) + 5);  // more than two 4 MiB reads, last chunk partial
  DigestTable t = Build(bytes, 16384);
  ASSERT_EQ(t.ChunkCount(), ((9u << 20) + 5 + 16383) / 16384);
  EXPECT_EQ(t.chunks.back(), [&] {
    Sha256 s;
    s.Update(std::span(bytes).subspan(t.ChunkCount() * 16384 - 16384));
    return s.Final();
  }());
}

TEST(DigestTable, BuildRejectsBadChunkSizes) {
  auto file = NewMemReadableFile("blob", Pattern(10));
  for (uint32_t c : {0u, 2048u, 4095u, 12288u, 32u << 20}) {
    EXPECT_EQ(BuildDigestTable(*file, c).status().code(), Code::kInvalidArgument) << c;
  }
}

TEST(DigestTable, RoundTrip) {
  for (uint64_t size : {0ull, 1ull, 16384ull, 40000ull}) {
    DigestTable t = Build(Pattern(size), 16384);
    auto encoded = EncodeDigestTable(t);
    ASSERT_EQ(encoded.size(), 64 + 32 * t.ChunkCount());
    EXPECT_EQ(std::string(encoded.begin(), encoded.begin() + 8), "OVBDDGT1");
    auto d = DecodeDigestTable(encoded, "t");
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    EXPECT_EQ(d->chunk_size, t.chunk_size);
    EXPECT_EQ(d->blob_size, t.blob_size);
    EXPECT_EQ(d->chunks, t.chunks);
  }
}

TEST(DigestTable, HeaderFieldsAreLittleEndianAtTheirOffsets) {
  auto b = ValidTable(40000, 16384);
  EXPECT_EQ(DecodeLE32(b.data() + 8), 1u);      // version
  EXPECT_EQ(DecodeLE32(b.data() + 12), 0u);     // flags
  EXPECT_EQ(DecodeLE32(b.data() + 16), 1u);     // sha256
  EXPECT_EQ(DecodeLE32(b.data() + 20), 16384u); // chunk_size
  EXPECT_EQ(DecodeLE64(b.data() + 24), 40000u); // blob_size
  EXPECT_EQ(DecodeLE64(b.data() + 32), 3u);     // chunk_count
  for (size_t i = 40; i < 60; i++) EXPECT_EQ(b[i], 0) << i;
  EXPECT_EQ(DecodeLE32(b.data() + 60), Crc32c(std::span(b.data(), 60)));
}

TEST(DigestTableDecode, ShorterThanTheHeaderIsCorruption) {
  auto b = ValidTable();
  for (size_t n : {size_t{0}, size_t{8}, size_t{63}}) {
    EXPECT_EQ(DecodeDigestTable(std::span(b.data(), n), "t").status().code(), Code::kCorruption) << n;
  }
}

TEST(DigestTableDecode, BadMagicIsCorruption) {
  auto b = ValidTable();
  b[7] = '2';
  Reseal(b);
  EXPECT_EQ(DecodeCode(b), Code::kCorruption);
  EXPECT_NE(DecodeDigestTable(b, "t").status().message().find("magic"), std::string::npos);
}

TEST(DigestTableDecode, HeaderCrcMismatchIsCorruption) {
  auto b = ValidTable();
  b[24] ^= 1;  // blob_size, not resealed
  auto s = DecodeDigestTable(b, "layer.tbl").status();
  EXPECT_EQ(s.code(), Code::kCorruption);
  EXPECT_NE(s.message().find("layer.tbl"), std::string::npos);
  EXPECT_NE(s.message().find("offset 60"), std::string::npos);
  auto c = ValidTable();
  c[61] ^= 0x80;  // the CRC itself
  EXPECT_EQ(DecodeCode(c), Code::kCorruption);
}

TEST(DigestTableDecode, UnknownVersionIsNotSupported) {
  for (uint32_t v : {0u, 2u, 0xFFFFFFFFu}) {
    auto b = ValidTable();
    EncodeLE32(b.data() + 8, v);
    Reseal(b);
    EXPECT_EQ(DecodeCode(b), Code::kNotSupported) << v;
  }
}

TEST(DigestTableDecode, UnknownFlagBitsAreNotSupported) {
  for (int bit = 0; bit < 32; bit++) {
    auto b = ValidTable();
    EncodeLE32(b.data() + 12, 1u << bit);
    Reseal(b);
    EXPECT_EQ(DecodeCode(b), Code::kNotSupported) << bit;
  }
}

TEST(DigestTableDecode, UnknownHashAlgorithmIsNotSupported) {
  for (uint32_t a : {0u, 2u, 100u}) {
    auto b = ValidTable();
    EncodeLE32(b.data() + 16, a);
    Reseal(b);
    EXPECT_EQ(DecodeCode(b), Code::kNotSupported) << a;
  }
}

TEST(DigestTableDecode, ChunkSizeNotAPowerOfTwoOrOutOfRangeIsCorruption) {
  for (uint32_t c : {0u, 1u, 2048u, 4097u, 12288u, 16385u, 32u << 20, 0x80000000u}) {
    auto b = ValidTable();
    EncodeLE32(b.data() + 20, c);
    Reseal(b);
    EXPECT_EQ(DecodeCode(b), Code::kCorruption) << c;
  }
}

TEST(DigestTableDecode, ChunkSizeLimitsDecodeWhenConsistent) {
  for (uint32_t c : {4096u, 16u << 20}) {
    auto d = DecodeDigestTable(ValidTable(40000, c), "t");
    ASSERT_TRUE(d.ok()) << c << ": " << d.status().ToString();
    EXPECT_EQ(d->chunk_size, c);
  }
}

TEST(DigestTableDecode, ReservedBytesMustBeZero) {
  for (size_t off = 40; off < 60; off++) {
    auto b = ValidTable();
    b[off] = 1;
    Reseal(b);
    EXPECT_EQ(DecodeCode(b), Code::kCorruption) << off;
  }
}

TEST(DigestTableDecode, ChunkCountMustMatchTheBlobSize) {
  auto b = ValidTable(40000, 16384);  // 3 chunks
  EncodeLE64(b.data() + 32, 2);
  Reseal(b);
  EXPECT_EQ(DecodeCode(b), Code::kCorruption);
  auto c = ValidTable(40000, 16384);
  EncodeLE64(c.data() + 24, 16384 * 3 + 1);  // would need 4 chunks
  Reseal(c);
  auto s = DecodeDigestTable(c, "t").status();
  EXPECT_EQ(s.code(), Code::kCorruption);
  EXPECT_NE(s.message().find("chunk_count"), std::string::npos);
}

TEST(DigestTableDecode, TotalSizeMustBeExact) {
  auto b = ValidTable();
  b.push_back(0);
  EXPECT_EQ(DecodeCode(b), Code::kCorruption);
  b.resize(b.size() - 2);
  EXPECT_EQ(DecodeCode(b), Code::kCorruption);
  auto header_only = ValidTable();
  header_only.resize(64);
  EXPECT_EQ(DecodeCode(header_only), Code::kCorruption);
}

TEST(DigestTableDecode, ChunkCountAboveTheCapIsNotSupportedBeforeAllocating) {
  // A consistent header for a blob of 16 Mi + 1 chunks of 4 KiB, with no digests after it: the
  // cap is checked before the size, so nothing is allocated for the 512 MiB it announces.
  auto b = ValidTable(0, 4096);
  b.resize(64);
  uint64_t count = kMaxDigestChunks + 1;
  EncodeLE64(b.data() + 24, count * 4096);
  EncodeLE64(b.data() + 32, count);
  Reseal(b);
  EXPECT_EQ(DecodeCode(b), Code::kNotSupported);
  // At the cap the header is fine and only the missing digests fail.
  EncodeLE64(b.data() + 24, kMaxDigestChunks * 4096);
  EncodeLE64(b.data() + 32, kMaxDigestChunks);
  Reseal(b);
  EXPECT_EQ(DecodeCode(b), Code::kCorruption);
}

TEST(DigestTableDecode, HugeBlobSizeDoesNotOverflow) {
  auto b = ValidTable(0, 16u << 20);
  EncodeLE64(b.data() + 24, ~0ull);
  EncodeLE64(b.data() + 32, (~0ull >> 24) + 1);
  Reseal(b);
  EXPECT_EQ(DecodeCode(b), Code::kNotSupported);
}

TEST(DigestTableDecode, ChecksInTheSpecOrder) {
  // Magic is checked before the CRC, the CRC before the version, version before flags.
  auto b = ValidTable();
  b[0] = 'X';
  b[60] ^= 1;
  EXPECT_NE(DecodeDigestTable(b, "t").status().message().find("magic"), std::string::npos);
  auto c = ValidTable();
  EncodeLE32(c.data() + 8, 2);
  EncodeLE32(c.data() + 12, 1);
  Reseal(c);
  EXPECT_NE(DecodeDigestTable(c, "t").status().message().find("version"), std::string::npos);
}

TEST(ChooseDigestChunkSize, SixteenKiBUpTo16GiBThenDoubles) {
  EXPECT_EQ(ChooseDigestChunkSize(0), 16384u);
  EXPECT_EQ(ChooseDigestChunkSize(1), 16384u);
  EXPECT_EQ(ChooseDigestChunkSize(16ull << 30), 16384u);          // exactly 1 Mi chunks
  EXPECT_EQ(ChooseDigestChunkSize((16ull << 30) + 1), 32768u);    // one byte more
  EXPECT_EQ(ChooseDigestChunkSize(32ull << 30), 32768u);
  EXPECT_EQ(ChooseDigestChunkSize((32ull << 30) + 1), 65536u);
  EXPECT_EQ(ChooseDigestChunkSize(16ull << 40), 16u << 20);       // 16 TiB: 1 Mi chunks of 16 MiB
  EXPECT_EQ(ChooseDigestChunkSize((16ull << 40) + 1), 16u << 20); // never above 16 MiB
  EXPECT_EQ(ChooseDigestChunkSize(~0ull), 16u << 20);
}

// The fuzz seeds were written by an independent encoder (Python, from the spec): the valid ones
// must decode and re-encode byte for byte, each invalid one must fail with its rule's code.
TEST(DigestTableDecode, FuzzSeedsDecodeAsTheirNamesSay) {
  const std::map<std::string, Code> invalid = {
      {"invalid_algorithm.dgt", Code::kNotSupported}, {"invalid_cap.dgt", Code::kNotSupported},
      {"invalid_chunk_size.dgt", Code::kCorruption},  {"invalid_count.dgt", Code::kCorruption},
      {"invalid_crc.dgt", Code::kCorruption},         {"invalid_flags.dgt", Code::kNotSupported},
      {"invalid_magic.dgt", Code::kCorruption},       {"invalid_reserved.dgt", Code::kCorruption},
      {"invalid_short_header.dgt", Code::kCorruption}, {"invalid_trailing.dgt", Code::kCorruption},
      {"invalid_truncated.dgt", Code::kCorruption},   {"invalid_version2.dgt", Code::kNotSupported},
  };
  size_t seen = 0;
  for (const auto& entry : std::filesystem::directory_iterator(OVBD_SOURCE_DIR "/fuzz/corpus/digest_table")) {
    std::ifstream in(entry.path(), std::ios::binary);
    std::vector<uint8_t> b((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::string name = entry.path().filename().string();
    auto d = DecodeDigestTable(b, name);
    seen++;
    if (name.rfind("valid_", 0) == 0) {
      ASSERT_TRUE(d.ok()) << name << ": " << d.status().ToString();
      EXPECT_EQ(EncodeDigestTable(*d), b) << name;
      continue;
    }
    ASSERT_TRUE(invalid.count(name)) << "seed without an expected code: " << name;
    EXPECT_EQ(d.status().code(), invalid.at(name)) << name << ": " << d.status().ToString();
  }
  EXPECT_EQ(seen, invalid.size() + 3);
}

}  // namespace
}  // namespace ovbd::remote
