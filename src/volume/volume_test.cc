// The volume as frontends use it: open from layers or a config, the device, control requests,
// the resultFile, and the open/start/stop lifecycle (include/ovbd/volume.h).
#include "ovbd/volume.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "testutil.h"

namespace ovbd::volume {
namespace {

using ovbd::testing::ReadFileBytes;
using ovbd::testing::TempDir;
using ovbd::testing::VectorPath;

// A writable copy of the golden upper (layer1.rw.*) in `dir`.
image::UpperPaths CopyUpper(const TempDir& dir) {
  image::UpperPaths up{dir.Join("up.data"), dir.Join("up.index")};
  ovbd::testing::WriteFileBytes(up.data, ReadFileBytes(VectorPath("layer1.rw.data")));
  ovbd::testing::WriteFileBytes(up.index, ReadFileBytes(VectorPath("layer1.rw.index")));
  return up;
}

VolumeOptions Options(const TempDir& dir) {
  VolumeOptions o;
  o.cache_dir = dir.Join("cache");  // never created: the layers are local
  return o;
}

void WriteText(const std::string& path, const std::string& text) {
  ovbd::testing::WriteFileBytes(path, std::vector<uint8_t>(text.begin(), text.end()));
}

std::string ReadText(const std::string& path) {
  const std::vector<uint8_t> bytes = ReadFileBytes(path);
  return std::string(bytes.begin(), bytes.end());
}

TEST(Volume, ServesTheStackOfItsLayersAndUpper) {
  TempDir dir;
  VolumeSpec spec{{VectorPath("layer0.lsmt")}, CopyUpper(dir), ""};
  auto v = Volume::Open(spec, Options(dir));
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  auto reference = image::OpenImage({VectorPath("layer0.lsmt")}, CopyUpper(dir));
  ASSERT_TRUE(reference.ok()) << reference.status().ToString();
  EXPECT_EQ(ovbd::testing::Md5OfFile(*(*v)->image()), ovbd::testing::Md5OfFile(**reference));
  EXPECT_TRUE((*v)->writable());
  EXPECT_EQ((*v)->device()->Size(), (*reference)->Size());
  EXPECT_EQ((*v)->layer_names(), std::vector<std::string>{VectorPath("layer0.lsmt")});
  EXPECT_EQ((*v)->upper_data(), dir.Join("up.data"));
  EXPECT_FALSE((*v)->config().has_value());
}

TEST(Volume, ControlAnswersStatusAndFlushAndNamesTheKnownCommands) {
  TempDir dir;
  auto v = Volume::Open({{VectorPath("layer0.lsmt")}, CopyUpper(dir), ""}, Options(dir));
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  auto flushed = (*v)->Control({{"command", "flush"}});
  ASSERT_TRUE(flushed.ok()) << flushed.status().ToString();
  EXPECT_EQ((*flushed)["flushed"], true);
  auto status = (*v)->Control({{"command", "status"}});
  ASSERT_TRUE(status.ok()) << status.status().ToString();
  EXPECT_EQ((*status)["device"]["writable"], true);
  EXPECT_EQ((*status)["layers"][0]["path"], VectorPath("layer0.lsmt"));
  EXPECT_EQ((*status)["upper"], dir.Join("up.data"));
  EXPECT_TRUE((*status)["io"].contains("flushes"));
  EXPECT_TRUE((*status)["remote_layers"].empty());
  auto unknown = (*v)->Control({{"command", "defragment"}});
  EXPECT_EQ(unknown.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(unknown.status().message(),
            "unknown command 'defragment' (known: status, flush, snapshot, merge, replace, job, resize)");
}

TEST(Volume, ReadOnlyOptionFlushesNothing) {
  TempDir dir;
  VolumeOptions o = Options(dir);
  o.read_only = true;
  auto v = Volume::Open({{VectorPath("layer0.lsmt")}, CopyUpper(dir), ""}, o);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_FALSE((*v)->writable());
  EXPECT_TRUE((*v)->Flush().ok());
  auto flushed = (*v)->Control({{"command", "flush"}});
  ASSERT_TRUE(flushed.ok());
  EXPECT_EQ((*flushed)["flushed"], false);
}

TEST(Volume, StartAndStopAreIdempotentAndStartAfterStopDoesNothing) {
  TempDir dir;
  auto v = Volume::Open({{VectorPath("layer0.lsmt")}, std::nullopt, ""}, Options(dir));
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_TRUE((*v)->Start().ok());
  EXPECT_TRUE((*v)->Start().ok());
  EXPECT_TRUE((*v)->Stop().ok());
  EXPECT_TRUE((*v)->Stop().ok());
  EXPECT_TRUE((*v)->Start().ok());
  std::vector<uint8_t> buf(4096);
  EXPECT_TRUE((*v)->device()->Read(0, buf).ok());  // serving needs no background work
}

TEST(Volume, ConfigResultFileReportsSuccessAndFailure) {
  TempDir dir;
  const std::string config = dir.Join("config.v1.json");
  const std::string result = dir.Join("result");
  WriteText(config, nlohmann::json({{"lowers", {{{"file", VectorPath("layer0.lsmt")}}}}, {"resultFile", result}}).dump());
  auto v = Volume::Open({{}, std::nullopt, config}, Options(dir));
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_TRUE((*v)->config().has_value());
  EXPECT_EQ(ReadText(result), "success");

  WriteText(config, nlohmann::json({{"lowers", {{{"file", dir.Join("missing.lsmt")}}}}, {"resultFile", result}}).dump());
  auto failed = Volume::Open({{}, std::nullopt, config}, Options(dir));
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.status().message().find(config), std::string::npos) << failed.status().ToString();
  EXPECT_EQ(ReadText(result).rfind("failed:", 0), 0u);

  ::unlink(result.c_str());
  VolumeOptions quiet = Options(dir);
  quiet.report_result = false;
  EXPECT_FALSE(Volume::Open({{}, std::nullopt, config}, quiet).ok());
  EXPECT_NE(::access(result.c_str(), F_OK), 0);
}

TEST(Volume, LayerRefsTellLocalPathsFromRegistryBlobs) {
  EXPECT_TRUE(IsOciReference("oci://h:5000/r@sha256:ab"));
  EXPECT_TRUE(IsOciReference("oci+http://h/r@sha256:ab"));
  EXPECT_FALSE(IsOciReference("/x/oci://y"));
  auto refs = RefsFromArgs({"base.lsmt", "oci+http://h/r@sha256:ab"});
  ASSERT_EQ(refs.size(), 2u);
  EXPECT_FALSE(refs[0].remote());
  EXPECT_TRUE(refs[1].remote());
  EXPECT_EQ(refs[1].digest, "sha256:ab");
  EXPECT_EQ(refs[1].Name(), "oci+http://h/r@sha256:ab");
}

}  // namespace
}  // namespace ovbd::volume
