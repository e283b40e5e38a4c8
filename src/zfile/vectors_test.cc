// The golden ZFiles made by the reference tools (tests/golden/MANIFEST.md).
#include <gtest/gtest.h>

#include "ovbd/zfile.h"
#include "testutil.h"
#include "zfile/format.h"

namespace ovbd::zfile {
namespace {

using ovbd::testing::Md5OfFile;
using ovbd::testing::ReadFileBytes;
using ovbd::testing::VectorPath;

constexpr const char* kLayer0Md5 = "f7e821df2c985f4926647452e2b9ab8d";
constexpr const char* kLayer1Md5 = "c97baf54c04ec670de6922f140457e9a";
constexpr const char* kPlainMd5 = "e531f6e154d34b9c6f65149d3b961bc9";

struct Vector {
  const char* file;
  const char* md5;
  Algorithm algorithm;
  uint32_t block_size;
  bool crc;
  uint64_t header_flags;
  uint64_t original_size;
};

const Vector kVectors[] = {
    {"layer0.lz4-4k-crc.zfile", kLayer0Md5, Algorithm::kLz4, 4096, true, 0x1B, 2016256},
    {"layer0.zstd-4k-crc.zfile", kLayer0Md5, Algorithm::kZstd, 4096, true, 0x1B, 2016256},
    {"layer0.lz4-64k-crc.zfile", kLayer0Md5, Algorithm::kLz4, 65536, true, 0x1B, 2016256},
    {"layer0.lz4-4k-nocrc.zfile", kLayer0Md5, Algorithm::kLz4, 4096, false, 0x13, 2016256},
    {"layer0.zstd-16k-nocrc-hdrovw.zfile", kLayer0Md5, Algorithm::kZstd, 16384, false, 0x1B, 2016256},
    {"layer1.lz4-4k-crc.zfile", kLayer1Md5, Algorithm::kLz4, 4096, true, 0x1B, 1464320},
    {"layer1.zstd-64k-crc.zfile", kLayer1Md5, Algorithm::kZstd, 65536, true, 0x1B, 1464320},
    {"layer1.lz4-4k-nocrc.zfile", kLayer1Md5, Algorithm::kLz4, 4096, false, 0x13, 1464320},
    {"plain.lz4-4k-crc.zfile", kPlainMd5, Algorithm::kLz4, 4096, true, 0x13, 614530},
    {"plain.zstd-8k-crc.zfile", kPlainMd5, Algorithm::kZstd, 8192, true, 0x13, 614530},
};

class ZFileVectorTest : public ::testing::TestWithParam<Vector> {};

TEST_P(ZFileVectorTest, DecompressesToExpectedMd5) {
  const Vector& v = GetParam();
  auto file = OpenReadableFile(VectorPath(v.file));
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  auto r = Open(std::move(file).value());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(Md5OfFile(**r), v.md5);
  EXPECT_TRUE((*r)->VerifyAll().ok());
}

TEST_P(ZFileVectorTest, InfoMatchesManifest) {
  const Vector& v = GetParam();
  auto file = OpenReadableFile(VectorPath(v.file));
  ASSERT_TRUE(file.ok());
  const uint64_t file_size = (*file)->Size();
  auto r = Open(std::move(file).value());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const Info& info = (*r)->info();
  EXPECT_EQ(info.header_flags, v.header_flags);
  EXPECT_EQ(info.header_overwritten, v.header_flags == 0x1B);
  EXPECT_EQ(info.trailer_flags, v.header_flags == 0x1B ? 0u : 0x16u);  // trailer not read when overwritten
  EXPECT_TRUE(info.has_digest);
  EXPECT_EQ(info.algorithm, v.algorithm);
  EXPECT_EQ(info.block_size, v.block_size);
  EXPECT_EQ(info.crc, v.crc);
  EXPECT_EQ(info.original_size, v.original_size);
  EXPECT_EQ((*r)->Size(), v.original_size);
  EXPECT_EQ(info.block_count, (v.original_size + v.block_size - 1) / v.block_size);
  EXPECT_EQ(info.file_size, file_size);
  EXPECT_EQ(info.index_offset + 4 * info.block_count + 512, file_size);
  // Every vector's trailer is 0x16 with a valid digest, and carries the same index fields.
  const std::vector<uint8_t> bytes = ReadFileBytes(VectorPath(v.file));
  const HeaderTrailer t = DecodeHeaderTrailer(std::span<const uint8_t, 512>(bytes.data() + bytes.size() - 512, 512));
  EXPECT_EQ(t.flags, 0x16u);
  EXPECT_TRUE(t.digest_ok);
  EXPECT_EQ(t.index_offset, info.index_offset);
  EXPECT_EQ(t.original_size, info.original_size);
  EXPECT_EQ(t.verify, v.crc ? 1 : 0);
}

TEST_P(ZFileVectorTest, IsZFile) {
  auto file = OpenReadableFile(VectorPath(GetParam().file));
  ASSERT_TRUE(file.ok());
  auto is = IsZFile(**file);
  ASSERT_TRUE(is.ok());
  EXPECT_TRUE(*is);
}

INSTANTIATE_TEST_SUITE_P(Golden, ZFileVectorTest, ::testing::ValuesIn(kVectors), [](const auto& info) {
  std::string name = info.param.file;
  for (char& c : name) {
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
});

// Recompressing with our writer: zstd output is byte-identical to the reference (same libzstd
// family, level 3); LZ4 is not (the reference bundles lz4 1.8.3), so LZ4 is compared after
// decompression only (DecompressesToExpectedMd5 + the round-trip tests).
struct Recompress {
  const char* source;
  const char* expected;
  Options options;
};

class ZFileRecompressTest : public ::testing::TestWithParam<Recompress> {};

TEST_P(ZFileRecompressTest, ZstdIsByteIdenticalToReference) {
  const Recompress& c = GetParam();
  auto in = OpenReadableFile(VectorPath(c.source));
  ASSERT_TRUE(in.ok());
  for (int threads : {1, 3}) {
    Options opts = c.options;
    opts.threads = threads;
    auto storage = std::make_shared<MemStorage>();
    auto out = NewMemWritableFile("out", storage);
    auto info = Compress(**in, out.get(), opts);
    ASSERT_TRUE(info.ok()) << info.status().ToString();
    const std::vector<uint8_t> expected = ReadFileBytes(VectorPath(c.expected));
    ASSERT_EQ(storage->bytes.size(), expected.size());
    EXPECT_TRUE(storage->bytes == expected) << "threads " << threads;
  }
}

Options ZstdOptions(uint32_t bs, bool overwrite) {
  Options o;
  o.algorithm = Algorithm::kZstd;
  o.block_size = bs;
  o.crc = true;
  o.overwrite_header = overwrite;
  return o;
}

INSTANTIATE_TEST_SUITE_P(
    Golden, ZFileRecompressTest,
    ::testing::Values(Recompress{"plain.bin", "plain.zstd-8k-crc.zfile", ZstdOptions(8192, false)},
                      Recompress{"layer1.lsmt", "layer1.zstd-64k-crc.zfile", ZstdOptions(65536, true)}),
    [](const auto& info) { return info.index == 0 ? std::string("plain") : std::string("layer1_hdrovw"); });

TEST(ZFileVectors, Lz4LayoutMatchesReferenceApartFromBlocks) {
  // Our header for the same options is identical to the reference's 0x13 header.
  auto in = OpenReadableFile(VectorPath("plain.bin"));
  ASSERT_TRUE(in.ok());
  auto storage = std::make_shared<MemStorage>();
  auto out = NewMemWritableFile("out", storage);
  ASSERT_TRUE(Compress(**in, out.get(), Options{}).ok());
  const std::vector<uint8_t> ref = ReadFileBytes(VectorPath("plain.lz4-4k-crc.zfile"));
  ASSERT_GE(storage->bytes.size(), 512u);
  EXPECT_TRUE(std::equal(ref.begin(), ref.begin() + 512, storage->bytes.begin()));
  auto r = Open(NewMemReadableFile("ours", storage->bytes));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(Md5OfFile(**r), kPlainMd5);
}

}  // namespace
}  // namespace ovbd::zfile
