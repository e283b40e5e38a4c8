// The attach state records: round trip, hostile state files, result files, process liveness.
#include "export/fuse/attach_state.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

#include "testutil.h"

namespace ovbd::fuse {
namespace {

using ovbd::testing::TempDir;

void WriteText(const std::string& path, const std::string& text) {
  ovbd::testing::WriteFileBytes(path, std::vector<uint8_t>(text.begin(), text.end()));
}

TEST(AttachState, RoundTrips) {
  TempDir dir;
  AttachState s{1234, 987654, "/run/ovbd/attach-x/mnt/image", "/run/ovbd/attach-x/mnt", "/dev/loop7", true,
                {"/l/a.zfile", "oci://h/r@sha256:00"}, "/u/up.data"};
  ASSERT_TRUE(WriteState(dir.path(), s).ok());
  auto got = ReadState(dir.path());
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->pid, 1234);
  EXPECT_EQ(got->start_time, 987654u);
  EXPECT_EQ(got->file, s.file);
  EXPECT_EQ(got->mountpoint, s.mountpoint);
  EXPECT_EQ(got->device, s.device);
  EXPECT_TRUE(got->read_only);
  EXPECT_EQ(got->layers, s.layers);
  EXPECT_EQ(got->upper, s.upper);
}

TEST(AttachState, RejectsMistypedMissingAndHugeStateFiles) {
  TempDir dir;
  const std::string path = dir.Join(kStateFile);
  const std::string good_tail =
      R"("file":"f","mountpoint":"m","device":"","read_only":false,"layers":["a"],"upper":""})";
  for (const std::string& text : {std::string("[]"), std::string("not json"),
                                  R"({"pid":-1,"start_time":1,)" + good_tail,
                                  R"({"pid":1073741824,"start_time":1,)" + good_tail,
                                  R"({"pid":"12","start_time":1,)" + good_tail,
                                  std::string(R"({"pid":12,"start_time":1,"file":"f","mountpoint":"m","device":"",)"
                                              R"("read_only":false,"layers":[1],"upper":""})"),
                                  std::string(R"({"pid":12,"start_time":1})")}) {
    WriteText(path, text);
    EXPECT_EQ(ReadState(dir.path()).status().code(), Code::kCorruption) << text;
  }
  WriteText(path, R"({"pid":12,"start_time":1,)" + good_tail);
  EXPECT_TRUE(ReadState(dir.path()).ok());
  WriteText(path, std::string(64 * 1024 + 1, ' '));
  EXPECT_EQ(ReadState(dir.path()).status().code(), Code::kCorruption);
  EXPECT_EQ(ReadState(dir.Join("none")).status().code(), Code::kNotFound);
}

TEST(AttachState, ResultCarriesTheStopStatus) {
  TempDir dir;
  EXPECT_EQ(ReadResult(dir.path()).code(), Code::kNotFound);
  ASSERT_TRUE(WriteResult(dir.path(), Status::OK()).ok());
  EXPECT_TRUE(ReadResult(dir.path()).ok());
  ASSERT_TRUE(WriteResult(dir.path(), Status::IOError("final flush failed")).ok());
  Status s = ReadResult(dir.path());
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("final flush failed"), std::string::npos);
}

TEST(AttachState, ThisProcessIsAliveOnlyWithItsStartTime) {
  auto start = ProcessStartTime(::getpid());
  ASSERT_TRUE(start.ok()) << start.status().ToString();
  AttachState s;
  s.pid = ::getpid();
  s.start_time = *start;
  EXPECT_TRUE(ProcessAlive(s));
  s.start_time = *start + 1;  // a recycled pid
  EXPECT_FALSE(ProcessAlive(s));
}

TEST(AttachState, AbsolutePathIsLexical) {
  EXPECT_EQ(AbsolutePath("/a/b/../c/"), "/a/c");
  EXPECT_EQ(AbsolutePath("/"), "/");
  EXPECT_EQ(AbsolutePath("x").front(), '/');
}

}  // namespace
}  // namespace ovbd::fuse
