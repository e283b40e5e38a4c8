// ReadLayerInfo on the golden blobs, and one named rejection per rule of notes §2.3.
#include <gtest/gtest.h>

#include "base/coding.h"
#include "lsmt/format.h"
#include "lsmt/lsmt_test_util.h"

namespace ovbd::lsmt {
namespace {

using namespace ovbd::lsmt::testing;

constexpr uint64_t kLayer0IndexOffset = 2008064;

TEST(ReadLayerInfo, Layer0Facts) {
  auto info = ReadLayerInfo(*Vector("layer0.lsmt"));
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->header.flags, 0x07u);
  EXPECT_EQ(info->header.index_offset, 0u);
  EXPECT_EQ(info->header.index_size, 0u);
  EXPECT_EQ(info->trailer.flags, 0x06u);
  EXPECT_EQ(info->trailer.index_offset, kLayer0IndexOffset);
  EXPECT_EQ(info->trailer.index_size, 256u);
  EXPECT_EQ(info->segments.size(), 21u);
  EXPECT_EQ(info->padding_entries, 235u);
  EXPECT_EQ(info->trailer.virtual_size, 67108864u);
  EXPECT_EQ(info->trailer.uuid, kU0);
  EXPECT_EQ(info->trailer.parent_uuid, "");
  EXPECT_EQ(info->trailer.user_tag, "layer0");
  EXPECT_EQ(info->file_size, 2016256u);
  // The merged 10 MiB discard: 6111 + 3569 sectors in one zeroed entry.
  bool found = false;
  for (const Segment& s : info->segments) found |= (s.zeroed && s.length == 9680);
  EXPECT_TRUE(found);
}

TEST(ReadLayerInfo, Layer1ParentAndSealedFile) {
  auto l1 = ReadLayerInfo(*Vector("layer1.lsmt"));
  ASSERT_TRUE(l1.ok()) << l1.status().ToString();
  EXPECT_EQ(l1->trailer.uuid, kU1);
  EXPECT_EQ(l1->trailer.parent_uuid, kU0);
  EXPECT_EQ(l1->segments.size(), 16u);
  EXPECT_EQ(l1->padding_entries, 240u);

  auto sealed = ReadLayerInfo(*Vector("layer1.sealed"));
  ASSERT_TRUE(sealed.ok()) << sealed.status().ToString();
  EXPECT_EQ(sealed->header.flags, 0x03u);
  EXPECT_EQ(sealed->trailer.flags, 0x06u);
  EXPECT_EQ(sealed->trailer.index_size, 16u);  // the garbage padding is not counted
  EXPECT_EQ(sealed->segments.size(), 16u);
  EXPECT_EQ(sealed->trailer.uuid, kR1);
  EXPECT_EQ(sealed->trailer.parent_uuid, kU0);
  // Same logical ranges as the committed blob (moffsets differ: the sealed data is not compacted).
  for (size_t i = 0; i < 16; i++) {
    EXPECT_EQ(sealed->segments[i].offset, l1->segments[i].offset);
    EXPECT_EQ(sealed->segments[i].length, l1->segments[i].length);
    EXPECT_EQ(sealed->segments[i].zeroed, l1->segments[i].zeroed);
  }
}

TEST(IsLsmtBlob, DetectsByContent) {
  EXPECT_TRUE(*IsLsmtBlob(*Vector("layer0.lsmt")));
  EXPECT_TRUE(*IsLsmtBlob(*Vector("layer1.rw.data")));
  EXPECT_FALSE(*IsLsmtBlob(*Vector("plain.bin")));
  EXPECT_FALSE(*IsLsmtBlob(*Vector("layer0.lz4-4k-crc.zfile")));
  EXPECT_FALSE(*IsLsmtBlob(*NewMemReadableFile("tiny", {1, 2, 3})));
}

// Field-poking corruption tests on a copy of layer0.lsmt.
class Layer0Corruption : public ::testing::Test {
 protected:
  void SetUp() override {
    bytes_ = VectorBytes("layer0.lsmt");
  }
  uint64_t trailer() const { return bytes_.size() - kHeaderSize; }
  uint8_t* entry(size_t i) { return &bytes_[kLayer0IndexOffset + i * kSegmentBytes]; }
  void PokeEntry(size_t i, const Segment& s) { EncodeSegment(s, entry(i)); }
  Segment GetEntry(size_t i) { return DecodeSegment(entry(i)); }
  // Expects Corruption whose message contains `needle` (and the file name).
  void ExpectCorruption(const std::string& needle) {
    auto info = ReadLayerInfo(*NewMemReadableFile("poked.lsmt", bytes_));
    ASSERT_FALSE(info.ok()) << "accepted a blob that breaks: " << needle;
    EXPECT_TRUE(info.status().IsCorruption()) << info.status().ToString();
    EXPECT_NE(info.status().message().find("poked.lsmt"), std::string::npos) << info.status().ToString();
    EXPECT_NE(info.status().message().find(needle), std::string::npos) << info.status().ToString();
  }
  std::vector<uint8_t> bytes_;
};

TEST_F(Layer0Corruption, Pristine) { ASSERT_TRUE(ReadLayerInfo(*NewMemReadableFile("ok", bytes_)).ok()); }

TEST_F(Layer0Corruption, HeaderMagic) {
  bytes_[0] = 'X';
  ExpectCorruption("header at offset 0: bad magic");
}

TEST_F(Layer0Corruption, HeaderWithoutHeaderFlag) {
  EncodeLE32(&bytes_[kOffFlags], 0x06);
  ExpectCorruption("bit 0");
}

TEST_F(Layer0Corruption, HeaderWithoutDataFlag) {
  EncodeLE32(&bytes_[kOffFlags], 0x05);
  ExpectCorruption("bit 1");
}

TEST_F(Layer0Corruption, TrailerMagic) {
  bytes_[trailer() + 12] ^= 0x40;
  ExpectCorruption("trailer at offset " + std::to_string(trailer()) + ": bad magic");
}

TEST_F(Layer0Corruption, TrailerFlags) {
  EncodeLE32(&bytes_[trailer() + kOffFlags], 0x07);
  ExpectCorruption("trailer has the header flag");
  EncodeLE32(&bytes_[trailer() + kOffFlags], 0x02);
  ExpectCorruption("sealed");
  EncodeLE32(&bytes_[trailer() + kOffFlags], 0x04);
  ExpectCorruption("data file");
}

TEST_F(Layer0Corruption, IndexSizeAboveCap) {
  EncodeLE64(&bytes_[trailer() + kOffIndexSize], kMaxRoIndexSize + 1);
  ExpectCorruption("exceeds the cap");
  EncodeLE64(&bytes_[trailer() + kOffIndexSize], ~0ULL);  // would overflow *16
  ExpectCorruption("exceeds the cap");
}

TEST_F(Layer0Corruption, IndexDoesNotFit) {
  EncodeLE64(&bytes_[trailer() + kOffIndexSize], 257);  // one entry into the trailer
  ExpectCorruption("does not fit");
  EncodeLE64(&bytes_[trailer() + kOffIndexSize], 256);
  EncodeLE64(&bytes_[trailer() + kOffIndexOffset], trailer() + 512);
  ExpectCorruption("does not fit");
  EncodeLE64(&bytes_[trailer() + kOffIndexOffset], 512);  // inside the header
  ExpectCorruption("does not fit");
}

// lsmt.md §6 step 4: index_offset must be a multiple of 512 (the reference only writes such).
TEST_F(Layer0Corruption, IndexOffsetNotSectorAligned) {
  for (uint64_t delta : {uint64_t{16}, uint64_t{256}}) {
    EncodeLE64(&bytes_[trailer() + kOffIndexOffset], kLayer0IndexOffset - 512 + delta);
    ExpectCorruption("is not a multiple of 512");
  }
}

TEST_F(Layer0Corruption, OverlappingEntries) {
  Segment s = GetEntry(1);
  s.offset = GetEntry(0).end() - 1;
  PokeEntry(1, s);
  ExpectCorruption("index entry 1");
  ExpectCorruption("overlaps");
}

TEST_F(Layer0Corruption, UnsortedEntries) {
  Segment a = GetEntry(3);
  Segment b = GetEntry(4);
  PokeEntry(3, b);
  PokeEntry(4, a);
  ExpectCorruption("index entry 4");
}

TEST_F(Layer0Corruption, MOffsetBeforeData) {
  Segment s = GetEntry(0);
  s.moffset = 7;
  PokeEntry(0, s);
  ExpectCorruption("moffset 7");
}

TEST_F(Layer0Corruption, MOffsetPastIndexOffset) {
  Segment s = GetEntry(20);
  s.moffset = kLayer0IndexOffset / kSectorSize - s.length + 1;
  PokeEntry(20, s);
  ExpectCorruption("outside the data area");
}

TEST_F(Layer0Corruption, ZeroedEntryMOffsetPastEnd) {
  Segment s = GetEntry(13);
  ASSERT_TRUE(s.zeroed);
  s.moffset = kLayer0IndexOffset / kSectorSize;  // == end: allowed
  PokeEntry(13, s);
  ASSERT_TRUE(ReadLayerInfo(*NewMemReadableFile("ok", bytes_)).ok());
  s.moffset += 1;
  PokeEntry(13, s);
  ExpectCorruption("index entry 13");
}

TEST_F(Layer0Corruption, ZeroLengthEntry) {
  Segment s = GetEntry(5);
  s.length = 0;
  PokeEntry(5, s);
  ExpectCorruption("length 0");
}

TEST_F(Layer0Corruption, EntryPastMaxOffset) {
  Segment s = GetEntry(20);
  s.offset = kMaxOffset - 2;  // not padding, but ends past the limit
  PokeEntry(20, s);
  ExpectCorruption("2^50-1");
}

TEST_F(Layer0Corruption, TooSmallFile) {
  bytes_.resize(8191);
  ExpectCorruption("smaller than a header and a trailer");
}

// lsmt.md §3: bits 3 and 5 are ignored, bit 4 (SPARSE_RW) is ignored in a read-only blob (a sealed
// sparse layer is an ordinary blob), any bit above 5 is NotSupported, in the header and the trailer.
TEST_F(Layer0Corruption, FlagBitsBeyondTheFirstThree) {
  const std::vector<uint8_t> pristine = bytes_;
  for (uint64_t at : {uint64_t{0}, trailer()}) {
    for (uint32_t bit : {3u, 4u, 5u, 6u, 7u, 16u, 31u}) {
      SCOPED_TRACE((at == 0 ? "header bit " : "trailer bit ") + std::to_string(bit));
      bytes_ = pristine;
      EncodeLE32(&bytes_[at + kOffFlags], DecodeLE32(&bytes_[at + kOffFlags]) | (1u << bit));
      auto info = ReadLayerInfo(*NewMemReadableFile("poked.lsmt", bytes_));
      if (bit <= 5) {
        ASSERT_TRUE(info.ok()) << info.status().ToString();
        EXPECT_EQ(info->segments.size(), 21u);
      } else {
        EXPECT_EQ(info.status().code(), Code::kNotSupported) << info.status().ToString();
        EXPECT_NE(info.status().message().find("unknown bits"), std::string::npos) << info.status().ToString();
        EXPECT_NE(info.status().message().find("poked.lsmt"), std::string::npos) << info.status().ToString();
      }
    }
  }
}

// lsmt.md §2: virtual_size must be a multiple of 512 up to (2^50-1)*512 bytes, in every record the
// reader decodes (NotSupported otherwise); 0 means "no size" and is valid.
TEST_F(Layer0Corruption, VirtualSizeMustBeWholeSectorsInRange) {
  const std::vector<uint8_t> pristine = bytes_;
  for (uint64_t at : {uint64_t{0}, trailer()}) {
    for (uint64_t vsize : {uint64_t{0}, uint64_t{512}, kMaxVirtualSize, uint64_t{67108864 + 100}, uint64_t{511},
                           kMaxVirtualSize + 512, uint64_t{1} << 63, ~uint64_t{0}}) {
      SCOPED_TRACE((at == 0 ? "header " : "trailer ") + std::to_string(vsize));
      bytes_ = pristine;
      EncodeLE64(&bytes_[at + kOffVirtualSize], vsize);
      auto info = ReadLayerInfo(*NewMemReadableFile("poked.lsmt", bytes_));
      if (vsize % 512 == 0 && vsize <= kMaxVirtualSize) {
        ASSERT_TRUE(info.ok()) << info.status().ToString();
        EXPECT_EQ((at == 0 ? info->header : info->trailer).virtual_size, vsize);
      } else {
        EXPECT_EQ(info.status().code(), Code::kNotSupported) << info.status().ToString();
        EXPECT_NE(info.status().message().find("virtual_size"), std::string::npos) << info.status().ToString();
      }
    }
  }
}

// uuid and parent_uuid are informational (lsmt.md §2): unparsable text reads as the null UUID
// and the blob opens.
TEST_F(Layer0Corruption, UnparsableUuidsAreInformational) {
  bytes_[trailer() + kOffUuid + 8] = '0';         // no dash
  bytes_[trailer() + kOffParentUuid] = 0xFF;     // binary garbage
  bytes_[kOffUuid + 36] = 'X';                   // header: 37 characters, no NUL
  auto info = ReadLayerInfo(*NewMemReadableFile("poked.lsmt", bytes_));
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->trailer.uuid, "");
  EXPECT_EQ(info->trailer.parent_uuid, "");
  EXPECT_EQ(info->header.uuid, "");
  EXPECT_EQ(info->segments.size(), 21u);
}

TEST_F(Layer0Corruption, PaddingTagsAndOnDiskTagsAreIgnored) {
  Segment s = GetEntry(2);
  s.tag = 9;
  PokeEntry(2, s);
  auto info = ReadLayerInfo(*NewMemReadableFile("tagged", bytes_));
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->segments[2].tag, 0);
}

}  // namespace
}  // namespace ovbd::lsmt
