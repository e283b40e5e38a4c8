// WriteBehindFile: same bytes in the same order, periodic syncs, sticky errors, Close semantics.
#include "io/write_behind.h"

#include <gtest/gtest.h>

#include <vector>

#include "testutil.h"

namespace ovbd {
namespace {

using ovbd::testing::MakeData;

// Records appends and syncs; fails the n-th Append or Sync when asked. Touched by the writer
// thread only while the decorator is open, so no locking.
class RecordingWriter final : public WritableFile {
 public:
  Status Append(std::span<const uint8_t> data) override {
    if (++appends_ == fail_append_) return Status::IOError("injected append error");
    bytes.insert(bytes.end(), data.begin(), data.end());
    return Status::OK();
  }
  uint64_t Position() const override { return bytes.size() + prefix_; }
  bool Seekable() const override { return true; }
  Status Rewrite(uint64_t, std::span<const uint8_t>) override { return Status::OK(); }
  Status Sync() override {
    syncs++;
    synced_at.push_back(bytes.size());
    if (syncs == fail_sync_) return Status::IOError("injected sync error");
    return Status::OK();
  }
  Status Close() override { return Status::OK(); }
  const std::string& Name() const override { return name_; }

  std::vector<uint8_t> bytes;
  uint64_t syncs = 0;
  std::vector<uint64_t> synced_at;
  uint64_t fail_append_ = 0;
  uint64_t fail_sync_ = 0;
  uint64_t prefix_ = 0;

 private:
  uint64_t appends_ = 0;
  std::string name_ = "recording";
};

TEST(WriteBehind, SameBytesForAnyAppendSizes) {
  const auto data = MakeData(1, (5 << 20) + 123, "random");
  for (size_t piece : {size_t{1}, size_t{4095}, size_t{2} << 20, (size_t{2} << 20) + 1, data.size()}) {
    RecordingWriter base;
    base.prefix_ = 1000;  // Position continues from the base's position
    auto w = NewWriteBehindFile(&base, 1 << 30);
    const size_t limit = piece == 1 ? 100000 : data.size();  // byte-by-byte only for a prefix
    for (size_t off = 0; off < limit; off += piece) {
      const size_t n = std::min(piece, limit - off);
      ASSERT_TRUE(w->Append(std::span<const uint8_t>(data.data() + off, n)).ok());
    }
    EXPECT_EQ(w->Position(), 1000 + limit);
    ASSERT_TRUE(w->Close().ok());
    EXPECT_TRUE(std::equal(base.bytes.begin(), base.bytes.end(), data.begin()));
    EXPECT_EQ(base.bytes.size(), limit) << piece;
    EXPECT_EQ(base.syncs, 0u);
  }
}

TEST(WriteBehind, SyncsEveryNBytesAndOnSync) {
  const auto data = MakeData(2, 10 << 20, "text");
  RecordingWriter base;
  auto w = NewWriteBehindFile(&base, 5 << 20);
  ASSERT_TRUE(w->Append(data).ok());
  ASSERT_TRUE(w->Sync().ok());  // writes everything first
  EXPECT_EQ(base.bytes, data);
  // Once 5 MiB are written (in 2 MiB buffers: at 6 MiB), then the explicit Sync at 10 MiB.
  EXPECT_EQ(base.synced_at, (std::vector<uint64_t>{6 << 20, 10 << 20}));
  ASSERT_TRUE(w->Close().ok());
  EXPECT_EQ(w->Sync().code(), Code::kInvalidArgument);
}

TEST(WriteBehind, EmptyAndCloseTwice) {
  RecordingWriter base;
  auto w = NewWriteBehindFile(&base);
  EXPECT_FALSE(w->Seekable());
  EXPECT_EQ(w->Rewrite(0, std::span<const uint8_t>()).code(), Code::kNotSupported);
  EXPECT_TRUE(w->Close().ok());
  EXPECT_TRUE(w->Close().ok());
  EXPECT_TRUE(base.bytes.empty());
  const std::vector<uint8_t> one{1};
  EXPECT_EQ(w->Append(one).code(), Code::kInvalidArgument);
}

TEST(WriteBehind, DestructorWritesEverything) {
  const auto data = MakeData(3, 3000000, "text");
  RecordingWriter base;
  {
    auto w = NewWriteBehindFile(&base);
    ASSERT_TRUE(w->Append(data).ok());
  }
  EXPECT_EQ(base.bytes, data);
}

TEST(WriteBehind, AppendErrorsStick) {
  const auto data = MakeData(4, 40 << 20, "random");
  for (uint64_t n : {1, 2, 15}) {
    RecordingWriter base;
    base.fail_append_ = n;
    auto w = NewWriteBehindFile(&base, 1 << 30);
    Status s;
    for (size_t off = 0; off < data.size() && s.ok(); off += 100000) {
      s = w->Append(std::span<const uint8_t>(data.data() + off, std::min<size_t>(100000, data.size() - off)));
    }
    if (s.ok()) s = w->Close();
    EXPECT_EQ(s.code(), Code::kIOError) << n;
    EXPECT_EQ(w->Close().code(), Code::kIOError);
    EXPECT_EQ(base.bytes.size(), (n - 1) << 21);  // nothing after the failed buffer (2 MiB each)
  }
}

TEST(WriteBehind, SyncErrorsStick) {
  const auto data = MakeData(5, 8 << 20, "text");
  RecordingWriter base;
  base.fail_sync_ = 1;
  auto w = NewWriteBehindFile(&base, 1 << 20);
  Status s = w->Append(data);
  if (s.ok()) s = w->Close();
  EXPECT_EQ(s.code(), Code::kIOError);
  EXPECT_EQ(base.bytes.size(), size_t{2} << 20);  // the first buffer, then its failed sync
}

}  // namespace
}  // namespace ovbd
