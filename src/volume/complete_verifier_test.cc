#include "volume/complete_verifier.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <random>

#include "base/hash.h"

namespace ovbd::volume {
namespace {

std::vector<uint8_t> Data(size_t n) {
  std::vector<uint8_t> d(n);
  std::mt19937 rng(5);
  for (auto& b : d) b = static_cast<uint8_t>(rng());
  return d;
}

std::string DigestOf(const std::vector<uint8_t>& d) { return "sha256:" + Sha256Hex(d); }

// A read as the stack does it: through the verifier, the bytes reported as delivered.
Status Read(const CompleteVerifier& f, uint64_t off, size_t n) {
  std::vector<uint8_t> buf(n);
  Status s = f.ReadAt(off, buf);
  if (s.ok()) f.NoteRead(off, n);
  return s;
}

TEST(CompleteVerifierTest, VerifiedOnceEveryByteWasReadInAnyOrder) {
  auto data = Data(300000);
  auto v = CompleteVerifier::Create(NewMemReadableFile("blob", data), DigestOf(data));
  v->Enable();
  ASSERT_TRUE(Read(*v, 200000, 100000).ok());
  ASSERT_TRUE(Read(*v, 5, 1000).ok());  // leaves [0, 5) and [1005, 200000)
  ASSERT_TRUE(Read(*v, 1000, 150000).ok());
  EXPECT_EQ(v->state(), CompleteVerifier::State::kPartial);
  ASSERT_TRUE(Read(*v, 150000, 60000).ok());  // overlapping
  EXPECT_EQ(v->state(), CompleteVerifier::State::kPartial);
  ASSERT_TRUE(Read(*v, 0, 5).ok());  // the last gap
  v->Join();
  EXPECT_EQ(v->state(), CompleteVerifier::State::kVerified);
  EXPECT_TRUE(Read(*v, 0, 300000).ok());
}

// A cache over a registry that corrupted one transfer: byte `bad` reads flipped until the
// first `heal_after` invalidations (each drops the cached copy; the refetch is right once the
// registry is).
class HealingFile final : public ReadableFile {
 public:
  HealingFile(std::vector<uint8_t> bytes, uint64_t bad, int heal_after)
      : bytes_(std::move(bytes)), bad_(bad), heal_after_(heal_after) {}
  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) const override {
    if (offset > bytes_.size() || buf.size() > bytes_.size() - offset) return Status::OutOfRange("healing");
    std::copy_n(bytes_.begin() + static_cast<ptrdiff_t>(offset), buf.size(), buf.begin());
    if (invalidations_ < heal_after_ && bad_ >= offset && bad_ - offset < buf.size()) buf[bad_ - offset] ^= 1;
    return Status::OK();
  }
  uint64_t Size() const override { return bytes_.size(); }
  const std::string& Name() const override { return name_; }
  bool Invalidate(uint64_t offset, uint64_t length) const override {
    EXPECT_EQ(offset, 0u);
    EXPECT_EQ(length, bytes_.size());
    invalidations_++;
    return true;
  }
  int invalidations() const { return invalidations_; }

 private:
  std::vector<uint8_t> bytes_;
  uint64_t bad_;
  int heal_after_;
  std::string name_ = "blob";
  mutable std::atomic<int> invalidations_{0};
};

TEST(CompleteVerifierTest, MismatchDropsTheBlobAndStartsOverWithoutFailingReads) {
  auto data = Data(100000);
  auto base = std::make_shared<HealingFile>(data, 777, 1);
  auto v = CompleteVerifier::Create(base, DigestOf(data));
  ASSERT_TRUE(Read(*v, 0, 100000).ok());
  EXPECT_EQ(v->state(), CompleteVerifier::State::kPartial);  // not enabled yet: no thread
  v->Enable();
  v->Join();
  EXPECT_EQ(v->mismatches(), 1u);
  EXPECT_EQ(base->invalidations(), 1);
  EXPECT_EQ(v->state(), CompleteVerifier::State::kPartial);  // forgot what was delivered
  EXPECT_EQ(v->generation(), 1u);
  EXPECT_TRUE(Read(*v, 10, 10).ok());  // reads are not failed by the check
  ASSERT_TRUE(Read(*v, 0, 60000).ok());
  EXPECT_EQ(v->state(), CompleteVerifier::State::kPartial);
  ASSERT_TRUE(Read(*v, 60000, 40000).ok());  // covered again: checked again
  v->Join();
  EXPECT_EQ(v->state(), CompleteVerifier::State::kVerified);
  EXPECT_EQ(v->mismatches(), 1u);
}

TEST(CompleteVerifierTest, ThreeMismatchesAreFinalButReadsGoOn) {
  auto data = Data(50000);
  auto base = std::make_shared<HealingFile>(data, 49999, 1000);  // never heals
  auto v = CompleteVerifier::Create(base, DigestOf(data));
  v->Enable();
  for (uint64_t i = 1; i <= CompleteVerifier::kMaxMismatches; ++i) {
    ASSERT_TRUE(Read(*v, 0, 50000).ok());
    v->Join();
    EXPECT_EQ(v->mismatches(), i);
  }
  EXPECT_EQ(v->state(), CompleteVerifier::State::kMismatch);
  EXPECT_EQ(base->invalidations(), 3);
  ASSERT_TRUE(Read(*v, 0, 50000).ok());  // no fourth check
  v->Join();
  EXPECT_EQ(v->state(), CompleteVerifier::State::kMismatch);
  EXPECT_EQ(v->mismatches(), 3u);
  EXPECT_STREQ(CompleteVerifier::StateName(v->state()), "mismatch");
}

// The tap reports fetches with the generation they began in: one begun before a reset does not
// count towards the new coverage.
TEST(CompleteVerifierTest, FetchesBegunBeforeAResetDoNotCount) {
  auto data = Data(40000);
  auto base = std::make_shared<HealingFile>(data, 5, 1);
  auto v = CompleteVerifier::Create(base, DigestOf(data));
  v->Enable();
  const uint64_t before = v->generation();
  ASSERT_TRUE(Read(*v, 0, 40000).ok());
  v->Join();
  ASSERT_EQ(v->generation(), before + 1);
  v->NoteFetch(0, 40000, before);  // stale: ignored
  v->Join();
  EXPECT_EQ(v->state(), CompleteVerifier::State::kPartial);
  v->NoteFetch(0, 40000, v->generation());
  v->Join();
  EXPECT_EQ(v->state(), CompleteVerifier::State::kVerified);
}

TEST(CompleteVerifierTest, FetchTapForwardsInvalidateAndReportsFetches) {
  auto data = Data(30000);
  auto base = std::make_shared<HealingFile>(data, 5, 0);
  auto tap = std::make_shared<FetchTap>(base);
  auto v = CompleteVerifier::Create(tap, DigestOf(data));
  tap->Attach(v);
  v->Enable();
  EXPECT_TRUE(v->Invalidate(0, 30000));  // verifier -> tap -> base
  EXPECT_EQ(base->invalidations(), 1);
  std::vector<uint8_t> buf(30000);
  ASSERT_TRUE(v->ReadAt(0, buf).ok());  // the tap reports the fetch itself
  v->Join();
  EXPECT_EQ(v->state(), CompleteVerifier::State::kVerified);
}

TEST(CompleteVerifierTest, ACheckThatCannotReadStartsOverLater) {
  auto data = Data(100000);
  auto storage = std::make_shared<MemStorage>();
  storage->bytes = data;
  auto file = std::make_shared<FaultInjectionFile>(NewMemFile("blob", storage));
  auto v = CompleteVerifier::Create(file, DigestOf(data));
  v->Enable();
  file->FailNthRead(2);  // 1-based: read 1 is ours, read 2 the check's first
  ASSERT_TRUE(Read(*v, 0, 100000).ok());
  v->Join();
  EXPECT_EQ(v->state(), CompleteVerifier::State::kPartial);  // gave up, forgot what was read
  ASSERT_TRUE(Read(*v, 0, 50000).ok());
  EXPECT_EQ(v->state(), CompleteVerifier::State::kPartial);
  ASSERT_TRUE(Read(*v, 50000, 50000).ok());
  v->Join();
  EXPECT_EQ(v->state(), CompleteVerifier::State::kVerified);
}

}  // namespace
}  // namespace ovbd::volume
