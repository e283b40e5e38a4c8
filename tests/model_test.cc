// Randomized model tests: an lsmt::Image (RW upper over committed lowers) against a flat
// in-memory reference buffer of the virtual size.
//
//   model (vector<uint8_t>)  <── same ops ──>  Image(lowers..., RwLayer on MemFiles)
//        write / discard / reopen / commit (plain, ZFile, ZFile+tar) + stack / seal + stack /
//        merge (Commit of the N-layer image) / ImportRaw of the model
//
// After every phase the whole device and random unaligned sub-reads are compared with the model,
// and the merged segment list is checked for the format's invariants. Seeds are fixed; sizes
// are small (8 MiB devices, one 20 MiB device for the >4 MiB write split and >16383-sector
// discards) so each binary runs in seconds, also under ASan.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "ovbd/image.h"
#include "ovbd/io.h"
#include "ovbd/lsmt.h"
#include "ovbd/tar.h"
#include "ovbd/zfile.h"
#include "testutil.h"

namespace ovbd {
namespace {

constexpr uint64_t kSector = 512;
constexpr uint64_t kMiB = 1 << 20;

// How a committed layer is encoded before it is stacked.
enum class Encoding { kPlain, kZFile, kZFileTar, kTar };

const char* EncodingName(Encoding e) {
  switch (e) {
    case Encoding::kPlain: return "plain";
    case Encoding::kZFile: return "zfile";
    case Encoding::kZFileTar: return "zfile+tar";
    case Encoding::kTar: return "tar";
  }
  return "?";
}

// Pools of payload bytes: writes take random slices (random = incompressible, text = compressible).
const std::vector<uint8_t>& RandomPool() {
  static const std::vector<uint8_t> pool = testing::MakeData(7, 10 * kMiB, "random");
  return pool;
}
const std::vector<uint8_t>& TextPool() {
  static const std::vector<uint8_t> pool = testing::MakeData(8, 10 * kMiB, "text");
  return pool;
}

// Checks the invariants of a merged segment list: sorted, non-overlapping, 1..16383 sectors,
// inside the device.
void CheckSegments(const std::vector<lsmt::Segment>& segs, uint64_t vsize) {
  for (size_t i = 0; i < segs.size(); i++) {
    const auto& s = segs[i];
    ASSERT_GE(s.length, 1u) << "segment " << i;
    ASSERT_LE(s.length, lsmt::kMaxSegmentLength) << "segment " << i;
    ASSERT_LE(s.end() * kSector, vsize) << "segment " << i << " past the device";
    if (i > 0) {
      ASSERT_LE(segs[i - 1].end(), s.offset) << "segments " << i - 1 << "," << i << " overlap/unsorted";
    }
  }
}

class ModelHarness {
 public:
  ModelHarness(uint64_t seed, uint64_t vsize) : rng_(seed), vsize_(vsize), model_(vsize, 0) {}

  uint64_t Rand(uint64_t n) { return n == 0 ? 0 : rng_() % n; }
  bool Chance(int percent) { return Rand(100) < static_cast<uint64_t>(percent); }
  lsmt::Image& image() { return *image_; }
  const std::vector<uint8_t>& model() const { return model_; }
  size_t lower_count() const { return lowers_.size(); }

  // A fresh RW layer on top of the current lowers.
  void NewUpper() {
    image_.reset();
    data_ = std::make_shared<MemStorage>();
    index_ = std::make_shared<MemStorage>();
    lsmt::CreateOptions opts;
    opts.virtual_size = vsize_;
    auto rw = lsmt::CreateRwLayer(NewMemFile("upper.data", data_), NewMemFile("upper.index", index_), opts);
    ASSERT_TRUE(rw.ok()) << rw.status().ToString();
    OpenStack(std::move(rw).value());
  }

  // Closes the image and reopens the RW layer from the same storages (replaying its index).
  void Reopen() {
    image_.reset();
    auto rw = lsmt::OpenRwLayer(NewMemFile("upper.data", data_), NewMemFile("upper.index", index_));
    ASSERT_TRUE(rw.ok()) << rw.status().ToString();
    OpenStack(std::move(rw).value());
  }

  void OpenStack(std::unique_ptr<lsmt::RwLayer> rw) {
    auto image = lsmt::OpenImage(lowers_, std::move(rw));
    ASSERT_TRUE(image.ok()) << image.status().ToString();
    image_ = std::move(image).value();
    ASSERT_EQ(image_->Size(), vsize_);
    ASSERT_EQ(image_->layer_count(), lowers_.size() + 1);
  }

  uint64_t RandomLength(uint64_t max_bytes) {
    uint64_t sectors;
    int r = static_cast<int>(Rand(100));
    if (r < 55) sectors = 1 + Rand(8);
    else if (r < 85) sectors = 1 + Rand(128);
    else sectors = 1 + Rand(2048);  // up to 1 MiB
    return std::min(sectors * kSector, max_bytes);
  }

  void Write(uint64_t offset, uint64_t length) {
    const auto& pool = Chance(50) ? RandomPool() : TextPool();
    uint64_t from = Rand(pool.size() - length + 1);
    std::span<const uint8_t> data(pool.data() + from, length);
    Status s = image_->Write(offset, data);
    ASSERT_TRUE(s.ok()) << "write " << offset << "+" << length << ": " << s.ToString();
    std::memcpy(model_.data() + offset, data.data(), length);
  }

  void Discard(uint64_t offset, uint64_t length) {
    Status s = image_->Discard(offset, length);
    ASSERT_TRUE(s.ok()) << "discard " << offset << "+" << length << ": " << s.ToString();
    std::fill(model_.begin() + static_cast<ptrdiff_t>(offset),
              model_.begin() + static_cast<ptrdiff_t>(offset + length), 0);
  }

  void RandomWrite(uint64_t max_bytes = kMiB) {
    uint64_t length = RandomLength(max_bytes);
    uint64_t offset = Rand((vsize_ - length) / kSector + 1) * kSector;
    Write(offset, length);
  }
  void RandomDiscard(uint64_t max_bytes = 2 * kMiB) {
    uint64_t length = RandomLength(max_bytes);
    if (Chance(20)) length = std::min<uint64_t>(max_bytes, (1 + Rand(8192)) * kSector);
    uint64_t offset = Rand((vsize_ - length) / kSector + 1) * kSector;
    Discard(offset, length);
  }

  // An unaligned sub-read compared with the model.
  void RandomRead() {
    uint64_t offset = Rand(vsize_);
    uint64_t length = 1 + Rand(std::min<uint64_t>(300000, vsize_ - offset));
    CheckRange(offset, length);
  }

  void CheckRange(uint64_t offset, uint64_t length) {
    std::vector<uint8_t> got(length);
    Status s = image_->ReadAt(offset, got);
    ASSERT_TRUE(s.ok()) << "read " << offset << "+" << length << ": " << s.ToString();
    if (std::memcmp(got.data(), model_.data() + offset, length) != 0) {
      size_t i = 0;
      while (got[i] == model_[offset + i]) i++;
      FAIL() << "read " << offset << "+" << length << " differs from the model at device byte "
             << offset + i << " (got " << int(got[i]) << ", want " << int(model_[offset + i]) << ")";
    }
  }

  void CheckAll(const ReadableFile& dev) {
    ASSERT_EQ(dev.Size(), vsize_);
    std::vector<uint8_t> buf(kMiB);
    for (uint64_t off = 0; off < vsize_; off += buf.size()) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), vsize_ - off));
      Status s = dev.ReadAt(off, std::span(buf.data(), n));
      ASSERT_TRUE(s.ok()) << dev.Name() << ": read at " << off << ": " << s.ToString();
      if (std::memcmp(buf.data(), model_.data() + off, n) != 0) {
        size_t i = 0;
        while (buf[i] == model_[off + i]) i++;
        FAIL() << dev.Name() << ": device byte " << off + i << " is " << int(buf[i]) << ", model says "
               << int(model_[off + i]);
      }
    }
  }

  // Whole device + random sub-reads + segment invariants + a read past the end fails.
  void CheckPhase() {
    ASSERT_NO_FATAL_FAILURE(CheckAll(*image_));
    for (int i = 0; i < 8; i++) ASSERT_NO_FATAL_FAILURE(RandomRead());
    ASSERT_NO_FATAL_FAILURE(CheckSegments(image_->Segments(), vsize_));
    std::vector<uint8_t> past(32);
    EXPECT_FALSE(image_->ReadAt(vsize_ - 16, past).ok()) << "a read past the end must fail";
  }

  void RandomOps(int count, uint64_t max_write = kMiB) {
    for (int i = 0; i < count; i++) {
      int r = static_cast<int>(Rand(100));
      if (r < 55) {
        ASSERT_NO_FATAL_FAILURE(RandomWrite(max_write));
      } else if (r < 70) {
        ASSERT_NO_FATAL_FAILURE(RandomDiscard());
      } else if (r < 75) {
        ASSERT_NO_FATAL_FAILURE(Overwrite());
      } else {
        ASSERT_NO_FATAL_FAILURE(RandomRead());
      }
    }
  }

  // Overwrite a range just written, partially (head, tail or inside).
  void Overwrite() {
    uint64_t length = RandomLength(256 * 1024);
    uint64_t offset = Rand((vsize_ - length) / kSector + 1) * kSector;
    ASSERT_NO_FATAL_FAILURE(Write(offset, length));
    uint64_t sub = std::max<uint64_t>(1, length / kSector / 2);
    uint64_t inner = Rand(length / kSector) * kSector;
    uint64_t inner_len = std::min(sub * kSector, vsize_ - (offset + inner));
    if (Chance(50)) {
      ASSERT_NO_FATAL_FAILURE(Write(offset + inner, inner_len));
    } else {
      ASSERT_NO_FATAL_FAILURE(Discard(offset + inner, inner_len));
    }
  }

  // Wraps a Commit-like producer into the chosen encoding; returns the whole blob's bytes.
  std::vector<uint8_t> Encode(Encoding enc, const std::function<Status(WritableFile*)>& produce) {
    auto storage = std::make_shared<MemStorage>();
    auto mem = NewMemWritableFile("blob", storage);
    std::unique_ptr<WritableFile> tar_writer;
    std::unique_ptr<WritableFile> zfile_writer;
    WritableFile* sink = mem.get();
    if (enc == Encoding::kTar || enc == Encoding::kZFileTar) {
      auto t = tar::NewWrappingWriter(sink);
      EXPECT_TRUE(t.ok()) << t.status().ToString();
      if (!t.ok()) return {};
      tar_writer = std::move(t).value();
      sink = tar_writer.get();
    }
    if (enc == Encoding::kZFile || enc == Encoding::kZFileTar) {
      zfile::Options o;
      o.algorithm = Chance(50) ? zfile::Algorithm::kLz4 : zfile::Algorithm::kZstd;
      o.block_size = 4096u << Rand(5);
      o.crc = Chance(70);
      o.threads = Chance(50) ? 1 : 2;
      last_zfile_ = o;
      auto z = zfile::NewCompressingWriter(sink, o);
      EXPECT_TRUE(z.ok()) << z.status().ToString();
      if (!z.ok()) return {};
      zfile_writer = std::move(z).value();
      sink = zfile_writer.get();
    }
    Status s = produce(sink);
    EXPECT_TRUE(s.ok()) << "commit (" << EncodingName(enc) << "): " << s.ToString();
    if (zfile_writer) {
      Status c = zfile_writer->Close();
      EXPECT_TRUE(c.ok()) << c.ToString();
    }
    if (tar_writer) {
      Status c = tar_writer->Close();
      EXPECT_TRUE(c.ok()) << c.ToString();
    }
    Status c = mem->Close();
    EXPECT_TRUE(c.ok()) << c.ToString();
    return storage->bytes;
  }

  // Unwraps an encoded blob and checks the detected wrapping.
  std::shared_ptr<const ReadableFile> Decode(Encoding enc, std::vector<uint8_t> bytes, const std::string& name,
                                             bool committed = true) {
    auto u = image::Unwrap(std::shared_ptr<const ReadableFile>(NewMemReadableFile(name, std::move(bytes))));
    EXPECT_TRUE(u.ok()) << name << ": " << u.status().ToString();
    if (!u.ok()) return nullptr;
    EXPECT_TRUE(u->is_lsmt) << name;
    EXPECT_EQ(u->tar, enc == Encoding::kTar || enc == Encoding::kZFileTar) << name;
    bool zf = enc == Encoding::kZFile || enc == Encoding::kZFileTar;
    EXPECT_EQ(u->zfile.has_value(), zf) << name;
    if (zf && u->zfile) {
      EXPECT_EQ(u->zfile->algorithm, last_zfile_.algorithm);
      EXPECT_EQ(u->zfile->block_size, last_zfile_.block_size);
      EXPECT_EQ(u->zfile->crc, last_zfile_.crc);
    }
    auto info = lsmt::ReadLayerInfo(*u->content);
    EXPECT_TRUE(info.ok()) << name << ": " << info.status().ToString();
    if (info.ok()) {
      EXPECT_EQ(info->trailer.virtual_size, vsize_);
      if (committed) {
        EXPECT_EQ(info->trailer.index_size % 256, 0u) << "committed index is padded to 4 KiB";
      }
      EXPECT_NO_FATAL_FAILURE(CheckSegments(info->segments, vsize_));
    }
    return u->content;
  }

  // Commits the upper layer alone (reopened as a one-layer image), pushes the blob as a new lower
  // and stacks a fresh RW layer on top.
  void CommitUpperAndStack(Encoding enc) {
    image_.reset();
    auto rw = lsmt::OpenRwLayer(NewMemFile("upper.data", data_), NewMemFile("upper.index", index_));
    ASSERT_TRUE(rw.ok()) << rw.status().ToString();
    auto top = lsmt::OpenImage({}, std::move(rw).value());
    ASSERT_TRUE(top.ok()) << top.status().ToString();
    lsmt::CommitOptions opts;
    opts.user_tag = "layer" + std::to_string(lowers_.size());
    opts.uuid = lsmt::NewRandomUuid();
    auto blob = Encode(enc, [&](WritableFile* out) { return lsmt::Commit(**top, out, opts); });
    ASSERT_FALSE(blob.empty());
    auto content = Decode(enc, std::move(blob), opts.user_tag);
    ASSERT_TRUE(content);
    auto info = lsmt::ReadLayerInfo(*content);
    ASSERT_TRUE(info.ok());
    EXPECT_EQ(info->trailer.user_tag, opts.user_tag);
    EXPECT_EQ(info->trailer.uuid, *opts.uuid);
    // The committed layer alone holds exactly the upper layer's live mappings (sector coverage).
    EXPECT_EQ(Coverage(info->segments), Coverage((*top)->Segments()));
    lowers_.push_back(content);
    top->reset();
    ASSERT_NO_FATAL_FAILURE(NewUpper());
  }

  // Seals the upper layer in place; its data file becomes an RO lower.
  void SealUpperAndStack() {
    image_.reset();
    auto rw = lsmt::OpenRwLayer(NewMemFile("upper.data", data_), NewMemFile("upper.index", index_));
    ASSERT_TRUE(rw.ok()) << rw.status().ToString();
    std::vector<lsmt::Segment> live = (*rw)->Segments();
    Status s = (*rw)->Seal();
    ASSERT_TRUE(s.ok()) << s.ToString();
    EXPECT_FALSE((*rw)->Write(0, std::vector<uint8_t>(512)).ok()) << "writes after Seal must fail";
    rw->reset();
    auto blob = Decode(Encoding::kPlain, data_->bytes, "sealed" + std::to_string(lowers_.size()),
                       /*committed=*/false);
    ASSERT_TRUE(blob);
    auto info = lsmt::ReadLayerInfo(*blob);
    ASSERT_TRUE(info.ok());
    EXPECT_EQ(Coverage(info->segments), Coverage(live));
    lowers_.push_back(blob);
    ASSERT_NO_FATAL_FAILURE(NewUpper());
  }

  // Commit of the whole N-layer image = a merge; it must read exactly as the stack. If
  // `flatten`, the merged blob replaces all lowers (and the upper is committed into it).
  void MergeAndCheck(Encoding enc, bool flatten) {
    lsmt::CommitOptions opts;
    opts.user_tag = "merged";
    auto blob = Encode(enc, [&](WritableFile* out) { return lsmt::Commit(*image_, out, opts); });
    ASSERT_FALSE(blob.empty());
    auto content = Decode(enc, std::move(blob), "merged");
    ASSERT_TRUE(content);
    auto info = lsmt::ReadLayerInfo(*content);
    ASSERT_TRUE(info.ok());
    for (const auto& s : info->segments) ASSERT_EQ(s.tag, 0) << "tags are reset on load";
    auto merged = lsmt::OpenImage({content});
    ASSERT_TRUE(merged.ok()) << merged.status().ToString();
    EXPECT_FALSE((*merged)->writable());
    ASSERT_NO_FATAL_FAILURE(CheckAll(**merged));
    // Same live coverage as the stack (zeroed ranges kept, holes stay holes).
    EXPECT_EQ(Coverage(info->segments), Coverage(image_->Segments()));
    if (flatten) {
      lowers_ = {content};
      ASSERT_NO_FATAL_FAILURE(NewUpper());
    }
  }

  // ImportRaw of the model reads as the model; all-zero 4 KiB blocks became holes.
  void ImportRawAndCheck(Encoding enc) {
    auto raw = NewMemReadableFile("raw", model_);
    auto blob = Encode(enc, [&](WritableFile* out) { return lsmt::ImportRaw(*raw, out, {}); });
    ASSERT_FALSE(blob.empty());
    auto content = Decode(enc, std::move(blob), "imported");
    ASSERT_TRUE(content);
    auto imported = lsmt::OpenImage({content});
    ASSERT_TRUE(imported.ok()) << imported.status().ToString();
    ASSERT_NO_FATAL_FAILURE(CheckAll(**imported));
    for (const auto& s : (*imported)->Segments()) {
      ASSERT_FALSE(s.zeroed) << "ImportRaw writes no zeroed entries";
      for (uint64_t sec = s.offset; sec < s.end(); sec += 8) {
        uint64_t block = sec * kSector / 4096 * 4096;
        bool all_zero = std::all_of(model_.begin() + static_cast<ptrdiff_t>(block),
                                    model_.begin() + static_cast<ptrdiff_t>(std::min(block + 4096, vsize_)),
                                    [](uint8_t b) { return b == 0; });
        ASSERT_FALSE(all_zero) << "all-zero block at " << block << " imported as data";
      }
    }
  }

  static std::vector<std::pair<uint64_t, bool>> Coverage(const std::vector<lsmt::Segment>& segs) {
    std::vector<std::pair<uint64_t, bool>> out;  // (sector, zeroed) for every mapped sector
    for (const auto& s : segs) {
      for (uint64_t i = 0; i < s.length; i++) out.emplace_back(s.offset + i, s.zeroed);
    }
    return out;
  }

 private:
  std::mt19937_64 rng_;
  const uint64_t vsize_;
  std::vector<uint8_t> model_;
  std::vector<std::shared_ptr<const ReadableFile>> lowers_;
  std::shared_ptr<MemStorage> data_, index_;
  std::unique_ptr<lsmt::Image> image_;
  zfile::Options last_zfile_;
};

// ---- one RW layer: writes, overwrites, discards, reads, reopen ------------------------------------

TEST(ModelTest, SingleRwLayerWithReopens) {
  ModelHarness h(1, 8 * kMiB);
  ASSERT_NO_FATAL_FAILURE(h.NewUpper());
  ASSERT_NO_FATAL_FAILURE(h.CheckPhase());  // empty layer reads as zeros
  for (int round = 0; round < 6; round++) {
    SCOPED_TRACE("round " + std::to_string(round));
    ASSERT_NO_FATAL_FAILURE(h.RandomOps(250));
    ASSERT_NO_FATAL_FAILURE(h.CheckPhase());
    ASSERT_NO_FATAL_FAILURE(h.Reopen());
    ASSERT_NO_FATAL_FAILURE(h.CheckPhase());
  }
}

TEST(ModelTest, EdgeRangesOfTheDevice) {
  const uint64_t vsize = 8 * kMiB;
  ModelHarness h(2, vsize);
  ASSERT_NO_FATAL_FAILURE(h.NewUpper());
  ASSERT_NO_FATAL_FAILURE(h.Write(0, 4096));
  ASSERT_NO_FATAL_FAILURE(h.Write(vsize - 4096, 4096));
  ASSERT_NO_FATAL_FAILURE(h.Write(vsize - 512, 512));
  ASSERT_NO_FATAL_FAILURE(h.Discard(0, 512));
  ASSERT_NO_FATAL_FAILURE(h.Write(512 * 7, 512 * 3));
  ASSERT_NO_FATAL_FAILURE(h.Discard(512 * 8, 512));  // inside the write above
  ASSERT_NO_FATAL_FAILURE(h.CheckRange(0, 8192));
  ASSERT_NO_FATAL_FAILURE(h.CheckRange(vsize - 5000, 5000));
  ASSERT_NO_FATAL_FAILURE(h.CheckRange(511, 2));
  // Rejected requests change nothing.
  std::vector<uint8_t> buf(1024, 0xAB);
  EXPECT_FALSE(h.image().Write(vsize - 512, buf).ok()) << "write past the end";
  EXPECT_FALSE(h.image().Write(100, std::span(buf.data(), 512)).ok()) << "unaligned offset";
  EXPECT_FALSE(h.image().Write(512, std::span(buf.data(), 100)).ok()) << "unaligned length";
  EXPECT_FALSE(h.image().Discard(vsize, 512).ok()) << "discard past the end";
  EXPECT_FALSE(h.image().Discard(3, 512).ok()) << "unaligned discard";
  ASSERT_NO_FATAL_FAILURE(h.CheckPhase());
  ASSERT_NO_FATAL_FAILURE(h.Reopen());
  ASSERT_NO_FATAL_FAILURE(h.CheckPhase());
}

// ---- commit + stack cycles -------------------------------------------------------------------

struct CycleCase {
  uint64_t seed;
  std::vector<Encoding> encodings;  // one per cycle
};

class CommitStackTest : public ::testing::TestWithParam<CycleCase> {};

TEST_P(CommitStackTest, CommitThenStackNewUpper) {
  const CycleCase& c = GetParam();
  ModelHarness h(c.seed, 8 * kMiB);
  ASSERT_NO_FATAL_FAILURE(h.NewUpper());
  for (size_t cycle = 0; cycle < c.encodings.size(); cycle++) {
    SCOPED_TRACE(std::string("cycle ") + std::to_string(cycle) + " " + EncodingName(c.encodings[cycle]));
    ASSERT_NO_FATAL_FAILURE(h.RandomOps(160));
    if (h.Chance(50)) {
      ASSERT_NO_FATAL_FAILURE(h.Reopen());
    }
    ASSERT_NO_FATAL_FAILURE(h.CheckPhase());
    ASSERT_NO_FATAL_FAILURE(h.CommitUpperAndStack(c.encodings[cycle]));
    ASSERT_EQ(h.lower_count(), cycle + 1);
    ASSERT_NO_FATAL_FAILURE(h.CheckPhase());  // new empty upper: device unchanged
  }
  ASSERT_NO_FATAL_FAILURE(h.RandomOps(160));
  ASSERT_NO_FATAL_FAILURE(h.CheckPhase());
  ASSERT_NO_FATAL_FAILURE(h.MergeAndCheck(Encoding::kPlain, false));
  ASSERT_NO_FATAL_FAILURE(h.MergeAndCheck(Encoding::kZFile, true));
  ASSERT_NO_FATAL_FAILURE(h.CheckPhase());
  ASSERT_NO_FATAL_FAILURE(h.RandomOps(100));
  ASSERT_NO_FATAL_FAILURE(h.CheckPhase());
  ASSERT_NO_FATAL_FAILURE(h.ImportRawAndCheck(Encoding::kPlain));
}

INSTANTIATE_TEST_SUITE_P(
    Seeds, CommitStackTest,
    ::testing::Values(CycleCase{11, {Encoding::kPlain, Encoding::kZFile, Encoding::kPlain}},
                      CycleCase{12, {Encoding::kZFile, Encoding::kZFileTar, Encoding::kZFile}},
                      CycleCase{13, {Encoding::kTar, Encoding::kPlain, Encoding::kZFileTar, Encoding::kZFile}}));

TEST(ModelTest, SealThenStack) {
  ModelHarness h(21, 8 * kMiB);
  ASSERT_NO_FATAL_FAILURE(h.NewUpper());
  for (int cycle = 0; cycle < 3; cycle++) {
    SCOPED_TRACE("cycle " + std::to_string(cycle));
    ASSERT_NO_FATAL_FAILURE(h.RandomOps(150));
    ASSERT_NO_FATAL_FAILURE(h.SealUpperAndStack());
    ASSERT_NO_FATAL_FAILURE(h.CheckPhase());
  }
  ASSERT_NO_FATAL_FAILURE(h.RandomOps(100));
  ASSERT_NO_FATAL_FAILURE(h.CommitUpperAndStack(Encoding::kZFile));
  ASSERT_NO_FATAL_FAILURE(h.MergeAndCheck(Encoding::kPlain, true));
  ASSERT_NO_FATAL_FAILURE(h.CheckPhase());
}

// Many thin layers: each cycle writes a little, so most of the device resolves through deep
// lowers (exercises merge across layers and zeroed entries hiding lower data).
TEST(ModelTest, ManyThinLayers) {
  ModelHarness h(31, 8 * kMiB);
  ASSERT_NO_FATAL_FAILURE(h.NewUpper());
  ASSERT_NO_FATAL_FAILURE(h.RandomOps(200));
  for (int cycle = 0; cycle < 12; cycle++) {
    SCOPED_TRACE("cycle " + std::to_string(cycle));
    ASSERT_NO_FATAL_FAILURE(h.CommitUpperAndStack(cycle % 3 == 0 ? Encoding::kZFile : Encoding::kPlain));
    for (int i = 0; i < 25; i++) {
      if (h.Chance(40)) {
        ASSERT_NO_FATAL_FAILURE(h.RandomDiscard(64 * 1024));
      } else {
        ASSERT_NO_FATAL_FAILURE(h.RandomWrite(64 * 1024));
      }
    }
    for (int i = 0; i < 6; i++) ASSERT_NO_FATAL_FAILURE(h.RandomRead());
  }
  ASSERT_NO_FATAL_FAILURE(h.CheckPhase());
  ASSERT_NO_FATAL_FAILURE(h.MergeAndCheck(Encoding::kZFileTar, false));
  ASSERT_NO_FATAL_FAILURE(h.ImportRawAndCheck(Encoding::kZFile));
}

// A 20 MiB device: writes over 4 MiB (split into 4 MiB records), discards over 16383 sectors
// (split into 16383-sector pieces), and commit merging adjacent pieces back.
TEST(ModelTest, BigWritesAndDiscardsAreSplit) {
  const uint64_t vsize = 20 * kMiB;
  ModelHarness h(41, vsize);
  ASSERT_NO_FATAL_FAILURE(h.NewUpper());
  ASSERT_NO_FATAL_FAILURE(h.Write(512, 9 * kMiB + 512 * 3));   // 3 pieces
  ASSERT_NO_FATAL_FAILURE(h.Write(10 * kMiB, 4 * kMiB));       // exactly one piece
  ASSERT_NO_FATAL_FAILURE(h.Write(15 * kMiB + 512, 4 * kMiB + 512));
  ASSERT_NO_FATAL_FAILURE(h.CheckPhase());
  ASSERT_NO_FATAL_FAILURE(h.Discard(1 * kMiB + 512, 10 * kMiB));  // 20480 sectors > 16383
  ASSERT_NO_FATAL_FAILURE(h.Write(3 * kMiB, 4096));                // inside the discard
  ASSERT_NO_FATAL_FAILURE(h.CheckPhase());
  for (const auto& s : h.image().Segments()) ASSERT_LE(s.length, lsmt::kMaxSegmentLength);
  ASSERT_NO_FATAL_FAILURE(h.Reopen());
  ASSERT_NO_FATAL_FAILURE(h.CheckPhase());
  ASSERT_NO_FATAL_FAILURE(h.CommitUpperAndStack(Encoding::kZFile));
  ASSERT_NO_FATAL_FAILURE(h.CheckPhase());
  ASSERT_NO_FATAL_FAILURE(h.Discard(0, vsize));  // the whole device: hides every lower
  ASSERT_NO_FATAL_FAILURE(h.CheckPhase());
  for (int i = 0; i < 30; i++) {
    bool write = h.Chance(60);
    uint64_t len = (1 + h.Rand((write ? 9 : 12) * kMiB / 512)) * 512;  // payload pools are 10 MiB
    uint64_t off = h.Rand((vsize - len) / 512 + 1) * 512;
    if (write) {
      ASSERT_NO_FATAL_FAILURE(h.Write(off, len));
    } else {
      ASSERT_NO_FATAL_FAILURE(h.Discard(off, len));
    }
  }
  ASSERT_NO_FATAL_FAILURE(h.CheckPhase());
  ASSERT_NO_FATAL_FAILURE(h.CommitUpperAndStack(Encoding::kPlain));
  ASSERT_NO_FATAL_FAILURE(h.MergeAndCheck(Encoding::kPlain, true));
  ASSERT_NO_FATAL_FAILURE(h.CheckPhase());
}

// ImportRaw of a raw image whose size is not a multiple of 512 (or 4096): the virtual size is
// rounded up to 512 and the tail reads as zeros.
TEST(ModelTest, ImportRawOfOddSize) {
  for (uint64_t size : {uint64_t{1}, uint64_t{511}, uint64_t{4097}, uint64_t{3 * kMiB + 1000}}) {
    SCOPED_TRACE(size);
    std::vector<uint8_t> raw = testing::MakeData(size, size);
    if (size > 8192) std::fill(raw.begin() + 4096, raw.begin() + 8192, 0);  // one all-zero block
    auto out = std::make_shared<MemStorage>();
    auto w = NewMemWritableFile("imported", out);
    Status s = lsmt::ImportRaw(*NewMemReadableFile("raw", raw), w.get(), {});
    ASSERT_TRUE(s.ok()) << s.ToString();
    ASSERT_TRUE(w->Close().ok());
    auto image = lsmt::OpenImage({std::shared_ptr<const ReadableFile>(NewMemReadableFile("imported", out->bytes))});
    ASSERT_TRUE(image.ok()) << image.status().ToString();
    const uint64_t vsize = (size + 511) / 512 * 512;
    ASSERT_EQ((*image)->Size(), vsize);
    auto all = ReadAll(**image);
    ASSERT_TRUE(all.ok());
    std::vector<uint8_t> want = raw;
    want.resize(vsize, 0);
    EXPECT_TRUE(*all == want);
  }
}

}  // namespace
}  // namespace ovbd
