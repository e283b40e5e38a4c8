// Against a real registry (scripts/registry.sh: Debian's docker-registry on 127.0.0.1): push with
// PushBlob (chunked and monolithic, skipped when present), read back with OpenBlob. Skipped with
// a reason when docker-registry is not installed.
#include <chrono>
#include <random>

#include <gtest/gtest.h>

#include "base/hash.h"
#include "ovbd/remote.h"
#include "testutil.h"

namespace ovbd::remote {
namespace {

class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = testing::RunCommand(std::string("bash ") + OVBD_REGISTRY_SCRIPT + " start " + dir_.path(), false);
    if (r.exit_code == 77) GTEST_SKIP() << "docker-registry or curl not installed";
    ASSERT_EQ(r.exit_code, 0) << r.output;
    address_ = r.output.substr(0, r.output.find('\n'));
    started_ = true;
  }
  void TearDown() override {
    if (started_) testing::RunCommand(std::string("bash ") + OVBD_REGISTRY_SCRIPT + " stop " + dir_.path());
  }
  std::string Repo() const { return "http://" + address_ + "/test/blobs"; }
  std::string BlobsUrl() const { return "http://" + address_ + "/v2/test/blobs/blobs"; }

  testing::TempDir dir_;
  std::string address_;
  bool started_ = false;
};

void ExpectSameRanges(const ReadableFile& remote, const std::vector<uint8_t>& local) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 40; ++i) {
    uint64_t off = rng() % local.size();
    uint64_t len = 1 + rng() % std::min<uint64_t>(local.size() - off, 3 << 20);
    std::vector<uint8_t> buf(len);
    ASSERT_TRUE(remote.ReadAt(off, buf).ok()) << off << "+" << len;
    ASSERT_TRUE(std::equal(buf.begin(), buf.end(), local.begin() + static_cast<long>(off))) << off << "+" << len;
  }
}

TEST_F(RegistryTest, PushThenReadBack) {
  auto data = testing::MakeData(1, (5 << 20) + 12345);
  auto file = NewMemReadableFile("data", data);
  RemoteOptions opts;
  auto pushed = PushBlob(Repo(), *file, opts, /*chunked=*/true, 1 << 20);
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  EXPECT_EQ(pushed->digest, "sha256:" + Sha256Hex(data));
  EXPECT_EQ(pushed->size, data.size());
  EXPECT_FALSE(pushed->existed);
  auto again = PushBlob(Repo(), *file, opts, /*chunked=*/false, 0);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_TRUE(again->existed);

  auto blob = OpenBlob(BlobsUrl(), pushed->digest, std::nullopt, opts);
  ASSERT_TRUE(blob.ok()) << blob.status().ToString();
  EXPECT_EQ((*blob)->Size(), data.size());
  ExpectSameRanges(**blob, data);
  auto all = ReadAll(**blob);  // in order: verifies the digest
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  EXPECT_EQ(*all, data);
  std::vector<uint8_t> past(2);
  EXPECT_EQ((*blob)->ReadAt(data.size() - 1, past).code(), Code::kOutOfRange);
}

TEST_F(RegistryTest, MonolithicGoldenLayerAndOciReference) {
  auto file = OpenReadableFile(testing::VectorPath("layer1.lz4-4k-crc.zfile.tar"));
  ASSERT_TRUE(file.ok());
  auto pushed = PushBlob(Repo(), **file, RemoteOptions{}, /*chunked=*/false, 0);
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  auto blob = OpenOciReference("oci+http://" + address_ + "/test/blobs@" + pushed->digest, RemoteOptions{});
  ASSERT_TRUE(blob.ok()) << blob.status().ToString();
  EXPECT_EQ(testing::Sha256OfFile(**blob), testing::Sha256OfFile(**file));
}

TEST_F(RegistryTest, WrongDigestOrSizeFails) {
  std::string missing = "sha256:" + std::string(64, '1');
  EXPECT_EQ(OpenBlob(BlobsUrl(), missing, std::nullopt, RemoteOptions{}).status().code(), Code::kNotFound);
  auto lazy = OpenBlob(BlobsUrl(), missing, 100, RemoteOptions{});
  ASSERT_TRUE(lazy.ok());
  std::vector<uint8_t> buf(10);
  EXPECT_EQ((*lazy)->ReadAt(0, buf).code(), Code::kNotFound);

  auto data = testing::MakeData(2, 10000);
  auto pushed = PushBlob(Repo(), *NewMemReadableFile("d", data), RemoteOptions{}, true, 4096);
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  auto wrong_size = OpenBlob(BlobsUrl(), pushed->digest, 20000, RemoteOptions{});
  ASSERT_TRUE(wrong_size.ok());
  Status s = (*wrong_size)->ReadAt(0, buf);  // Content-Range total 10000 != 20000
  EXPECT_EQ(s.code(), Code::kIOError) << s.ToString();
}

TEST(RemoteUnreachable, UnavailableWithinTimeout) {
  RemoteOptions opts;
  opts.retries = 2;
  opts.backoff = std::chrono::milliseconds(10);
  opts.connect_timeout = std::chrono::milliseconds(500);
  auto start = std::chrono::steady_clock::now();
  auto blob = OpenBlob("http://127.0.0.1:1/v2/x/blobs", "sha256:" + std::string(64, 'a'), std::nullopt, opts);
  EXPECT_EQ(blob.status().code(), Code::kUnavailable) << blob.status().ToString();
  EXPECT_NE(blob.status().message().find("127.0.0.1:1"), std::string::npos);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  RemoteOptions bad;
  bad.max_parallel = 0;
  EXPECT_EQ(OpenBlob("http://127.0.0.1:1/v2/x/blobs", "sha256:" + std::string(64, 'a'), 1, bad).status().code(),
            Code::kInvalidArgument);
}

}  // namespace
}  // namespace ovbd::remote
