#include "zfile/format.h"

#include <gtest/gtest.h>

#include "base/coding.h"

namespace ovbd::zfile {
namespace {

HeaderTrailer Sample() {
  HeaderTrailer ht;
  ht.flags = kTrailerFlags;
  ht.index_offset = 0x0102030405060708ull;
  ht.index_size = 76;
  ht.original_size = 614530;
  ht.index_crc = 0xfcf8aace;
  ht.block_size = 8192;
  ht.algo = 2;
  ht.verify = 1;
  return ht;
}

TEST(ZFileFormat, EncodesFieldsAtTheirOffsets) {
  const HeaderTrailerBytes b = EncodeHeaderTrailer(Sample());
  EXPECT_EQ(0, memcmp(b.data(), "ZFile\0\1\0tuji.yyf@Alibaba", 24));
  EXPECT_EQ(DecodeLE32(&b[24]), 96u);
  EXPECT_EQ(DecodeLE64(&b[32]), 0x16u);
  EXPECT_EQ(DecodeLE64(&b[40]), 0x0102030405060708ull);
  EXPECT_EQ(DecodeLE64(&b[48]), 76u);
  EXPECT_EQ(DecodeLE64(&b[56]), 614530u);
  EXPECT_EQ(DecodeLE32(&b[64]), 0xfcf8aaceu);
  EXPECT_EQ(DecodeLE32(&b[72]), 8192u);
  EXPECT_EQ(b[76], 2);
  EXPECT_EQ(b[88], 1);
  for (size_t i = 96; i < b.size(); i++) ASSERT_EQ(b[i], 0) << "byte " << i;
}

TEST(ZFileFormat, DigestCoversAll512BytesWithDigestZeroed) {
  HeaderTrailerBytes b = EncodeHeaderTrailer(Sample());
  const uint32_t stored = DecodeLE32(&b[kOffDigest]);
  EXPECT_EQ(stored, HeaderTrailerDigest(b));
  // Zeroing the digest field first gives the same value: it is taken as zero.
  EncodeLE32(&b[kOffDigest], 0);
  EXPECT_EQ(stored, HeaderTrailerDigest(b));
  // A byte past the 96-byte struct is covered too.
  b[500] = 1;
  EXPECT_NE(stored, HeaderTrailerDigest(b));
}

TEST(ZFileFormat, DecodeRoundTrip) {
  const HeaderTrailerBytes b = EncodeHeaderTrailer(Sample());
  const HeaderTrailer d = DecodeHeaderTrailer(b);
  EXPECT_TRUE(d.magic_ok);
  EXPECT_TRUE(d.digest_ok);
  EXPECT_EQ(d.flags, kTrailerFlags);
  EXPECT_EQ(d.index_offset, 0x0102030405060708ull);
  EXPECT_EQ(d.original_size, 614530u);
  EXPECT_EQ(d.block_size, 8192u);
  EXPECT_EQ(d.algo, 2);
  EXPECT_EQ(d.verify, 1);
  EXPECT_TRUE(ValidateHeaderTrailer(d, /*want_header=*/false).ok());
  EXPECT_TRUE(ValidateOptions(d).ok());
}

TEST(ZFileFormat, NoDigestFlagKeepsGivenDigest) {
  HeaderTrailer ht = Sample();
  ht.flags = kFlagType | kFlagSealed;
  ht.digest = 0x12345678;
  const HeaderTrailer d = DecodeHeaderTrailer(EncodeHeaderTrailer(ht));
  EXPECT_EQ(d.digest, 0x12345678u);
  EXPECT_FALSE(d.digest_ok);
  EXPECT_TRUE(ValidateHeaderTrailer(d, false).ok());  // not checked without CALC_DIGEST
}

TEST(ZFileFormat, FlagRules) {
  auto check = [](uint64_t flags, bool header) {
    HeaderTrailer ht = Sample();
    ht.flags = flags;
    return ValidateHeaderTrailer(DecodeHeaderTrailer(EncodeHeaderTrailer(ht)), header).code();
  };
  EXPECT_EQ(check(0x13, true), Code::kOk);
  EXPECT_EQ(check(0x1B, true), Code::kOk);
  EXPECT_EQ(check(0x16, false), Code::kOk);
  EXPECT_EQ(check(0x17, true), Code::kOk);  // SEALED is ignored on a header
  EXPECT_EQ(check(0x12, true), Code::kCorruption);   // no HEADER bit
  EXPECT_EQ(check(0x17, false), Code::kCorruption);  // HEADER bit on trailer
  EXPECT_EQ(check(0x11, true), Code::kCorruption);   // no TYPE
  EXPECT_EQ(check(0x12, false), Code::kCorruption);  // trailer not sealed
  EXPECT_EQ(check(0x1E, false), Code::kCorruption);  // HEADER_OVERWRITE on trailer
  EXPECT_EQ(check(0x33, true), Code::kNotSupported);  // IDX_COMP
  EXPECT_EQ(check(0x53, true), Code::kNotSupported);  // bit 6
  EXPECT_EQ(check(0x8000000000000016ull, false), Code::kNotSupported);
}

TEST(ZFileFormat, OptionRules) {
  auto check = [](auto mutate) {
    HeaderTrailer ht = Sample();
    mutate(ht);
    return ValidateOptions(ht).code();
  };
  EXPECT_EQ(check([](HeaderTrailer& h) { h.algo = 0; }), Code::kNotSupported);
  EXPECT_EQ(check([](HeaderTrailer& h) { h.algo = 3; }), Code::kNotSupported);
  EXPECT_EQ(check([](HeaderTrailer& h) { h.dict_size = 1; }), Code::kNotSupported);
  EXPECT_EQ(check([](HeaderTrailer& h) { h.verify = 2; }), Code::kCorruption);
  for (uint32_t bs : {0u, 3000u, 2048u, 131072u, 12288u}) {
    EXPECT_EQ(check([bs](HeaderTrailer& h) { h.block_size = bs; }), Code::kCorruption) << bs;
  }
  for (uint32_t bs : {4096u, 8192u, 16384u, 32768u, 65536u}) {
    EXPECT_EQ(check([bs](HeaderTrailer& h) { h.block_size = bs; }), Code::kOk) << bs;
  }
}

TEST(ZFileFormat, BadMagicIsCorruption) {
  HeaderTrailerBytes b = EncodeHeaderTrailer(Sample());
  b[3] ^= 1;
  const HeaderTrailer d = DecodeHeaderTrailer(b);
  EXPECT_FALSE(d.magic_ok);
  EXPECT_TRUE(ValidateHeaderTrailer(d, false).IsCorruption());
}

}  // namespace
}  // namespace ovbd::zfile
