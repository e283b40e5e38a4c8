#include "cli/complete_verifier.h"

#include <gtest/gtest.h>

#include <random>

#include "base/hash.h"

namespace ovbd::cli {
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

TEST(CompleteVerifierTest, MismatchFailsEveryLaterRead) {
  auto data = Data(100000);
  auto v = CompleteVerifier::Create(NewMemReadableFile("blob", data), "sha256:" + std::string(64, '0'));
  ASSERT_TRUE(Read(*v, 0, 100000).ok());
  EXPECT_EQ(v->state(), CompleteVerifier::State::kPartial);  // not enabled yet: no thread
  v->Enable();
  v->Join();
  EXPECT_EQ(v->state(), CompleteVerifier::State::kMismatch);
  Status s = Read(*v, 10, 10);
  EXPECT_EQ(s.code(), Code::kCorruption);
  EXPECT_NE(s.message().find("blob"), std::string::npos) << s.message();
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
}  // namespace ovbd::cli
