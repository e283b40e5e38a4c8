// Field-poking corruption tests over the formats as a whole, through the library's front doors
// (image::Unwrap + lsmt::OpenImage, zfile::Open, lsmt::OpenRwLayer).
//
// Every poked field, truncation or flipped byte has exactly one outcome, the one its spec
// (docs/format/lsmt.md, zfile.md) gives: either a Status of exactly that code whose message names
// the file and gives a cause, or an open after which every read succeeds and returns exactly the
// original bytes. A row that would pass either way proves nothing, so there is none; where a file
// truly could go either way, the spec is what gets fixed. Never a crash, never a huge allocation
// (caps are checked first; run under ASan to prove it), never wrong bytes.
//
// LSMT has no checksums at all (notes §7): a flipped data byte of an LSMT blob is returned as is,
// and an index entry that is changed into another well-formed entry is undetectable. The tests
// below document that (IndexByteFlipsNeverCrash, DataFlipsAreUndetectableByDesign). ZFile with
// per-block CRC must detect every flipped data byte and name the block.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "base/crc32c.h"
#include "base/hash.h"
#include "ovbd/image.h"
#include "ovbd/io.h"
#include "ovbd/lsmt.h"
#include "ovbd/zfile.h"
#include "testutil.h"

namespace ovbd {
namespace {

using Bytes = std::vector<uint8_t>;

void PutLE(Bytes& b, uint64_t at, uint64_t v, int width) {
  for (int i = 0; i < width; i++) b[at + i] = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t GetLE(const Bytes& b, uint64_t at, int width) {
  uint64_t v = 0;
  for (int i = 0; i < width; i++) v |= uint64_t{b[at + i]} << (8 * i);
  return v;
}

const Bytes& Vector(const std::string& name) {
  static std::map<std::string, Bytes> cache;
  auto it = cache.find(name);
  if (it == cache.end()) it = cache.emplace(name, testing::ReadFileBytes(testing::VectorPath(name))).first;
  return it->second;
}

// Opens `bytes` as a one-layer image through Unwrap + lsmt::OpenImage.
Result<std::unique_ptr<lsmt::Image>> OpenAsLayer(Bytes bytes, const std::string& name) {
  auto u = image::Unwrap(std::shared_ptr<const ReadableFile>(NewMemReadableFile(name, std::move(bytes))));
  if (!u.ok()) return u.status();
  return lsmt::OpenImage({u->content});
}

Result<std::unique_ptr<zfile::Reader>> OpenZ(Bytes bytes, const std::string& name) {
  return zfile::Open(NewMemReadableFile(name, std::move(bytes)));
}

// A rejection: exactly `code`, and a message that names the file and gives a cause.
void ExpectNamedError(const Status& s, Code code, const std::string& name, const std::string& what) {
  ASSERT_FALSE(s.ok()) << what << ": must be rejected with " << CodeName(code);
  EXPECT_EQ(s.code(), code) << what << ": " << s.ToString();
  EXPECT_NE(s.message().find(name), std::string::npos) << what << ": error must name the file: " << s.ToString();
  EXPECT_GT(s.message().size(), name.size() + 8) << what << ": error must give a cause: " << s.ToString();
}

// Reads all of `f` in 1 MiB chunks: every read must succeed and return the first f.Size() bytes of
// `original` (zeros past its end: an LSMT device may be bigger than its data).
Status ReadsExactly(const ReadableFile& f, const Bytes& original) {
  const uint64_t chunk = 1 << 20;
  Bytes buf(chunk);
  for (uint64_t off = 0; off < f.Size(); off += chunk) {
    const uint64_t n = std::min(chunk, f.Size() - off);
    OVBD_RETURN_IF_ERROR(f.ReadAt(off, std::span(buf.data(), n)));
    for (uint64_t i = 0; i < n; i++) {
      const uint8_t want = off + i < original.size() ? original[off + i] : 0;
      if (buf[i] != want) {
        ADD_FAILURE() << f.Name() << ": wrong byte at " << off + i << " (" << int(buf[i]) << " vs " << int(want) << ")";
        return Status::OK();  // reported; the status is about errors, not data
      }
    }
  }
  return Status::OK();
}

// ================================ LSMT (layer0.lsmt) =============================================

constexpr uint64_t kHt = 4096;
// LSMT HeaderTrailer field offsets (notes §2.2).
constexpr uint64_t kLMagic0 = 0, kLMagic1 = 8, kLSize = 24, kLFlags = 28, kLIndexOffset = 32, kLIndexSize = 40,
                   kLVirtualSize = 48, kLUuid = 56, kLParent = 93, kLReserved = 130, kLVersion = 132,
                   kLSubVersion = 133, kLUserTag = 134;

// The original 64 MiB device of layer0 (read once through the library and checked by md5).
const Bytes& Layer0Device() {
  static Bytes dev = [] {
    auto image = OpenAsLayer(Vector("layer0.lsmt"), "layer0.lsmt");
    EXPECT_TRUE(image.ok()) << image.status().ToString();
    Bytes out;
    if (!image.ok()) return out;
    auto all = ReadAll(**image);
    EXPECT_TRUE(all.ok());
    if (all.ok()) out = std::move(all).value();
    EXPECT_EQ(Md5Hex(out), "52c1be1f44e2c1a4c1f46a02f8ffc443") << "baseline device is wrong";
    return out;
  }();
  return dev;
}

struct Layer0 {
  Bytes bytes = Vector("layer0.lsmt");
  uint64_t trailer = bytes.size() - kHt;
  uint64_t index_offset = GetLE(bytes, bytes.size() - kHt + kLIndexOffset, 8);
  uint64_t index_size = GetLE(bytes, bytes.size() - kHt + kLIndexSize, 8);
  uint64_t entry(size_t i) const { return index_offset + 16 * i; }
};

constexpr uint64_t kLayer0DeviceSize = 64 << 20;

// The one outcome a poked LSMT blob must have: rejected with exactly `code`, or (kOk) opened as a
// device of `size` bytes whose every byte reads like the original device.
struct Outcome {
  Code code = Code::kOk;
  uint64_t size = kLayer0DeviceSize;
};
constexpr Outcome kOpens{};
constexpr Outcome Fails(Code code) { return Outcome{code, 0}; }
constexpr Outcome OpensWithSize(uint64_t size) { return Outcome{Code::kOk, size}; }
constexpr Outcome kCorrupt = Fails(Code::kCorruption);
constexpr Outcome kUnsupported = Fails(Code::kNotSupported);

void CheckLsmt(const Bytes& poked, Outcome expect, const std::string& what) {
  const std::string name = "poked-layer0.lsmt";
  auto image = OpenAsLayer(poked, name);
  if (expect.code != Code::kOk) {
    ASSERT_NO_FATAL_FAILURE(ExpectNamedError(image.status(), expect.code, name, what));
    return;
  }
  ASSERT_TRUE(image.ok()) << what << ": must open: " << image.status().ToString();
  EXPECT_EQ((*image)->Size(), expect.size) << what;
  Status read = ReadsExactly(**image, Layer0Device());
  EXPECT_TRUE(read.ok()) << what << ": every read must succeed: " << read.ToString();
}

struct LsmtPoke {
  const char* what;
  bool trailer;       // poke the trailer (else the header)
  uint64_t field;
  uint64_t value;
  int width;
  Outcome expect;
};

TEST(LsmtCorruption, NamedHeaderAndTrailerFields) {
  ASSERT_FALSE(Layer0Device().empty());
  const Layer0 l0;
  const uint64_t hflags = GetLE(l0.bytes, kLFlags, 4);               // 0x07
  const uint64_t tflags = GetLE(l0.bytes, l0.trailer + kLFlags, 4);  // 0x06
  ASSERT_EQ(hflags, 0x07u);
  ASSERT_EQ(tflags, 0x06u);
  const std::vector<LsmtPoke> pokes = {
      {"header magic0[0]", false, kLMagic0, 'M', 1, kCorrupt},
      {"header magic0[7]", false, kLMagic0 + 7, 1, 1, kCorrupt},
      {"header magic1[0]", false, kLMagic1, 0x66, 1, kCorrupt},
      {"header magic1[15]", false, kLMagic1 + 15, 0, 1, kCorrupt},
      {"trailer magic0[0]", true, kLMagic0, 'l', 1, kCorrupt},
      {"trailer magic1[15]", true, kLMagic1 + 15, 0, 1, kCorrupt},
      {"header flags: header bit cleared", false, kLFlags, hflags & ~1u, 4, kCorrupt},
      {"header flags: data bit cleared", false, kLFlags, hflags & ~2u, 4, kCorrupt},
      {"trailer flags: header bit set", true, kLFlags, tflags | 1u, 4, kCorrupt},
      {"trailer flags: data bit cleared", true, kLFlags, tflags & ~2u, 4, kCorrupt},
      {"trailer flags: sealed bit cleared", true, kLFlags, tflags & ~4u, 4, kCorrupt},
      {"trailer index_offset 0", true, kLIndexOffset, 0, 8, kCorrupt},
      {"trailer index_offset 4095", true, kLIndexOffset, 4095, 8, kCorrupt},
      {"trailer index_offset = trailer", true, kLIndexOffset, l0.trailer, 8, kCorrupt},
      {"trailer index_offset past EOF", true, kLIndexOffset, l0.bytes.size() + 512, 8, kCorrupt},
      {"trailer index_offset 2^63", true, kLIndexOffset, 1ULL << 63, 8, kCorrupt},
      {"trailer index_offset +16 (not 512-aligned)", true, kLIndexOffset, l0.index_offset + 16, 8, kCorrupt},
      {"trailer index_offset -512 (into data)", true, kLIndexOffset, l0.index_offset - 512, 8, kCorrupt},
      {"trailer index_size 257 (past trailer)", true, kLIndexSize, 257, 8, kCorrupt},
      {"trailer index_size 1,000,001 (cap)", true, kLIndexSize, 1'000'001, 8, kCorrupt},
      {"trailer index_size 2^40", true, kLIndexSize, 1ULL << 40, 8, kCorrupt},
      {"trailer index_size 2^60 (x16 overflows)", true, kLIndexSize, 1ULL << 60, 8, kCorrupt},
      {"trailer index_size max", true, kLIndexSize, ~0ULL, 8, kCorrupt},
      // Flags (lsmt.md §3): 3 and 5 ignored, 4 ignored in a read-only blob, 6..31 NotSupported.
      {"header flags: bit 3 (gc_layer)", false, kLFlags, hflags | 8u, 4, kOpens},
      {"header flags: bit 4 (a sealed sparse layer)", false, kLFlags, hflags | 16u, 4, kOpens},
      {"trailer flags: bit 4 (a sealed sparse layer)", true, kLFlags, tflags | 16u, 4, kOpens},
      {"trailer flags: bit 5 (info_valid)", true, kLFlags, tflags | 32u, 4, kOpens},
      {"header flags: unknown bit 6", false, kLFlags, hflags | 64u, 4, kUnsupported},
      {"trailer flags: unknown bit 31", true, kLFlags, tflags | 0x80000000u, 4, kUnsupported},
      // Fields the reader ignores (§2), or takes only from the trailer (§6 step 3).
      {"header size field 391", false, kLSize, 391, 4, kOpens},
      {"trailer size field 0", true, kLSize, 0, 4, kOpens},
      {"header index_offset garbage (unused)", false, kLIndexOffset, 0x123456789ULL, 8, kOpens},
      {"header index_size garbage (unused)", false, kLIndexSize, 1ULL << 40, 8, kOpens},
      {"header virtual_size 0 (trailer wins)", false, kLVirtualSize, 0, 8, kOpens},
      {"trailer reserved 0xFFFF", true, kLReserved, 0xFFFF, 2, kOpens},
      {"trailer sub_version 9", true, kLSubVersion, 9, 1, kOpens},
      {"trailer user_tag without NUL", true, kLUserTag + 248, 0x4141414141414141ULL, 8, kOpens},
      {"trailer version 2", true, kLVersion, 2, 1, kUnsupported},
      // Padding is recognised by its offset alone, wherever the count ends (§4, §6 step 5).
      {"trailer index_size 255 (drops one padding entry)", true, kLIndexSize, 255, 8, kOpens},
      {"trailer index_size 21 (no padding)", true, kLIndexSize, 21, 8, kOpens},
      // virtual_size (§2, §7): whole sectors up to (2^50-1)*512; 0 = none, so the device is empty.
      {"trailer virtual_size 0", true, kLVirtualSize, 0, 8, OpensWithSize(0)},
      {"trailer virtual_size 4096", true, kLVirtualSize, 4096, 8, OpensWithSize(4096)},
      {"trailer virtual_size 128 MiB", true, kLVirtualSize, 128 << 20, 8, OpensWithSize(128 << 20)},
      {"trailer virtual_size not 512-aligned", true, kLVirtualSize, 67108864 + 100, 8, kUnsupported},
      {"trailer virtual_size 2^63", true, kLVirtualSize, 1ULL << 63, 8, kUnsupported},
      {"trailer virtual_size max", true, kLVirtualSize, ~0ULL, 8, kUnsupported},
      {"header virtual_size not 512-aligned", false, kLVirtualSize, 67108864 - 1, 8, kUnsupported},
      // uuids are informational (§2): text that does not parse is the null uuid, never an error.
      {"trailer uuid[0] not hex", true, kLUuid, 'g', 1, kOpens},
      {"trailer uuid[8] not a dash", true, kLUuid + 8, '0', 1, kOpens},
      {"trailer uuid[36] not NUL", true, kLUuid + 36, 'X', 1, kOpens},
      {"trailer uuid high bytes", true, kLUuid, 0xFFFFFFFFFFFFFFFFULL, 8, kOpens},
      {"trailer parent_uuid[13] not a dash", true, kLParent + 13, 'x', 1, kOpens},
  };
  for (const auto& p : pokes) {
    SCOPED_TRACE(p.what);
    Bytes b = l0.bytes;
    PutLE(b, (p.trailer ? l0.trailer : 0) + p.field, p.value, p.width);
    ASSERT_NO_FATAL_FAILURE(CheckLsmt(b, p.expect, p.what));
  }
}

// user_tag entirely filled (256 bytes, no NUL) is valid: the field needs no terminator.
TEST(LsmtCorruption, FullUserTagIsValid) {
  const Layer0 l0;
  Bytes b = l0.bytes;
  std::fill(b.begin() + static_cast<ptrdiff_t>(l0.trailer + kLUserTag),
            b.begin() + static_cast<ptrdiff_t>(l0.trailer + kLUserTag + 256), 'T');
  auto info = lsmt::ReadLayerInfo(*NewMemReadableFile("tag", b));
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->trailer.user_tag, std::string(256, 'T'));
}

TEST(LsmtCorruption, Truncation) {
  const Layer0 l0;
  const uint64_t n = l0.bytes.size();
  for (uint64_t len : {uint64_t{0}, uint64_t{1}, uint64_t{511}, uint64_t{512}, uint64_t{4095}, uint64_t{4096},
                       uint64_t{8191}, uint64_t{8192}, n / 2, l0.index_offset, l0.trailer, n - 4095, n - 512, n - 1}) {
    SCOPED_TRACE("truncated to " + std::to_string(len));
    Bytes b(l0.bytes.begin(), l0.bytes.begin() + static_cast<ptrdiff_t>(len));
    ASSERT_NO_FATAL_FAILURE(CheckLsmt(b, kCorrupt, "truncated to " + std::to_string(len)));
  }
}

// Index entries (notes §2.4): lo = offset | length << 50, hi = moffset | zeroed << 55 | tag << 56.
struct Entry {
  uint64_t lo, hi;
  uint64_t offset() const { return lo & ((1ULL << 50) - 1); }
  uint64_t length() const { return lo >> 50; }
  uint64_t moffset() const { return hi & ((1ULL << 55) - 1); }
  bool zeroed() const { return (hi >> 55) & 1; }
};
Entry GetEntry(const Bytes& b, uint64_t at) { return {GetLE(b, at, 8), GetLE(b, at + 8, 8)}; }
void PutEntry(Bytes& b, uint64_t at, const Entry& e) {
  PutLE(b, at, e.lo, 8);
  PutLE(b, at + 8, e.hi, 8);
}
Entry MakeEntry(uint64_t offset, uint64_t length, uint64_t moffset, bool zeroed, uint8_t tag = 0) {
  return {offset | (length << 50), moffset | (uint64_t{zeroed} << 55) | (uint64_t{tag} << 56)};
}

TEST(LsmtCorruption, IndexEntries) {
  ASSERT_FALSE(Layer0Device().empty());
  const Layer0 l0;
  std::vector<Entry> real;
  size_t first_data = 0, first_zeroed = 0;
  for (size_t i = 0; i < l0.index_size; i++) {
    Entry e = GetEntry(l0.bytes, l0.entry(i));
    if (e.offset() == (1ULL << 50) - 1) break;
    real.push_back(e);
  }
  ASSERT_EQ(real.size(), 21u);
  while (real[first_data].zeroed()) first_data++;
  while (!real[first_zeroed].zeroed()) first_zeroed++;
  const uint64_t data_end = l0.index_offset / 512;

  struct Case {
    std::string what;
    std::function<void(Bytes&)> poke;
    Outcome expect;
  };
  auto set = [&](size_t i, Entry e) { return [&l0, i, e](Bytes& b) { PutEntry(b, l0.entry(i), e); }; };
  const Entry d = real[first_data];
  const Entry z = real[first_zeroed];
  std::vector<Case> cases = {
      {"length 0", set(first_data, MakeEntry(d.offset(), 0, d.moffset(), false)), kCorrupt},
      // 16384 does not fit the 14-bit field: written as such it wraps to length 0 and sets
      // nothing else, so it must be rejected exactly like length 0.
      {"length 16384 (wraps to 0)", set(first_data, Entry{d.offset() | (16384ULL << 50), d.hi}), kCorrupt},
      {"overlaps the previous entry", set(1, MakeEntry(real[0].offset(), real[1].length(), real[1].moffset(),
                                                       real[1].zeroed())),
       kCorrupt},
      {"unsorted (entries 2 and 3 swapped)",
       [&](Bytes& b) {
         PutEntry(b, l0.entry(2), real[3]);
         PutEntry(b, l0.entry(3), real[2]);
       },
       kCorrupt},
      {"duplicate entry", set(5, real[4]), kCorrupt},
      {"data moffset 0 (inside the header)", set(first_data, MakeEntry(d.offset(), d.length(), 0, false)),
       kCorrupt},
      {"data moffset 7", set(first_data, MakeEntry(d.offset(), d.length(), 7, false)), kCorrupt},
      {"data moffset = index start", set(first_data, MakeEntry(d.offset(), d.length(), data_end, false)),
       kCorrupt},
      {"data runs into the index", set(first_data, MakeEntry(d.offset(), d.length(), data_end - d.length() + 1, false)),
       kCorrupt},
      {"data moffset 2^55-1", set(first_data, MakeEntry(d.offset(), d.length(), (1ULL << 55) - 1, false)),
       kCorrupt},
      {"zeroed moffset past the data end", set(first_zeroed, MakeEntry(z.offset(), z.length(), data_end + 1, true)),
       kCorrupt},
      {"last entry past the 2^50 sector limit",
       set(20, MakeEntry((1ULL << 50) - 4, 8, real[20].moffset(), real[20].zeroed())), kCorrupt},
      // Valid (lsmt.md §4, §6 step 6): on-disk tags are ignored, a zeroed entry's moffset may be
      // anywhere in [8, data end], padding is recognised by its offset field alone.
      {"tag 7 on a data entry", set(first_data, Entry{d.lo, d.hi | (7ULL << 56)}), kOpens},
      {"tag 255 on every entry",
       [&](Bytes& b) {
         for (size_t i = 0; i < real.size(); i++) PutEntry(b, l0.entry(i), Entry{real[i].lo, real[i].hi | (255ULL << 56)});
       },
       kOpens},
      {"zeroed moffset = data end", set(first_zeroed, MakeEntry(z.offset(), z.length(), data_end, true)),
       kOpens},
      {"zeroed moffset = 8", set(first_zeroed, MakeEntry(z.offset(), z.length(), 8, true)), kOpens},
      {"padding entry with garbage after the offset",
       [&](Bytes& b) { PutEntry(b, l0.entry(100), Entry{((1ULL << 50) - 1) | (5ULL << 50), 0xFFFFFFFFFFFFFFFFULL}); },
       kOpens},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    Bytes b = l0.bytes;
    c.poke(b);
    ASSERT_NO_FATAL_FAILURE(CheckLsmt(b, c.expect, c.what));
  }
}

// Every byte of the real index entries flipped: a structural break is Corruption naming the file
// (every entry rule of lsmt.md §6 is); an entry that stays well formed is undetectable (no
// checksums): the blob opens and reads succeed, with whatever bytes the changed entry maps.
TEST(LsmtCorruption, IndexByteFlipsNeverCrash) {
  const Layer0 l0;
  const std::string name = "flipped-layer0.lsmt";
  int rejected = 0, accepted = 0;
  Bytes buf(64 * 1024);
  for (uint64_t at = l0.index_offset; at < l0.index_offset + 21 * 16; at++) {
    for (uint8_t mask : {uint8_t{0x01}, uint8_t{0x80}}) {
      Bytes b = l0.bytes;
      b[at] ^= mask;
      auto image = OpenAsLayer(std::move(b), name);
      if (!image.ok()) {
        ASSERT_NO_FATAL_FAILURE(
            ExpectNamedError(image.status(), Code::kCorruption, name, "flip at " + std::to_string(at)));
        rejected++;
        continue;
      }
      accepted++;
      const uint64_t size = (*image)->Size();
      for (uint64_t off : {uint64_t{0}, size / 3, size / 2 + 4097, size - std::min<uint64_t>(size, buf.size())}) {
        uint64_t n = std::min<uint64_t>(buf.size(), size - std::min(off, size));
        Status read = (*image)->ReadAt(std::min(off, size), std::span(buf.data(), n));
        EXPECT_TRUE(read.ok()) << "flip at " << at << ": " << read.ToString();
      }
    }
  }
  std::cout << "[ info     ] LSMT index flips: " << rejected << " rejected, " << accepted
            << " undetectable (LSMT has no checksums)\n";
  EXPECT_GT(rejected, 0);
}

// LSMT has no checksums: a flipped data byte is returned as is. This documents the format; the
// test asserts the open succeeds and exactly that one device byte differs.
TEST(LsmtCorruption, DataFlipsAreUndetectableByDesign) {
  const Bytes& device = Layer0Device();
  ASSERT_FALSE(device.empty());
  const Layer0 l0;
  auto info = lsmt::ReadLayerInfo(*NewMemReadableFile("layer0.lsmt", l0.bytes));
  ASSERT_TRUE(info.ok());
  int checked = 0;
  for (const auto& s : info->segments) {
    if (s.zeroed || checked == 4) continue;
    checked++;
    const uint64_t in_seg = (s.length * 512) / 2 + 3;
    Bytes b = l0.bytes;
    b[s.moffset * 512 + in_seg] ^= 0x5A;
    auto image = OpenAsLayer(std::move(b), "flipped-data");
    ASSERT_TRUE(image.ok()) << image.status().ToString();
    const uint64_t dev_at = s.offset * 512 + in_seg;
    Bytes got(4096);
    const uint64_t from = dev_at / 4096 * 4096;
    ASSERT_TRUE((*image)->ReadAt(from, got).ok());
    for (uint64_t i = 0; i < got.size(); i++) {
      if (from + i == dev_at) {
        EXPECT_EQ(got[i], device[from + i] ^ 0x5A);
      } else {
        EXPECT_EQ(got[i], device[from + i]);
      }
    }
  }
  EXPECT_EQ(checked, 4);
}

// ================================ ZFile =========================================================

constexpr uint64_t kZHt = 512;
constexpr uint64_t kZMagic0 = 0, kZMagic1 = 8, kZSize = 24, kZDigest = 28, kZFlags = 32, kZIndexOffset = 40,
                   kZIndexSize = 48, kZOriginalSize = 56, kZIndexCrc = 64, kZReserved0 = 68, kZBlockSize = 72,
                   kZAlgo = 76, kZLevel = 77, kZUseDict = 78, kZDictSize = 84, kZVerify = 88;

// Recomputes the raw CRC32C digest of the 512-byte record at `at` (digest field zeroed).
void FixDigest(Bytes& b, uint64_t at) {
  PutLE(b, at + kZDigest, 0, 4);
  PutLE(b, at + kZDigest, Crc32c(std::span<const uint8_t>(b.data() + at, kZHt)), 4);
}

// A ZFile rule rejects a file when it opens or, for a block (zfile.md §6, §7), when that block is
// read: `code` is the first failure of opening the file and reading all of it, kOk for none (and
// then the content must be exactly `original`).
void CheckZ(const Bytes& poked, const Bytes& original, Code code, const std::string& what) {
  const std::string name = "poked.zfile";
  auto r = OpenZ(poked, name);
  Status s = r.status();
  if (r.ok()) {
    if (code == Code::kOk) {
      EXPECT_EQ((*r)->Size(), original.size()) << what;
    }
    s = ReadsExactly(**r, original);
  }
  if (code == Code::kOk) {
    EXPECT_TRUE(s.ok()) << what << ": must open and read: " << s.ToString();
    return;
  }
  ASSERT_NO_FATAL_FAILURE(ExpectNamedError(s, code, name, what));
}

struct ZPoke {
  const char* what;
  uint64_t field;
  uint64_t value;
  int width;
  Code expect;
};

// plain.lz4-4k-crc.zfile: header 0x13 (no info), metadata in the trailer, per-block CRC.
TEST(ZFileCorruption, TrailerFieldsWithValidDigest) {
  const Bytes& z = Vector("plain.lz4-4k-crc.zfile");
  const Bytes& plain = Vector("plain.bin");
  const uint64_t t = z.size() - kZHt;
  ASSERT_EQ(GetLE(z, kZFlags, 8), 0x13u);
  ASSERT_EQ(GetLE(z, t + kZFlags, 8), 0x16u);
  const uint64_t io = GetLE(z, t + kZIndexOffset, 8);
  const uint64_t is = GetLE(z, t + kZIndexSize, 8);
  const uint64_t os = GetLE(z, t + kZOriginalSize, 8);
  ASSERT_EQ(os, plain.size());
  const std::vector<ZPoke> pokes = {
      {"trailer magic0[1]", kZMagic0 + 1, 'f', 1, Code::kCorruption},
      {"trailer magic1[0]", kZMagic1, 'T', 1, Code::kCorruption},
      {"trailer flags: header bit set", kZFlags, 0x17, 8, Code::kCorruption},
      {"trailer flags: data bit cleared", kZFlags, 0x14, 8, Code::kCorruption},
      {"trailer flags: sealed bit cleared", kZFlags, 0x12, 8, Code::kCorruption},
      {"index_offset 0", kZIndexOffset, 0, 8, Code::kCorruption},
      {"index_offset +1", kZIndexOffset, io + 1, 8, Code::kCorruption},
      {"index_offset -4", kZIndexOffset, io - 4, 8, Code::kCorruption},
      {"index_offset past EOF", kZIndexOffset, z.size() + 100, 8, Code::kCorruption},
      {"index_offset 2^63", kZIndexOffset, 1ULL << 63, 8, Code::kCorruption},
      {"index_size +1", kZIndexSize, is + 1, 8, Code::kCorruption},
      {"index_size -1", kZIndexSize, is - 1, 8, Code::kCorruption},
      {"index_size 0", kZIndexSize, 0, 8, Code::kCorruption},
      {"index_size 1e9+1 (cap)", kZIndexSize, 1'000'000'001, 8, Code::kCorruption},
      {"index_size 2^62 (x4 overflows)", kZIndexSize, 1ULL << 62, 8, Code::kCorruption},
      {"index_size max", kZIndexSize, ~0ULL, 8, Code::kCorruption},
      {"original_size 0", kZOriginalSize, 0, 8, Code::kCorruption},
      {"original_size +4096 (one more block)", kZOriginalSize, os + 4096, 8, Code::kCorruption},
      {"original_size 2^63", kZOriginalSize, 1ULL << 63, 8, Code::kCorruption},
      {"index_crc", kZIndexCrc, 0x12345678, 4, Code::kCorruption},
      {"block_size 0", kZBlockSize, 0, 4, Code::kCorruption},
      {"block_size 4097", kZBlockSize, 4097, 4, Code::kCorruption},
      {"block_size 8192 (valid, wrong)", kZBlockSize, 8192, 4, Code::kCorruption},
      {"block_size 128K (above the cap)", kZBlockSize, 131072, 4, Code::kCorruption},
      {"block_size 2^31", kZBlockSize, 1u << 31, 4, Code::kCorruption},
      {"algo 0 (MINI_LZO, not implemented)", kZAlgo, 0, 1, Code::kNotSupported},
      {"algo 3 (unknown)", kZAlgo, 3, 1, Code::kNotSupported},
      {"algo 255", kZAlgo, 255, 1, Code::kNotSupported},
      {"dict_size 4096", kZDictSize, 4096, 4, Code::kNotSupported},
      // Same block count, wrong last-block length: caught when the last block is decoded (§6).
      {"original_size +1 (same block count)", kZOriginalSize, os + 1, 8, Code::kCorruption},
      {"original_size -1", kZOriginalSize, os - 1, 8, Code::kCorruption},
      // The blocks do not decode as the algorithm or layout says (§7).
      {"algo 2 (zstd instead of lz4)", kZAlgo, 2, 1, Code::kCorruption},
      {"verify 0 (the CRC bytes become part of the block)", kZVerify, 0, 1, Code::kCorruption},
      // Field rules of §3 and §4.
      {"verify 2", kZVerify, 2, 1, Code::kCorruption},
      {"size field 97", kZSize, 97, 4, Code::kCorruption},
      {"level 9 (ignored)", kZLevel, 9, 1, Code::kOk},
      {"use_dict 1 with dict_size 0", kZUseDict, 1, 1, Code::kNotSupported},
      {"reserved_0", kZReserved0, 0xFFFFFFFF, 4, Code::kOk},
      {"flags unknown bit 6", kZFlags, 0x16 | 0x40, 8, Code::kNotSupported},
      {"flags unknown bit 63", kZFlags, 0x16 | (1ULL << 63), 8, Code::kNotSupported},
      {"flags IDX_COMP (bit 5, never written)", kZFlags, 0x16 | 0x20, 8, Code::kNotSupported},
  };
  for (const auto& p : pokes) {
    SCOPED_TRACE(p.what);
    Bytes b = z;
    PutLE(b, t + p.field, p.value, p.width);
    FixDigest(b, t);
    ASSERT_NO_FATAL_FAILURE(CheckZ(b, plain, p.expect, p.what));
  }
}

// layer0.lz4-4k-crc.zfile: overwritten header (0x1B) carries the metadata; the trailer is not read.
TEST(ZFileCorruption, OverwrittenHeaderFieldsWithValidDigest) {
  const Bytes& z = Vector("layer0.lz4-4k-crc.zfile");
  const Bytes& lsmt = Vector("layer0.lsmt");
  ASSERT_EQ(GetLE(z, kZFlags, 8), 0x1Bu);
  const uint64_t io = GetLE(z, kZIndexOffset, 8);
  const uint64_t is = GetLE(z, kZIndexSize, 8);
  const std::vector<ZPoke> pokes = {
      {"header flags: header bit cleared", kZFlags, 0x1A, 8, Code::kCorruption},
      {"index_offset +4", kZIndexOffset, io + 4, 8, Code::kCorruption},
      {"index_offset 512", kZIndexOffset, 512, 8, Code::kCorruption},
      {"index_size +1", kZIndexSize, is + 1, 8, Code::kCorruption},
      {"index_size 4e9 (cap, 16 GB table)", kZIndexSize, 4'000'000'000ULL, 8, Code::kCorruption},
      {"original_size x2", kZOriginalSize, lsmt.size() * 2, 8, Code::kCorruption},
      {"index_crc", kZIndexCrc, 0, 4, Code::kCorruption},
      {"block_size 65536", kZBlockSize, 65536, 4, Code::kCorruption},
      {"algo 0", kZAlgo, 0, 1, Code::kNotSupported},
      // The overwritten-header bit cleared: the reader falls back to the (valid) trailer.
      {"header-overwrite bit cleared", kZFlags, 0x13, 8, Code::kOk},
  };
  for (const auto& p : pokes) {
    SCOPED_TRACE(p.what);
    Bytes b = z;
    PutLE(b, p.field, p.value, p.width);
    FixDigest(b, 0);
    ASSERT_NO_FATAL_FAILURE(CheckZ(b, lsmt, p.expect, p.what));
  }
  // Through the whole stack as a layer, a rejected ZFile names the file too.
  Bytes b = z;
  PutLE(b, kZIndexSize, is + 1, 8);
  FixDigest(b, 0);
  auto image = OpenAsLayer(b, "poked-layer0.zfile");
  ASSERT_NO_FATAL_FAILURE(
      ExpectNamedError(image.status(), Code::kCorruption, "poked-layer0.zfile", "index_size+1 via Unwrap"));
}

// The outcome of one changed byte of a record whose digest is not fixed (zfile.md §5: a record is
// checked for magic, flags, size, then digest, and the first failing check gives the code):
// magic, size and digest bytes are Corruption; a flag byte is the flag rule's code; every other
// byte is a digest mismatch. `flags_outcome` is the result of the changed low flag byte.
Code UnfixedRecordByte(uint64_t at, Code flags_outcome) {
  if (at == kZFlags) return flags_outcome;
  if (at > kZFlags && at < kZFlags + 8) return Code::kNotSupported;  // sets an unknown flag bit
  return Code::kCorruption;
}

// The header digest covers all 512 bytes: any changed byte without a fixed digest is rejected,
// except turning CALC_DIGEST off (bit 4 of byte 32), which the format allows: the header is then
// not checked, and the file reads right.
TEST(ZFileCorruption, HeaderDigestCoversEveryByte) {
  const Bytes& plain = Vector("plain.bin");
  for (const std::string file : {"plain.lz4-4k-crc.zfile", "layer0.lz4-4k-crc.zfile"}) {
    const Bytes& z = Vector(file);
    const Bytes& original = file[0] == 'p' ? plain : Vector("layer0.lsmt");
    for (uint64_t at = 0; at < kZHt; at += (at < 96 ? 1 : 37)) {
      SCOPED_TRACE(file + " header byte " + std::to_string(at));
      Bytes b = z;
      b[at] ^= 0x10;  // flips CALC_DIGEST when at == 32
      ASSERT_NO_FATAL_FAILURE(
          CheckZ(b, original, UnfixedRecordByte(at, Code::kOk), "header byte " + std::to_string(at)));
    }
  }
}

// The trailer digest is not checked by overlaybd; ovbd checks it (zfile.md §5 step 4, §10), so every
// changed trailer byte is rejected. At byte 32, 0x04 clears SEALED (Corruption).
TEST(ZFileCorruption, TrailerBytesWithoutDigestFixAreRejected) {
  const Bytes& z = Vector("plain.lz4-4k-crc.zfile");
  const Bytes& plain = Vector("plain.bin");
  const uint64_t t = z.size() - kZHt;
  for (uint64_t at = 0; at < 96; at++) {
    SCOPED_TRACE("trailer byte " + std::to_string(at));
    Bytes b = z;
    b[t + at] ^= 0x04;
    ASSERT_NO_FATAL_FAILURE(
        CheckZ(b, plain, UnfixedRecordByte(at, Code::kCorruption), "trailer byte " + std::to_string(at)));
  }
}

TEST(ZFileCorruption, Truncation) {
  for (const std::string file : {"plain.lz4-4k-crc.zfile", "layer0.lz4-4k-crc.zfile", "layer0.lz4-4k-nocrc.zfile"}) {
    const Bytes& z = Vector(file);
    const uint64_t n = z.size();
    for (uint64_t len : {uint64_t{0}, uint64_t{1}, uint64_t{511}, uint64_t{512}, uint64_t{513}, uint64_t{1023},
                         uint64_t{1024}, uint64_t{4095}, uint64_t{4096}, n / 2, n - 513, n - 512, n - 4, n - 1}) {
      SCOPED_TRACE(file + " truncated to " + std::to_string(len));
      Bytes b(z.begin(), z.begin() + static_cast<ptrdiff_t>(len));
      ASSERT_NO_FATAL_FAILURE(CheckZ(b, {}, Code::kCorruption, "truncated to " + std::to_string(len)));
      auto image = OpenAsLayer(b, "truncated");
      ASSERT_NO_FATAL_FAILURE(ExpectNamedError(image.status(), Code::kCorruption, "truncated", "as a layer"));
    }
  }
}

// With CALC_DIGEST the jump table is covered by index_crc: every flipped byte is rejected.
TEST(ZFileCorruption, JumpTableFlipsAreRejected) {
  const Bytes& z = Vector("plain.lz4-4k-crc.zfile");
  const uint64_t t = z.size() - kZHt;
  const uint64_t io = GetLE(z, t + kZIndexOffset, 8);
  for (uint64_t at = io; at < t; at++) {
    SCOPED_TRACE("jump table byte " + std::to_string(at - io));
    Bytes b = z;
    b[at] ^= 0x01;
    ASSERT_NO_FATAL_FAILURE(CheckZ(b, {}, Code::kCorruption, "jump table byte " + std::to_string(at - io)));
  }
}

// Without CALC_DIGEST (flag cleared, header digest no longer checked) the jump table is only
// checked structurally, but that is enough for a one-bit change: one entry moves, so the entries
// no longer sum to index_offset - 512 (zfile.md §6), which is Corruption at open.
TEST(ZFileCorruption, JumpTableFlipsWithoutDigestAreRejected) {
  const Bytes& z0 = Vector("plain.lz4-4k-crc.zfile");
  const Bytes& plain = Vector("plain.bin");
  Bytes z = z0;
  const uint64_t t = z.size() - kZHt;
  PutLE(z, kZFlags, 0x03, 8);       // header|data, no digest
  PutLE(z, t + kZFlags, 0x06, 8);   // data|sealed, no digest
  {
    auto r = OpenZ(z, "nodigest");
    ASSERT_TRUE(r.ok()) << "a ZFile without CALC_DIGEST is valid: " << r.status().ToString();
    EXPECT_FALSE((*r)->info().has_digest);
  }
  const uint64_t io = GetLE(z, t + kZIndexOffset, 8);
  for (uint64_t at = io; at < t; at += 3) {
    SCOPED_TRACE("jump table byte " + std::to_string(at - io));
    Bytes b = z;
    b[at] ^= 0x01;
    ASSERT_NO_FATAL_FAILURE(CheckZ(b, plain, Code::kCorruption, "jump table byte " + std::to_string(at - io)));
  }
}

std::vector<uint64_t> JumpTableOffsets(const Bytes& z, uint64_t io, uint64_t count) {
  std::vector<uint64_t> off{512};
  for (uint64_t i = 0; i < count; i++) off.push_back(off.back() + GetLE(z, io + 4 * i, 4));
  return off;
}

// With per-block CRC every flipped data byte is detected on read, and the error names the block.
TEST(ZFileCorruption, DataFlipsWithCrcNameTheBlock) {
  const Bytes& plain = Vector("plain.bin");
  for (const std::string file : {"plain.lz4-4k-crc.zfile", "plain.zstd-8k-crc.zfile"}) {
    const Bytes& z = Vector(file);
    const uint64_t t = z.size() - kZHt;
    const uint64_t io = GetLE(z, t + kZIndexOffset, 8);
    const uint64_t count = GetLE(z, t + kZIndexSize, 8);
    const uint64_t bs = GetLE(z, t + kZBlockSize, 4);
    const auto off = JumpTableOffsets(z, io, count);
    ASSERT_EQ(off.back(), io);
    for (uint64_t k : {uint64_t{0}, uint64_t{1}, count / 2, count - 1}) {
      for (uint64_t pos : {off[k], (off[k] + off[k + 1]) / 2, off[k + 1] - 1}) {  // first, middle, CRC byte
        SCOPED_TRACE(file + " block " + std::to_string(k) + " byte " + std::to_string(pos));
        Bytes b = z;
        b[pos] ^= 0x20;
        auto r = OpenZ(b, "flipped.zfile");
        ASSERT_TRUE(r.ok()) << "metadata is intact: " << r.status().ToString();
        const uint64_t start = k * bs;
        const uint64_t len = std::min<uint64_t>(bs, plain.size() - start);
        Bytes got(len);
        Status s = (*r)->ReadAt(start, got);
        ASSERT_NO_FATAL_FAILURE(ExpectNamedError(s, Code::kCorruption, "flipped.zfile", "reading the flipped block"));
        EXPECT_NE(s.message().find("block " + std::to_string(k)), std::string::npos)
            << "error must name block " << k << ": " << s.ToString();
        // A one-byte read inside the block fails too; the rest of the file reads correctly.
        Bytes one(1);
        EXPECT_EQ((*r)->ReadAt(start + len - 1, one).code(), Code::kCorruption);
        for (uint64_t j = 0; j < count; j++) {
          if (j == k) continue;
          Bytes other(std::min<uint64_t>(bs, plain.size() - j * bs));
          ASSERT_TRUE((*r)->ReadAt(j * bs, other).ok()) << "block " << j;
          ASSERT_TRUE(std::equal(other.begin(), other.end(), plain.begin() + static_cast<ptrdiff_t>(j * bs)))
              << "block " << j;
        }
        EXPECT_EQ((*r)->VerifyAll().code(), Code::kCorruption);
      }
    }
  }
}

// Without per-block CRC a flipped data byte may decompress to different bytes: the format cannot
// detect it. Assert only that nothing crashes and that a decompression failure is an error.
TEST(ZFileCorruption, DataFlipsWithoutCrcNeverCrash) {
  const Bytes& z = Vector("layer0.lz4-4k-nocrc.zfile");
  const Bytes& lsmt = Vector("layer0.lsmt");
  const uint64_t t = z.size() - kZHt;
  const uint64_t io = GetLE(z, t + kZIndexOffset, 8);
  int errors = 0, silent = 0;
  Bytes buf(lsmt.size());
  for (uint64_t pos = 512; pos < io; pos += io / 97) {
    Bytes b = z;
    b[pos] ^= 0xFF;
    auto r = OpenZ(std::move(b), "nocrc.zfile");
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    Status s = (*r)->ReadAt(0, buf);
    if (!s.ok()) {
      errors++;
      EXPECT_EQ(s.code(), Code::kCorruption) << s.ToString();
      EXPECT_NE(s.message().find("nocrc.zfile"), std::string::npos) << s.ToString();
    } else if (buf != lsmt) {
      silent++;
    }
  }
  std::cout << "[ info     ] ZFile without CRC, data flips: " << errors << " decompression errors, " << silent
            << " silently different (no CRC to detect them)\n";
}

// ================================ caps on hostile sizes ===========================================

// A huge file that is all zeros except for a few patched ranges: lets a test claim sizes that
// would need > 10 GB without having them. Reads are served lazily.
class SparseFile : public ReadableFile {
 public:
  SparseFile(std::string name, uint64_t size) : name_(std::move(name)), size_(size) {}
  void Patch(uint64_t at, Bytes bytes) { patches_[at] = std::move(bytes); }
  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) const override {
    if (offset > size_ || buf.size() > size_ - offset) return Status::OutOfRange(name_ + ": read past the end");
    if (buf.size() > (64u << 20)) return Status::IOError(name_ + ": refusing a read of " + std::to_string(buf.size()));
    std::fill(buf.begin(), buf.end(), 0);
    for (const auto& [at, bytes] : patches_) {
      uint64_t lo = std::max(at, offset), hi = std::min(at + bytes.size(), offset + buf.size());
      if (lo < hi) std::memcpy(buf.data() + (lo - offset), bytes.data() + (lo - at), hi - lo);
    }
    return Status::OK();
  }
  uint64_t Size() const override { return size_; }
  const std::string& Name() const override { return name_; }

 private:
  std::string name_;
  uint64_t size_;
  std::map<uint64_t, Bytes> patches_;
};

TEST(CapsTest, LsmtRoIndexSizeAboveCapFailsBeforeAllocating) {
  const Layer0 l0;
  Bytes header(l0.bytes.begin(), l0.bytes.begin() + kHt);
  Bytes trailer(l0.bytes.begin() + static_cast<ptrdiff_t>(l0.trailer), l0.bytes.end());
  for (uint64_t entries : {uint64_t{1'000'001}, uint64_t{1} << 36}) {  // 16 MB, 1 TB of index
    SCOPED_TRACE(entries);
    const uint64_t size = kHt + entries * 16 + kHt + (1 << 20);
    auto f = std::make_shared<SparseFile>("huge.lsmt", size);
    Bytes tr = trailer;
    PutLE(tr, kLIndexOffset, kHt, 8);
    PutLE(tr, kLIndexSize, entries, 8);
    f->Patch(0, header);
    f->Patch(size - kHt, tr);
    auto info = lsmt::ReadLayerInfo(*f);
    ASSERT_NO_FATAL_FAILURE(ExpectNamedError(info.status(), Code::kCorruption, "huge.lsmt", "RO index above the cap"));
    auto image = lsmt::OpenImage({f});
    EXPECT_EQ(image.status().code(), Code::kCorruption) << image.status().ToString();
  }
}

TEST(CapsTest, ZFileIndexSizeAboveCapFailsBeforeAllocating) {
  const Bytes& z = Vector("plain.lz4-4k-crc.zfile");
  Bytes header(z.begin(), z.begin() + kZHt);
  Bytes trailer(z.end() - kZHt, z.end());
  for (uint64_t blocks : {uint64_t{1'000'000'001}, uint64_t{4'000'000'000}}) {  // 4 GB, 16 GB of table
    SCOPED_TRACE(blocks);
    const uint64_t size = kZHt + blocks * 5 + blocks * 4 + kZHt;  // room for blocks and table
    auto f = std::make_unique<SparseFile>("huge.zfile", size);
    Bytes tr = trailer;
    PutLE(tr, kZIndexOffset, kZHt + blocks * 5, 8);
    PutLE(tr, kZIndexSize, blocks, 8);
    PutLE(tr, kZOriginalSize, blocks * 4096, 8);
    FixDigest(tr, 0);
    f->Patch(0, header);
    f->Patch(size - kZHt, tr);
    auto r = zfile::Open(std::unique_ptr<ReadableFile>(std::move(f)));
    ASSERT_NO_FATAL_FAILURE(ExpectNamedError(r.status(), Code::kCorruption, "huge.zfile", "ZFile index above the cap"));
  }
}

// A tiny committed blob made by the library (one 4 KiB write).
Bytes TinyBlob() {
  auto data = std::make_shared<MemStorage>(), index = std::make_shared<MemStorage>();
  lsmt::CreateOptions co;
  co.virtual_size = 1 << 20;
  auto rw = lsmt::CreateRwLayer(NewMemFile("d", data), NewMemFile("i", index), co);
  EXPECT_TRUE(rw.ok());
  if (!rw.ok()) return {};
  EXPECT_TRUE((*rw)->Write(4096, testing::MakeData(1, 4096)).ok());
  auto image = lsmt::OpenImage({}, std::move(rw).value());
  EXPECT_TRUE(image.ok());
  auto out = std::make_shared<MemStorage>();
  auto w = NewMemWritableFile("tiny", out);
  EXPECT_TRUE(lsmt::Commit(**image, w.get(), {}).ok());
  EXPECT_TRUE(w->Close().ok());
  return out->bytes;
}

TEST(CapsTest, MoreThan255LayersAreRejected) {
  const Bytes blob = TinyBlob();
  ASSERT_FALSE(blob.empty());
  std::shared_ptr<const ReadableFile> f = NewMemReadableFile("tiny", blob);
  std::vector<std::shared_ptr<const ReadableFile>> lowers(255, f);
  {
    auto image = lsmt::OpenImage(lowers);
    ASSERT_TRUE(image.ok()) << "255 layers are allowed: " << image.status().ToString();
    EXPECT_EQ((*image)->layer_count(), 255u);
    Bytes got(4096);
    ASSERT_TRUE((*image)->ReadAt(4096, got).ok());
    EXPECT_EQ(got, testing::MakeData(1, 4096));
  }
  lowers.push_back(f);
  auto image = lsmt::OpenImage(lowers);
  ASSERT_FALSE(image.ok()) << "256 layers";
  EXPECT_EQ(image.status().code(), Code::kInvalidArgument) << image.status().ToString();
  // The limit counts read-only layers (tags 0..255 with the upper on top, as in overlaybd): 255
  // lowers + an upper open, 256 lowers + an upper do not.
  lsmt::CreateOptions co;
  co.virtual_size = 1 << 20;
  for (size_t n : {size_t{255}, size_t{256}}) {
    lowers.assign(n, f);
    auto rw = lsmt::CreateRwLayer(NewMemFile("d"), NewMemFile("i"), co);
    ASSERT_TRUE(rw.ok());
    auto with_upper = lsmt::OpenImage(lowers, std::move(rw).value());
    EXPECT_EQ(with_upper.ok(), n == 255) << n << " lowers + upper: " << with_upper.status().ToString();
    if (with_upper.ok()) {
      EXPECT_EQ((*with_upper)->layer_count(), 256u);
      Bytes got(4096);
      ASSERT_TRUE((*with_upper)->ReadAt(4096, got).ok());
      EXPECT_EQ(got, testing::MakeData(1, 4096));
    }
  }

  // image::OpenImage with 256 paths fails on the count.
  testing::TempDir dir;
  testing::WriteFileBytes(dir.Join("tiny.lsmt"), blob);
  std::vector<std::string> paths(256, dir.Join("tiny.lsmt"));
  auto by_path = image::OpenImage(paths, std::nullopt);
  EXPECT_EQ(by_path.status().code(), Code::kInvalidArgument) << by_path.status().ToString();
  paths.pop_back();
  auto ok_by_path = image::OpenImage(paths, std::nullopt);
  EXPECT_TRUE(ok_by_path.ok()) << ok_by_path.status().ToString();
}

// An RW file that claims a huge size; reads come from a small prefix, writes fail.
class HugeRwFile : public RandomRWFile {
 public:
  HugeRwFile(std::string name, Bytes prefix, uint64_t size) : base_(name, size) { base_.Patch(0, std::move(prefix)); }
  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) const override { return base_.ReadAt(offset, buf); }
  uint64_t Size() const override { return base_.Size(); }
  const std::string& Name() const override { return base_.Name(); }
  Status WriteAt(uint64_t, std::span<const uint8_t>) override { return Status::IOError("read-only test file"); }
  Status Truncate(uint64_t) override { return Status::IOError("read-only test file"); }
  Status Trim(uint64_t, uint64_t) override { return Status::IOError("read-only test file"); }
  Status Sync() override { return Status::OK(); }

 private:
  SparseFile base_;
};

TEST(CapsTest, RwIndexAbove128MRecordsFailsBeforeReplaying) {
  auto data = std::make_shared<MemStorage>(), index = std::make_shared<MemStorage>();
  lsmt::CreateOptions co;
  co.virtual_size = 1 << 20;
  ASSERT_TRUE(lsmt::CreateRwLayer(NewMemFile("d", data), NewMemFile("i", index), co).ok());
  const uint64_t records = lsmt::kMaxRwIndexRecords + 1;  // 2 GB of records
  auto huge = std::make_unique<HugeRwFile>("huge.index", index->bytes, 4096 + records * 16);
  auto rw = lsmt::OpenRwLayer(NewMemFile("d", data), std::move(huge));
  ASSERT_NO_FATAL_FAILURE(ExpectNamedError(rw.status(), Code::kCorruption, "huge.index", "RW index above the cap"));
}

// ================================ RW index records ================================================

TEST(RwCorruption, IndexRecords) {
  const Bytes& data = Vector("layer1.rw.data");
  const Bytes& index = Vector("layer1.rw.index");
  ASSERT_EQ(index.size(), 4096u + 16 * 16);
  const uint64_t data_end = data.size() / 512;
  auto open = [&](const Bytes& d, const Bytes& i) {
    auto ds = std::make_shared<MemStorage>(), is = std::make_shared<MemStorage>();
    ds->bytes = d;
    is->bytes = i;
    return lsmt::OpenRwLayer(NewMemFile("rw.data", ds), NewMemFile("rw.index", is));
  };
  ASSERT_TRUE(open(data, index).ok());
  size_t first_data = 0;
  while (GetEntry(index, 4096 + 16 * first_data).zeroed()) first_data++;
  const Entry d = GetEntry(index, 4096 + 16 * first_data);
  struct Case {
    const char* what;
    Entry e;
  };
  const std::vector<Case> must_fail = {
      {"length 0", MakeEntry(d.offset(), 0, d.moffset(), false)},
      {"moffset past the data file", MakeEntry(d.offset(), d.length(), data_end, false)},
      {"moffset inside the header", MakeEntry(d.offset(), d.length(), 3, false)},
      {"moffset 2^55-1", MakeEntry(d.offset(), d.length(), (1ULL << 55) - 1, false)},
      {"zeroed moffset past the data file", MakeEntry(d.offset(), 8, data_end + 1, true)},
      {"offset past the 2^50 limit", MakeEntry((1ULL << 50) - 2, 8, d.moffset(), false)},
  };
  for (const auto& c : must_fail) {
    SCOPED_TRACE(c.what);
    Bytes i = index;
    PutEntry(i, 4096 + 16 * first_data, c.e);
    auto rw = open(data, i);
    ASSERT_NO_FATAL_FAILURE(ExpectNamedError(rw.status(), Code::kCorruption, "rw.index", c.what));
  }
  // Index header must be an index header at 4096.
  for (auto [field, value, width] : std::vector<std::tuple<uint64_t, uint64_t, int>>{
           {kLFlags, 0x03, 4}, {kLFlags, 0x05, 4}, {kLIndexOffset, 8192, 8}, {kLMagic0, 0, 1}}) {
    SCOPED_TRACE("index header field " + std::to_string(field));
    Bytes i = index;
    PutLE(i, field, value, width);
    ASSERT_NO_FATAL_FAILURE(ExpectNamedError(open(data, i).status(), Code::kCorruption, "rw.index", "index header"));
  }
  {
    Bytes d2 = data;
    PutLE(d2, kLFlags, 0x01, 4);  // data file header without the data bit
    ASSERT_NO_FATAL_FAILURE(ExpectNamedError(open(d2, index).status(), Code::kCorruption, "rw.data", "data header"));
  }
  // Replay order is meaningful and overlapping records are fine (last wins); padding records are
  // skipped; a torn trailing record is ignored.
  Bytes i = index;
  PutEntry(i, 4096 + 16 * 3, MakeEntry((1ULL << 50) - 1, 0, 0, false));
  i.insert(i.end(), {1, 2, 3, 4, 5, 6, 7});
  auto rw = open(data, i);
  ASSERT_TRUE(rw.ok()) << rw.status().ToString();
  // Truncated data file: records now point past its end.
  Bytes short_data(data.begin(), data.begin() + static_cast<ptrdiff_t>(data.size() / 2));
  // (either file may be named: the record in rw.index points past the end of rw.data)
  ASSERT_NO_FATAL_FAILURE(
      ExpectNamedError(open(short_data, index).status(), Code::kCorruption, "rw.", "data file truncated"));
  for (uint64_t len : {uint64_t{0}, uint64_t{100}, uint64_t{4095}}) {
    SCOPED_TRACE("index truncated to " + std::to_string(len));
    Bytes ti(index.begin(), index.begin() + static_cast<ptrdiff_t>(len));
    ASSERT_NO_FATAL_FAILURE(ExpectNamedError(open(data, ti).status(), Code::kCorruption, "rw.index", "index truncated"));
  }
}

// ================================ fuzz seed corpus ==============================================
// Makes the seed corpora of fuzz/lsmt_open_fuzz.cc and fuzz/rw_replay_fuzz.cc from tiny layers
// built by the library (fixed uuids and data, so the seeds are deterministic) and checks that each
// seed is what its name says: valid ones open, broken ones are rejected. With
// OVBD_WRITE_FUZZ_CORPUS=<dir> in the environment the seeds are also written to <dir>/lsmt and
// <dir>/rw_replay; fuzz/corpus/{lsmt,rw_replay} were made that way.

struct TinyRw {
  std::shared_ptr<MemStorage> data = std::make_shared<MemStorage>();
  std::shared_ptr<MemStorage> index = std::make_shared<MemStorage>();
};

TinyRw MakeTinyRw(uint64_t seed, bool writes) {
  TinyRw t;
  lsmt::CreateOptions co;
  co.virtual_size = 1 << 20;
  co.uuid = "5EED0000-0000-4000-8000-00000000000" + std::to_string(seed % 10);
  auto rw = lsmt::CreateRwLayer(NewMemFile("d", t.data), NewMemFile("i", t.index), co);
  EXPECT_TRUE(rw.ok());
  if (!rw.ok() || !writes) return t;
  auto& l = **rw;
  EXPECT_TRUE(l.Write(4096, testing::MakeData(seed, 4096, "text")).ok());
  EXPECT_TRUE(l.Write(0, testing::MakeData(seed + 1, 1024)).ok());
  EXPECT_TRUE(l.Discard(512, 512).ok());
  EXPECT_TRUE(l.Write(65536, testing::MakeData(seed + 2, 512)).ok());
  EXPECT_TRUE(l.Discard(256 * 1024, 64 * 1024).ok());
  EXPECT_TRUE(l.Write(300 * 1024, testing::MakeData(seed + 3, 8192, "text")).ok());
  EXPECT_TRUE(l.Write(6144, testing::MakeData(seed + 4, 1536)).ok());  // overlaps the first write
  EXPECT_TRUE(l.Sync().ok());
  return t;
}

Bytes CommitOf(std::vector<std::shared_ptr<const ReadableFile>> lowers, TinyRw* upper) {
  std::unique_ptr<lsmt::RwLayer> rw;
  if (upper != nullptr) {
    auto r = lsmt::OpenRwLayer(NewMemFile("d", upper->data), NewMemFile("i", upper->index));
    EXPECT_TRUE(r.ok());
    if (!r.ok()) return {};
    rw = std::move(r).value();
  }
  auto image = lsmt::OpenImage(std::move(lowers), std::move(rw));
  EXPECT_TRUE(image.ok()) << image.status().ToString();
  if (!image.ok()) return {};
  auto out = std::make_shared<MemStorage>();
  auto w = NewMemWritableFile("seed", out);
  lsmt::CommitOptions opts;
  opts.uuid = "5EED0000-0000-4000-8000-0000000000FF";
  opts.user_tag = "fuzz seed";
  EXPECT_TRUE(lsmt::Commit(**image, w.get(), opts).ok());
  EXPECT_TRUE(w->Close().ok());
  return out->bytes;
}

// The rw_replay_fuzz input encoding: flags, LE16 data length, data part, index part.
Bytes RwSeed(uint8_t flags, const Bytes& data, const Bytes& index) {
  Bytes out{flags, static_cast<uint8_t>(data.size()), static_cast<uint8_t>(data.size() >> 8)};
  out.insert(out.end(), data.begin(), data.end());
  out.insert(out.end(), index.begin(), index.end());
  return out;
}

TEST(FuzzSeedCorpus, SeedsAreWhatTheirNamesSay) {
  std::map<std::string, Bytes> lsmt_seeds, rw_seeds;
  TinyRw a = MakeTinyRw(1, true);
  const Bytes commit = CommitOf({}, &a);
  ASSERT_FALSE(commit.empty());
  lsmt_seeds["valid_commit.lsmt"] = commit;
  lsmt_seeds["valid_empty.lsmt"] = [] {
    TinyRw e = MakeTinyRw(2, false);
    return CommitOf({}, &e);
  }();
  {
    TinyRw b = MakeTinyRw(3, true);
    lsmt_seeds["valid_merged.lsmt"] = CommitOf({NewMemReadableFile("c", commit)}, &b);
    auto rw = lsmt::OpenRwLayer(NewMemFile("d", b.data), NewMemFile("i", b.index));
    ASSERT_TRUE(rw.ok());
    ASSERT_TRUE((*rw)->Seal().ok());
    lsmt_seeds["valid_sealed.lsmt"] = b.data->bytes;
  }
  const uint64_t t = commit.size() - kHt;
  const uint64_t io = GetLE(commit, t + kLIndexOffset, 8);
  auto broken = [&](const char* name, const std::function<void(Bytes&)>& poke) {
    Bytes b = commit;
    poke(b);
    lsmt_seeds[name] = b;
  };
  broken("bad_magic.lsmt", [](Bytes& b) { b[3] = 'X'; });
  broken("truncated.lsmt", [](Bytes& b) { b.resize(6000); });
  broken("index_size_huge.lsmt", [&](Bytes& b) { PutLE(b, t + kLIndexSize, 1ULL << 40, 8); });
  broken("overlap.lsmt", [&](Bytes& b) { PutLE(b, io + 16, GetLE(b, io, 8), 8); });
  broken("moffset_out_of_range.lsmt", [&](Bytes& b) { PutLE(b, io + 8, io / 512 + 1, 7); });
  broken("length0.lsmt", [&](Bytes& b) { PutLE(b, io, GetLE(b, io, 8) & ((1ULL << 50) - 1), 8); });

  for (const auto& [name, bytes] : lsmt_seeds) {
    SCOPED_TRACE(name);
    EXPECT_LT(bytes.size(), 64u * 1024);
    auto info = lsmt::ReadLayerInfo(*NewMemReadableFile(name, bytes));
    EXPECT_EQ(info.status().code(), name.rfind("valid_", 0) == 0 ? Code::kOk : Code::kCorruption)
        << info.status().ToString();
  }

  // RW pairs. Data/index parts without headers are used with flags bit0/bit1 (template headers).
  const Bytes& d = a.data->bytes;
  const Bytes& i = a.index->bytes;
  ASSERT_LT(d.size(), 65536u);
  const Bytes d_body(d.begin() + kHt, d.end());
  const Bytes i_body(i.begin() + kHt, i.end());
  Bytes torn = i_body;
  torn.insert(torn.end(), {9, 9, 9, 9, 9, 9, 9});
  Bytes padded = i_body;
  Entry pad = MakeEntry((1ULL << 50) - 1, 0, 0, false);
  padded.insert(padded.begin() + 32, 16, 0);
  PutEntry(padded, 32, pad);
  Bytes bad_moffset = i_body;
  PutEntry(bad_moffset, 16, MakeEntry(0, 4, d.size() / 512, false));
  Bytes zero_len = i_body;
  PutEntry(zero_len, 0, MakeEntry(8, 0, 8, false));
  rw_seeds["full_pair"] = RwSeed(0, d, i);
  rw_seeds["full_pair_write"] = RwSeed(4, d, i);
  rw_seeds["templated"] = RwSeed(3, d_body, i_body);
  rw_seeds["templated_write"] = RwSeed(7, d_body, i_body);
  rw_seeds["torn_record"] = RwSeed(7, d_body, torn);
  rw_seeds["padding_record"] = RwSeed(3, d_body, padded);
  rw_seeds["bad_moffset"] = RwSeed(3, d_body, bad_moffset);
  rw_seeds["zero_length"] = RwSeed(3, d_body, zero_len);
  rw_seeds["empty_layer"] = RwSeed(7, {}, {});
  rw_seeds["garbage"] = testing::MakeData(99, 300);
  rw_seeds["garbage"][0] = 0;  // no template headers: the garbage is the data file's header

  const std::map<std::string, bool> rw_valid = {
      {"full_pair", true},    {"full_pair_write", true}, {"templated", true},    {"templated_write", true},
      {"torn_record", true},  {"padding_record", true},  {"bad_moffset", false}, {"zero_length", false},
      {"empty_layer", true},  {"garbage", false}};
  TinyRw tmpl = MakeTinyRw(0, false);  // same shape as the fuzzer's template headers
  for (const auto& [name, seed] : rw_seeds) {
    SCOPED_TRACE(name);
    ASSERT_GE(seed.size(), 3u);
    const size_t split = std::min<size_t>(seed.size() - 3, seed[1] | (size_t{seed[2]} << 8));
    auto ds = std::make_shared<MemStorage>(), is = std::make_shared<MemStorage>();
    if (seed[0] & 1) ds->bytes = Bytes(tmpl.data->bytes.begin(), tmpl.data->bytes.begin() + kHt);
    if (seed[0] & 2) is->bytes = Bytes(tmpl.index->bytes.begin(), tmpl.index->bytes.begin() + kHt);
    ds->bytes.insert(ds->bytes.end(), seed.begin() + 3, seed.begin() + 3 + static_cast<ptrdiff_t>(split));
    is->bytes.insert(is->bytes.end(), seed.begin() + 3 + static_cast<ptrdiff_t>(split), seed.end());
    auto rw = lsmt::OpenRwLayer(NewMemFile("d", ds), NewMemFile("i", is));
    EXPECT_EQ(rw.status().code(), rw_valid.at(name) ? Code::kOk : Code::kCorruption) << rw.status().ToString();
  }

  const char* out = std::getenv("OVBD_WRITE_FUZZ_CORPUS");
  if (out == nullptr || *out == 0) return;
  std::filesystem::create_directories(std::string(out) + "/lsmt");
  std::filesystem::create_directories(std::string(out) + "/rw_replay");
  for (const auto& [name, bytes] : lsmt_seeds) testing::WriteFileBytes(std::string(out) + "/lsmt/" + name, bytes);
  for (const auto& [name, bytes] : rw_seeds) testing::WriteFileBytes(std::string(out) + "/rw_replay/" + name, bytes);
}

}  // namespace
}  // namespace ovbd
