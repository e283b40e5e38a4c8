// Builder -> Reader round trips over algorithms x block sizes x CRC x sizes x threads.
#include <gtest/gtest.h>

#include <random>
#include <thread>
#include <tuple>

#include "ovbd/zfile.h"
#include "testutil.h"
#include "zfile/zfile_testing.h"

namespace ovbd::zfile {
namespace {

using ovbd::testing::MakeData;
using namespace ovbd::zfile::testing;

// Text, random and zero runs of varied lengths, so blocks compress very differently.
std::vector<uint8_t> MixedData(uint64_t seed, size_t n) {
  static const char* kKinds[] = {"text", "random", "zero"};
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> out;
  out.reserve(n);
  while (out.size() < n) {
    const size_t len = std::min<size_t>(n - out.size(), 1 + rng() % 150000);
    const auto piece = MakeData(rng(), len, kKinds[rng() % 3]);
    out.insert(out.end(), piece.begin(), piece.end());
  }
  return out;
}

using Params = std::tuple<Algorithm, uint32_t, bool>;

class ZFileRoundTrip : public ::testing::TestWithParam<Params> {
 protected:
  Options Opts(int threads = 1) const {
    Options o;
    o.algorithm = std::get<0>(GetParam());
    o.block_size = std::get<1>(GetParam());
    o.crc = std::get<2>(GetParam());
    o.threads = threads;
    return o;
  }
};

TEST_P(ZFileRoundTrip, SizesAroundBlockBoundaries) {
  const uint32_t bs = std::get<1>(GetParam());
  for (size_t n : {size_t{0}, size_t{1}, size_t{bs} - 1, size_t{bs}, size_t{bs} + 1, size_t{3} * bs}) {
    const auto data = MixedData(n, n);
    Info info;
    const auto z = BuildZFile(data, Opts(), 0, &info);
    EXPECT_EQ(info.original_size, n);
    EXPECT_EQ(info.block_count, (n + bs - 1) / bs);
    EXPECT_EQ(info.file_size, z.size());
    auto r = OpenBytes(z);
    ASSERT_TRUE(r.ok()) << n << ": " << r.status().ToString();
    EXPECT_EQ((*r)->Size(), n);
    EXPECT_EQ(ReadAllOrFail(**r), data) << n;
    EXPECT_TRUE((*r)->VerifyAll().ok());
    EXPECT_EQ((*r)->info().crc, std::get<2>(GetParam()));
  }
}

TEST_P(ZFileRoundTrip, SeveralMiBSameBytesForAnyThreadCount) {
  const auto data = MixedData(42, (3 << 20) + 123);
  const auto z1 = BuildZFile(data, Opts(1));
  for (int threads : {2, 4}) {
    // Odd append sizes must not change the output either.
    const auto zn = BuildZFile(data, Opts(threads), 10007 * threads);
    ASSERT_EQ(z1.size(), zn.size()) << threads;
    EXPECT_TRUE(z1 == zn) << "threads " << threads;
  }
  auto r = OpenBytes(z1);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(ReadAllOrFail(**r), data);

  // Random reads of any offset and length.
  std::mt19937_64 rng(7);
  for (int i = 0; i < 300; i++) {
    const uint64_t off = rng() % data.size();
    const uint64_t max_len = std::min<uint64_t>(data.size() - off, i % 3 == 0 ? 300000 : 9000);
    const uint64_t len = rng() % (max_len + 1);
    std::vector<uint8_t> buf(len);
    Status s = (*r)->ReadAt(off, buf);
    ASSERT_TRUE(s.ok()) << s.ToString();
    ASSERT_TRUE(std::equal(buf.begin(), buf.end(), data.begin() + static_cast<ptrdiff_t>(off)))
        << "offset " << off << " length " << len;
  }
}

INSTANTIATE_TEST_SUITE_P(All, ZFileRoundTrip,
                         ::testing::Combine(::testing::Values(Algorithm::kLz4, Algorithm::kZstd),
                                            ::testing::Values(4096u, 8192u, 16384u, 32768u, 65536u),
                                            ::testing::Bool()),
                         [](const auto& info) {
                           return std::string(AlgorithmName(std::get<0>(info.param))) + "_" +
                                  std::to_string(std::get<1>(info.param) / 1024) + "k_" +
                                  (std::get<2>(info.param) ? "crc" : "nocrc");
                         });

TEST(ZFileReader, OutOfRangeReads) {
  const auto data = MakeData(1, 10000, "text");
  auto r = OpenBytes(BuildZFile(data, Options{}));
  ASSERT_TRUE(r.ok());
  std::vector<uint8_t> buf(10);
  EXPECT_EQ((*r)->ReadAt(9995, buf).code(), Code::kOutOfRange);
  EXPECT_EQ((*r)->ReadAt(UINT64_MAX - 5, buf).code(), Code::kOutOfRange);
  EXPECT_TRUE((*r)->ReadAt(9990, buf).ok());
  EXPECT_TRUE((*r)->ReadAt(10000, std::span<uint8_t>()).ok());
  EXPECT_EQ((*r)->ReadAt(10001, std::span<uint8_t>()).code(), Code::kOutOfRange);
}

TEST(ZFileReader, ConcurrentReadsAreCorrect) {
  const auto data = MixedData(5, 2 << 20);
  Options o;
  o.algorithm = Algorithm::kZstd;
  o.block_size = 16384;
  auto r = OpenBytes(BuildZFile(data, o));
  ASSERT_TRUE(r.ok());
  const Reader& reader = **r;
  std::vector<std::thread> threads;
  std::vector<int> bad(4, 0);
  for (int t = 0; t < 4; t++) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      for (int i = 0; i < 200; i++) {
        const uint64_t off = rng() % data.size();
        const uint64_t len = rng() % std::min<uint64_t>(data.size() - off, 100000);
        std::vector<uint8_t> buf(len);
        if (!reader.ReadAt(off, buf).ok() ||
            !std::equal(buf.begin(), buf.end(), data.begin() + static_cast<ptrdiff_t>(off))) {
          bad[t]++;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; t++) EXPECT_EQ(bad[t], 0) << "thread " << t;
}

TEST(ZFileReader, NestedZFileReadsUsePrivateScratch) {
  // A ZFile whose compressed bytes are served by another ZFile reader on the same thread.
  const auto data = MixedData(9, 300000);
  const auto inner = BuildZFile(data, Options{});
  Options o;
  o.algorithm = Algorithm::kZstd;
  auto outer = OpenBytes(BuildZFile(inner, o));
  ASSERT_TRUE(outer.ok());
  auto r = Open(std::shared_ptr<const ReadableFile>(std::move(outer).value()));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(ReadAllOrFail(**r), data);
}

// Blocks that grow when compressed must be stored and read back.
struct Incompressible {
  Algorithm algorithm;
  uint32_t block_size;
};

class ZFileIncompressible : public ::testing::TestWithParam<Incompressible> {};

TEST_P(ZFileIncompressible, RandomDataRoundTrips) {
  const auto data = MakeData(11, 5 * GetParam().block_size + 77, "random");
  Options o;
  o.algorithm = GetParam().algorithm;
  o.block_size = GetParam().block_size;
  Info info;
  const auto z = BuildZFile(data, o, 0, &info);
  // Every full block grew: its entry is larger than block_size + 4.
  const uint64_t first_entry = DecodeLE32(z.data() + info.index_offset);
  EXPECT_GT(first_entry, o.block_size + 4u);
  EXPECT_GT(info.index_offset - 512, data.size());
  auto r = OpenBytes(z);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(ReadAllOrFail(**r), data);
  std::vector<uint8_t> buf(100);
  ASSERT_TRUE((*r)->ReadAt(o.block_size - 50, buf).ok());
  EXPECT_TRUE(std::equal(buf.begin(), buf.end(), data.begin() + o.block_size - 50));
}

INSTANTIATE_TEST_SUITE_P(Random, ZFileIncompressible,
                         ::testing::Values(Incompressible{Algorithm::kZstd, 65536},
                                           Incompressible{Algorithm::kLz4, 4096},
                                           Incompressible{Algorithm::kLz4, 65536},
                                           Incompressible{Algorithm::kZstd, 4096}));

}  // namespace
}  // namespace ovbd::zfile
