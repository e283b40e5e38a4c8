// Commit and ImportRaw. The key checks are byte-for-byte against blobs made by overlaybd-commit.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "base/checked.h"
#include "lsmt/format.h"
#include "lsmt/lsmt_test_util.h"

namespace ovbd::lsmt {
namespace {

using namespace ovbd::lsmt::testing;
using ::ovbd::testing::MakeData;
using ::ovbd::testing::Md5OfFile;

CommitOptions Options(std::optional<std::string> uuid, std::string tag) {
  CommitOptions options;
  options.uuid = std::move(uuid);
  options.user_tag = std::move(tag);
  return options;
}

std::shared_ptr<const ReadableFile> AsFile(const std::vector<uint8_t>& bytes, const std::string& name) {
  return NewMemReadableFile(name, bytes);
}

TEST(Commit, RwPairIsByteIdenticalToOverlaybdCommit) {
  RwDisks disks = Layer1RwCopy();
  auto image = MustOpenImage({}, MustOpenRw(disks));
  ASSERT_NE(image, nullptr);
  std::vector<uint8_t> blob = CommitToBytes(*image, Options(kU1, "layer1"));
  EXPECT_EQ(blob.size(), 1464320u);
  EXPECT_EQ(Md5(blob), kMd5Layer1Blob);
}

TEST(Commit, SealedFileIsByteIdenticalToOverlaybdCommit) {
  auto image = MustOpenImage({Vector("layer1.sealed")});
  ASSERT_NE(image, nullptr);
  // The parent (U0) comes from the sealed file's header.
  std::vector<uint8_t> blob = CommitToBytes(*image, Options(kU1, "layer1"));
  EXPECT_EQ(Md5(blob), kMd5Layer1Blob);
}

TEST(Commit, RecommittingACommittedBlobReproducesIt) {
  auto image = MustOpenImage({Vector("layer0.lsmt")});
  ASSERT_NE(image, nullptr);
  EXPECT_EQ(Md5(CommitToBytes(*image, Options(kU0, "layer0"))), kMd5Layer0Blob);
}

TEST(Commit, MergeOfLayer0AndLayer1MatchesOverlaybdMerge) {
  auto image = MustOpenImage({Vector("layer0.lsmt"), Vector("layer1.lsmt")});
  ASSERT_NE(image, nullptr);
  std::vector<uint8_t> blob = CommitToBytes(*image, CommitOptions{});
  auto info = ReadLayerInfo(*AsFile(blob, "merged"));
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->segments.size(), 41u);
  EXPECT_EQ(info->trailer.uuid, "");
  EXPECT_EQ(info->trailer.parent_uuid, "");
  // The on-disk tags keep the source layer (0 = top).
  bool tag0 = false, tag1 = false;
  for (size_t i = 0; i < info->segments.size(); i++) {
    uint8_t tag = blob[info->trailer.index_offset + i * kSegmentBytes + 15];
    tag0 |= tag == 0;
    tag1 |= tag == 1;
  }
  EXPECT_TRUE(tag0 && tag1);
  EXPECT_EQ(Md5(blob), kMd5Merged01Blob);
  EXPECT_EQ(Md5OfFile(*MustOpenImage({AsFile(blob, "merged")})), kMd5Layer01);
}

TEST(Commit, UpperOverLowersFlattensToTheSameDevice) {
  RwDisks disks = Layer1RwCopy();
  auto image = MustOpenImage({Vector("layer0.lsmt")}, MustOpenRw(disks));
  ASSERT_NE(image, nullptr);
  std::vector<uint64_t> progress;
  uint64_t total = 0;
  CommitOptions options;
  options.progress = [&](uint64_t done, uint64_t all) {
    progress.push_back(done);
    total = all;
  };
  std::vector<uint8_t> blob = CommitToBytes(*image, options);
  auto flat = MustOpenImage({AsFile(blob, "flat")});
  ASSERT_NE(flat, nullptr);
  EXPECT_EQ(Md5OfFile(*flat), kMd5Layer01);
  EXPECT_EQ(flat->top_meta().parent_uuid, "");  // from layer0, the bottom
  EXPECT_EQ(flat->top_meta().virtual_size, 64u << 20);
  ASSERT_FALSE(progress.empty());
  EXPECT_TRUE(std::is_sorted(progress.begin(), progress.end()));
  EXPECT_EQ(progress.back(), total);
  auto info = ReadLayerInfo(*AsFile(blob, "flat"));
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(total, info->trailer.index_offset - kHeaderSize);
}

TEST(Commit, OptionsAreValidatedAndApplied) {
  RwDisks disks;
  auto image = MustOpenImage({}, MustCreateRw(disks, 1 << 20));
  ASSERT_NE(image, nullptr);
  auto storage = std::make_shared<MemStorage>();
  auto out = NewMemWritableFile("out", storage);
  CommitOptions bad;
  bad.user_tag = std::string(257, 'x');
  EXPECT_EQ(Commit(*image, out.get(), bad).code(), Code::kInvalidArgument);
  bad = Options("not-a-uuid", "");
  EXPECT_EQ(Commit(*image, out.get(), bad).code(), Code::kInvalidArgument);

  CommitOptions good = Options("1a1b1c1d-7777-4888-9999-aaaabbbbcccc", std::string(256, 't'));
  good.parent_uuid = kU0;
  std::vector<uint8_t> blob = CommitToBytes(*image, good);
  auto info = ReadLayerInfo(*AsFile(blob, "empty"));
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->header.flags, 0x07u);
  EXPECT_EQ(info->trailer.uuid, kU1);
  EXPECT_EQ(info->trailer.parent_uuid, kU0);
  EXPECT_EQ(info->header.user_tag, std::string(256, 't'));
  EXPECT_EQ(info->trailer.virtual_size, 1u << 20);
  EXPECT_TRUE(info->segments.empty());
  EXPECT_EQ(blob.size(), 2 * kHeaderSize);
}

TEST(Commit, MergedEntriesStayBelow16383Sectors) {
  RwDisks disks;
  auto layer = MustCreateRw(disks, 48 << 20);
  std::vector<uint8_t> data = MakeData(1, 1 << 20);
  for (uint64_t at = 0; at < (32 << 20); at += data.size()) ASSERT_TRUE(layer->Write(at, data).ok());
  ASSERT_TRUE(layer->Discard(32 << 20, 16 << 20).ok());
  auto image = MustOpenImage({}, std::move(layer));
  ASSERT_NE(image, nullptr);
  std::vector<uint8_t> blob = CommitToBytes(*image, CommitOptions{});
  auto info = ReadLayerInfo(*AsFile(blob, "big"));
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  uint64_t data_sectors = 0, zero_sectors = 0;
  for (const Segment& s : info->segments) {
    EXPECT_LE(s.length, kMaxSegmentLength);
    (s.zeroed ? zero_sectors : data_sectors) += s.length;
  }
  EXPECT_EQ(data_sectors, (32u << 20) / 512);
  EXPECT_EQ(zero_sectors, (16u << 20) / 512);
  // Data is recorded in 64-sector pieces merged while the sum stays below 16383: 65536 sectors
  // become 4 x 16320 + 256. The discard records (16383, 16383, 2) cannot merge at all.
  EXPECT_EQ(info->segments.size(), 5u + 3u);
  EXPECT_EQ(info->segments[0].length, 16320u);
  EXPECT_EQ(info->segments[4].length, 256u);
  ExpectSameContent(*MustOpenImage({AsFile(blob, "big")}), *image);
}

TEST(ImportRaw, ZeroBlocksBecomeHoles) {
  std::vector<uint8_t> raw = MakeData(4, 5 * 4096 + 700);  // last block partial, size not 512-aligned
  std::fill(raw.begin() + 4096, raw.begin() + 3 * 4096, 0);
  std::fill(raw.begin() + 4 * 4096, raw.begin() + 4 * 4096 + 100, 0);  // partly zero: still data
  auto file = NewMemReadableFile("disk.raw", raw);
  auto storage = std::make_shared<MemStorage>();
  auto out = NewMemWritableFile("disk.lsmt", storage);
  CommitOptions options = Options(kU0, "import");
  ASSERT_TRUE(ImportRaw(*file, out.get(), options).ok());
  ASSERT_TRUE(out->Close().ok());
  auto info = ReadLayerInfo(*AsFile(storage->bytes, "disk.lsmt"));
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->trailer.virtual_size, RoundUp(raw.size(), 512));
  EXPECT_EQ(info->trailer.uuid, kU0);
  EXPECT_EQ(info->trailer.user_tag, "import");
  EXPECT_EQ(info->header.flags, 0x07u);
  EXPECT_EQ(info->trailer.index_size % 256, 0u);
  // Blocks 0 | hole 1-2 | 3, 4, partial 5 (700 bytes -> 2 sectors) merged.
  std::vector<Segment> expected = {{0, 8, 8}, {24, 8 + 8 + 2, 16}};
  EXPECT_EQ(info->segments, expected);
  auto image = MustOpenImage({AsFile(storage->bytes, "disk.lsmt")});
  ASSERT_NE(image, nullptr);
  std::vector<uint8_t> got(raw.size());
  ASSERT_TRUE(image->ReadAt(0, got).ok());
  EXPECT_EQ(got, raw);
}

TEST(ImportRaw, PlainVectorRoundTrips) {
  auto raw = Vector("plain.bin");
  auto storage = std::make_shared<MemStorage>();
  auto out = NewMemWritableFile("plain.lsmt", storage);
  uint64_t last = 0;
  CommitOptions options;
  options.progress = [&](uint64_t done, uint64_t total) {
    EXPECT_GE(done, last);
    EXPECT_EQ(total, raw->Size());
    last = done;
  };
  ASSERT_TRUE(ImportRaw(*raw, out.get(), options).ok());
  EXPECT_EQ(last, raw->Size());
  auto image = MustOpenImage({AsFile(storage->bytes, "plain.lsmt")});
  ASSERT_NE(image, nullptr);
  std::vector<uint8_t> got(raw->Size());
  ASSERT_TRUE(image->ReadAt(0, got).ok());
  EXPECT_EQ(Md5(got), "e531f6e154d34b9c6f65149d3b961bc9");
}

// Rebuilds both RW layers from the ops with gen_ops.py's payload and commits them as the reference
// did: the results must be the golden blobs byte for byte.
class OpsReplay : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access("/usr/bin/python3", X_OK) != 0) GTEST_SKIP() << "gen_ops.py needs /usr/bin/python3";
    auto result = ::ovbd::testing::RunCommand("/usr/bin/python3 " + ::ovbd::testing::VectorPath("gen_ops.py") +
                                              " " + dir_.path() + " > /dev/null");
    ASSERT_EQ(result.exit_code, 0) << "gen_ops.py failed: " << result.output;
    payload_ = ::ovbd::testing::ReadFileBytes(dir_.Join("payload.bin"));
  }

  void Apply(const std::string& ops, RwLayer* layer) {
    std::ifstream in(::ovbd::testing::VectorPath(ops));
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      char op = 0;
      uint64_t offset = 0, length = 0, at = 0;
      fields >> op >> offset >> length;
      if (op == 'W') {
        fields >> at;
        ASSERT_LE(at + length, payload_.size());
        ASSERT_TRUE(layer->Write(offset, std::span<const uint8_t>(&payload_[at], length)).ok());
      } else {
        ASSERT_EQ(op, 'Z');
        ASSERT_TRUE(layer->Discard(offset, length).ok());
      }
    }
  }

  std::vector<uint8_t> Build(const std::string& ops, const char* rw_uuid, const char* parent,
                             const char* uuid, const char* tag, RwDisks* disks) {
    CreateOptions create;
    create.virtual_size = 64 << 20;
    create.uuid = rw_uuid;
    create.parent_uuid = parent;
    auto layer = CreateRwLayer(disks->DataFile(), disks->IndexFile(), create);
    EXPECT_TRUE(layer.ok());
    if (!layer.ok()) return {};
    Apply(ops, layer->get());
    auto image = MustOpenImage({}, std::move(layer).value());
    return image ? CommitToBytes(*image, Options(uuid, tag)) : std::vector<uint8_t>{};
  }

  ::ovbd::testing::TempDir dir_;
  std::vector<uint8_t> payload_;
};

TEST_F(OpsReplay, Layer0And1CommitToTheGoldenBlobs) {
  RwDisks l0, l1;
  EXPECT_EQ(Md5(Build("layer0.ops", "00000000-0000-4000-8000-0000000000A0", "", kU0, "layer0", &l0)),
            kMd5Layer0Blob);
  EXPECT_EQ(Md5(Build("layer1.ops", kR1, kU0, kU1, "layer1", &l1)), kMd5Layer1Blob);
  // The RW pair itself matches the reference's, byte for byte.
  RwDisks golden = Layer1RwCopy();
  EXPECT_TRUE(l1.data->bytes == golden.data->bytes);
  EXPECT_TRUE(l1.index->bytes == golden.index->bytes);
}

}  // namespace
}  // namespace ovbd::lsmt

namespace ovbd::lsmt {
namespace {

using namespace ovbd::lsmt::testing;

// overlaybd-commit copies data segments in 32 KiB (64-sector) steps and records one entry per step
// before merging neighbours while the sum stays below 16383 sectors. Runs longer than 16320
// sectors therefore split where the 64-sector pieces stop fitting, not at 16382.
TEST(Commit, LongRunsSplitLikeTheReference) {
  RwDisks disks;
  auto rw = MustCreateRw(disks, 64 << 20);
  ASSERT_NE(rw, nullptr);
  // One write of 16383 sectors, then two contiguous writes of 100 and 16300 sectors further on.
  std::vector<uint8_t> big = ::ovbd::testing::MakeData(1, 16383 * 512);
  ASSERT_TRUE(rw->Write(0, big).ok());
  const uint64_t b = 20000;
  ASSERT_TRUE(rw->Write(b * 512, std::span(big).first(100 * 512)).ok());
  ASSERT_TRUE(rw->Write((b + 100) * 512, std::span(big).first(16300 * 512)).ok());
  auto image = MustOpenImage({}, std::move(rw));
  ASSERT_NE(image, nullptr);
  std::vector<uint8_t> blob = CommitToBytes(*image, CommitOptions{});
  auto info = ReadLayerInfo(*NewMemReadableFile("blob", blob));
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  std::vector<uint32_t> lengths;
  for (const Segment& s : info->segments) lengths.push_back(s.length);
  EXPECT_EQ(lengths, (std::vector<uint32_t>{16320, 63, 16356, 44}));
}

}  // namespace
}  // namespace ovbd::lsmt
