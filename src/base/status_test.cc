#include "ovbd/status.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <memory>

namespace ovbd {
namespace {

Result<int> Half(int v) {
  if (v % 2) return Status::InvalidArgument("odd: " + std::to_string(v));
  return v / 2;
}

Result<int> Quarter(int v) {
  OVBD_ASSIGN_OR_RETURN(int h, Half(v));
  OVBD_ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

Status CheckPositive(int v) {
  if (v <= 0) return Status::OutOfRange("not positive");
  return Status::OK();
}

Status Both(int a, int b) {
  OVBD_RETURN_IF_ERROR(CheckPositive(a));
  OVBD_RETURN_IF_ERROR(CheckPositive(b));
  return Status::OK();
}

TEST(Status, OkAndErrors) {
  EXPECT_TRUE(Status::OK().ok());
  EXPECT_EQ(Status::OK().ToString(), "ok");
  Status s = Status::Corruption("bad magic");
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(s.IsCorruption());
  EXPECT_EQ(s.ToString(), "corruption: bad magic");
  EXPECT_EQ(s.posix_errno(), EIO);
  EXPECT_EQ(s.WithContext("a.zfile").message(), "a.zfile: bad magic");
  EXPECT_EQ(Status::InvalidArgument("x").posix_errno(), EINVAL);
  EXPECT_EQ(Status::NoSpace("x").posix_errno(), ENOSPC);
}

TEST(Status, FromErrnoMapsCodes) {
  EXPECT_TRUE(Status::FromErrno(ENOENT, "f").IsNotFound());
  EXPECT_EQ(Status::FromErrno(EEXIST, "f").code(), Code::kAlreadyExists);
  EXPECT_EQ(Status::FromErrno(EIO, "f").code(), Code::kIOError);
  EXPECT_NE(Status::FromErrno(ENOENT, "path/x").message().find("path/x"), std::string::npos);
}

TEST(Result, ValueAndErrorPropagation) {
  auto q = Quarter(8);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(*q, 2);
  auto bad = Quarter(6);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "odd: 3");
  EXPECT_TRUE(Both(1, 2).ok());
  EXPECT_EQ(Both(1, -1).code(), Code::kOutOfRange);
}

TEST(Result, MoveOnlyValues) {
  Result<std::unique_ptr<int>> r(std::make_unique<int>(5));
  ASSERT_TRUE(r.ok());
  std::unique_ptr<int> p = std::move(r).value();
  EXPECT_EQ(*p, 5);
}

}  // namespace
}  // namespace ovbd
