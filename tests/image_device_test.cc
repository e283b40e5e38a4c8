// Tests of the BlockDevice adapters: ImageDevice over real stacks (golden vectors, raw ZFile
// lowers, an in-memory upper) against a flat model, and the MemDevice fake.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "ovbd/block_device.h"
#include "ovbd/image.h"
#include "ovbd/lsmt.h"
#include "testutil.h"

namespace ovbd {
namespace {

using testing::ReadFileBytes;
using testing::VectorPath;

std::unique_ptr<lsmt::RwLayer> MemUpper(uint64_t size) {
  lsmt::CreateOptions options;
  options.virtual_size = size;
  auto layer = lsmt::CreateRwLayer(NewMemFile("up.data"), NewMemFile("up.index"), options);
  EXPECT_TRUE(layer.ok()) << layer.status().ToString();
  return std::move(layer).value();
}

// layer0.lsmt (golden) under a fresh in-memory upper of the same size.
std::shared_ptr<lsmt::Image> Layer0WithUpper() {
  auto lower = OpenReadableFile(VectorPath("layer0.lsmt"));
  EXPECT_TRUE(lower.ok());
  std::shared_ptr<const ReadableFile> file = std::move(lower).value();
  auto info = lsmt::ReadLayerInfo(*file);
  EXPECT_TRUE(info.ok());
  auto img = lsmt::OpenImage({file}, MemUpper(info->trailer.virtual_size));
  EXPECT_TRUE(img.ok()) << img.status().ToString();
  return std::move(img).value();
}

std::vector<uint8_t> ReadAll(BlockDevice& dev) {
  std::vector<uint8_t> out(dev.Size());
  EXPECT_TRUE(dev.Read(0, out).ok());
  return out;
}

// Checks that Extents covers the range exactly and that hole/zero runs read as zeros.
void CheckExtents(BlockDevice& dev, const std::vector<uint8_t>& model, uint64_t offset, uint64_t length) {
  auto extents = dev.Extents(offset, length);
  ASSERT_TRUE(extents.ok()) << extents.status().ToString();
  uint64_t at = offset;
  for (const Extent& e : *extents) {
    ASSERT_GT(e.length, 0u);
    if (e.zero) {
      EXPECT_TRUE(std::all_of(model.begin() + at, model.begin() + at + e.length, [](uint8_t b) { return b == 0; }))
          << "zero extent at " << at << " length " << e.length << " holds data";
    }
    at += e.length;
  }
  EXPECT_EQ(at, offset + length);
}

TEST(ImageDeviceTest, ReadOnlyStackRefusesWritesAndReadsGoldenContent) {
  auto img = image::OpenImage({VectorPath("layer0.lsmt"), VectorPath("layer1.lz4-4k-crc.zfile.tar")}, std::nullopt);
  ASSERT_TRUE(img.ok()) << img.status().ToString();
  auto dev = NewImageDevice(std::shared_ptr<lsmt::Image>(std::move(img).value()));
  const BlockDeviceCaps caps = dev->Capabilities();
  EXPECT_FALSE(caps.writable);
  EXPECT_FALSE(caps.can_trim);
  EXPECT_TRUE(caps.can_extents);
  std::vector<uint8_t> one(4096, 1);
  EXPECT_EQ(dev->Write(0, one, false).code(), Code::kNotSupported);
  EXPECT_EQ(dev->Zero(0, 4096, false, true).code(), Code::kNotSupported);
  EXPECT_EQ(dev->Flush().code(), Code::kNotSupported);
  std::vector<uint8_t> buf(8);
  EXPECT_EQ(dev->Read(dev->Size() - 4, buf).code(), Code::kOutOfRange);
  CheckExtents(*dev, ReadAll(*dev), 0, dev->Size());
}

TEST(ImageDeviceTest, ReadOnlyOptionWinsOverAnUpper) {
  auto dev = NewImageDevice(Layer0WithUpper(), ImageDeviceOptions{true});
  EXPECT_FALSE(dev->Capabilities().writable);
  std::vector<uint8_t> one(512, 1);
  EXPECT_EQ(dev->Write(0, one, false).code(), Code::kNotSupported);
}

// Random unaligned writes, trims, zeroes (with and without holes) and flushes against a model.
TEST(ImageDeviceTest, RandomOperationsMatchAFlatModel) {
  auto dev = NewImageDevice(Layer0WithUpper());
  ASSERT_TRUE(dev->Capabilities().writable);
  std::vector<uint8_t> model = ReadAll(*dev);
  std::mt19937_64 rng(7);
  const uint64_t size = dev->Size();
  for (int i = 0; i < 400; i++) {
    const uint64_t offset = rng() % size;
    const uint64_t length = std::min<uint64_t>(size - offset, 1 + rng() % 20000);
    switch (rng() % 5) {
      case 0:
      case 1: {
        std::vector<uint8_t> data = testing::MakeData(rng(), length);
        ASSERT_TRUE(dev->Write(offset, data, rng() % 8 == 0).ok());
        std::copy(data.begin(), data.end(), model.begin() + offset);
        break;
      }
      case 2:
        ASSERT_TRUE(dev->Trim(offset, length, false).ok());
        std::fill_n(model.begin() + offset, length, 0);
        break;
      case 3:
        ASSERT_TRUE(dev->Zero(offset, length, false, rng() % 2 == 0).ok());
        std::fill_n(model.begin() + offset, length, 0);
        break;
      default:
        ASSERT_TRUE(dev->Flush().ok());
    }
  }
  EXPECT_TRUE(ReadAll(*dev) == model);
  CheckExtents(*dev, model, 0, size);
  CheckExtents(*dev, model, 1234, 56789);
  const DeviceStats stats = dev->Stats();
  EXPECT_GT(stats.writes, 0u);
  EXPECT_GT(stats.bytes_written, 0u);
  EXPECT_GT(stats.trims, 0u);
}

// FirstExtents(k) is the first k runs of Extents, whatever the window edges it walked.
TEST(ImageDeviceTest, FirstExtentsIsAPrefixOfExtents) {
  auto img = image::OpenImage({VectorPath("layer0.lsmt"), VectorPath("layer1.lsmt")}, std::nullopt);
  ASSERT_TRUE(img.ok()) << img.status().ToString();
  auto dev = NewImageDevice(std::shared_ptr<lsmt::Image>(std::move(img).value()));
  for (uint64_t offset : {0ull, 4096ull, 3000000ull}) {
    auto all = dev->Extents(offset, dev->Size() - offset);
    ASSERT_TRUE(all.ok());
    ASSERT_GT(all->size(), 3u);
    for (size_t k : {1u, 2u, 3u, 50u, 100000u}) {
      auto first = dev->FirstExtents(offset, dev->Size() - offset, k);
      ASSERT_TRUE(first.ok());
      const size_t want = std::min(k, all->size());
      ASSERT_EQ(first->size(), want) << "offset " << offset << " k " << k;
      EXPECT_TRUE(std::equal(first->begin(), first->end(), all->begin())) << "offset " << offset << " k " << k;
    }
  }
}

TEST(ImageDeviceTest, ZeroedRangesAreHolesAndNoHoleZeroesAreData) {
  auto dev = NewImageDevice(Layer0WithUpper());
  ASSERT_TRUE(dev->Zero(0, 1 << 20, false, true).ok());
  ASSERT_TRUE(dev->Zero(1 << 20, 1 << 20, false, false).ok());
  auto extents = dev->Extents(0, 2 << 20);
  ASSERT_TRUE(extents.ok());
  ASSERT_EQ(extents->size(), 2u);
  EXPECT_EQ((*extents)[0], (Extent{1 << 20, true, true}));
  EXPECT_EQ((*extents)[1], (Extent{1 << 20, false, false}));
}

TEST(ImageDeviceTest, RawZfileLowerUnderAWritableUpper) {
  auto zfile = image::OpenLayerPath(VectorPath("plain.zstd-8k-crc.zfile"));
  ASSERT_TRUE(zfile.ok()) << zfile.status().ToString();
  ASSERT_FALSE(zfile->is_lsmt);
  const uint64_t size = (zfile->content->Size() + 511) / 512 * 512;
  auto img = lsmt::OpenStack({lsmt::LowerLayer{zfile->content, true}}, MemUpper(size));
  ASSERT_TRUE(img.ok()) << img.status().ToString();
  auto dev = NewImageDevice(std::shared_ptr<lsmt::Image>(std::move(img).value()));
  std::vector<uint8_t> model = ReadFileBytes(VectorPath("plain.bin"));
  model.resize(size);
  EXPECT_TRUE(ReadAll(*dev) == model);
  std::vector<uint8_t> data = testing::MakeData(3, 10000);
  ASSERT_TRUE(dev->Write(777, data, true).ok());
  std::copy(data.begin(), data.end(), model.begin() + 777);
  EXPECT_TRUE(ReadAll(*dev) == model);
  CheckExtents(*dev, model, 0, size);
}

TEST(MemDeviceTest, ExtentsFollowWritesAndZeroes) {
  auto dev = NewMemDevice(64 << 10);
  std::vector<uint8_t> data(100, 7);
  ASSERT_TRUE(dev->Write(8192 + 10, data, false).ok());
  auto extents = dev->Extents(0, 64 << 10);
  ASSERT_TRUE(extents.ok());
  ASSERT_EQ(extents->size(), 3u);
  EXPECT_EQ((*extents)[0], (Extent{8192, true, true}));
  EXPECT_EQ((*extents)[1], (Extent{4096, false, false}));
  ASSERT_TRUE(dev->Zero(8192, 4096, false, true).ok());
  extents = dev->Extents(0, 64 << 10);
  ASSERT_TRUE(extents.ok());
  EXPECT_EQ(extents->size(), 1u);
  auto ro = NewMemDevice(4096, false);
  EXPECT_EQ(ro->Write(0, data, false).code(), Code::kNotSupported);
}

}  // namespace
}  // namespace ovbd
