// Stacks of layers read as one device: the golden images, unaligned reads, limits, writes.
#include <gtest/gtest.h>

#include <random>

#include "lsmt/lsmt_test_util.h"

namespace ovbd::lsmt {
namespace {

using namespace ovbd::lsmt::testing;
using ::ovbd::testing::MakeData;
using ::ovbd::testing::Md5OfFile;

TEST(Image, Layer0Alone) {
  auto image = MustOpenImage({Vector("layer0.lsmt")});
  ASSERT_NE(image, nullptr);
  EXPECT_EQ(image->Size(), 67108864u);
  EXPECT_EQ(image->layer_count(), 1u);
  EXPECT_FALSE(image->writable());
  EXPECT_EQ(Md5OfFile(*image), kMd5Layer0);
}

TEST(Image, Layer0AndLayer1) {
  auto image = MustOpenImage({Vector("layer0.lsmt"), Vector("layer1.lsmt")});
  ASSERT_NE(image, nullptr);
  EXPECT_EQ(Md5OfFile(*image), kMd5Layer01);
  EXPECT_EQ(image->bottom_meta().uuid, kU0);
  EXPECT_EQ(image->top_meta().uuid, kU1);
}

TEST(Image, Layer1Alone) {
  auto image = MustOpenImage({Vector("layer1.lsmt")});
  ASSERT_NE(image, nullptr);
  EXPECT_EQ(Md5OfFile(*image), kMd5Layer1Alone);
}

TEST(Image, Layer0WithTheLiveRwLayer) {
  RwDisks disks = Layer1RwCopy();
  auto image = MustOpenImage({Vector("layer0.lsmt")}, MustOpenRw(disks));
  ASSERT_NE(image, nullptr);
  EXPECT_TRUE(image->writable());
  EXPECT_EQ(image->layer_count(), 2u);
  EXPECT_EQ(Md5OfFile(*image), kMd5Layer01);
}

TEST(Image, Layer0WithTheSealedLayer1) {
  auto image = MustOpenImage({Vector("layer0.lsmt"), Vector("layer1.sealed")});
  ASSERT_NE(image, nullptr);
  EXPECT_EQ(Md5OfFile(*image), kMd5Layer01);
}

TEST(Image, UnalignedReadsMatchTheFlatDevice) {
  auto image = MustOpenImage({Vector("layer0.lsmt"), Vector("layer1.lsmt")});
  ASSERT_NE(image, nullptr);
  std::vector<uint8_t> flat(image->Size());
  ASSERT_TRUE(image->ReadAt(0, flat).ok());
  std::mt19937_64 rng(7);
  for (int i = 0; i < 300; i++) {
    size_t n = 1 + rng() % (i % 3 == 0 ? 300000 : 3000);
    uint64_t offset = rng() % (flat.size() - n + 1);
    std::vector<uint8_t> got(n);
    ASSERT_TRUE(image->ReadAt(offset, got).ok());
    ASSERT_TRUE(std::equal(got.begin(), got.end(), flat.begin() + offset)) << offset << "+" << n;
  }
}

TEST(Image, ReadsPastTheVirtualSizeAreOutOfRange) {
  auto image = MustOpenImage({Vector("layer0.lsmt")});
  ASSERT_NE(image, nullptr);
  std::vector<uint8_t> buf(2);
  EXPECT_EQ(image->ReadAt(image->Size() - 1, buf).code(), Code::kOutOfRange);
  EXPECT_EQ(image->ReadAt(~0ULL, buf).code(), Code::kOutOfRange);
  EXPECT_TRUE(image->ReadAt(image->Size(), std::span<uint8_t>()).ok());
  EXPECT_TRUE(image->ReadAt(image->Size() - 2, buf).ok());
}

TEST(Image, ReadOnlyImageRefusesWrites) {
  auto image = MustOpenImage({Vector("layer0.lsmt")});
  ASSERT_NE(image, nullptr);
  EXPECT_EQ(image->Write(0, MakeData(1, 512)).code(), Code::kNotSupported);
  EXPECT_EQ(image->Discard(0, 512).code(), Code::kNotSupported);
  EXPECT_TRUE(image->Flush().ok());
}

TEST(Image, SegmentsOfAStackCarryTopFirstTags) {
  RwDisks disks;
  auto upper = MustCreateRw(disks, 64 << 20);
  ASSERT_TRUE(upper->Write(0, MakeData(1, 512)).ok());
  auto image = MustOpenImage({Vector("layer0.lsmt"), Vector("layer1.lsmt")}, std::move(upper));
  ASSERT_NE(image, nullptr);
  std::vector<Segment> segments = image->Segments();
  ASSERT_FALSE(segments.empty());
  EXPECT_EQ(segments[0], (Segment{0, 1, 8, false, 0}));  // the upper's write
  EXPECT_EQ(segments[1].offset, 1u);                      // layer0's first entry, trimmed
  EXPECT_EQ(segments[1].tag, 2);
  EXPECT_EQ(segments[2].offset, 4u);                      // layer1's first entry
  EXPECT_EQ(segments[2].tag, 1);
  for (size_t i = 1; i < segments.size(); i++) ASSERT_LE(segments[i - 1].end(), segments[i].offset);
}

TEST(Image, WritesGoToTheUpperLayerAndShadowLowers) {
  RwDisks disks;
  auto image = MustOpenImage({Vector("layer0.lsmt")}, MustCreateRw(disks, 64 << 20));
  ASSERT_NE(image, nullptr);
  std::vector<uint8_t> before(8192);
  ASSERT_TRUE(image->ReadAt(0, before).ok());
  std::vector<uint8_t> data = MakeData(5, 1024);
  ASSERT_TRUE(image->Write(1024, data).ok());
  ASSERT_TRUE(image->Discard(4096, 1024).ok());
  ASSERT_TRUE(image->Flush().ok());
  std::vector<uint8_t> expected = before;
  std::copy(data.begin(), data.end(), expected.begin() + 1024);
  std::fill(expected.begin() + 4096, expected.begin() + 5120, 0);
  std::vector<uint8_t> got(8192);
  ASSERT_TRUE(image->ReadAt(0, got).ok());
  EXPECT_EQ(got, expected);
  EXPECT_EQ(image->Write(64 << 20, data).code(), Code::kOutOfRange);
}

TEST(Image, SealUpperMakesTheWritableLayerTheNextLower) {
  RwDisks disks;
  auto image = MustOpenImage({Vector("layer0.lsmt")}, MustCreateRw(disks, 64 << 20));
  ASSERT_NE(image, nullptr);
  std::vector<uint8_t> data = MakeData(7, 8192);
  ASSERT_TRUE(image->Write(1024, data).ok());
  ASSERT_TRUE(image->Discard(65536, 4096).ok());
  std::vector<uint8_t> before(1 << 20);
  ASSERT_TRUE(image->ReadAt(0, before).ok());
  ASSERT_TRUE(image->SealUpper().ok());
  EXPECT_EQ(image->Write(0, data).code(), Code::kInvalidArgument);
  EXPECT_EQ(image->SealUpper().code(), Code::kInvalidArgument);  // sealed once
  std::vector<uint8_t> after(1 << 20);
  ASSERT_TRUE(image->ReadAt(0, after).ok());  // reads go on through the sealed layer
  EXPECT_EQ(after, before);
  // The sealed data file is a read-only layer: stacked under a fresh upper it serves the same.
  RwDisks next;
  std::shared_ptr<const ReadableFile> sealed = disks.DataFile();
  auto image2 = MustOpenImage({Vector("layer0.lsmt"), sealed}, MustCreateRw(next, 64 << 20));
  ASSERT_NE(image2, nullptr);
  ExpectSameContent(*image, *image2);
  EXPECT_TRUE(image2->Write(0, data).ok());
  auto read_only = MustOpenImage({Vector("layer0.lsmt")});
  EXPECT_EQ(read_only->SealUpper().code(), Code::kNotSupported);
}

// An online snapshot's first step: the old upper stays as a frozen layer under a fresh one, read
// from its live index, before it is sealed; then the rebuilt stack reads the sealed file.
TEST(Image, StackedUnderKeepsTheOldUpperAsAFrozenLayer) {
  RwDisks disks;
  auto image = MustOpenImage({Vector("layer0.lsmt")}, MustCreateRw(disks, 64 << 20));
  ASSERT_NE(image, nullptr);
  const std::vector<uint8_t> a = MakeData(1, 8192), b = MakeData(2, 4096);
  ASSERT_TRUE(image->Write(4096, a).ok());
  ASSERT_TRUE(image->Discard(1 << 20, 8192).ok());
  std::vector<uint8_t> before(2 << 20);
  ASSERT_TRUE(image->ReadAt(0, before).ok());

  RwDisks next;
  auto stacked = image->StackedUnder(std::shared_ptr<RwLayer>(MustCreateRw(next, 64 << 20)));
  ASSERT_TRUE(stacked.ok()) << stacked.status().ToString();
  Image& top = **stacked;
  EXPECT_EQ(top.layer_count(), 3u);
  EXPECT_TRUE(top.writable());
  EXPECT_EQ(top.upper().get(), top.upper().get());
  EXPECT_NE(top.upper(), image->upper());
  ExpectSameContent(*image, top);
  // New writes land in the fresh upper only; the frozen layer still serves what it held.
  ASSERT_TRUE(top.Write(8192, b).ok());
  std::vector<uint8_t> expected = before;
  std::copy(b.begin(), b.end(), expected.begin() + 8192);
  std::vector<uint8_t> got(2 << 20);
  ASSERT_TRUE(top.ReadAt(0, got).ok());
  EXPECT_EQ(got, expected);
  ASSERT_TRUE(image->ReadAt(0, got).ok());
  EXPECT_EQ(got, before);
  // Tags: 0 = fresh upper, 1 = frozen, 2 = layer0.
  bool saw_frozen = false, saw_fresh = false;
  for (const Segment& s : top.SegmentsIn(0, 4096)) {
    saw_fresh |= s.tag == 0;
    saw_frozen |= s.tag == 1;
    EXPECT_LE(s.tag, 2);
  }
  EXPECT_TRUE(saw_fresh);
  EXPECT_TRUE(saw_frozen);
  // Sealing the frozen layer keeps its reads, and the rebuilt stack serves the same bytes.
  ASSERT_TRUE(image->SealUpper().ok());
  ASSERT_TRUE(top.ReadAt(0, got).ok());
  EXPECT_EQ(got, expected);
  auto rebuilt = OpenStack({LowerLayer{Vector("layer0.lsmt")}, LowerLayer{disks.DataFile()}}, top.upper());
  ASSERT_TRUE(rebuilt.ok()) << rebuilt.status().ToString();
  ExpectSameContent(top, **rebuilt);
  ASSERT_TRUE(top.Flush().ok());  // a frozen, sealed layer syncs as a no-op
}

TEST(Image, StackedUnderARawImageOrAStackWithoutUpper) {
  auto image = MustOpenImage({Vector("layer0.lsmt")});
  RwDisks next;
  auto stacked = image->StackedUnder(std::shared_ptr<RwLayer>(MustCreateRw(next, 64 << 20)));
  ASSERT_TRUE(stacked.ok());
  EXPECT_EQ((*stacked)->layer_count(), 2u);
  ExpectSameContent(*image, **stacked);
  EXPECT_EQ(image->StackedUnder(nullptr).status().code(), Code::kInvalidArgument);
}

TEST(Image, ResizeGrowsTheUpperAndReopenedSeesIt) {
  RwDisks disks;
  auto image = MustOpenImage({Vector("layer0.lsmt")}, MustCreateRw(disks, 64 << 20));
  ASSERT_NE(image, nullptr);
  const std::vector<uint8_t> a = MakeData(3, 4096);
  EXPECT_EQ(image->Write(64 << 20, a).code(), Code::kOutOfRange);
  std::shared_ptr<RwLayer> upper = image->upper();
  EXPECT_EQ(upper->Resize(100).code(), Code::kInvalidArgument);
  EXPECT_EQ(upper->Resize(0).code(), Code::kInvalidArgument);
  ASSERT_TRUE(upper->Resize(96 << 20).ok());
  EXPECT_EQ(image->Size(), 64u << 20);  // an image keeps the size it was made with
  std::unique_ptr<Image> grown = image->Reopened();
  EXPECT_EQ(grown->Size(), 96u << 20);
  ASSERT_TRUE(grown->Write(64 << 20, a).ok());
  std::vector<uint8_t> got(4096);
  ASSERT_TRUE(grown->ReadAt(64 << 20, got).ok());
  EXPECT_EQ(got, a);
  ASSERT_TRUE(grown->ReadAt(90 << 20, got).ok());
  EXPECT_EQ(got, std::vector<uint8_t>(4096, 0));
  ASSERT_TRUE(grown->Flush().ok());
  // Durable: a reopen of the files reads the new size from the index header; a seal keeps it.
  auto reopened = MustOpenRw(disks);
  ASSERT_NE(reopened, nullptr);
  EXPECT_EQ(reopened->VirtualSize(), 96u << 20);
  EXPECT_EQ(reopened->meta().virtual_size, 96u << 20);
  ASSERT_TRUE(reopened->Seal().ok());
  EXPECT_EQ(reopened->Resize(128 << 20).code(), Code::kInvalidArgument);
  auto sealed = ReadLayerInfo(*disks.DataFile());
  ASSERT_TRUE(sealed.ok()) << sealed.status().ToString();
  EXPECT_EQ(sealed->trailer.virtual_size, 96u << 20);
}

TEST(Image, RwLayerWithoutSizeTakesTheLowerSize) {
  RwDisks disks;
  MustCreateRw(disks, 4096);
  // Make the index header say 0 (as an RW layer created without size would).
  std::fill(disks.index->bytes.begin() + 48, disks.index->bytes.begin() + 56, 0);
  auto image = MustOpenImage({Vector("layer0.lsmt")}, MustOpenRw(disks));
  ASSERT_NE(image, nullptr);
  EXPECT_EQ(image->Size(), 67108864u);
}

// Records the Prefetch hints a lower receives (reads pass through).
class HintRecorder final : public ReadableFile {
 public:
  explicit HintRecorder(std::shared_ptr<const ReadableFile> base) : base_(std::move(base)) {}
  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) const override { return base_->ReadAt(offset, buf); }
  uint64_t Size() const override { return base_->Size(); }
  const std::string& Name() const override { return base_->Name(); }
  void Prefetch(uint64_t offset, uint64_t length) const override { hints.emplace_back(offset, offset + length); }
  mutable std::vector<std::pair<uint64_t, uint64_t>> hints;

 private:
  std::shared_ptr<const ReadableFile> base_;
};

// A read over several lower segments hints each segment's blob range to its layer first (close
// ones of one layer merged), so remote layers can fetch them in parallel; a one-segment read
// hints nothing; the bytes are the same either way.
TEST(Image, MultiSegmentReadsHintTheirLowerRanges) {
  auto l0 = std::make_shared<HintRecorder>(Vector("layer0.lsmt"));
  auto l1 = std::make_shared<HintRecorder>(Vector("layer1.lsmt"));
  auto image = MustOpenImage({l0, l1});
  ASSERT_NE(image, nullptr);
  auto plain = MustOpenImage({Vector("layer0.lsmt"), Vector("layer1.lsmt")});
  const uint64_t offset = 3000, length = 1 << 20;
  std::vector<uint8_t> got(length), want(length);
  ASSERT_TRUE(image->ReadAt(offset, got).ok());
  ASSERT_TRUE(plain->ReadAt(offset, want).ok());
  EXPECT_EQ(got, want);
  std::vector<Segment> segments = image->SegmentsIn(offset / 512, (offset + length + 511) / 512 - offset / 512);
  size_t per_layer[2] = {0, 0};
  for (const Segment& s : segments) {
    if (s.zeroed) continue;
    const HintRecorder& layer = s.tag == 0 ? *l1 : *l0;  // tag 0 = top lower
    per_layer[s.tag]++;
    const uint64_t begin = std::max<uint64_t>(s.offset * 512, offset);
    const uint64_t end = std::min<uint64_t>(s.end() * 512, offset + length);
    const uint64_t blob = s.moffset * 512 + (begin - s.offset * 512);
    bool covered = false;
    for (auto [b, e] : layer.hints) covered |= b <= blob && blob + (end - begin) <= e;
    EXPECT_TRUE(covered) << "segment at sector " << s.offset << " of tag " << int(s.tag);
  }
  ASSERT_GE(per_layer[0] + per_layer[1], 2u) << "the read must span several segments";
  EXPECT_LE(l1->hints.size(), per_layer[0]);
  EXPECT_LE(l0->hints.size(), per_layer[1]);
  EXPECT_LT(l0->hints.size() + l1->hints.size(), per_layer[0] + per_layer[1]);  // some merged
  l0->hints.clear();
  l1->hints.clear();
  const Segment one = segments.front();
  std::vector<uint8_t> small(512);
  ASSERT_TRUE(image->ReadAt(one.offset * 512, small).ok());
  EXPECT_TRUE(l0->hints.empty() && l1->hints.empty());
}

TEST(Image, LayerLimits) {
  EXPECT_EQ(OpenImage({}).status().code(), Code::kInvalidArgument);
  // A tiny valid blob, stacked up to the limit and past it.
  auto raw = NewMemReadableFile("raw", MakeData(3, 4096));
  auto storage = std::make_shared<MemStorage>();
  auto out = NewMemWritableFile("tiny.lsmt", storage);
  ASSERT_TRUE(ImportRaw(*raw, out.get(), CommitOptions{}).ok());
  ASSERT_TRUE(out->Close().ok());
  std::shared_ptr<const ReadableFile> tiny = NewMemReadableFile("tiny.lsmt", storage->bytes);
  std::vector<std::shared_ptr<const ReadableFile>> lowers(kMaxStackLayers, tiny);
  auto full = OpenImage(lowers);
  ASSERT_TRUE(full.ok()) << full.status().ToString();
  EXPECT_EQ((*full)->layer_count(), 255u);
  EXPECT_EQ(Md5OfFile(**full), Md5OfFile(*raw));

  lowers.push_back(tiny);
  EXPECT_EQ(OpenImage(lowers).status().code(), Code::kInvalidArgument);
  lowers.pop_back();
  // 255 read-only layers plus a writable one on top is the largest stack (tags 0..255).
  RwDisks disks;
  auto with_upper = OpenImage(lowers, MustCreateRw(disks, 4096));
  ASSERT_TRUE(with_upper.ok()) << with_upper.status().ToString();
  EXPECT_EQ((*with_upper)->layer_count(), 256u);
  std::vector<uint8_t> sector = MakeData(4, 512);
  ASSERT_TRUE((*with_upper)->Write(0, sector).ok());
  std::vector<uint8_t> got(4096);
  ASSERT_TRUE((*with_upper)->ReadAt(0, got).ok());
  EXPECT_TRUE(std::equal(sector.begin(), sector.end(), got.begin()));
  std::vector<uint8_t> rest(3584);
  ASSERT_TRUE(raw->ReadAt(512, rest).ok());
  EXPECT_TRUE(std::equal(rest.begin(), rest.end(), got.begin() + 512));
}

// OpenStack (raw lowers allowed) has the same cap as OpenImage: 255 read-only layers of any kind
// plus an upper open; a 256th lower is InvalidArgument with or without the upper.
TEST(Image, OpenStackCapCountsOnlyTheReadOnlyLayers) {
  std::shared_ptr<const ReadableFile> raw = NewMemReadableFile("raw", MakeData(5, 4096));
  auto storage = std::make_shared<MemStorage>();
  auto out = NewMemWritableFile("tiny.lsmt", storage);
  ASSERT_TRUE(ImportRaw(*raw, out.get(), CommitOptions{}).ok());
  ASSERT_TRUE(out->Close().ok());
  std::shared_ptr<const ReadableFile> tiny = NewMemReadableFile("tiny.lsmt", storage->bytes);
  std::vector<LowerLayer> lowers;
  for (size_t i = 0; i < kMaxStackLayers; i++) lowers.push_back(LowerLayer{i % 2 ? tiny : raw, i % 2 == 0});
  RwDisks disks;
  auto full = OpenStack(lowers, MustCreateRw(disks, 4096));
  ASSERT_TRUE(full.ok()) << full.status().ToString();
  EXPECT_EQ((*full)->layer_count(), 256u);
  EXPECT_EQ(Md5OfFile(**full), Md5OfFile(*raw));
  auto ro = OpenStack(lowers);
  ASSERT_TRUE(ro.ok()) << ro.status().ToString();
  EXPECT_EQ((*ro)->layer_count(), 255u);

  lowers.push_back(LowerLayer{raw, true});
  RwDisks more;
  auto over = OpenStack(lowers, MustCreateRw(more, 4096));
  EXPECT_EQ(over.status().code(), Code::kInvalidArgument) << over.status().ToString();
  EXPECT_NE(over.status().message().find("256 read-only layers exceed the limit of 255"), std::string::npos)
      << over.status().ToString();
  EXPECT_EQ(OpenStack(lowers).status().code(), Code::kInvalidArgument);
  EXPECT_TRUE(CheckLayerCount(kMaxStackLayers).ok());
  EXPECT_EQ(CheckLayerCount(kMaxStackLayers + 1).code(), Code::kInvalidArgument);
}

TEST(Image, ABadLowerIsNamed) {
  std::vector<uint8_t> bytes = VectorBytes("layer1.lsmt");
  bytes[bytes.size() - kHeaderSize] = 0;  // trailer magic
  auto status = OpenImage({Vector("layer0.lsmt"), NewMemReadableFile("broken.lsmt", bytes)}).status();
  EXPECT_TRUE(status.IsCorruption());
  EXPECT_NE(status.message().find("lower layer 1"), std::string::npos) << status.ToString();
  EXPECT_NE(status.message().find("broken.lsmt"), std::string::npos) << status.ToString();
}

}  // namespace
}  // namespace ovbd::lsmt
