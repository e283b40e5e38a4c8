// The online operations of a volume (docs/lifecycle.md): snapshot, merge, replace and resize
// while a client writes, the manifest they leave, what a reopen serves, the repairs at open,
// and bad requests that change nothing.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <latch>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "ovbd/lsmt.h"
#include "ovbd/volume.h"
#include "testutil.h"
#include "volume/volume_internal.h"

namespace ovbd::volume {
namespace {

using ovbd::testing::ReadFileBytes;
using ovbd::testing::TempDir;
using ovbd::testing::VectorPath;
using ovbd::testing::WriteFileBytes;

constexpr uint64_t kSize = 64ull << 20;  // layer0's virtual size

std::string ReadText(const std::string& path) {
  const std::vector<uint8_t> bytes = ReadFileBytes(path);
  return std::string(bytes.begin(), bytes.end());
}

void WriteText(const std::string& path, const std::string& text) {
  WriteFileBytes(path, std::vector<uint8_t>(text.begin(), text.end()));
}

bool Exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

// An image directory: base.lsmt (a copy of layer0), a fresh upper, config.v1.json.
struct ImageDir {
  TempDir dir;
  std::string config = dir.Join("config.v1.json");
  ImageDir() {
    WriteFileBytes(dir.Join("base.lsmt"), ReadFileBytes(VectorPath("layer0.lsmt")));
    RWOpenOptions create;
    create.create = true;
    auto data = OpenRandomRWFile(dir.Join("up.data"), create);
    auto index = OpenRandomRWFile(dir.Join("up.index"), create);
    lsmt::CreateOptions o;
    o.virtual_size = kSize;
    EXPECT_TRUE(lsmt::CreateRwLayer(std::move(*data), std::move(*index), o).ok());
    WriteText(config, R"({"lowers": [{"file": "base.lsmt"}], "upper": {"data": "up.data", "index": "up.index"},
                          "custom": {"kept": true}})");
  }
  VolumeOptions Options() const {
    VolumeOptions o;
    o.cache_dir = dir.Join("cache");
    return o;
  }
  Result<std::unique_ptr<Volume>> Open(bool read_only = false) const {
    VolumeOptions o = Options();
    o.read_only = read_only;
    return Volume::Open(VolumeSpec{{}, std::nullopt, config}, o);
  }
};

std::vector<uint8_t> ReadAllOf(BlockDevice& device) {
  std::vector<uint8_t> bytes(device.Size());
  EXPECT_TRUE(device.Read(0, bytes).ok());
  return bytes;
}

// A client that writes seeded data (aligned and unaligned writes, zeroes, FUA, flushes) and
// keeps the flat model of what the device must hold.
class Writer {
 public:
  Writer(std::shared_ptr<BlockDevice> device, std::vector<uint8_t> initial)
      : device_(std::move(device)), model_(std::move(initial)) {}
  void Run(const std::atomic<bool>& stop, uint64_t seed) {
    std::mt19937_64 rng(seed);
    while (!stop.load() || ops_ < 200) {
      const uint64_t kind = rng() % 10;
      const uint64_t offset = (rng() % (kSize / 4096 - 16)) * 4096 + (kind == 0 ? rng() % 4000 : 0);
      const size_t length = kind == 0 ? 1 + rng() % 9000 : 4096 * (1 + rng() % 8);
      if (kind == 1) {
        ASSERT_TRUE(device_->Zero(offset, length, false, true).ok());
        std::fill(model_.begin() + offset, model_.begin() + offset + length, 0);
      } else {
        std::vector<uint8_t> data(length);
        for (auto& b : data) b = static_cast<uint8_t>(rng());
        ASSERT_TRUE(device_->Write(offset, data, kind == 2).ok()) << "write at " << offset;
        std::copy(data.begin(), data.end(), model_.begin() + offset);
      }
      if (kind == 3) {
        ASSERT_TRUE(device_->Flush().ok());
      }
      ops_++;
    }
    ASSERT_TRUE(device_->Flush().ok());
  }
  const std::vector<uint8_t>& model() const { return model_; }

 private:
  std::shared_ptr<BlockDevice> device_;
  std::vector<uint8_t> model_;
  uint64_t ops_ = 0;
};

nlohmann::json Status(Volume& v) { return *v.Control({{"command", "status"}}); }

TEST(Lifecycle, SnapshotsUnderWritesKeepEveryByteAndTheManifestNamesThem) {
  ImageDir img;
  auto v = img.Open();
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  Writer writer((*v)->device(), ReadAllOf(*(*v)->device()));
  std::atomic<bool> stop{false};
  std::thread client([&] { writer.Run(stop, 7); });
  for (int i = 0; i < 3; i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    auto snap = (*v)->Snapshot(i == 1 ? "" : "c" + std::to_string(i));
    ASSERT_TRUE(snap.ok()) << snap.status().ToString();
    EXPECT_EQ((*snap)["layer"]["index"], i + 1);
    EXPECT_LT((*snap)["write_pause_ms"].get<double>(), 1000.0);
    // The timeline names every step in order, each ending after the one before it.
    std::vector<std::string> steps;
    double last = 0;
    for (const auto& step : (*snap)["timeline"]["steps"]) {
      steps.push_back(step["step"]);
      EXPECT_GE(step["end_ms"].get<double>(), last);
      last = step["end_ms"];
    }
    EXPECT_EQ(steps, (std::vector<std::string>{"new_upper", "sync", "intent", "switch", "seal", "manifest",
                                               "rebuild", "switch_rebuilt", "cleanup"}));
    EXPECT_GT((*snap)["timeline"]["start_unix_ms"].get<double>(), 1.7e12);
  }
  stop = true;
  client.join();
  EXPECT_EQ(ReadAllOf(*(*v)->device()), writer.model());
  nlohmann::json s = Status(**v);
  ASSERT_EQ(s["layers"].size(), 4u);
  EXPECT_EQ(s["layers"][1]["checkpoint"]["name"], "c0");
  EXPECT_FALSE(s["layers"][2]["checkpoint"]["name"].get<std::string>().empty());  // the default: a timestamp
  EXPECT_EQ(s["layers"][3]["checkpoint"]["name"], "c2");
  EXPECT_EQ(s["lifecycle"]["snapshots"], 3);
  // The manifest: the sealed uppers as lowers with their checkpoints, a new upper, other keys kept.
  const auto manifest = nlohmann::json::parse(ReadText(img.config));
  EXPECT_EQ(manifest["lowers"].size(), 4u);
  EXPECT_EQ(manifest["lowers"][1]["file"], "up.data");  // relative to the manifest's directory
  EXPECT_EQ(manifest["custom"]["kept"], true);
  EXPECT_FALSE(manifest.contains("ovbdPendingSnapshot"));
  EXPECT_TRUE(image::IsOvbdLayerName(manifest["upper"]["data"].get<std::string>()));
  ASSERT_TRUE((*v)->Stop().ok());
  v->reset();
  // A restart from the manifest serves the same bytes.
  auto reopened = img.Open();
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  EXPECT_TRUE((*reopened)->notes().empty());
  EXPECT_EQ(ReadAllOf(*(*reopened)->device()), writer.model());
}

// overlaybd's live-snapshot form: the caller writes the next config and creates the new upper.
TEST(Lifecycle, SnapshotToANewConfigAdoptsIt) {
  ImageDir img;
  auto v = img.Open();
  ASSERT_TRUE(v.ok());
  const std::vector<uint8_t> data(8192, 0x44);
  ASSERT_TRUE((*v)->device()->Write(4096, data, true).ok());
  const std::vector<uint8_t> content = ReadAllOf(*(*v)->device());
  RWOpenOptions create;
  create.create = true;
  lsmt::CreateOptions o;
  o.virtual_size = kSize;
  ASSERT_TRUE(lsmt::CreateRwLayer(std::move(OpenRandomRWFile(img.dir.Join("new.data"), create)).value(),
                                  std::move(OpenRandomRWFile(img.dir.Join("new.index"), create)).value(), o)
                  .ok());
  const std::string next = img.dir.Join("next.json");
  // Wrong: the current upper is not the last lower. Refused, nothing changed.
  WriteText(next, R"({"lowers": [{"file": "base.lsmt"}], "upper": {"data": "new.data", "index": "new.index"}})");
  const std::string before = ReadText(img.config);
  auto refused = (*v)->Control({{"command", "snapshot"}, {"config", next}});
  EXPECT_EQ(refused.status().code(), Code::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("expected 2 lowers"), std::string::npos) << refused.status().message();
  EXPECT_EQ(ReadText(img.config), before);
  WriteText(next, R"({"lowers": [{"file": "base.lsmt"}, {"file": "up.data", "checkpoint": {"name": "live1"}}],
                      "upper": {"data": "new.data", "index": "new.index"}, "vendor": 1})");
  auto snap = (*v)->Control({{"command", "snapshot"}, {"config", next}});
  ASSERT_TRUE(snap.ok()) << snap.status().ToString();
  EXPECT_EQ((*snap)["checkpoint"]["name"], "live1");
  ASSERT_TRUE((*v)->device()->Write(1 << 20, data, true).ok());
  nlohmann::json s = Status(**v);
  EXPECT_EQ(s["manifest"], next);
  EXPECT_EQ(s["upper"], img.dir.Join("new.data"));
  const auto adopted = nlohmann::json::parse(ReadText(next));
  EXPECT_EQ(adopted["vendor"], 1);
  EXPECT_EQ(adopted["lowers"][1]["checkpoint"]["name"], "live1");
  // The old config records the same stack (a reopen of either serves the image).
  const auto old = nlohmann::json::parse(ReadText(img.config));
  EXPECT_EQ(old["lowers"].size(), 2u);
  EXPECT_EQ(old["upper"]["data"], "new.data");
  std::vector<uint8_t> expected = content;
  std::copy(data.begin(), data.end(), expected.begin() + (1 << 20));
  EXPECT_EQ(ReadAllOf(*(*v)->device()), expected);
  v->reset();
  auto reopened = Volume::Open(VolumeSpec{{}, std::nullopt, next}, img.Options());
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  EXPECT_EQ(ReadAllOf(*(*reopened)->device()), expected);
}

TEST(Lifecycle, OperationsNeedAManifest) {
  TempDir dir;
  WriteFileBytes(dir.Join("base.lsmt"), ReadFileBytes(VectorPath("layer0.lsmt")));
  VolumeOptions o;
  o.cache_dir = dir.Join("cache");
  auto v = Volume::Open(VolumeSpec{{dir.Join("base.lsmt")}, std::nullopt, ""}, o);
  ASSERT_TRUE(v.ok());
  for (const char* op : {"snapshot", "resize"}) {
    nlohmann::json request = {{"command", op}, {"size", 1 << 20}};
    auto r = (*v)->Control(request);
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << op;
    EXPECT_NE(r.status().message().find("--config"), std::string::npos) << r.status().message();
  }
  auto merge = (*v)->Control({{"command", "merge"}, {"from", 0}, {"to", 1}});
  EXPECT_NE(merge.status().message().find("--config"), std::string::npos);
}

TEST(Lifecycle, BadSnapshotsChangeNothing) {
  ImageDir img;
  auto v = img.Open();
  ASSERT_TRUE(v.ok());
  ASSERT_TRUE((*v)->Snapshot("one").ok());
  const std::string before = ReadText(img.config);
  EXPECT_EQ((*v)->Snapshot("one").status().code(), Code::kAlreadyExists);
  EXPECT_EQ((*v)->Snapshot("a/b").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(ReadText(img.config), before);
  auto ro = ImageDir().Open(/*read_only=*/true);
  ASSERT_TRUE(ro.ok());
  EXPECT_EQ((*ro)->Snapshot("x").status().code(), Code::kInvalidArgument);
}

TEST(Lifecycle, MergeWhileServedSwapsOneLayerInAndRemovesTheOldFiles) {
  ImageDir img;
  auto v = img.Open();
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  Writer writer((*v)->device(), ReadAllOf(*(*v)->device()));
  std::atomic<bool> stop{false};
  std::thread client([&] { writer.Run(stop, 11); });
  for (const char* name : {"s1", "s2", "s3"}) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_TRUE((*v)->Snapshot(name).ok());
  }
  std::vector<std::string> old_files;
  const nlohmann::json stacked = Status(**v);
  for (const auto& l : stacked["layers"]) old_files.push_back(l["path"]);
  // Merge the base and the first two snapshots (by index and by name), compressed.
  auto merged = (*v)->Control({{"command", "merge"}, {"from", 0}, {"to", "s2"}, {"zfile", true}});
  ASSERT_TRUE(merged.ok()) << merged.status().ToString();
  stop = true;
  client.join();
  EXPECT_EQ(ReadAllOf(*(*v)->device()), writer.model());
  EXPECT_EQ((*merged)["checkpoint"], "s2");
  EXPECT_EQ((*merged)["dropped_checkpoints"], nlohmann::json::array({"s1"}));
  nlohmann::json s = Status(**v);
  ASSERT_EQ(s["layers"].size(), 2u);
  EXPECT_EQ(s["layers"][0]["checkpoint"]["name"], "s2");
  EXPECT_EQ(s["layers"][1]["checkpoint"]["name"], "s3");
  EXPECT_EQ(s["job"]["state"], "done");
  for (int i = 0; i < 3; i++) EXPECT_FALSE(Exists(old_files[i])) << old_files[i];
  EXPECT_TRUE(Exists(old_files[3]));
  const auto manifest = nlohmann::json::parse(ReadText(img.config));
  ASSERT_EQ(manifest["lowers"].size(), 2u);
  EXPECT_EQ(manifest["lowers"][0]["checkpoint"]["name"], "s2");
  EXPECT_TRUE(image::IsOvbdLayerName(manifest["lowers"][0]["file"].get<std::string>()));
  EXPECT_NE(manifest["lowers"][0]["file"].get<std::string>().find(".zfile"), std::string::npos);
  ASSERT_TRUE((*v)->Stop().ok());
  v->reset();
  auto reopened = img.Open();
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  EXPECT_EQ(ReadAllOf(*(*reopened)->device()), writer.model());
}

TEST(Lifecycle, BadMergesAreRefusedAndChangeNothing) {
  ImageDir img;
  auto v = img.Open();
  ASSERT_TRUE(v.ok());
  ASSERT_TRUE((*v)->Snapshot("s1").ok());
  ASSERT_TRUE((*v)->Snapshot("s2").ok());
  const std::string before = ReadText(img.config);
  auto code = [&](nlohmann::json request) {
    request["command"] = "merge";
    return (*v)->Control(request).status().code();
  };
  EXPECT_EQ(code({{"from", 1}, {"to", 1}}), Code::kInvalidArgument);         // one layer
  EXPECT_EQ(code({{"from", 2}, {"to", 1}}), Code::kInvalidArgument);         // reversed
  EXPECT_EQ(code({{"from", 0}, {"to", 3}}), Code::kInvalidArgument);         // past the top lower
  EXPECT_EQ(code({{"from", "nope"}, {"to", "s2"}}), Code::kInvalidArgument);  // unknown name
  EXPECT_EQ(code({{"from", 0}, {"to", 1}, {"zfile", {{"threads", 0}}}}), Code::kInvalidArgument);
  EXPECT_EQ(code({{"from", 0}, {"to", 1}, {"zfile", {{"algorithm", "gzip"}}}}), Code::kInvalidArgument);
  EXPECT_EQ(ReadText(img.config), before);
  // A merge while a merge runs: the first is held just before its swap.
  std::latch held(1), release(1);
  g_job_before_swap = [&](const std::string&) {
    held.count_down();
    release.wait();
  };
  auto first = (*v)->Control({{"command", "merge"}, {"from", 0}, {"to", 1}, {"wait", false}});
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ((*first)["state"], "running");
  held.wait();
  auto second = (*v)->Control({{"command", "merge"}, {"from", 1}, {"to", 2}});
  EXPECT_EQ(second.status().code(), Code::kUnavailable);
  EXPECT_NE(second.status().message().find("is running"), std::string::npos) << second.status().message();
  EXPECT_EQ((*v)->Control({{"command", "replace"}, {"layer", 0}, {"file", "/x"}}).status().code(), Code::kUnavailable);
  EXPECT_EQ(Status(**v)["job"]["state"], "running");
  EXPECT_EQ(ReadText(img.config), before);
  release.count_down();
  auto done = (*v)->Control({{"command", "job"}, {"wait", true}});
  g_job_before_swap = nullptr;
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  EXPECT_EQ(Status(**v)["layers"].size(), 2u);
}

TEST(Lifecycle, ReplaceSwapsInTheSameContentAndRefusesOtherContent) {
  ImageDir img;
  auto v = img.Open();
  ASSERT_TRUE(v.ok());
  ASSERT_TRUE((*v)->Snapshot("s1").ok());
  const std::vector<uint8_t> content = ReadAllOf(*(*v)->device());
  const std::string before = ReadText(img.config);
  // Other content: layer1 is not layer0.
  const std::string other = img.dir.Join("other.lsmt");
  WriteFileBytes(other, ReadFileBytes(VectorPath("layer1.lsmt")));
  auto refused = (*v)->Control({{"command", "replace"}, {"layer", 0}, {"file", other}});
  EXPECT_EQ(refused.status().code(), Code::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("differ"), std::string::npos) << refused.status().message();
  EXPECT_EQ(ReadText(img.config), before);
  EXPECT_EQ((*v)->Control({{"command", "replace"}, {"layer", 0}, {"file", "rel.lsmt"}}).status().code(),
            Code::kInvalidArgument);
  // The same content, compressed.
  const std::string compressed = img.dir.Join("base.zfile");
  WriteFileBytes(compressed, ReadFileBytes(VectorPath("layer0.lz4-4k-crc.zfile")));
  auto replaced = (*v)->Control({{"command", "replace"}, {"layer", 0}, {"file", compressed}});
  ASSERT_TRUE(replaced.ok()) << replaced.status().ToString();
  EXPECT_GT((*replaced)["bytes_compared"].get<uint64_t>(), 0u);
  EXPECT_EQ(ReadAllOf(*(*v)->device()), content);
  EXPECT_EQ(nlohmann::json::parse(ReadText(img.config))["lowers"][0]["file"], "base.zfile");
  EXPECT_TRUE(Exists(img.dir.Join("base.lsmt")));  // replace removes nothing
  v->reset();
  auto reopened = img.Open();
  ASSERT_TRUE(reopened.ok());
  EXPECT_EQ(ReadAllOf(*(*reopened)->device()), content);
}

TEST(Lifecycle, ResizeGrowsOnlineAndShrinksOnlyOverNoData) {
  ImageDir img;
  auto v = img.Open();
  ASSERT_TRUE(v.ok());
  std::vector<uint64_t> heard;
  (*v)->OnResize([&](uint64_t size) { heard.push_back(size); });
  auto grown = (*v)->Control({{"command", "resize"}, {"size", 2 * kSize}});
  ASSERT_TRUE(grown.ok()) << grown.status().ToString();
  EXPECT_EQ((*grown)["old_size"], kSize);
  EXPECT_EQ((*v)->device()->Size(), 2 * kSize);
  const std::vector<uint8_t> data(4096, 0x5a);
  ASSERT_TRUE((*v)->device()->Write(2 * kSize - 4096, data, true).ok());
  EXPECT_EQ(heard, std::vector<uint64_t>{2 * kSize});
  // Shrinking over data (layer0 has data near its end; and the block just written) is refused.
  auto refused = (*v)->Resize(kSize);
  EXPECT_EQ(refused.status().code(), Code::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("data lies at"), std::string::npos) << refused.status().message();
  EXPECT_EQ((*v)->device()->Size(), 2 * kSize);
  EXPECT_EQ((*v)->Resize(1000).status().code(), Code::kInvalidArgument);
  ASSERT_TRUE((*v)->device()->Zero(2 * kSize - 4096, 4096, true, true).ok());
  auto shrunk = (*v)->Resize(2 * kSize - 4096);
  ASSERT_TRUE(shrunk.ok()) << shrunk.status().ToString();
  v->reset();
  auto reopened = img.Open();
  ASSERT_TRUE(reopened.ok());
  EXPECT_EQ((*reopened)->device()->Size(), 2 * kSize - 4096);
  // A snapshot keeps the size; the sealed layer and the new upper both carry it.
  ASSERT_TRUE((*reopened)->Snapshot("after-resize").ok());
  EXPECT_EQ((*reopened)->device()->Size(), 2 * kSize - 4096);
}

// The crash states of a snapshot (docs/lifecycle.md), made by hand, then opened.
class SnapshotCrash : public ::testing::Test {
 protected:
  // The intent saved, the next upper created; the old upper sealed or not.
  void MakePending(bool sealed) {
    auto v = img.Open();
    ASSERT_TRUE(v.ok());
    const std::vector<uint8_t> data(8192, 0x33);
    ASSERT_TRUE((*v)->device()->Write(1 << 20, data, true).ok());
    content = ReadAllOf(*(*v)->device());
    v->reset();
    auto m = image::Manifest::Load(img.config);
    ASSERT_TRUE(m.ok());
    next = {img.dir.Join(image::NewLayerName("upper", "data")), img.dir.Join(image::NewLayerName("upper", "index"))};
    RWOpenOptions create;
    create.create = true;
    lsmt::CreateOptions o;
    o.virtual_size = kSize;
    ASSERT_TRUE(lsmt::CreateRwLayer(std::move(OpenRandomRWFile(next.data, create)).value(),
                                    std::move(OpenRandomRWFile(next.index, create)).value(), o)
                    .ok());
    auto pending = m->WithPendingSnapshot(image::PendingSnapshot{{"c1", "2026-12-07T00:00:00Z"}, next});
    ASSERT_TRUE(pending.ok()) << pending.status().ToString();
    ASSERT_TRUE(pending->Save().ok());
    if (sealed) {
      auto rw = image::OpenUpper(*m->config().upper);
      ASSERT_TRUE(rw.ok());
      ASSERT_TRUE((*rw)->Seal().ok());
    }
  }
  void ExpectFinished() {
    auto v = img.Open();
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    ASSERT_EQ((*v)->notes().size(), 1u);
    EXPECT_NE((*v)->notes()[0].find("finished the interrupted snapshot 'c1'"), std::string::npos);
    EXPECT_EQ(ReadAllOf(*(*v)->device()), content);
    const auto manifest = nlohmann::json::parse(ReadText(img.config));
    EXPECT_FALSE(manifest.contains("ovbdPendingSnapshot"));
    EXPECT_EQ(manifest["lowers"][1]["checkpoint"]["name"], "c1");
    EXPECT_EQ(img.dir.Join(manifest["upper"]["data"].get<std::string>()), next.data);
    EXPECT_EQ(manifest["custom"]["kept"], true);
  }
  ImageDir img;
  std::vector<uint8_t> content;
  image::UpperPaths next;
};

TEST_F(SnapshotCrash, BeforeTheSealTheOpenSealsAndFinishes) {
  MakePending(false);
  ExpectFinished();
}

TEST_F(SnapshotCrash, AfterTheSealTheOpenFinishes) {
  MakePending(true);
  ExpectFinished();
}

TEST_F(SnapshotCrash, AReadOnlyOpenRefusesToGuess) {
  MakePending(true);
  auto v = img.Open(/*read_only=*/true);
  EXPECT_EQ(v.status().code(), Code::kInvalidArgument);
  EXPECT_NE(v.status().message().find("interrupted"), std::string::npos) << v.status().message();
}

TEST(Lifecycle, LeftoversOfOvbdAreRemovedAtAWritableOpenAndNothingElse) {
  ImageDir img;
  const std::string leftover = img.dir.Join(image::NewLayerName("merged", "lsmt"));
  const std::string temp = img.config + ".ovbd-tmp";
  const std::string mine = img.dir.Join("notes.txt");
  for (const auto& f : {leftover, temp, mine}) WriteText(f, "x");
  {
    auto ro = img.Open(/*read_only=*/true);
    ASSERT_TRUE(ro.ok());
    EXPECT_TRUE(Exists(leftover));  // a reader leaves them to the owner
  }
  auto v = img.Open();
  ASSERT_TRUE(v.ok());
  EXPECT_EQ((*v)->notes().size(), 2u);
  EXPECT_FALSE(Exists(leftover));
  EXPECT_FALSE(Exists(temp));
  EXPECT_TRUE(Exists(mine));
  EXPECT_TRUE(Exists(img.dir.Join("base.lsmt")));
}

// A data file that ends with bytes that look like a trailer was not sealed: the check compares
// the index with the index file's records.
TEST(Lifecycle, WrittenDataThatLooksLikeATrailerIsNotASeal) {
  TempDir dir;
  RWOpenOptions create;
  create.create = true;
  lsmt::CreateOptions o;
  o.virtual_size = kSize;
  auto rw = lsmt::CreateRwLayer(std::move(OpenRandomRWFile(dir.Join("d"), create)).value(),
                                std::move(OpenRandomRWFile(dir.Join("i"), create)).value(), o);
  ASSERT_TRUE(rw.ok());
  // The last 4 KiB written are the trailer of a real sealed layer.
  const std::vector<uint8_t> sealed = ReadFileBytes(VectorPath("layer1.sealed"));
  const std::vector<uint8_t> tail(sealed.end() - 4096, sealed.end());
  ASSERT_TRUE((*rw)->Write(0, tail).ok());
  ASSERT_TRUE((*rw)->Sync().ok());
  auto data = OpenReadableFile(dir.Join("d"));
  auto index = OpenReadableFile(dir.Join("i"));
  auto answer = lsmt::IsSealedFrom(**data, **index);
  ASSERT_TRUE(answer.ok()) << answer.status().ToString();
  EXPECT_FALSE(*answer);
  ASSERT_TRUE((*rw)->Seal().ok());
  data = OpenReadableFile(dir.Join("d"));
  answer = lsmt::IsSealedFrom(**data, **index);
  ASSERT_TRUE(answer.ok());
  EXPECT_TRUE(*answer);
}

}  // namespace
}  // namespace ovbd::volume
