#include "lsmt/format.h"

#include <gtest/gtest.h>

#include "lsmt/lsmt_test_util.h"

namespace ovbd::lsmt {
namespace {

using namespace ovbd::lsmt::testing;

TEST(SegmentCodec, PaddingEntryHasTheDocumentedBytes) {
  uint8_t bytes[kSegmentBytes];
  EncodeSegment(PaddingSegment(), bytes);
  const uint8_t expected[kSegmentBytes] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x03, 0x00,
                                           0, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(0, memcmp(bytes, expected, kSegmentBytes));
  EXPECT_TRUE(IsPadding(DecodeSegment(bytes)));
}

TEST(SegmentCodec, FieldsRoundTripAtTheirLimits) {
  const Segment cases[] = {
      {0, 1, 8, false, 0},
      {kMaxOffset - kMaxSegmentLength, kMaxSegmentLength, kMaxMOffset, true, 255},
      {12345, 77, 999, true, 3},
  };
  for (const Segment& s : cases) {
    uint8_t bytes[kSegmentBytes];
    EncodeSegment(s, bytes);
    EXPECT_EQ(DecodeSegment(bytes), s) << DescribeSegment(s);
  }
}

TEST(SegmentCodec, BitPositionsMatchTheSpec) {
  uint8_t bytes[kSegmentBytes];
  EncodeSegment(Segment{1, 2, 3, true, 0xAB}, bytes);
  // lo = 1 | 2 << 50; hi = 3 | 1 << 55 | 0xAB << 56
  const uint8_t expected[kSegmentBytes] = {0x01, 0, 0, 0, 0, 0, 0x08, 0x00,
                                           0x03, 0, 0, 0, 0, 0, 0x80, 0xAB};
  EXPECT_EQ(0, memcmp(bytes, expected, kSegmentBytes));
}

TEST(HeaderCodec, RoundTripAndFieldOffsets) {
  HeaderTrailer h;
  h.flags = kFlagsTrailer;
  h.index_offset = 1456128;
  h.index_size = 256;
  h.virtual_size = 64 << 20;
  h.uuid = kU1;
  h.parent_uuid = kU0;
  h.user_tag = "layer1";
  std::vector<uint8_t> bytes = EncodeHeaderTrailer(h);
  ASSERT_EQ(bytes.size(), kHeaderSize);
  EXPECT_EQ(bytes[24], 0x86);  // size = 390
  EXPECT_EQ(bytes[25], 0x01);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(&bytes[56])), kU1);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(&bytes[93])), kU0);
  EXPECT_EQ(bytes[132], 1);
  EXPECT_EQ(bytes[133], 1);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(&bytes[134])), "layer1");
  for (size_t i = kHeaderStructSize; i < kHeaderSize; i++) ASSERT_EQ(bytes[i], 0) << i;

  auto decoded = DecodeHeaderTrailer(bytes);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded->flags, h.flags);
  EXPECT_EQ(decoded->index_offset, h.index_offset);
  EXPECT_EQ(decoded->index_size, h.index_size);
  EXPECT_EQ(decoded->virtual_size, h.virtual_size);
  EXPECT_EQ(decoded->uuid, h.uuid);
  EXPECT_EQ(decoded->parent_uuid, h.parent_uuid);
  EXPECT_EQ(decoded->user_tag, h.user_tag);
}

TEST(HeaderCodec, NullUuidIsWrittenAsZerosAndReadAsEmpty) {
  HeaderTrailer h;
  std::vector<uint8_t> bytes = EncodeHeaderTrailer(h);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(&bytes[56])), "00000000-0000-0000-0000-000000000000");
  auto decoded = DecodeHeaderTrailer(bytes);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->uuid, "");
  EXPECT_EQ(decoded->parent_uuid, "");
}

TEST(HeaderCodec, UserTagOf256BytesNeedsNoTerminator) {
  HeaderTrailer h;
  h.user_tag = std::string(256, 'x');
  auto decoded = DecodeHeaderTrailer(EncodeHeaderTrailer(h));
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->user_tag, h.user_tag);
}

TEST(HeaderCodec, RejectsBadMagic) {
  std::vector<uint8_t> bytes = EncodeHeaderTrailer(HeaderTrailer{});
  bytes[3] ^= 1;
  EXPECT_EQ(DecodeHeaderTrailer(bytes).status().code(), Code::kCorruption);
  bytes[3] ^= 1;
  bytes[9] ^= 1;  // magic1
  EXPECT_EQ(DecodeHeaderTrailer(bytes).status().code(), Code::kCorruption);
  bytes[9] ^= 1;
  EXPECT_EQ(DecodeHeaderTrailer(std::span<const uint8_t>(bytes.data(), 100)).status().code(), Code::kCorruption);
}

// docs/format/lsmt.md §2: a uuid field is informational; text that does not parse (the bytes up to
// the first NUL, at most 37, must be a 36-character UUID) reads as the null UUID, never an error.
TEST(HeaderCodec, UnparsableUuidReadsAsTheNullUuid) {
  HeaderTrailer h;
  h.uuid = kU1;
  h.parent_uuid = kU0;
  const std::vector<uint8_t> good = EncodeHeaderTrailer(h);
  struct Case {
    const char* what;
    size_t at;
    std::vector<uint8_t> bytes;
    bool parent;
  };
  const std::vector<Case> cases = {
      {"not a hex digit", kOffUuid + 4, {'G'}, false},
      {"no dash at 8", kOffUuid + 8, {'0'}, false},
      {"37 characters, no NUL", kOffUuid + 36, {'X'}, false},
      {"35 characters", kOffUuid + 35, {0}, false},
      {"binary garbage", kOffUuid, std::vector<uint8_t>(37, 0xFF), false},
      {"parent_uuid without its dash at 13", kOffParentUuid + 13, {'x'}, true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    std::vector<uint8_t> bytes = good;
    std::copy(c.bytes.begin(), c.bytes.end(), bytes.begin() + static_cast<ptrdiff_t>(c.at));
    auto decoded = DecodeHeaderTrailer(bytes);
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    EXPECT_EQ(c.parent ? decoded->parent_uuid : decoded->uuid, "");
    EXPECT_EQ(c.parent ? decoded->uuid : decoded->parent_uuid, c.parent ? kU1 : kU0);
  }
  std::vector<uint8_t> lower = good;
  for (size_t i = kOffUuid; i < kOffUuid + 36; i++) lower[i] = static_cast<uint8_t>(std::tolower(lower[i]));
  EXPECT_EQ(DecodeHeaderTrailer(lower)->uuid, kU1);  // any case parses, read back uppercase
}

TEST(HeaderCodec, ReencodingTheGoldenHeadersIsByteIdentical) {
  for (const char* name : {"layer0.lsmt", "layer1.lsmt", "layer1.rw.data", "layer1.rw.index"}) {
    std::vector<uint8_t> file = VectorBytes(name);
    for (uint64_t at : {uint64_t{0}, uint64_t{file.size() - kHeaderSize}}) {
      std::vector<uint8_t> original(file.begin() + at, file.begin() + at + kHeaderSize);
      if (!HasMagic(original)) continue;  // the RW files have no trailer
      auto decoded = DecodeHeaderTrailer(original);
      ASSERT_TRUE(decoded.ok()) << name;
      EXPECT_EQ(EncodeHeaderTrailer(*decoded), original) << name << " at " << at;
    }
  }
}

TEST(Uuid, NormalizesCaseAndNull) {
  EXPECT_EQ(*NormalizeUuid("0a0b0c0d-1111-4222-8333-444455556666"), kU0);
  EXPECT_EQ(*NormalizeUuid(kU1), kU1);
  EXPECT_EQ(*NormalizeUuid("00000000-0000-0000-0000-000000000000"), "");
  EXPECT_EQ(*NormalizeUuid(""), "");
}

TEST(Uuid, RejectsMalformedText) {
  for (const char* bad : {"0A0B0C0D11114222833344445566660", "0A0B0C0D-1111-4222-8333-44445555666",
                          "0A0B0C0D-1111-4222-8333-44445555666G", "0A0B0C0D_1111-4222-8333-444455556666",
                          "0A0B0C0D-1111-4222-8333-4444555566667"}) {
    EXPECT_EQ(NormalizeUuid(bad).status().code(), Code::kInvalidArgument) << bad;
  }
}

TEST(Uuid, RandomIsVersion4UppercaseAndUnique) {
  std::string a = NewRandomUuid();
  std::string b = NewRandomUuid();
  EXPECT_NE(a, b);
  ASSERT_EQ(a.size(), 36u);
  EXPECT_EQ(*NormalizeUuid(a), a);
  EXPECT_EQ(a[14], '4');
  EXPECT_NE(std::string("89AB").find(a[19]), std::string::npos);
}

TEST(SegmentChecks, ShapeAndMOffsetRanges) {
  EXPECT_TRUE(CheckSegmentShape(Segment{0, 1, 8}).ok());
  EXPECT_TRUE(CheckSegmentShape(Segment{0, 0, 8}).IsCorruption());
  EXPECT_TRUE(CheckSegmentShape(Segment{kMaxOffset - 1, 2, 8}).IsCorruption());
  EXPECT_TRUE(CheckSegmentMOffset(Segment{0, 8, 8}, 8, 16).ok());
  EXPECT_TRUE(CheckSegmentMOffset(Segment{0, 9, 8}, 8, 16).IsCorruption());
  EXPECT_TRUE(CheckSegmentMOffset(Segment{0, 1, 7}, 8, 16).IsCorruption());
  EXPECT_TRUE(CheckSegmentMOffset(Segment{0, 100, 16, true}, 8, 16).ok());   // zeroed: moffset == end ok
  EXPECT_TRUE(CheckSegmentMOffset(Segment{0, 1, 17, true}, 8, 16).IsCorruption());
}

}  // namespace
}  // namespace ovbd::lsmt
