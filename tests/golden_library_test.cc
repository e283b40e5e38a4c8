// Golden vectors through the library only (image::Unwrap, image::OpenImage, lsmt::OpenImage,
// lsmt::OpenRwLayer, zfile::Open): every vector made by the reference overlaybd tools must read
// back to the digests in tests/golden/MANIFEST.md.
//
// Vectors are opened read-only in place; the live RW pair is copied to a TempDir (or to memory)
// first because opening it read-write must never touch /work/shared.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/hash.h"
#include "ovbd/image.h"
#include "ovbd/io.h"
#include "ovbd/lsmt.h"
#include "ovbd/zfile.h"
#include "testutil.h"

namespace ovbd {
namespace {

using testing::Md5OfFile;
using testing::VectorPath;

constexpr uint64_t kVirtualSize = 67108864;
constexpr char kLayer0Md5[] = "52c1be1f44e2c1a4c1f46a02f8ffc443";
constexpr char kLayer0Sha256[] = "276d2137886ec19f09dd197ac7267ee329c95b86ffbf75b30e81b81ae30bb2b6";
constexpr char kStackMd5[] = "ca7d25ce00c72165dcb351bf308f46fa";
constexpr char kStackSha256[] = "804480af98c75a164759b87b879fe94d1dcc1ca871eb63227759663445f5b9d1";
constexpr char kLayer1AloneMd5[] = "6cdb4424448843d6bd5f1dfc601d1787";

const std::vector<std::string> kLayer0Variants = {
    "layer0.lsmt",
    "layer0.lz4-4k-crc.zfile",
    "layer0.zstd-4k-crc.zfile",
    "layer0.lz4-64k-crc.zfile",
    "layer0.lz4-4k-nocrc.zfile",
    "layer0.zstd-16k-nocrc-hdrovw.zfile",
};
const std::vector<std::string> kLayer1Variants = {
    "layer1.lsmt",
    "layer1.lz4-4k-crc.zfile",
    "layer1.zstd-64k-crc.zfile",
    "layer1.lz4-4k-crc.zfile.tar",
    "layer1.lz4-4k-nocrc.zfile",
    "layer1.sealed",
};

// Opens a vector read-only and strips tar/ZFile wrapping; fails the test on error.
std::shared_ptr<const ReadableFile> OpenLayer(const std::string& name, image::Unwrapped* out = nullptr) {
  auto file = OpenReadableFile(VectorPath(name));
  EXPECT_TRUE(file.ok()) << name << ": " << file.status().ToString();
  if (!file.ok()) return nullptr;
  auto unwrapped = image::Unwrap(std::shared_ptr<const ReadableFile>(std::move(file).value()));
  EXPECT_TRUE(unwrapped.ok()) << name << ": " << unwrapped.status().ToString();
  if (!unwrapped.ok()) return nullptr;
  EXPECT_TRUE(unwrapped->is_lsmt) << name << " is not an LSMT layer after unwrapping";
  if (out != nullptr) *out = *unwrapped;
  return unwrapped->content;
}

std::unique_ptr<lsmt::Image> Stack(const std::vector<std::string>& names) {
  std::vector<std::shared_ptr<const ReadableFile>> lowers;
  for (const auto& n : names) {
    auto f = OpenLayer(n);
    if (!f) return nullptr;
    lowers.push_back(std::move(f));
  }
  auto image = lsmt::OpenImage(std::move(lowers));
  EXPECT_TRUE(image.ok()) << image.status().ToString();
  if (!image.ok()) return nullptr;
  EXPECT_EQ((*image)->Size(), kVirtualSize);
  return std::move(image).value();
}

// ---- device content checks ----------------------------------------------------------------------
//
// Hashing 64 MiB is slow in a Debug/ASan build, so each expected digest is computed once: the first
// device that reads to `md5` is kept as the verified content, and every later device expected to
// have that digest is compared with it byte for byte (equivalent, and much faster).
std::map<std::string, std::vector<uint8_t>>& Verified() {
  static std::map<std::string, std::vector<uint8_t>> verified;
  return verified;
}

void ExpectDevice(const ReadableFile& dev, const std::string& md5) {
  auto it = Verified().find(md5);
  if (it == Verified().end()) {
    auto all = ReadAll(dev);
    ASSERT_TRUE(all.ok()) << dev.Name() << ": " << all.status().ToString();
    ASSERT_EQ(Md5Hex(*all), md5) << dev.Name();
    Verified().emplace(md5, std::move(all).value());
    return;
  }
  const std::vector<uint8_t>& want = it->second;
  ASSERT_EQ(dev.Size(), want.size()) << dev.Name();
  std::vector<uint8_t> buf(1 << 20);
  for (uint64_t off = 0; off < want.size(); off += buf.size()) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), want.size() - off));
    Status s = dev.ReadAt(off, std::span(buf.data(), n));
    ASSERT_TRUE(s.ok()) << dev.Name() << ": read at " << off << ": " << s.ToString();
    if (std::memcmp(buf.data(), want.data() + off, n) != 0) {
      size_t i = 0;
      while (buf[i] == want[off + i]) i++;
      FAIL() << dev.Name() << ": byte " << off + i << " differs from the device with md5 " << md5;
    }
  }
}

// sha256 of a device whose md5 was verified (reads it first if needed).
void ExpectDeviceSha256(const ReadableFile& dev, const std::string& md5, const std::string& sha256) {
  ASSERT_NO_FATAL_FAILURE(ExpectDevice(dev, md5));
  EXPECT_EQ(Sha256Hex(Verified().at(md5)), sha256) << dev.Name();
}

// ---- unwrapping facts -------------------------------------------------------------------------

TEST(GoldenLibrary, UnwrapDetectsEachWrapping) {
  image::Unwrapped u;
  ASSERT_TRUE(OpenLayer("layer0.lsmt", &u));
  EXPECT_FALSE(u.tar);
  EXPECT_FALSE(u.zfile.has_value());
  EXPECT_EQ(u.content->Size(), 2016256u);

  ASSERT_TRUE(OpenLayer("layer1.lz4-4k-crc.zfile.tar", &u));
  EXPECT_TRUE(u.tar);
  ASSERT_TRUE(u.zfile.has_value());
  EXPECT_EQ(u.zfile->algorithm, zfile::Algorithm::kLz4);
  EXPECT_EQ(u.zfile->block_size, 4096u);
  EXPECT_TRUE(u.zfile->crc);
  EXPECT_EQ(u.content->Size(), 1464320u);

  ASSERT_TRUE(OpenLayer("layer0.zstd-16k-nocrc-hdrovw.zfile", &u));
  EXPECT_FALSE(u.tar);
  ASSERT_TRUE(u.zfile.has_value());
  EXPECT_EQ(u.zfile->algorithm, zfile::Algorithm::kZstd);
  EXPECT_EQ(u.zfile->block_size, 16384u);
  EXPECT_FALSE(u.zfile->crc);
  EXPECT_TRUE(u.zfile->header_overwritten);
  EXPECT_EQ(u.content->Size(), 2016256u);
}

// ---- layer0 alone ----------------------------------------------------------------------------

TEST(GoldenLibrary, EveryLayer0VariantAlone) {
  for (const auto& name : kLayer0Variants) {
    SCOPED_TRACE(name);
    auto image = Stack({name});
    ASSERT_TRUE(image);
    ASSERT_NO_FATAL_FAILURE(ExpectDevice(*image, kLayer0Md5));
  }
}

TEST(GoldenLibrary, Layer0Sha256) {
  auto image = Stack({"layer0.zstd-4k-crc.zfile"});
  ASSERT_TRUE(image);
  ASSERT_NO_FATAL_FAILURE(ExpectDeviceSha256(*image, kLayer0Md5, kLayer0Sha256));
}

// ---- layer0 + layer1 -------------------------------------------------------------------------

TEST(GoldenLibrary, Layer0PlusEveryLayer1Variant) {
  for (const auto& name : kLayer1Variants) {
    SCOPED_TRACE(name);
    auto image = Stack({"layer0.lsmt", name});
    ASSERT_TRUE(image);
    EXPECT_EQ(image->layer_count(), 2u);
    ASSERT_NO_FATAL_FAILURE(ExpectDevice(*image, kStackMd5));
  }
}

TEST(GoldenLibrary, MixedVariantsStack) {
  const std::vector<std::pair<std::string, std::string>> pairs = {
      {"layer0.zstd-16k-nocrc-hdrovw.zfile", "layer1.zstd-64k-crc.zfile"},
      {"layer0.lz4-64k-crc.zfile", "layer1.lz4-4k-crc.zfile.tar"},
      {"layer0.lz4-4k-nocrc.zfile", "layer1.sealed"},
      {"layer0.zstd-4k-crc.zfile", "layer1.lz4-4k-nocrc.zfile"},
      {"layer0.lz4-4k-crc.zfile", "layer1.lsmt"},
  };
  for (const auto& [lower, upper] : pairs) {
    SCOPED_TRACE(lower + " + " + upper);
    auto image = Stack({lower, upper});
    ASSERT_TRUE(image);
    ASSERT_NO_FATAL_FAILURE(ExpectDevice(*image, kStackMd5));
  }
}

TEST(GoldenLibrary, StackSha256) {
  auto image = Stack({"layer0.zstd-4k-crc.zfile", "layer1.lz4-4k-crc.zfile.tar"});
  ASSERT_TRUE(image);
  ASSERT_NO_FATAL_FAILURE(ExpectDeviceSha256(*image, kStackMd5, kStackSha256));
}

TEST(GoldenLibrary, Merged01Alone) {
  auto image = Stack({"merged01.lz4-4k-crc.zfile"});
  ASSERT_TRUE(image);
  ASSERT_NO_FATAL_FAILURE(ExpectDevice(*image, kStackMd5));
}

TEST(GoldenLibrary, Merged01DecompressedBlob) {
  auto blob = OpenLayer("merged01.lz4-4k-crc.zfile");
  ASSERT_TRUE(blob);
  EXPECT_EQ(Md5OfFile(*blob), "60386e6b036a4d25008fd5eed2bb0b11");
  auto info = lsmt::ReadLayerInfo(*blob);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->segments.size(), 41u);
  for (const auto& s : info->segments) EXPECT_EQ(s.tag, 0) << "tags must be reset on load";
}

TEST(GoldenLibrary, Layer1AloneOnNothing) {
  for (const std::string name : {"layer1.lsmt", "layer1.lz4-4k-crc.zfile.tar", "layer1.sealed"}) {
    SCOPED_TRACE(name);
    auto image = Stack({name});
    ASSERT_TRUE(image);
    ASSERT_NO_FATAL_FAILURE(ExpectDevice(*image, kLayer1AloneMd5));
  }
  auto image = Stack({"layer1.zstd-64k-crc.zfile"});
  ASSERT_TRUE(image);
  ASSERT_NO_FATAL_FAILURE(ExpectDevice(*image, kLayer1AloneMd5));
}

// Layer order matters: layer1 below layer0 is a different device (and must not crash).
TEST(GoldenLibrary, ReversedOrderIsADifferentDevice) {
  auto image = Stack({"layer1.lsmt", "layer0.lsmt"});
  ASSERT_TRUE(image);
  auto all = ReadAll(*image);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  for (const char* md5 : {kStackMd5, kLayer0Md5, kLayer1AloneMd5}) {
    auto it = Verified().find(md5);
    if (it != Verified().end()) {
      EXPECT_NE(*all, it->second) << "reversed stack reads like the device with md5 " << md5;
    } else {
      EXPECT_NE(Md5Hex(*all), md5);
    }
  }
}

// ---- the live RW pair --------------------------------------------------------------------------

TEST(GoldenLibrary, LiveRwPairOnLayer0ThroughImageOpen) {
  testing::TempDir dir;
  const std::string data = dir.Join("layer1.rw.data");
  const std::string index = dir.Join("layer1.rw.index");
  std::filesystem::copy_file(VectorPath("layer1.rw.data"), data);
  std::filesystem::copy_file(VectorPath("layer1.rw.index"), index);
  std::filesystem::permissions(data, std::filesystem::perms::owner_write, std::filesystem::perm_options::add);
  std::filesystem::permissions(index, std::filesystem::perms::owner_write, std::filesystem::perm_options::add);

  for (const std::string lower : {"layer0.lsmt", "layer0.lz4-4k-crc.zfile"}) {
    SCOPED_TRACE(lower);
    auto image = image::OpenImage({VectorPath(lower)}, image::UpperPaths{data, index});
    ASSERT_TRUE(image.ok()) << image.status().ToString();
    EXPECT_TRUE((*image)->writable());
    EXPECT_EQ((*image)->layer_count(), 2u);
    EXPECT_EQ((*image)->Size(), kVirtualSize);
    ASSERT_NO_FATAL_FAILURE(ExpectDevice(**image, kStackMd5));
  }
  // Opening did not modify the copies.
  EXPECT_EQ(testing::ReadFileBytes(data), testing::ReadFileBytes(VectorPath("layer1.rw.data")));
  EXPECT_EQ(testing::ReadFileBytes(index), testing::ReadFileBytes(VectorPath("layer1.rw.index")));
}

std::unique_ptr<lsmt::RwLayer> OpenRwCopyInMemory() {
  auto data = std::make_shared<MemStorage>();
  auto index = std::make_shared<MemStorage>();
  data->bytes = testing::ReadFileBytes(VectorPath("layer1.rw.data"));
  index->bytes = testing::ReadFileBytes(VectorPath("layer1.rw.index"));
  auto rw = lsmt::OpenRwLayer(NewMemFile("layer1.rw.data", data), NewMemFile("layer1.rw.index", index));
  EXPECT_TRUE(rw.ok()) << rw.status().ToString();
  return rw.ok() ? std::move(rw).value() : nullptr;
}

TEST(GoldenLibrary, LiveRwPairInMemory) {
  auto rw = OpenRwCopyInMemory();
  ASSERT_TRUE(rw);
  EXPECT_EQ(rw->VirtualSize(), kVirtualSize);
  EXPECT_EQ(rw->meta().uuid, "00000000-0000-4000-8000-0000000000A1");
  EXPECT_EQ(rw->meta().parent_uuid, "0A0B0C0D-1111-4222-8333-444455556666");
  // The replayed index equals the committed layer1's index (commit only merges adjacent runs,
  // so compare the covered sectors and their zeroed state, not entry boundaries).
  auto committed = OpenLayer("layer1.lsmt");
  ASSERT_TRUE(committed);
  auto info = lsmt::ReadLayerInfo(*committed);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  auto coverage = [](const std::vector<lsmt::Segment>& segs) {
    std::vector<std::pair<uint64_t, bool>> out;
    for (const auto& s : segs) {
      for (uint64_t i = 0; i < s.length; i++) out.emplace_back(s.offset + i, s.zeroed);
    }
    return out;
  };
  EXPECT_EQ(coverage(rw->Segments()), coverage(info->segments));

  auto lower = OpenLayer("layer0.lz4-4k-crc.zfile");
  ASSERT_TRUE(lower);
  auto image = lsmt::OpenImage({lower}, std::move(rw));
  ASSERT_TRUE(image.ok()) << image.status().ToString();
  ASSERT_NO_FATAL_FAILURE(ExpectDevice(**image, kStackMd5));
}

TEST(GoldenLibrary, LiveRwPairAloneEqualsLayer1Alone) {
  auto rw = OpenRwCopyInMemory();
  ASSERT_TRUE(rw);
  auto image = lsmt::OpenImage({}, std::move(rw));
  ASSERT_TRUE(image.ok()) << image.status().ToString();
  ASSERT_NO_FATAL_FAILURE(ExpectDevice(**image, kLayer1AloneMd5));
}

// ---- ZFile decompression --------------------------------------------------------------------

struct ZFileCase {
  const char* name;
  const char* content_md5;
  uint64_t content_size;
};

TEST(GoldenLibrary, EveryZFileDecompressesToItsSource) {
  const std::vector<ZFileCase> cases = {
      {"layer0.lz4-4k-crc.zfile", "f7e821df2c985f4926647452e2b9ab8d", 2016256},
      {"layer0.zstd-4k-crc.zfile", "f7e821df2c985f4926647452e2b9ab8d", 2016256},
      {"layer0.lz4-64k-crc.zfile", "f7e821df2c985f4926647452e2b9ab8d", 2016256},
      {"layer0.lz4-4k-nocrc.zfile", "f7e821df2c985f4926647452e2b9ab8d", 2016256},
      {"layer0.zstd-16k-nocrc-hdrovw.zfile", "f7e821df2c985f4926647452e2b9ab8d", 2016256},
      {"layer1.lz4-4k-crc.zfile", "c97baf54c04ec670de6922f140457e9a", 1464320},
      {"layer1.zstd-64k-crc.zfile", "c97baf54c04ec670de6922f140457e9a", 1464320},
      {"layer1.lz4-4k-nocrc.zfile", "c97baf54c04ec670de6922f140457e9a", 1464320},
      {"merged01.lz4-4k-crc.zfile", "60386e6b036a4d25008fd5eed2bb0b11", 0},
      {"plain.lz4-4k-crc.zfile", "e531f6e154d34b9c6f65149d3b961bc9", 614530},
      {"plain.zstd-8k-crc.zfile", "e531f6e154d34b9c6f65149d3b961bc9", 614530},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto file = OpenReadableFile(VectorPath(c.name));
    ASSERT_TRUE(file.ok()) << file.status().ToString();
    auto reader = zfile::Open(std::move(file).value());
    ASSERT_TRUE(reader.ok()) << reader.status().ToString();
    if (c.content_size != 0) {
      EXPECT_EQ((*reader)->Size(), c.content_size);
    }
    EXPECT_EQ((*reader)->info().original_size, (*reader)->Size());
    EXPECT_EQ(Md5OfFile(**reader), c.content_md5);
    Status verify = (*reader)->VerifyAll();
    EXPECT_TRUE(verify.ok()) << verify.ToString();
  }
}

TEST(GoldenLibrary, TarWrappedZFileDecompresses) {
  image::Unwrapped u;
  auto content = OpenLayer("layer1.lz4-4k-crc.zfile.tar", &u);
  ASSERT_TRUE(content);
  EXPECT_EQ(Md5OfFile(*content), "c97baf54c04ec670de6922f140457e9a");
}

TEST(GoldenLibrary, PlainZFileMatchesPlainBin) {
  auto plain = OpenReadableFile(VectorPath("plain.bin"));
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(Md5OfFile(**plain), "e531f6e154d34b9c6f65149d3b961bc9");
  auto zf = OpenReadableFile(VectorPath("plain.zstd-8k-crc.zfile"));
  ASSERT_TRUE(zf.ok());
  auto reader = zfile::Open(std::move(zf).value());
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  // Random unaligned sub-reads agree with plain.bin.
  std::vector<uint8_t> want = testing::ReadFileBytes(VectorPath("plain.bin"));
  uint64_t seed = 12345;
  for (int i = 0; i < 200; i++) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    uint64_t off = (seed >> 20) % want.size();
    uint64_t len = std::min<uint64_t>((seed >> 8) % 70000 + 1, want.size() - off);
    std::vector<uint8_t> got(len);
    ASSERT_TRUE((*reader)->ReadAt(off, got).ok());
    ASSERT_TRUE(std::equal(got.begin(), got.end(), want.begin() + static_cast<ptrdiff_t>(off)))
        << "read at " << off << " length " << len;
  }
}

// A plain (non-LSMT) zfile unwraps to raw content that image::OpenImage refuses as a layer.
// A ZFile of a plain file is not an LSMT layer; stacked, it serves its content as a raw lower.
TEST(GoldenLibrary, PlainZFileIsNotALayerButStacksAsRawContent) {
  auto file = OpenReadableFile(VectorPath("plain.lz4-4k-crc.zfile"));
  ASSERT_TRUE(file.ok());
  auto u = image::Unwrap(std::shared_ptr<const ReadableFile>(std::move(file).value()));
  ASSERT_TRUE(u.ok()) << u.status().ToString();
  EXPECT_FALSE(u->is_lsmt);
  auto image = image::OpenImage({VectorPath("plain.lz4-4k-crc.zfile")}, std::nullopt);
  ASSERT_TRUE(image.ok()) << image.status().ToString();
  EXPECT_EQ((*image)->Size(), (u->content->Size() + 511) / 512 * 512);
  EXPECT_FALSE(image::OpenImage({VectorPath("plain.bin")}, std::nullopt).ok());
}

}  // namespace
}  // namespace ovbd
