// The manifest: rewrites keep what ovbd does not know, are checked before they are saved, and
// leave nothing half written; checkpoint names; ovbd's layer-file names and the leftovers.
#include "ovbd/manifest.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "testutil.h"

namespace ovbd::image {
namespace {

using nlohmann::json;
using ovbd::testing::TempDir;

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void WriteText(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

bool Exists(const std::string& path) {
  struct stat st{};
  return stat(path.c_str(), &st) == 0;
}

constexpr const char* kConfig = R"({
  "repoBlobUrl": "http://127.0.0.1:5000/v2/app/blobs",
  "lowers": [
    {"file": "base.lsmt", "vendorKey": {"keep": [1, 2]}},
    {"digest": "sha256:cbd8aef9d04d7da6c4e1bb525d62d43ab9b369d09f154ccc32e48d22358162a0", "size": 42}
  ],
  "upper": {"data": "up.data", "index": "up.index", "target": "/dev/x"},
  "resultFile": "result",
  "accelerationLayer": true
})";

TEST(ManifestTest, WithStackKeepsUnknownKeysAndExistingLowersWhole) {
  TempDir dir;
  WriteText(dir.Join("config.v1.json"), kConfig);
  auto m = Manifest::Load(dir.Join("config.v1.json"));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->config().lowers.size(), 2u);
  Checkpoint c1{"c1", "2026-12-07T15:42:00Z"};
  auto next = m->WithStack({{0, "", std::nullopt}, {1, "", std::nullopt}, {std::nullopt, "ovbd-snap.lsmt", c1}},
                           UpperPaths{"new.data", "new.index"});
  ASSERT_TRUE(next.ok()) << next.status().ToString();
  ASSERT_TRUE(next->Save().ok());
  const json saved = json::parse(ReadText(dir.Join("config.v1.json")));
  EXPECT_EQ(saved["accelerationLayer"], true);
  EXPECT_EQ(saved["repoBlobUrl"], "http://127.0.0.1:5000/v2/app/blobs");
  EXPECT_EQ(saved["lowers"][0]["vendorKey"], json({{"keep", {1, 2}}}));
  EXPECT_EQ(saved["lowers"][1]["size"], 42);
  EXPECT_EQ(saved["lowers"][2], json({{"file", "ovbd-snap.lsmt"}, {"checkpoint", {{"name", "c1"}, {"created", "2026-12-07T15:42:00Z"}}}}));
  EXPECT_EQ(saved["upper"], json({{"data", "new.data"}, {"index", "new.index"}, {"target", "/dev/x"}}));
  EXPECT_FALSE(Exists(dir.Join("config.v1.json.ovbd-tmp")));

  auto reread = LoadImageConfig(dir.Join("config.v1.json"));
  ASSERT_TRUE(reread.ok()) << reread.status().ToString();
  ASSERT_EQ(reread->lowers.size(), 3u);
  EXPECT_EQ(reread->lowers[2].file, dir.Join("ovbd-snap.lsmt"));
  EXPECT_EQ(reread->lowers[2].checkpoint, std::optional<Checkpoint>(c1));
  EXPECT_EQ(reread->upper->data, dir.Join("new.data"));
}

TEST(ManifestTest, WithStackReordersDropsAndRemovesTheUpper) {
  TempDir dir;
  WriteText(dir.Join("config.v1.json"), kConfig);
  auto m = Manifest::Load(dir.Join("config.v1.json"));
  ASSERT_TRUE(m.ok());
  auto next = m->WithStack({{std::nullopt, "merged.lsmt", std::nullopt}}, std::nullopt);
  ASSERT_TRUE(next.ok()) << next.status().ToString();
  EXPECT_FALSE(next->config().upper.has_value());
  EXPECT_EQ(json::parse(next->Text()).count("upper"), 0u);
  ASSERT_EQ(next->config().lowers.size(), 1u);
  EXPECT_EQ(next->config().lowers[0].file, dir.Join("merged.lsmt"));
  // Nothing is written before Save.
  EXPECT_EQ(ReadText(dir.Join("config.v1.json")), kConfig);
}

TEST(ManifestTest, WithStackRefusesWhatNoManifestMayHold) {
  TempDir dir;
  WriteText(dir.Join("config.v1.json"), kConfig);
  auto m = Manifest::Load(dir.Join("config.v1.json"));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->WithStack({{5, "", std::nullopt}}, std::nullopt).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(m->WithStack({{std::nullopt, "", std::nullopt}}, std::nullopt).status().code(), Code::kInvalidArgument);
  std::vector<StackEntry> many(256, StackEntry{std::nullopt, "x.lsmt", std::nullopt});
  EXPECT_EQ(m->WithStack(many, std::nullopt).status().code(), Code::kInvalidArgument);
  Checkpoint c{"same", ""};
  auto dup = m->WithStack({{std::nullopt, "a.lsmt", c}, {std::nullopt, "b.lsmt", c}}, std::nullopt);
  ASSERT_EQ(dup.status().code(), Code::kInvalidArgument);
  EXPECT_NE(dup.status().message().find("'same'"), std::string::npos) << dup.status().ToString();
  auto bad_name = m->WithStack({{std::nullopt, "a.lsmt", Checkpoint{"a/b", ""}}}, std::nullopt);
  EXPECT_EQ(bad_name.status().code(), Code::kInvalidArgument);
}

TEST(ManifestTest, CheckpointKeyIsTypeChecked) {
  const std::string base = R"({"lowers": [{"file": "a", "checkpoint": )";
  for (const char* bad : {R"("c1")", R"({"name": ""})", R"({"name": 7})", R"({"name": "x/y"})",
                          R"({"name": "ok", "created": 1})"}) {
    auto r = ParseImageConfig(base + bad + "}]}", "/d");
    ASSERT_EQ(r.status().code(), Code::kInvalidArgument) << bad;
    EXPECT_NE(r.status().message().find("lowers[0].checkpoint"), std::string::npos) << r.status().ToString();
  }
  auto ok = ParseImageConfig(base + R"({"name": "nightly 2026-12-07"}}]})", "/d");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->lowers[0].checkpoint->name, "nightly 2026-12-07");
  EXPECT_EQ(ok->lowers[0].checkpoint->created, "");
  auto dup = ParseImageConfig(
      R"({"lowers": [{"file": "a", "checkpoint": {"name": "c"}}, {"file": "b", "checkpoint": {"name": "c"}}]})", "/d");
  EXPECT_EQ(dup.status().code(), Code::kInvalidArgument);
}

TEST(ManifestTest, LayerNamesAreRecognisedAndOnlyTheirs) {
  for (int i = 0; i < 20; i++) {
    const std::string name = NewLayerName("snap", "lsmt");
    EXPECT_TRUE(IsOvbdLayerName(name)) << name;
  }
  EXPECT_NE(NewLayerName("up", "data"), NewLayerName("up", "data"));
  for (const char* other : {"base.lsmt", "ovbd-.lsmt", "ovbd-snap-20261207T154200Z-0123abcd",
                            "ovbd-snap-20261207T154200Z-0123abcd.", "ovbd-Snap-20261207T154200Z-0123abcd.lsmt",
                            "ovbd-snap-20261207X154200Z-0123abcd.lsmt", "ovbd-snap-20261207T154200Z-0123abcg.lsmt",
                            "xovbd-snap-20261207T154200Z-0123abcd.lsmt", "ovbd-snap-20261207T154200Z-0123abcd.lsmt.bak"}) {
    EXPECT_FALSE(IsOvbdLayerName(other)) << other;
  }
  EXPECT_TRUE(IsOvbdLayerName("ovbd-snap-20261207T154200Z-0123abcd.lsmt"));
}

TEST(ManifestTest, LeftoversAreOurUnnamedFilesOnly) {
  TempDir dir;
  const std::string named_upper = NewLayerName("up", "data");
  const std::string named_index = NewLayerName("up", "index");
  const std::string named_lower = NewLayerName("snap", "lsmt");
  const std::string orphan = NewLayerName("merge", "lsmt");
  const std::string orphan_temp = NewLayerName("merged", "zfile") + ".ovbd-tmp";  // a merge cut short
  json config = {{"lowers", {{{"file", named_lower}}, {{"file", "foreign.lsmt"}}}},
                 {"upper", {{"data", named_upper}, {"index", dir.Join(named_index)}}}};
  WriteText(dir.Join("config.v1.json"), config.dump());
  for (const auto& f : {named_upper, named_index, named_lower, orphan, orphan_temp, std::string("foreign.lsmt"),
                        std::string("notes.txt"), std::string("config.v1.json.ovbd-tmp"),
                        std::string("foreign.lsmt.ovbd-tmp")}) {
    WriteText(dir.Join(f), "x");
  }
  auto m = Manifest::Load(dir.Join("config.v1.json"));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  auto left = m->Leftovers();
  ASSERT_TRUE(left.ok()) << left.status().ToString();
  std::vector<std::string> expected = {dir.Join("config.v1.json.ovbd-tmp"), dir.Join(orphan), dir.Join(orphan_temp)};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(*left, expected);
}

TEST(ManifestTest, APendingSnapshotIsParsedKeptAndDroppedByAStackRewrite) {
  TempDir dir;
  WriteText(dir.Join("config.v1.json"), kConfig);
  auto m = Manifest::Load(dir.Join("config.v1.json"));
  ASSERT_TRUE(m.ok());
  const UpperPaths next{dir.Join("ovbd-upper-20261207T000000Z-00000000.data"),
                        dir.Join("ovbd-upper-20261207T000000Z-00000000.index")};
  auto pending = m->WithPendingSnapshot(PendingSnapshot{{"c1", "2026-12-07T00:00:00Z"}, next});
  ASSERT_TRUE(pending.ok()) << pending.status().ToString();
  ASSERT_TRUE(pending->config().pending_snapshot.has_value());
  EXPECT_EQ(pending->config().pending_snapshot->checkpoint.name, "c1");
  EXPECT_EQ(pending->config().pending_snapshot->upper.data, next.data);
  // Written relative to the directory; the pending upper's files are named, not leftovers.
  EXPECT_EQ(json::parse(pending->Text())["ovbdPendingSnapshot"]["upper"]["data"],
            "ovbd-upper-20261207T000000Z-00000000.data");
  WriteText(next.data, "x");
  WriteText(next.index, "x");
  auto left = pending->Leftovers();
  ASSERT_TRUE(left.ok());
  EXPECT_TRUE(left->empty());
  EXPECT_EQ(pending->Describe()["pending_snapshot"]["name"], "c1");
  // A stack rewrite is a completed operation: the intent goes.
  auto done = pending->WithStack({StackEntry{0, "", std::nullopt}}, next);
  ASSERT_TRUE(done.ok());
  EXPECT_FALSE(done->config().pending_snapshot.has_value());
  EXPECT_FALSE(json::parse(done->Text()).contains("ovbdPendingSnapshot"));
  auto cleared = pending->WithPendingSnapshot(std::nullopt);
  ASSERT_TRUE(cleared.ok());
  EXPECT_FALSE(json::parse(cleared->Text()).contains("ovbdPendingSnapshot"));
}

TEST(ManifestTest, APendingSnapshotMustHaveAnUpperAndAFreshName) {
  const std::string base = R"({"lowers": [{"file": "a", "checkpoint": {"name": "c1"}}])";
  const std::string pending = R"("ovbdPendingSnapshot": {"checkpoint": {"name": "NAME"}, "upper": {"data": "d", "index": "i"}})";
  auto with = [&](const std::string& name, bool upper) {
    std::string p = pending;
    p.replace(p.find("NAME"), 4, name);
    return base + (upper ? R"(, "upper": {"data": "u", "index": "v"})" : "") + ", " + p + "}";
  };
  EXPECT_TRUE(ParseImageConfig(with("c2", true), "/d").ok());
  EXPECT_EQ(ParseImageConfig(with("c2", false), "/d").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(ParseImageConfig(with("c1", true), "/d").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(ParseImageConfig(base + R"(, "upper": {"data": "u", "index": "v"}, "ovbdPendingSnapshot": 3})", "/d")
                .status()
                .code(),
            Code::kInvalidArgument);
  EXPECT_EQ(ParseImageConfig(base + R"(, "upper": {"data": "u", "index": "v"}, "ovbdPendingSnapshot": {"upper": {"data": "d", "index": "i"}}})",
                             "/d")
                .status()
                .code(),
            Code::kInvalidArgument);
}

}  // namespace
}  // namespace ovbd::image
