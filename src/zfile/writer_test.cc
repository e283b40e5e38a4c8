// Builder API behaviour, Compress(), NewCompressingWriter and output I/O errors.
#include <gtest/gtest.h>

#include "ovbd/zfile.h"
#include "testutil.h"
#include "zfile/zfile_testing.h"

namespace ovbd::zfile {
namespace {

using ovbd::testing::MakeData;
using namespace ovbd::zfile::testing;

TEST(ZFileBuilder, HeaderAndTrailerFlagsAndFields) {
  const auto data = MakeData(1, 50000, "text");
  for (bool overwrite : {false, true}) {
    Options o;
    o.algorithm = Algorithm::kZstd;
    o.block_size = 16384;
    o.overwrite_header = overwrite;
    Info info;
    const auto z = BuildZFile(data, o, 0, &info);
    const HeaderTrailer h = DecodeHeaderTrailer(std::span<const uint8_t, 512>(z.data(), 512));
    const HeaderTrailer t = DecodeHeaderTrailer(std::span<const uint8_t, 512>(z.data() + TrailerOffset(z), 512));
    EXPECT_EQ(h.flags, overwrite ? 0x1Bu : 0x13u);
    EXPECT_EQ(t.flags, 0x16u);
    EXPECT_TRUE(h.digest_ok && t.digest_ok);
    EXPECT_EQ(h.size, 96u);
    EXPECT_EQ(t.size, 96u);
    for (const HeaderTrailer* r : {&h, &t}) {
      EXPECT_EQ(r->block_size, 16384u);
      EXPECT_EQ(r->algo, 2);
      EXPECT_EQ(r->verify, 1);
      EXPECT_EQ(r->level, 0);
      EXPECT_EQ(r->dict_size, 0u);
    }
    const uint64_t want_index_offset = overwrite ? t.index_offset : 0;
    EXPECT_EQ(h.index_offset, want_index_offset);
    EXPECT_EQ(h.index_size, overwrite ? 4u : 0u);
    EXPECT_EQ(h.original_size, overwrite ? 50000u : 0u);
    EXPECT_EQ(h.index_crc, overwrite ? t.index_crc : 0u);
    EXPECT_EQ(t.index_size, 4u);
    EXPECT_EQ(t.original_size, 50000u);
    EXPECT_EQ(t.index_offset + 4 * 4 + 512, z.size());
    EXPECT_EQ(info.index_offset, t.index_offset);
    EXPECT_EQ(info.header_flags, h.flags);
    EXPECT_EQ(info.trailer_flags, 0x16u);
    // Blocks and tail are the same either way; only the header differs.
    if (overwrite) {
      o.overwrite_header = false;
      const auto plain = BuildZFile(data, o);
      EXPECT_TRUE(std::equal(z.begin() + 512, z.end(), plain.begin() + 512));
    }
  }
}

TEST(ZFileBuilder, RejectsBadOptions) {
  auto storage = std::make_shared<MemStorage>();
  auto out = NewMemWritableFile("o", storage);
  auto bad = [&](auto mutate) {
    Options o;
    mutate(o);
    return NewBuilder(out.get(), o).status().code();
  };
  EXPECT_EQ(bad([](Options& o) { o.block_size = 2048; }), Code::kInvalidArgument);
  EXPECT_EQ(bad([](Options& o) { o.block_size = 12288; }), Code::kInvalidArgument);
  EXPECT_EQ(bad([](Options& o) { o.block_size = 131072; }), Code::kInvalidArgument);
  EXPECT_EQ(bad([](Options& o) { o.threads = 0; }), Code::kInvalidArgument);
  EXPECT_EQ(bad([](Options& o) { o.algorithm = static_cast<Algorithm>(0); }), Code::kInvalidArgument);
  EXPECT_EQ(NewBuilder(nullptr, Options{}).status().code(), Code::kInvalidArgument);
  PipeWriter pipe(storage);
  Options o;
  o.overwrite_header = true;
  auto r = NewBuilder(&pipe, o);
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("seekable"), std::string::npos);
  o.overwrite_header = false;
  EXPECT_TRUE(NewBuilder(&pipe, o).ok());
}

TEST(ZFileBuilder, AppendAfterFinishAndFinishTwice) {
  auto storage = std::make_shared<MemStorage>();
  auto out = NewMemWritableFile("o", storage);
  auto b = NewBuilder(out.get(), Options{});
  ASSERT_TRUE(b.ok());
  const auto data = MakeData(1, 5000, "text");
  ASSERT_TRUE((*b)->Append(data).ok());
  EXPECT_EQ((*b)->InputBytes(), 5000u);
  ASSERT_TRUE((*b)->Finish().ok());
  EXPECT_EQ((*b)->Append(data).code(), Code::kInvalidArgument);
  EXPECT_EQ((*b)->Finish().status().code(), Code::kInvalidArgument);
}

TEST(ZFileBuilder, StartsAtTheOutputPosition) {
  // A ZFile written after a prefix (as inside a tar) is relative to its own start.
  auto storage = std::make_shared<MemStorage>();
  auto out = NewMemWritableFile("o", storage);
  const std::vector<uint8_t> prefix(1536, 0xAB);
  ASSERT_TRUE(out->Append(prefix).ok());
  Options o;
  o.overwrite_header = true;
  const auto data = MakeData(3, 20000, "text");
  auto b = NewBuilder(out.get(), o);
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE((*b)->Append(data).ok());
  ASSERT_TRUE((*b)->Finish().ok());
  EXPECT_TRUE(std::equal(prefix.begin(), prefix.end(), storage->bytes.begin()));
  auto r = OpenBytes(std::vector<uint8_t>(storage->bytes.begin() + 1536, storage->bytes.end()));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(ReadAllOrFail(**r), data);
}

TEST(ZFileBuilder, OutputWriteErrorsAreReported) {
  const auto data = MakeData(4, 3 << 20, "random");
  for (uint64_t n : {1, 2, 3, 5}) {
    for (int threads : {1, 3}) {
      FaultInjectionFile f(NewMemFile("out.zfile"));
      auto w = NewRWFileWriter(&f, 0);
      f.FailNthWrite(n);
      Options o;
      o.threads = threads;
      o.overwrite_header = true;
      auto b = NewBuilder(w.get(), o);
      if (!b.ok()) {
        EXPECT_EQ(b.status().code(), Code::kIOError);
        continue;
      }
      Status s = (*b)->Append(data);
      if (s.ok()) s = (*b)->Finish().status();
      EXPECT_EQ(s.code(), Code::kIOError) << "write " << n << " threads " << threads;
      // The error sticks.
      EXPECT_FALSE((*b)->Append(data).ok());
    }
  }
}

TEST(ZFileCompress, ProgressAndResult) {
  const auto data = MakeData(5, (2 << 20) + 17, "text");
  auto in = NewMemReadableFile("in", data);
  auto storage = std::make_shared<MemStorage>();
  auto out = NewMemWritableFile("out", storage);
  uint64_t last_done = 0, calls = 0;
  auto info = Compress(*in, out.get(), Options{}, [&](uint64_t done, uint64_t total) {
    EXPECT_EQ(total, data.size());
    EXPECT_GT(done, last_done);
    last_done = done;
    calls++;
  });
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(last_done, data.size());
  EXPECT_GE(calls, 2u);
  EXPECT_EQ(info->file_size, storage->bytes.size());
  EXPECT_EQ(storage->bytes, BuildZFile(data, Options{}));
}

TEST(ZFileCompress, EmptyInput) {
  auto in = NewMemReadableFile("in", {});
  auto storage = std::make_shared<MemStorage>();
  auto out = NewMemWritableFile("out", storage);
  auto info = Compress(*in, out.get(), Options{});
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->block_count, 0u);
  EXPECT_EQ(storage->bytes.size(), 1024u);
  auto r = OpenBytes(storage->bytes);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)->Size(), 0u);
  EXPECT_TRUE((*r)->VerifyAll().ok());
}

TEST(ZFileCompressingWriter, SameBytesAsBuilder) {
  const auto data = MakeData(6, 300000, "text");
  Options o;
  o.algorithm = Algorithm::kZstd;
  o.block_size = 8192;
  o.threads = 2;
  auto storage = std::make_shared<MemStorage>();
  PipeWriter pipe(storage);
  auto w = NewCompressingWriter(&pipe, o);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_FALSE((*w)->Seekable());
  for (size_t off = 0; off < data.size(); off += 7777) {
    const size_t n = std::min<size_t>(7777, data.size() - off);
    ASSERT_TRUE((*w)->Append(std::span<const uint8_t>(data.data() + off, n)).ok());
  }
  EXPECT_EQ((*w)->Position(), data.size());
  EXPECT_EQ((*w)->Rewrite(0, data).code(), Code::kNotSupported);
  ASSERT_TRUE((*w)->Close().ok());
  EXPECT_TRUE((*w)->Close().ok());
  EXPECT_EQ((*w)->Append(data).code(), Code::kInvalidArgument);
  o.threads = 1;
  EXPECT_EQ(storage->bytes, BuildZFile(data, o));
}

TEST(ZFileCompressingWriter, DestroyedWithoutCloseLeavesNoValidZFile) {
  auto storage = std::make_shared<MemStorage>();
  auto out = NewMemWritableFile("out", storage);
  {
    auto w = NewCompressingWriter(out.get(), Options{});
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Append(MakeData(7, 20000, "text")).ok());
  }
  EXPECT_FALSE(OpenBytes(storage->bytes).ok());
}

}  // namespace
}  // namespace ovbd::zfile
