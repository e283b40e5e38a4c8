#include "zfile/codec.h"

#include <gtest/gtest.h>
#include <zstd.h>

#include "testutil.h"

namespace ovbd::zfile {
namespace {

using ovbd::testing::MakeData;

std::vector<uint8_t> Compress(Algorithm a, const std::vector<uint8_t>& in) {
  std::vector<uint8_t> out(MaxCompressedSize(a, in.size()));
  Result<size_t> n = CompressBlock(a, in, out);
  EXPECT_TRUE(n.ok()) << n.status().ToString();
  out.resize(n.ok() ? *n : 0);
  return out;
}

class ZFileCodecTest : public ::testing::TestWithParam<Algorithm> {};

TEST_P(ZFileCodecTest, RoundTripsCompressibleAndRandomData) {
  for (const char* kind : {"text", "random", "zero"}) {
    for (size_t n : {1u, 100u, 4096u, 65536u}) {
      const auto in = MakeData(n, n, kind);
      const auto c = Compress(GetParam(), in);
      std::vector<uint8_t> out(n);
      ASSERT_TRUE(DecompressBlock(GetParam(), c, out).ok()) << kind << " " << n;
      EXPECT_EQ(in, out) << kind << " " << n;
    }
  }
}

TEST_P(ZFileCodecTest, RandomDataGrows) {
  const auto in = MakeData(7, 65536, "random");
  const auto c = Compress(GetParam(), in);
  EXPECT_GT(c.size(), in.size());
  EXPECT_LE(c.size(), MaxCompressedSize(GetParam(), in.size()));
}

TEST_P(ZFileCodecTest, WrongLengthIsCorruption) {
  const auto in = MakeData(1, 4096, "text");
  const auto c = Compress(GetParam(), in);
  std::vector<uint8_t> small(4095), big(4097);
  EXPECT_TRUE(DecompressBlock(GetParam(), c, small).IsCorruption());
  EXPECT_TRUE(DecompressBlock(GetParam(), c, big).IsCorruption());
}

TEST_P(ZFileCodecTest, GarbageIsCorruptionNotCrash) {
  std::vector<uint8_t> out(4096);
  for (uint64_t seed = 0; seed < 200; seed++) {
    const auto garbage = MakeData(seed, 1 + seed * 13 % 500, "random");
    Status s = DecompressBlock(GetParam(), garbage, out);
    EXPECT_TRUE(s.ok() || s.IsCorruption()) << s.ToString();
  }
  // A truncated valid block.
  const auto c = Compress(GetParam(), MakeData(2, 4096, "text"));
  std::vector<uint8_t> cut(c.begin(), c.end() - 1);
  EXPECT_TRUE(DecompressBlock(GetParam(), cut, out).IsCorruption());
}

INSTANTIATE_TEST_SUITE_P(Algorithms, ZFileCodecTest, ::testing::Values(Algorithm::kLz4, Algorithm::kZstd),
                         [](const auto& info) { return std::string(AlgorithmName(info.param)); });

TEST(ZFileCodec, ZstdMatchesOneShotLevel3) {
  const auto in = MakeData(3, 8192, "text");
  std::vector<uint8_t> ref(ZSTD_compressBound(in.size()));
  const size_t n = ZSTD_compress(ref.data(), ref.size(), in.data(), in.size(), 3);
  ASSERT_FALSE(ZSTD_isError(n));
  ref.resize(n);
  // Twice, so the reused per-thread context is exercised.
  EXPECT_EQ(Compress(Algorithm::kZstd, in), ref);
  EXPECT_EQ(Compress(Algorithm::kZstd, in), ref);
}

TEST(ZFileCodec, AlgorithmNames) {
  EXPECT_STREQ(AlgorithmName(Algorithm::kLz4), "lz4");
  EXPECT_STREQ(AlgorithmName(Algorithm::kZstd), "zstd");
  EXPECT_EQ(*ParseAlgorithm("lz4"), Algorithm::kLz4);
  EXPECT_EQ(*ParseAlgorithm("zstd"), Algorithm::kZstd);
  EXPECT_EQ(ParseAlgorithm("lzo").status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace ovbd::zfile
