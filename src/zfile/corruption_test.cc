// Hostile input: poke every header/trailer field, truncate, flip bytes, break the jump table,
// fail reads. Each case must give a clear non-ok Status; wrong bytes are never returned.
#include <gtest/gtest.h>

#include <functional>

#include "ovbd/zfile.h"
#include "testutil.h"
#include "zfile/codec.h"
#include "zfile/zfile_testing.h"

namespace ovbd::zfile {
namespace {

using ovbd::testing::MakeData;
using namespace ovbd::zfile::testing;

constexpr uint32_t kBs = 4096;

std::vector<uint8_t> Source() {
  auto d = MakeData(1, 10 * kBs + 1000, "text");
  auto r = MakeData(2, kBs, "random");
  std::copy(r.begin(), r.end(), d.begin() + 3 * kBs);
  return d;
}

std::vector<uint8_t> Built(bool overwrite, bool crc = true, Algorithm a = Algorithm::kLz4) {
  Options o;
  o.algorithm = a;
  o.block_size = kBs;
  o.crc = crc;
  o.overwrite_header = overwrite;
  return BuildZFile(Source(), o);
}

// Opens `z` and, if that works, reads everything; returns the first failure (or OK if the
// content is exactly the source).
Status OpenAndRead(std::vector<uint8_t> z) {
  auto r = OpenBytes(std::move(z), "poked.zfile");
  if (!r.ok()) return r.status();
  std::vector<uint8_t> out((*r)->Size());
  OVBD_RETURN_IF_ERROR((*r)->ReadAt(0, out));
  EXPECT_EQ(out, Source()) << "wrong bytes returned without an error";
  return Status::OK();
}

// The record holding the metadata: the trailer, or the header when overwritten.
size_t MetaRecord(const std::vector<uint8_t>& z, bool overwrite) { return overwrite ? 0 : TrailerOffset(z); }

struct FieldCase {
  const char* name;
  std::function<void(std::vector<uint8_t>*, size_t)> poke;  // (file, record offset)
  Code expected;
};

std::vector<FieldCase> FieldCases() {
  auto u32 = [](size_t field, uint32_t v) { return [=](std::vector<uint8_t>* z, size_t at) { Poke32(z, at + field, v); }; };
  auto u64 = [](size_t field, uint64_t v) { return [=](std::vector<uint8_t>* z, size_t at) { Poke64(z, at + field, v); }; };
  auto u8 = [](size_t field, uint8_t v) { return [=](std::vector<uint8_t>* z, size_t at) { (*z)[at + field] = v; }; };
  auto or_flags = [](uint64_t bits) {
    return [=](std::vector<uint8_t>* z, size_t at) { Poke64(z, at + kOffFlags, DecodeLE64(z->data() + at + kOffFlags) | bits); };
  };
  auto clear_flags = [](uint64_t bits) {
    return [=](std::vector<uint8_t>* z, size_t at) { Poke64(z, at + kOffFlags, DecodeLE64(z->data() + at + kOffFlags) & ~bits); };
  };
  auto add64 = [](size_t field, int64_t delta) {
    return [=](std::vector<uint8_t>* z, size_t at) { Poke64(z, at + field, DecodeLE64(z->data() + at + field) + delta); };
  };
  return {
      {"magic", u8(kOffMagic0 + 1, 'X'), Code::kCorruption},
      {"magic1", u8(kOffMagic1 + 15, 'X'), Code::kCorruption},
      {"size_95", u32(kOffSize, 95), Code::kCorruption},
      {"size_512", u32(kOffSize, 512), Code::kCorruption},
      {"flag_bit6", or_flags(1u << 6), Code::kNotSupported},
      {"flag_bit63", or_flags(1ull << 63), Code::kNotSupported},
      {"flag_idx_comp", or_flags(kFlagIndexCompressed), Code::kNotSupported},
      {"flag_no_type", clear_flags(kFlagType), Code::kCorruption},
      {"index_offset_0", u64(kOffIndexOffset, 0), Code::kCorruption},
      {"index_offset_511", u64(kOffIndexOffset, 511), Code::kCorruption},
      {"index_offset_plus1", add64(kOffIndexOffset, 1), Code::kCorruption},
      {"index_offset_minus1", add64(kOffIndexOffset, -1), Code::kCorruption},
      {"index_offset_huge", u64(kOffIndexOffset, ~0ull - 100), Code::kCorruption},
      {"index_size_huge", u64(kOffIndexSize, 2'000'000'000), Code::kCorruption},
      {"index_size_cap", u64(kOffIndexSize, 1'000'000'000), Code::kCorruption},
      {"index_size_max", u64(kOffIndexSize, ~0ull), Code::kCorruption},
      {"index_size_plus1", add64(kOffIndexSize, 1), Code::kCorruption},
      {"index_size_minus1", add64(kOffIndexSize, -1), Code::kCorruption},
      {"index_size_0", u64(kOffIndexSize, 0), Code::kCorruption},
      {"original_size_plus_block", add64(kOffOriginalSize, kBs), Code::kCorruption},
      {"original_size_minus_block", add64(kOffOriginalSize, -static_cast<int64_t>(kBs)), Code::kCorruption},
      {"original_size_0", u64(kOffOriginalSize, 0), Code::kCorruption},
      {"original_size_huge", u64(kOffOriginalSize, ~0ull), Code::kCorruption},
      // Same block count, wrong last-block length: caught when the last block is decoded.
      {"original_size_plus1", add64(kOffOriginalSize, 1), Code::kCorruption},
      {"original_size_minus1", add64(kOffOriginalSize, -1), Code::kCorruption},
      {"index_crc", u32(kOffIndexCrc, 12345), Code::kCorruption},
      {"block_size_0", u32(kOffBlockSize, 0), Code::kCorruption},
      {"block_size_3000", u32(kOffBlockSize, 3000), Code::kCorruption},
      {"block_size_128k", u32(kOffBlockSize, 131072), Code::kCorruption},
      {"block_size_8k", u32(kOffBlockSize, 8192), Code::kCorruption},  // block count no longer matches
      {"algo_0", u8(kOffAlgo, 0), Code::kNotSupported},
      {"algo_3", u8(kOffAlgo, 3), Code::kNotSupported},
      {"algo_zstd_on_lz4", u8(kOffAlgo, 2), Code::kCorruption},
      {"dict_size", u32(kOffDictSize, 1), Code::kNotSupported},
      {"use_dict", u8(kOffUseDict, 1), Code::kNotSupported},
      {"verify_2", u8(kOffVerify, 2), Code::kCorruption},
      {"verify_off", u8(kOffVerify, 0), Code::kCorruption},  // CRC bytes taken as block data
  };
}

class ZFileFieldPoke : public ::testing::TestWithParam<bool> {};  // param: header overwritten

TEST_P(ZFileFieldPoke, EachFieldGivesAClearError) {
  const bool overwrite = GetParam();
  for (const FieldCase& c : FieldCases()) {
    auto z = Built(overwrite);
    const size_t at = MetaRecord(z, overwrite);
    c.poke(&z, at);
    FixDigest(&z, at);  // so the field check, not the digest, has to catch it
    Status s = OpenAndRead(std::move(z));
    EXPECT_EQ(s.code(), c.expected) << c.name << ": " << s.ToString();
    EXPECT_NE(s.message().find("poked.zfile"), std::string::npos) << c.name << ": " << s.ToString();
  }
}

TEST_P(ZFileFieldPoke, DigestMismatch) {
  const bool overwrite = GetParam();
  auto z = Built(overwrite);
  z[MetaRecord(z, overwrite) + kOffDigest] ^= 1;
  Status s = OpenAndRead(z);
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_NE(s.message().find("digest"), std::string::npos) << s.ToString();
  // Any byte of the 512 is covered, including the zero tail.
  z = Built(overwrite);
  z[MetaRecord(z, overwrite) + 400] = 1;
  EXPECT_TRUE(OpenAndRead(z).IsCorruption());
}

INSTANTIATE_TEST_SUITE_P(Record, ZFileFieldPoke, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "overwritten_header" : "trailer"; });

TEST(ZFileCorruption, HeaderChecksEvenWhenTrailerIsUsed) {
  auto z = Built(false);
  z[0] = 'z';
  EXPECT_TRUE(OpenAndRead(z).IsCorruption());
  z = Built(false);
  z[100] = 1;  // header digest
  EXPECT_TRUE(OpenAndRead(z).IsCorruption());
  z = Built(false);
  Poke64(&z, kOffFlags, kHeaderFlags | (1u << 7));
  FixDigest(&z, 0);
  EXPECT_EQ(OpenAndRead(z).code(), Code::kNotSupported);
  z = Built(false);
  Poke64(&z, kOffFlags, kFlagType | kFlagCalcDigest);  // not a header
  FixDigest(&z, 0);
  EXPECT_TRUE(OpenAndRead(z).IsCorruption());
  // Trailer flag rules.
  for (uint64_t flags : {kTrailerFlags | kFlagHeader, kFlagType | kFlagCalcDigest,
                         kTrailerFlags | kFlagHeaderOverwrite}) {
    z = Built(false);
    Poke64(&z, TrailerOffset(z) + kOffFlags, flags);
    FixDigest(&z, TrailerOffset(z));
    EXPECT_TRUE(OpenAndRead(z).IsCorruption()) << flags;
  }
}

TEST(ZFileCorruption, WithoutCalcDigestTheDigestsAreNotChecked) {
  auto z = Built(false);
  const size_t t = TrailerOffset(z);
  Poke64(&z, t + kOffFlags, kFlagType | kFlagSealed);
  Poke32(&z, t + kOffDigest, 0xdeadbeef);
  Poke32(&z, t + kOffIndexCrc, 0xdeadbeef);
  EXPECT_TRUE(OpenAndRead(z).ok());
}

TEST(ZFileCorruption, Truncation) {
  for (bool overwrite : {false, true}) {
    const auto full = Built(overwrite);
    for (size_t keep : {size_t{0}, size_t{100}, size_t{511}, size_t{512}, size_t{1000}, full.size() / 2,
                        full.size() - 513, full.size() - 512, full.size() - 100, full.size() - 1}) {
      std::vector<uint8_t> z(full.begin(), full.begin() + static_cast<ptrdiff_t>(keep));
      Status s = OpenAndRead(z);
      // zfile.md §5: shorter than 1024 bytes, or the trailer is not at EOF-512: Corruption.
      EXPECT_EQ(s.code(), Code::kCorruption) << "kept " << keep << " of " << full.size() << ": " << s.ToString();
    }
  }
}

TEST(ZFileCorruption, FlippedBlockByteWithCrcNamesTheBlock) {
  for (Algorithm a : {Algorithm::kLz4, Algorithm::kZstd}) {
    const auto z0 = Built(false, true, a);
    auto meta = OpenBytes(z0);
    ASSERT_TRUE(meta.ok());
    const uint64_t index_offset = (*meta)->info().index_offset;
    // Block 2 starts at 512 + entries 0 and 1.
    const uint64_t b2 = 512 + DecodeLE32(&z0[index_offset]) + DecodeLE32(&z0[index_offset + 4]);
    for (uint64_t pos : {b2, b2 + 7, b2 + DecodeLE32(&z0[index_offset + 8]) - 1 /* the CRC */}) {
      auto z = z0;
      z[pos] ^= 0x40;
      auto r = OpenBytes(z, "poked.zfile");
      ASSERT_TRUE(r.ok());
      std::vector<uint8_t> buf(kBs);
      Status s = (*r)->ReadAt(2 * kBs, buf);
      ASSERT_TRUE(s.IsCorruption()) << s.ToString();
      EXPECT_NE(s.message().find("poked.zfile: block 2 at compressed offset " + std::to_string(b2)), std::string::npos)
          << s.ToString();
      EXPECT_NE(s.message().find("CRC"), std::string::npos) << s.ToString();
      // Other blocks still read fine; VerifyAll names the block.
      EXPECT_TRUE((*r)->ReadAt(0, buf).ok());
      EXPECT_TRUE((*r)->ReadAt(5 * kBs, buf).ok());
      Status v = (*r)->VerifyAll();
      EXPECT_NE(v.message().find("block 2 "), std::string::npos) << v.ToString();
    }
  }
}

TEST(ZFileCorruption, FlippedBlockByteWithoutCrcNeverCrashes) {
  // Without a CRC a flipped byte is caught only if the codec notices (malformed stream or wrong
  // length). A flip inside LZ4 literals decodes "fine": no CRC means no detection, by design.
  for (Algorithm a : {Algorithm::kLz4, Algorithm::kZstd}) {
    const auto z0 = Built(false, false, a);
    const size_t end = TrailerOffset(z0) - 4 * 11;  // the jump table (11 blocks)
    int detected = 0, undetected = 0;
    for (size_t pos = 512; pos < end; pos += 37) {
      auto z = z0;
      z[pos] ^= 0x5A;
      auto r = OpenBytes(z);
      ASSERT_TRUE(r.ok());
      std::vector<uint8_t> out((*r)->Size());
      Status s = (*r)->ReadAt(0, out);
      if (s.ok()) {
        undetected++;
      } else {
        EXPECT_TRUE(s.IsCorruption()) << s.ToString();
        detected++;
      }
    }
    EXPECT_GT(detected, 0) << AlgorithmName(a);
    RecordProperty(std::string(AlgorithmName(a)) + "_undetected_flips", undetected);
  }
}

TEST(ZFileCorruption, JumpTable) {
  for (bool overwrite : {false, true}) {
    auto z0 = Built(overwrite);
    const size_t at = MetaRecord(z0, overwrite);
    const uint64_t index_offset = DecodeLE64(&z0[at + kOffIndexOffset]);
    auto fix_crc = [&](std::vector<uint8_t>* z) {
      Poke32(z, at + kOffIndexCrc, Crc32cExtend(0, z->data() + index_offset, 11 * 4));
      FixDigest(z, at);
    };
    // A flipped byte: the index CRC catches it.
    auto z = z0;
    z[index_offset + 5] ^= 1;
    Status s = OpenAndRead(z);
    EXPECT_TRUE(s.IsCorruption()) << s.ToString();
    EXPECT_NE(s.message().find("jump table"), std::string::npos) << s.ToString();

    // With a matching CRC, the entry checks must catch it.
    struct EntryCase {
      const char* name;
      size_t entry;
      uint32_t value;
    } cases[] = {{"zero", 0, 0}, {"four_with_crc", 1, 4}, {"too_large", 2, 70000}, {"huge", 3, 0xFFFFFFFF},
                 {"plus_one", 4, DecodeLE32(&z0[index_offset + 16]) + 1},
                 {"minus_one", 10, DecodeLE32(&z0[index_offset + 40]) - 1}};
    for (const EntryCase& c : cases) {
      z = z0;
      Poke32(&z, index_offset + 4 * c.entry, c.value);
      fix_crc(&z);
      s = OpenAndRead(z);
      EXPECT_TRUE(s.IsCorruption()) << c.name << ": " << s.ToString();
      EXPECT_NE(s.message().find("jump table"), std::string::npos) << c.name << ": " << s.ToString();
    }

    // Two entries moved by the same amount (sum intact): the block CRCs catch it on read.
    z = z0;
    Poke32(&z, index_offset + 4, DecodeLE32(&z0[index_offset + 4]) + 3);
    Poke32(&z, index_offset + 8, DecodeLE32(&z0[index_offset + 8]) - 3);
    fix_crc(&z);
    s = OpenAndRead(z);
    EXPECT_TRUE(s.IsCorruption()) << s.ToString();
    EXPECT_NE(s.message().find("block 1 "), std::string::npos) << s.ToString();
  }
}

TEST(ZFileCorruption, IOErrors) {
  const auto z = Built(false);
  for (uint64_t n : {1, 2, 3}) {  // header, trailer, jump table
    auto storage = std::make_shared<MemStorage>();
    storage->bytes = z;
    auto f = std::make_unique<FaultInjectionFile>(NewMemFile("faulty.zfile", storage));
    f->FailNthRead(n);
    auto r = Open(std::move(f));
    EXPECT_EQ(r.status().code(), Code::kIOError) << n << ": " << r.status().ToString();
  }
  auto storage = std::make_shared<MemStorage>();
  storage->bytes = z;
  auto owned = std::make_unique<FaultInjectionFile>(NewMemFile("faulty.zfile", storage));
  FaultInjectionFile* f = owned.get();
  auto r = Open(std::move(owned));
  ASSERT_TRUE(r.ok());
  std::vector<uint8_t> buf(3 * kBs);
  f->FailNthRead(1);
  EXPECT_EQ((*r)->ReadAt(kBs, buf).code(), Code::kIOError);
  EXPECT_TRUE((*r)->ReadAt(kBs, buf).ok());
  f->FailNthRead(1);
  EXPECT_EQ((*r)->VerifyAll().code(), Code::kIOError);
  // Bit rot on the way: CRC mismatch, not wrong bytes.
  f->FlipByteOnRead(600, 0x10);
  Status s = (*r)->ReadAt(0, buf);
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  f->FlipByteOnRead(600, 0);
  EXPECT_TRUE((*r)->ReadAt(0, buf).ok());
}

TEST(ZFileCorruption, IsZFile) {
  auto z = Built(false);
  EXPECT_TRUE(*IsZFile(*NewMemReadableFile("z", z)));
  EXPECT_FALSE(*IsZFile(*NewMemReadableFile("short", std::vector<uint8_t>(z.begin(), z.begin() + 511))));
  auto t = z;
  Poke64(&t, kOffFlags, kTrailerFlags);  // no HEADER bit
  EXPECT_FALSE(*IsZFile(*NewMemReadableFile("t", t)));
  t = z;
  t[2] = 0;
  EXPECT_FALSE(*IsZFile(*NewMemReadableFile("m", t)));
}

}  // namespace
}  // namespace ovbd::zfile
