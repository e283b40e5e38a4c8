// Helpers shared by the LSMT unit tests: golden vectors as in-memory files, RW layers on
// MemStorage "disks", flat reference reads.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/hash.h"
#include "ovbd/io.h"
#include "ovbd/lsmt.h"
#include "testutil.h"

namespace ovbd::lsmt::testing {

inline constexpr const char* kU0 = "0A0B0C0D-1111-4222-8333-444455556666";
inline constexpr const char* kU1 = "1A1B1C1D-7777-4888-9999-AAAABBBBCCCC";
inline constexpr const char* kR1 = "00000000-0000-4000-8000-0000000000A1";
inline constexpr const char* kMd5Layer0 = "52c1be1f44e2c1a4c1f46a02f8ffc443";
inline constexpr const char* kMd5Layer01 = "ca7d25ce00c72165dcb351bf308f46fa";
inline constexpr const char* kMd5Layer1Alone = "6cdb4424448843d6bd5f1dfc601d1787";
inline constexpr const char* kMd5Layer1Blob = "c97baf54c04ec670de6922f140457e9a";
inline constexpr const char* kMd5Layer0Blob = "f7e821df2c985f4926647452e2b9ab8d";
inline constexpr const char* kMd5Merged01Blob = "60386e6b036a4d25008fd5eed2bb0b11";

// The bytes of a golden vector, read once per test binary.
inline const std::vector<uint8_t>& VectorBytes(const std::string& name) {
  static std::mutex mu;
  static std::map<std::string, std::vector<uint8_t>> cache;
  std::lock_guard lock(mu);
  auto it = cache.find(name);
  if (it != cache.end()) return it->second;
  std::vector<uint8_t> bytes;
  auto file = OpenReadableFile(::ovbd::testing::VectorPath(name));
  EXPECT_TRUE(file.ok()) << file.status().ToString();
  if (file.ok()) {
    auto all = ReadAll(**file);
    EXPECT_TRUE(all.ok()) << all.status().ToString();
    if (all.ok()) bytes = std::move(all).value();
  }
  return cache.emplace(name, std::move(bytes)).first->second;
}

// A golden vector copied into memory (tests never touch the shared files).
inline std::shared_ptr<const ReadableFile> Vector(const std::string& name) {
  return NewMemReadableFile(name, VectorBytes(name));
}

// The two "disks" of an RW layer.
struct RwDisks {
  std::shared_ptr<MemStorage> data = std::make_shared<MemStorage>();
  std::shared_ptr<MemStorage> index = std::make_shared<MemStorage>();
  std::unique_ptr<RandomRWFile> DataFile() const { return NewMemFile("data", data); }
  std::unique_ptr<RandomRWFile> IndexFile() const { return NewMemFile("index", index); }
};

// layer1.rw.data/.index copied into fresh storages.
inline RwDisks Layer1RwCopy() {
  RwDisks disks;
  disks.data->bytes = VectorBytes("layer1.rw.data");
  disks.index->bytes = VectorBytes("layer1.rw.index");
  return disks;
}

inline std::unique_ptr<RwLayer> MustOpenRw(const RwDisks& disks) {
  auto layer = OpenRwLayer(disks.DataFile(), disks.IndexFile());
  EXPECT_TRUE(layer.ok()) << layer.status().ToString();
  return layer.ok() ? std::move(layer).value() : nullptr;
}

inline std::unique_ptr<RwLayer> MustCreateRw(const RwDisks& disks, uint64_t vsize) {
  CreateOptions options;
  options.virtual_size = vsize;
  auto layer = CreateRwLayer(disks.DataFile(), disks.IndexFile(), options);
  EXPECT_TRUE(layer.ok()) << layer.status().ToString();
  return layer.ok() ? std::move(layer).value() : nullptr;
}

inline std::unique_ptr<Image> MustOpenImage(std::vector<std::shared_ptr<const ReadableFile>> lowers,
                                            std::unique_ptr<RwLayer> upper = nullptr) {
  auto image = OpenImage(std::move(lowers), std::move(upper));
  EXPECT_TRUE(image.ok()) << image.status().ToString();
  return image.ok() ? std::move(image).value() : nullptr;
}

// Commits `image` into memory and returns the blob bytes.
inline std::vector<uint8_t> CommitToBytes(const Image& image, const CommitOptions& options) {
  auto storage = std::make_shared<MemStorage>();
  auto out = NewMemWritableFile("commit.out", storage);
  Status st = Commit(image, out.get(), options);
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_TRUE(out->Close().ok());
  return storage->bytes;
}

inline std::string Md5(const std::vector<uint8_t>& bytes) { return ::ovbd::Md5Hex(bytes); }

// Compares two files of equal size in 1 MiB chunks (cheaper than hashing both).
inline void ExpectSameContent(const ReadableFile& a, const ReadableFile& b) {
  ASSERT_EQ(a.Size(), b.Size());
  std::vector<uint8_t> x(1 << 20), y(1 << 20);
  for (uint64_t at = 0; at < a.Size(); at += x.size()) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(x.size(), a.Size() - at));
    ASSERT_TRUE(a.ReadAt(at, std::span<uint8_t>(x.data(), n)).ok());
    ASSERT_TRUE(b.ReadAt(at, std::span<uint8_t>(y.data(), n)).ok());
    ASSERT_EQ(0, memcmp(x.data(), y.data(), n)) << "content differs in [" << at << ", +" << n << ")";
  }
}

}  // namespace ovbd::lsmt::testing
