// Tests of the tar wrapper and image assembly: content detection of every golden-vector kind,
// byte-exact tar wrapping, config.v1.json parsing (types, unknown keys, relative paths, caps),
// result files and stacking.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "base/hash.h"
#include "ovbd/image.h"
#include "ovbd/lsmt.h"
#include "ovbd/tar.h"
#include "testutil.h"

namespace ovbd {
namespace {

using testing::ReadFileBytes;
using testing::TempDir;
using testing::VectorPath;

constexpr const char* kMd5Layer0 = "52c1be1f44e2c1a4c1f46a02f8ffc443";
constexpr const char* kMd5Stack01 = "ca7d25ce00c72165dcb351bf308f46fa";
constexpr const char* kMd5Layer1Lsmt = "c97baf54c04ec670de6922f140457e9a";
constexpr const char* kMd5Layer1Zfile = "25b86833f80c97c4619d4aab7d2d98ac";
constexpr const char* kMd5Plain = "e531f6e154d34b9c6f65149d3b961bc9";

std::shared_ptr<const ReadableFile> OpenVector(const std::string& name) {
  auto file = OpenReadableFile(VectorPath(name));
  EXPECT_TRUE(file.ok()) << file.status().ToString();
  return std::move(file).value();
}

std::shared_ptr<const ReadableFile> MemFile(std::vector<uint8_t> bytes) {
  return NewMemReadableFile("mem", std::move(bytes));
}

// A WritableFile that cannot seek (like a pipe).
class PipeLikeFile : public WritableFile {
 public:
  Status Append(std::span<const uint8_t> d) override { pos_ += d.size(); return Status::OK(); }
  uint64_t Position() const override { return pos_; }
  bool Seekable() const override { return false; }
  Status Rewrite(uint64_t, std::span<const uint8_t>) override { return Status::NotSupported("pipe"); }
  Status Sync() override { return Status::OK(); }
  Status Close() override { return Status::OK(); }
  const std::string& Name() const override { return name_; }

 private:
  uint64_t pos_ = 0;
  std::string name_ = "pipe";
};

std::vector<uint8_t> Wrap(std::span<const uint8_t> payload) {
  auto storage = std::make_shared<MemStorage>();
  auto out = NewMemWritableFile("wrapped", storage);
  auto tar = tar::NewWrappingWriter(out.get());
  EXPECT_TRUE(tar.ok()) << tar.status().ToString();
  EXPECT_TRUE((*tar)->Append(payload).ok());
  EXPECT_TRUE((*tar)->Close().ok());
  EXPECT_TRUE(out->Close().ok());
  return storage->bytes;
}

// ---- tar ------------------------------------------------------------------------------------

TEST(TarTest, DetectsOnlyTheTarVector) {
  EXPECT_TRUE(*tar::IsTar(*OpenVector("layer1.lz4-4k-crc.zfile.tar")));
  EXPECT_FALSE(*tar::IsTar(*OpenVector("layer1.lz4-4k-crc.zfile")));
  EXPECT_FALSE(*tar::IsTar(*OpenVector("layer0.lsmt")));
  EXPECT_FALSE(*tar::IsTar(*MemFile(std::vector<uint8_t>(100, 0))));
}

TEST(TarTest, PayloadOfTheVectorIsTheZfile) {
  auto payload = tar::OpenPayload(OpenVector("layer1.lz4-4k-crc.zfile.tar"));
  ASSERT_TRUE(payload.ok()) << payload.status().ToString();
  EXPECT_EQ((*payload)->Size(), 761562u);
  EXPECT_EQ(testing::Md5OfFile(**payload), kMd5Layer1Zfile);
}

TEST(TarTest, WrappingIsByteIdenticalToOverlaybd) {
  auto payload = ReadFileBytes(VectorPath("layer1.lz4-4k-crc.zfile"));
  auto expected = ReadFileBytes(VectorPath("layer1.lz4-4k-crc.zfile.tar"));
  auto wrapped = Wrap(payload);
  ASSERT_EQ(wrapped.size(), expected.size());
  for (size_t i = 0; i < wrapped.size(); i++) {
    ASSERT_EQ(wrapped[i], expected[i]) << "first difference at byte " << i;
  }
}

TEST(TarTest, RoundTripOfAnOddSizedPayload) {
  auto payload = testing::MakeData(7, 1000);
  auto wrapped = Wrap(payload);
  EXPECT_EQ(wrapped.size(), 1536u + 1024u + 1024u);
  auto file = MemFile(wrapped);
  EXPECT_TRUE(*tar::IsTar(*file));
  auto inner = tar::OpenPayload(file);
  ASSERT_TRUE(inner.ok()) << inner.status().ToString();
  auto bytes = ReadAll(**inner);
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(*bytes, payload);
}

TEST(TarTest, EmptyPayload) {
  auto wrapped = Wrap({});
  auto inner = tar::OpenPayload(MemFile(wrapped));
  ASSERT_TRUE(inner.ok()) << inner.status().ToString();
  EXPECT_EQ((*inner)->Size(), 0u);
}

TEST(TarTest, RejectsNonSeekableOutput) {
  PipeLikeFile pipe;
  auto tar = tar::NewWrappingWriter(&pipe);
  ASSERT_FALSE(tar.ok());
  EXPECT_NE(tar.status().message().find("seekable"), std::string::npos);
}

TEST(TarTest, RejectsBadChecksum) {
  auto wrapped = Wrap(testing::MakeData(1, 512));
  wrapped[5] ^= 1;  // in the pax header name
  EXPECT_FALSE(*tar::IsTar(*MemFile(wrapped)));
  EXPECT_EQ(tar::OpenPayload(MemFile(wrapped)).status().code(), Code::kCorruption);
}

TEST(TarTest, RejectsPayloadPastTheEnd) {
  auto wrapped = Wrap(testing::MakeData(1, 4096));
  wrapped.resize(1536 + 2048);  // cut inside the payload
  auto inner = tar::OpenPayload(MemFile(wrapped));
  ASSERT_FALSE(inner.ok());
  EXPECT_TRUE(inner.status().IsCorruption());
  EXPECT_NE(inner.status().message().find("past the end"), std::string::npos) << inner.status().message();
}

TEST(TarTest, RejectsMalformedPaxRecord) {
  auto wrapped = Wrap(testing::MakeData(1, 512));
  std::memcpy(wrapped.data() + 512, "99 size=512\n", 12);  // length larger than the data
  auto inner = tar::OpenPayload(MemFile(wrapped));
  ASSERT_FALSE(inner.ok());
  EXPECT_EQ(inner.status().code(), Code::kCorruption) << inner.status().ToString();
  EXPECT_NE(inner.status().message().find("pax"), std::string::npos) << inner.status().message();
}

TEST(TarTest, PlainUstarWithoutPax) {
  TempDir dir;
  auto payload = testing::MakeData(3, 5000);
  testing::WriteFileBytes(dir.Join("member"), payload);
  auto r = testing::RunCommand("cd " + dir.path() + " && tar --format=ustar -cf plain.tar member");
  if (r.exit_code != 0) GTEST_SKIP() << "no tar tool: " << r.output;
  auto file = OpenReadableFile(dir.Join("plain.tar"));
  ASSERT_TRUE(file.ok());
  std::shared_ptr<const ReadableFile> shared = std::move(file).value();
  EXPECT_TRUE(*tar::IsTar(*shared));
  auto inner = tar::OpenPayload(shared);
  ASSERT_TRUE(inner.ok()) << inner.status().ToString();
  EXPECT_EQ(*ReadAll(**inner), payload);
}

// ---- Unwrap -----------------------------------------------------------------------------------

TEST(UnwrapTest, TarZfileLsmt) {
  auto u = image::Unwrap(OpenVector("layer1.lz4-4k-crc.zfile.tar"));
  ASSERT_TRUE(u.ok()) << u.status().ToString();
  EXPECT_TRUE(u->tar);
  ASSERT_TRUE(u->zfile.has_value());
  EXPECT_EQ(u->zfile->block_size, 4096u);
  EXPECT_TRUE(u->is_lsmt);
  EXPECT_EQ(testing::Md5OfFile(*u->content), kMd5Layer1Lsmt);
}

TEST(UnwrapTest, ZfileLsmt) {
  auto u = image::Unwrap(OpenVector("layer1.zstd-64k-crc.zfile"));
  ASSERT_TRUE(u.ok()) << u.status().ToString();
  EXPECT_FALSE(u->tar);
  ASSERT_TRUE(u->zfile.has_value());
  EXPECT_EQ(u->zfile->algorithm, zfile::Algorithm::kZstd);
  EXPECT_TRUE(u->is_lsmt);
  EXPECT_EQ(testing::Md5OfFile(*u->content), kMd5Layer1Lsmt);
}

TEST(UnwrapTest, PlainLsmt) {
  auto u = image::Unwrap(OpenVector("layer0.lsmt"));
  ASSERT_TRUE(u.ok()) << u.status().ToString();
  EXPECT_FALSE(u->tar);
  EXPECT_FALSE(u->zfile.has_value());
  EXPECT_TRUE(u->is_lsmt);
  EXPECT_EQ(u->content->Size(), 2016256u);
}

TEST(UnwrapTest, ZfileOfRawContent) {
  auto u = image::Unwrap(OpenVector("plain.zstd-8k-crc.zfile"));
  ASSERT_TRUE(u.ok()) << u.status().ToString();
  EXPECT_TRUE(u->zfile.has_value());
  EXPECT_FALSE(u->is_lsmt);
  EXPECT_EQ(testing::Md5OfFile(*u->content), kMd5Plain);
}

TEST(UnwrapTest, RawFile) {
  auto u = image::Unwrap(OpenVector("plain.bin"));
  ASSERT_TRUE(u.ok()) << u.status().ToString();
  EXPECT_FALSE(u->tar || u->zfile.has_value() || u->is_lsmt);
}

TEST(OpenLayerPathTest, LengthSuffixSelectsAPrefix) {
  TempDir dir;
  auto bytes = ReadFileBytes(VectorPath("layer0.lsmt"));
  size_t layer_size = bytes.size();
  bytes.resize(bytes.size() + (1 << 20), 0xAB);  // a larger "device"
  testing::WriteFileBytes(dir.Join("device"), bytes);
  auto u = image::OpenLayerPath(dir.Join("device") + ":" + std::to_string(layer_size));
  ASSERT_TRUE(u.ok()) << u.status().ToString();
  EXPECT_TRUE(u->is_lsmt);
  EXPECT_EQ(u->content->Size(), layer_size);
}

TEST(OpenLayerPathTest, ExistingPathWithColonIsTakenWhole) {
  TempDir dir;
  testing::WriteFileBytes(dir.Join("a:512"), std::vector<uint8_t>(1024, 1));
  auto u = image::OpenLayerPath(dir.Join("a:512"));
  ASSERT_TRUE(u.ok()) << u.status().ToString();
  EXPECT_EQ(u->content->Size(), 1024u);
}

TEST(OpenLayerPathTest, MissingFileNamesThePath) {
  auto u = image::OpenLayerPath("/nonexistent/dir/layer.zfile");
  ASSERT_FALSE(u.ok());
  EXPECT_NE(u.status().message().find("/nonexistent/dir/layer.zfile"), std::string::npos);
}

// ---- config.v1.json ----------------------------------------------------------------------------

TEST(ImageConfigTest, ParsesLowersUpperAndResult) {
  auto c = image::ParseImageConfig(R"({
      "repoBlobUrl": "https://example/v2/x/blobs",
      "lowers": [{"file": "/abs/l0", "digest": "sha256:00", "size": 12}, {"file": "rel/l1"}],
      "upper": {"data": "up.data", "index": "/abs/up.index"},
      "resultFile": "result", "download": {"enable": false}, "someFutureKey": [1, 2]})",
                                   "/base");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_EQ(c->lowers.size(), 2u);
  EXPECT_EQ(c->lowers[0].file, "/abs/l0");
  EXPECT_EQ(c->lowers[1].file, "/base/rel/l1");
  EXPECT_FALSE(c->HasRemoteLowers());
  EXPECT_EQ(c->repo_blob_url, "https://example/v2/x/blobs");
  ASSERT_TRUE(c->upper.has_value());
  EXPECT_EQ(c->upper->data, "/base/up.data");
  EXPECT_EQ(c->upper->index, "/abs/up.index");
  EXPECT_EQ(c->result_file, "/base/result");
}

TEST(ImageConfigTest, EmptyObjectIsValid) {
  auto c = image::ParseImageConfig("{}", "/base");
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->lowers.empty());
  EXPECT_FALSE(c->upper.has_value());
  EXPECT_EQ(c->result_file, "");
}

void ExpectInvalid(const std::string& json, const std::string& fragment) {
  auto c = image::ParseImageConfig(json, "/base");
  ASSERT_FALSE(c.ok()) << json;
  EXPECT_EQ(c.status().code(), Code::kInvalidArgument) << c.status().ToString();
  EXPECT_NE(c.status().message().find(fragment), std::string::npos) << c.status().message();
}

TEST(ImageConfigTest, WrongTypesNameTheKey) {
  ExpectInvalid(R"({"lowers": [{"file": "a"}, {"file": "b"}, {"file": 7}]})", "lowers[2].file: expected a string");
  ExpectInvalid(R"({"lowers": {"file": "a"}})", "lowers: expected an array");
  ExpectInvalid(R"({"lowers": ["a"]})", "lowers[0]: expected an object");
  ExpectInvalid(R"({"upper": "x"})", "upper: expected an object");
  ExpectInvalid(R"({"upper": {"data": 1, "index": "i"}})", "upper.data: expected a string");
  ExpectInvalid(R"({"upper": {"data": "d"}})", "upper");
  ExpectInvalid(R"({"resultFile": false})", "resultFile: expected a string");
  ExpectInvalid(R"([1, 2])", "object");
  ExpectInvalid(R"({"lowers": [)", "invalid JSON");
}

TEST(ImageConfigTest, RemoteLowersNeedADigestAndARepoBlobUrl) {
  const std::string digest = "sha256:" + std::string(64, 'a');
  auto c = image::ParseImageConfig(R"({"repoBlobUrl": "http://r/v2/x/blobs", "recordTracePath": "t/trace",
      "lowers": [{"digest": ")" + digest + R"(", "size": 123}, {"file": "l1"}]})",
                                   "/base");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_EQ(c->lowers.size(), 2u);
  EXPECT_EQ(c->lowers[0].file, "");
  EXPECT_EQ(c->lowers[0].digest, digest);
  EXPECT_EQ(c->lowers[0].size, std::optional<uint64_t>(123));
  EXPECT_EQ(c->lowers[1].file, "/base/l1");
  EXPECT_TRUE(c->HasRemoteLowers());
  EXPECT_EQ(c->record_trace_path, "/base/t/trace");

  ExpectInvalid(R"({"lowers": [{"digest": ")" + digest + R"("}]})", "repoBlobUrl: required");
  ExpectInvalid(R"({"repoBlobUrl": "http://r/v2/x/blobs", "lowers": [{"digest": "sha256:ab"}]})",
                "lowers[0].digest: expected");
  ExpectInvalid(R"({"repoBlobUrl": "http://r/v2/x/blobs", "lowers": [{"digest": "SHA256:)" + std::string(64, 'a') +
                    R"("}]})",
                "lowers[0].digest");
  ExpectInvalid(R"({"repoBlobUrl": "u", "lowers": [{"digest": ")" + digest + R"(", "size": -1}]})",
                "lowers[0].size: expected a non-negative integer");
  ExpectInvalid(R"({"lowers": [{}]})", "lowers[0]: needs a \"file\" or a \"digest\"");
  ExpectInvalid(R"({"repoBlobUrl": 5})", "repoBlobUrl: expected a string");
  ExpectInvalid(R"({"recordTracePath": []})", "recordTracePath: expected a string");
}

TEST(ImageConfigTest, DigestTableKey) {
  const std::string d = "sha256:" + std::string(64, 'b');
  const std::string t = "sha256:" + std::string(64, 'c');
  auto c = image::ParseImageConfig(R"({"repoBlobUrl": "http://r/v2/x/blobs", "lowers": [
      {"digest": ")" + d + R"(", "size": 40000, "digestTable": {"digest": ")" + t + R"(", "size": 160}},
      {"digest": ")" + d + R"(", "digestTable": null}, {"file": "l", "digestTable": {"digest": ")" + t +
                                       R"(", "size": 536870976}}]})",
                                   "/base");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_TRUE(c->lowers[0].digest_table.has_value());
  EXPECT_EQ(c->lowers[0].digest_table->digest, t);
  EXPECT_EQ(c->lowers[0].digest_table->size, 160u);
  EXPECT_FALSE(c->lowers[1].digest_table.has_value());
  ASSERT_TRUE(c->lowers[2].digest_table.has_value());
  EXPECT_EQ(c->lowers[2].digest_table->size, 64u + 32u * (16u << 20));  // the cap itself

  auto with = [&](const std::string& table) {
    return R"({"repoBlobUrl": "u", "lowers": [{"digest": ")" + d + R"(", "digestTable": )" + table + "}]}";
  };
  ExpectInvalid(with(R"("sha256:x")"), "lowers[0].digestTable: expected an object");
  ExpectInvalid(with(R"({"size": 160})"), "lowers[0].digestTable.digest: expected \"sha256:\"");
  ExpectInvalid(with(R"({"digest": 5, "size": 160})"), "lowers[0].digestTable.digest: expected a string");
  ExpectInvalid(with(R"({"digest": "sha256:)" + std::string(64, 'C') + R"(", "size": 160})"),
                "lowers[0].digestTable.digest");
  ExpectInvalid(with(R"({"digest": ")" + t + R"("})"), "lowers[0].digestTable.size: expected an integer");
  for (const char* size : {"0", "-1", "\"160\"", "1.5", "536870977", "18446744073709551615"}) {
    ExpectInvalid(with(R"({"digest": ")" + t + R"(", "size": )" + size + "}"), "lowers[0].digestTable.size");
  }
}

TEST(ImageConfigTest, DownloadObject) {
  auto c = image::ParseImageConfig(R"({"download": {"enable": true, "delay": 600, "maxMBps": 50, "blockSize": 1}})", "/b");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(c->download.enable);
  EXPECT_EQ(c->download.delay_s, 600u);
  EXPECT_EQ(c->download.max_mbps, 50u);
  auto off = image::ParseImageConfig(R"({"download": {"enable": false}})", "/b");
  ASSERT_TRUE(off.ok());
  EXPECT_FALSE(off->download.enable);
  ExpectInvalid(R"({"download": true})", "download: expected an object");
  ExpectInvalid(R"({"download": {"enable": 1}})", "download.enable");
  ExpectInvalid(R"({"download": {"delay": -5}})", "download.delay");
  ExpectInvalid(R"({"download": {"maxMBps": "50"}})", "download.maxMBps");
}

TEST(ImageConfigTest, RejectsMoreThan255Lowers) {
  std::string json = R"({"lowers": [)";
  for (int i = 0; i < 256; i++) json += std::string(i ? "," : "") + R"({"file": "l"})";
  json += "]}";
  ExpectInvalid(json, "255");
}

TEST(ImageConfigTest, LoadResolvesAgainstTheConfigDirectory) {
  TempDir dir;
  std::string text = R"({"lowers": [{"file": "layer0"}], "resultFile": "res"})";
  testing::WriteFileBytes(dir.Join("config.v1.json"), std::vector<uint8_t>(text.begin(), text.end()));
  auto c = image::LoadImageConfig(dir.Join("config.v1.json"));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_EQ(c->lowers.size(), 1u);
  EXPECT_EQ(c->lowers[0].file, dir.Join("layer0"));
  EXPECT_EQ(c->result_file, dir.Join("res"));
}

TEST(ImageConfigTest, LoadErrorsNameTheFile) {
  TempDir dir;
  std::string text = R"({"lowers": 3})";
  testing::WriteFileBytes(dir.Join("c.json"), std::vector<uint8_t>(text.begin(), text.end()));
  auto c = image::LoadImageConfig(dir.Join("c.json"));
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find(dir.Join("c.json")), std::string::npos);
  EXPECT_NE(c.status().message().find("lowers"), std::string::npos);
}

TEST(ImageConfigTest, WriteResult) {
  TempDir dir;
  image::ImageConfig config;
  config.result_file = dir.Join("result");
  ASSERT_TRUE(image::WriteResult(config, Status::OK()).ok());
  auto ok = ReadFileBytes(config.result_file);
  EXPECT_EQ(std::string(ok.begin(), ok.end()), "success");
  ASSERT_TRUE(image::WriteResult(config, Status::Corruption("bad block 3")).ok());
  auto failed = ReadFileBytes(config.result_file);
  EXPECT_EQ(std::string(failed.begin(), failed.end()), "failed:bad block 3");
  EXPECT_TRUE(image::WriteResult(image::ImageConfig{}, Status::OK()).ok());  // no result file
}

// ---- OpenImage -------------------------------------------------------------------------------

TEST(OpenImageTest, StacksMixedVariants) {
  auto img = image::OpenImage({VectorPath("layer0.zstd-4k-crc.zfile"), VectorPath("layer1.lz4-4k-crc.zfile.tar")},
                              std::nullopt);
  ASSERT_TRUE(img.ok()) << img.status().ToString();
  EXPECT_EQ((*img)->Size(), 67108864u);
  EXPECT_EQ(testing::Md5OfFile(**img), kMd5Stack01);
}

TEST(OpenImageTest, SingleLayer) {
  auto img = image::OpenImage({VectorPath("layer0.lsmt")}, std::nullopt);
  ASSERT_TRUE(img.ok()) << img.status().ToString();
  EXPECT_EQ(testing::Md5OfFile(**img), kMd5Layer0);
}

TEST(OpenImageTest, UpperOnCopies) {
  TempDir dir;
  testing::WriteFileBytes(dir.Join("up.data"), ReadFileBytes(VectorPath("layer1.rw.data")));
  testing::WriteFileBytes(dir.Join("up.index"), ReadFileBytes(VectorPath("layer1.rw.index")));
  auto img = image::OpenImage({VectorPath("layer0.lsmt")}, image::UpperPaths{dir.Join("up.data"), dir.Join("up.index")});
  ASSERT_TRUE(img.ok()) << img.status().ToString();
  EXPECT_TRUE((*img)->writable());
  EXPECT_EQ(testing::Md5OfFile(**img), kMd5Stack01);
}

TEST(OpenImageTest, RawZfileLowerServesItsContent) {
  auto img = image::OpenImage({VectorPath("plain.lz4-4k-crc.zfile")}, std::nullopt);
  ASSERT_TRUE(img.ok()) << img.status().ToString();
  const std::vector<uint8_t> plain = ReadFileBytes(VectorPath("plain.bin"));
  ASSERT_EQ((*img)->Size(), (plain.size() + 511) / 512 * 512);
  std::vector<uint8_t> got((*img)->Size());
  ASSERT_TRUE((*img)->ReadAt(0, got).ok());
  EXPECT_TRUE(std::equal(plain.begin(), plain.end(), got.begin()));
  EXPECT_TRUE(std::all_of(got.begin() + static_cast<ptrdiff_t>(plain.size()), got.end(),
                          [](uint8_t b) { return b == 0; }));
}

// A committed blob with one 4 KiB write at 4096 (MakeData(1)), virtual size 1 MiB.
std::vector<uint8_t> TinyCommittedBlob() {
  auto data = std::make_shared<MemStorage>(), index = std::make_shared<MemStorage>();
  lsmt::CreateOptions co;
  co.virtual_size = 1 << 20;
  auto rw = lsmt::CreateRwLayer(NewMemFile("d", data), NewMemFile("i", index), co);
  EXPECT_TRUE(rw.ok()) << rw.status().ToString();
  if (!rw.ok()) return {};
  EXPECT_TRUE((*rw)->Write(4096, testing::MakeData(1, 4096)).ok());
  auto image = lsmt::OpenImage({}, std::move(rw).value());
  EXPECT_TRUE(image.ok()) << image.status().ToString();
  if (!image.ok()) return {};
  auto out = std::make_shared<MemStorage>();
  auto w = NewMemWritableFile("tiny", out);
  EXPECT_TRUE(lsmt::Commit(**image, w.get(), {}).ok());
  EXPECT_TRUE(w->Close().ok());
  return out->bytes;
}

// A new, empty writable layer of 1 MiB as two files in `dir`.
image::UpperPaths NewUpperFiles(const TempDir& dir, const std::string& name) {
  auto data = std::make_shared<MemStorage>(), index = std::make_shared<MemStorage>();
  lsmt::CreateOptions co;
  co.virtual_size = 1 << 20;
  EXPECT_TRUE(lsmt::CreateRwLayer(NewMemFile("d", data), NewMemFile("i", index), co).ok());
  image::UpperPaths paths{dir.Join(name + ".data"), dir.Join(name + ".index")};
  testing::WriteFileBytes(paths.data, data->bytes);
  testing::WriteFileBytes(paths.index, index->bytes);
  return paths;
}

// The stack cap counts read-only layers only (docs/format/lsmt.md §5): 255 lowers and an upper
// is the largest stack; one lower more is InvalidArgument, with or without an upper, and the
// count is checked before any layer is opened.
TEST(OpenImageTest, LayerCapCountsOnlyTheReadOnlyLayers) {
  TempDir dir;
  const std::vector<uint8_t> tiny = TinyCommittedBlob();
  ASSERT_FALSE(tiny.empty());
  testing::WriteFileBytes(dir.Join("tiny.lsmt"), tiny);
  std::vector<std::string> paths(lsmt::kMaxStackLayers, dir.Join("tiny.lsmt"));
  {
    auto img = image::OpenImage(paths, NewUpperFiles(dir, "up0"));
    ASSERT_TRUE(img.ok()) << "255 lowers + an upper: " << img.status().ToString();
    EXPECT_EQ((*img)->layer_count(), 256u);
    EXPECT_TRUE((*img)->writable());
    std::vector<uint8_t> got(4096);
    ASSERT_TRUE((*img)->ReadAt(4096, got).ok());
    EXPECT_EQ(got, testing::MakeData(1, 4096));
  }
  auto no_upper = image::OpenImage(paths, std::nullopt);
  ASSERT_TRUE(no_upper.ok()) << no_upper.status().ToString();
  EXPECT_EQ((*no_upper)->layer_count(), 255u);

  paths.push_back(dir.Join("missing.lsmt"));  // never opened: the count fails first
  for (bool upper : {false, true}) {
    SCOPED_TRACE(upper ? "256 lowers + upper" : "256 lowers");
    auto img = image::OpenImage(paths, upper ? std::optional(NewUpperFiles(dir, "up1")) : std::nullopt);
    EXPECT_EQ(img.status().code(), Code::kInvalidArgument) << img.status().ToString();
    EXPECT_NE(img.status().message().find("256 read-only layers exceed the limit of 255"), std::string::npos)
        << img.status().ToString();
  }

  // The same cap through the overload that takes opened lowers.
  std::vector<lsmt::LowerLayer> lowers(lsmt::kMaxStackLayers, lsmt::LowerLayer{MemFile(tiny), false});
  auto opened = image::OpenImage(lowers, NewUpperFiles(dir, "up2"));
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ((*opened)->layer_count(), 256u);
  lowers.push_back(lowers.back());
  EXPECT_EQ(image::OpenImage(lowers, NewUpperFiles(dir, "up3")).status().code(), Code::kInvalidArgument);
}

TEST(OpenImageTest, RejectsPlainNonLsmtLowerNamingIt) {
  auto img = image::OpenImage({VectorPath("plain.bin")}, std::nullopt);
  ASSERT_FALSE(img.ok());
  EXPECT_NE(img.status().message().find("plain.bin"), std::string::npos);
  EXPECT_NE(img.status().message().find("not an LSMT layer"), std::string::npos);
}

}  // namespace
}  // namespace ovbd
