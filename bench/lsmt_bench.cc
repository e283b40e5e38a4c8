// LSMT: opening a deep layer stack, and commit throughput.
//
//   BM_OpenStack255  255 committed layers x ~10K segments on disk (generated once, reused by
//                    later runs) ──image::OpenImage──> one merged index. Reports wall time and
//                    the memory the open Image holds per merged segment.
//   BM_Commit        an RW layer holding ~256 MiB (random 64K..1M writes) ──lsmt::Commit──>
//                    plain blob, or through zfile::NewCompressingWriter (lz4 4K, 1 or 2 threads).
#include <benchmark/benchmark.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_data.h"
#include "ovbd/image.h"
#include "ovbd/io.h"
#include "ovbd/lsmt.h"
#include "ovbd/zfile.h"

namespace ovbd::bench {
namespace {

[[noreturn]] void Die(const std::string& what, const Status& s) {
  std::fprintf(stderr, "lsmt_bench: %s: %s\n", what.c_str(), s.ToString().c_str());
  std::exit(1);
}

// ---- the 255-layer stack ----------------------------------------------------------------------

constexpr int kLayers = 255;
constexpr int kOpsPerLayer = 10'000;
constexpr uint64_t kStackVirtualSize = 64ULL << 30;
// Bump when the generated layers change, so old ones are rebuilt.
constexpr const char* kStackRecipe = "v1 layers=255 ops=10000 vsize=64G write512=1/4 discard4K-64K";

std::string LayerUuid(int layer) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%08X-0000-4000-8000-0000000000BE", layer + 1);
  return buf;
}

std::string StackDir() { return BenchDir() + "/stack255"; }
std::string LayerPath(int layer) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "/layer%03d.lsmt", layer);
  return StackDir() + buf;
}

// One committed layer: ~10K random mappings at 4 KiB-aligned offsets in 64 GiB. A quarter are
// 512-byte data writes, the rest 4K..64K discards (zeroed mappings, which hide lower layers just
// like data and cost the same index space) so the files stay small (~1.3 MB each).
Status MakeLayer(int layer) {
  lsmt::CreateOptions create;
  create.virtual_size = kStackVirtualSize;
  create.uuid = LayerUuid(layer);
  if (layer > 0) create.parent_uuid = LayerUuid(layer - 1);
  OVBD_ASSIGN_OR_RETURN(auto rw, lsmt::CreateRwLayer(NewMemFile("data"), NewMemFile("index"), create));
  Rng rng(1000 + layer);
  std::vector<uint8_t> sector(512);
  for (int op = 0; op < kOpsPerLayer; ++op) {
    uint64_t offset = rng.Below(kStackVirtualSize / 4096 - 16) * 4096;
    if (rng.Below(4) == 0) {
      FillDiskLike(offset, sector);
      OVBD_RETURN_IF_ERROR(rw->Write(offset, sector));
    } else {
      OVBD_RETURN_IF_ERROR(rw->Discard(offset, rng.Between(1, 16) * 4096));
    }
  }
  OVBD_ASSIGN_OR_RETURN(auto image, lsmt::OpenImage({}, std::move(rw)));
  std::string tmp = LayerPath(layer) + ".tmp";
  OVBD_ASSIGN_OR_RETURN(auto out, CreateWritableFile(tmp, /*overwrite=*/true));
  lsmt::CommitOptions commit;
  commit.uuid = LayerUuid(layer);
  commit.parent_uuid = layer > 0 ? LayerUuid(layer - 1) : std::string();
  commit.user_tag = "bench layer " + std::to_string(layer);
  OVBD_RETURN_IF_ERROR(lsmt::Commit(*image, out.get(), commit));
  OVBD_RETURN_IF_ERROR(out->Close());
  if (std::rename(tmp.c_str(), LayerPath(layer).c_str()) != 0) {
    return Status::FromErrno(errno, "rename " + tmp);
  }
  return Status::OK();
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Builds the stack unless a previous run left it complete (recipe file written last).
const std::vector<std::string>& StackPaths() {
  static const std::vector<std::string> paths = [] {
    ::mkdir(StackDir().c_str(), 0755);
    const std::string recipe_path = StackDir() + "/RECIPE";
    std::vector<std::string> p;
    for (int i = 0; i < kLayers; ++i) p.push_back(LayerPath(i));
    if (ReadText(recipe_path) == kStackRecipe) return p;
    std::remove(recipe_path.c_str());
    std::fprintf(stderr, "lsmt_bench: generating %d layers in %s ...\n", kLayers,
                 StackDir().c_str());
    std::atomic<int> next{0};
    std::mutex mu;
    Status failure;
    auto worker = [&] {
      for (int i = next++; i < kLayers; i = next++) {
        Status s = MakeLayer(i);
        if (!s.ok()) {
          std::lock_guard<std::mutex> lock(mu);
          failure = s.WithContext("layer " + std::to_string(i));
          return;
        }
      }
    };
    std::thread t1(worker), t2(worker);
    t1.join();
    t2.join();
    if (!failure.ok()) Die("generating the stack", failure);
    std::ofstream(recipe_path) << kStackRecipe;
    return p;
  }();
  return paths;
}

void BM_OpenStack255(benchmark::State& state) {
  const auto& paths = StackPaths();
  // Memory first, on a quiet heap: what the open Image keeps per merged segment.
  TrimHeap();
  const uint64_t heap0 = HeapBytesInUse();
  const uint64_t rss0 = AnonResidentBytes();
  size_t segments = 0;
  uint64_t heap1 = 0, rss1 = 0;
  {
    auto image = image::OpenImage(paths, std::nullopt);
    if (!image.ok()) {
      state.SkipWithError(image.status().ToString().c_str());
      return;
    }
    TrimHeap();
    heap1 = HeapBytesInUse();
    rss1 = AnonResidentBytes();
    segments = image.value()->Segments().size();
    if (image.value()->layer_count() != kLayers) {
      state.SkipWithError("layer_count() is not 255");
      return;
    }
  }
  for (auto _ : state) {
    auto image = image::OpenImage(paths, std::nullopt);
    if (!image.ok()) {
      state.SkipWithError(image.status().ToString().c_str());
      return;
    }
    benchmark::DoNotOptimize(image.value().get());
  }
  auto per_segment = [&](uint64_t after, uint64_t before) {
    return after > before && segments ? static_cast<double>(after - before) / segments : 0.0;
  };
  state.counters["merged_segments"] = static_cast<double>(segments);
  state.counters["heap_bytes_per_segment"] = per_segment(heap1, heap0);
  state.counters["rss_bytes_per_segment"] = per_segment(rss1, rss0);
  state.counters["index_bytes_per_segment"] =
      std::max(per_segment(heap1, heap0), per_segment(rss1, rss0));
}
BENCHMARK(BM_OpenStack255)->Unit(benchmark::kMillisecond)->UseRealTime();

// ---- commit ---------------------------------------------------------------------------------

constexpr uint64_t kCommitData = 256ULL << 20;
constexpr uint64_t kCommitVirtualSize = 4ULL << 30;

struct CommitSource {
  std::unique_ptr<lsmt::Image> image;
  uint64_t live_bytes = 0;  // data bytes a commit copies
};

// An RW layer (in memory) that received 256 MiB in random 64K..1M writes at 4K-aligned offsets.
const CommitSource& CommitImage() {
  static const CommitSource source = [] {
    lsmt::CreateOptions create;
    create.virtual_size = kCommitVirtualSize;
    auto rw = lsmt::CreateRwLayer(NewMemFile("data"), NewMemFile("index"), create);
    if (!rw.ok()) Die("CreateRwLayer", rw.status());
    Rng rng(99);
    std::vector<uint8_t> buf(1 << 20);
    for (uint64_t written = 0; written < kCommitData;) {
      uint64_t len = std::min<uint64_t>(rng.Between(16, 256) * 4096, kCommitData - written);
      uint64_t offset = rng.Below((kCommitVirtualSize - len) / 4096) * 4096;
      std::span<uint8_t> chunk(buf.data(), len);
      FillDiskLike(offset, chunk);
      Status s = rw.value()->Write(offset, chunk);
      if (!s.ok()) Die("RwLayer::Write", s);
      written += len;
    }
    CommitSource src;
    auto image = lsmt::OpenImage({}, std::move(rw).value());
    if (!image.ok()) Die("OpenImage", image.status());
    src.image = std::move(image).value();
    for (const lsmt::Segment& seg : src.image->Segments()) {
      if (!seg.zeroed) src.live_bytes += uint64_t{seg.length} * lsmt::kSectorSize;
    }
    return src;
  }();
  return source;
}

// Arg 0: plain blob; 1, 2: through a ZFile compressing writer (lz4 4K) with that many threads.
void BM_Commit(benchmark::State& state) {
  const CommitSource& src = CommitImage();
  const int zfile_threads = static_cast<int>(state.range(0));
  uint64_t out_size = 0;
  for (auto _ : state) {
    state.PauseTiming();
    auto storage = std::make_shared<MemStorage>();
    storage->bytes.reserve(src.live_bytes + (8 << 20));
    auto out = NewMemWritableFile("commit.out", storage);
    state.ResumeTiming();
    Status s;
    if (zfile_threads == 0) {
      s = lsmt::Commit(*src.image, out.get(), {});
    } else {
      zfile::Options options;
      options.threads = zfile_threads;
      auto writer = zfile::NewCompressingWriter(out.get(), options);
      s = writer.ok() ? lsmt::Commit(*src.image, writer.value().get(), {}) : writer.status();
      if (s.ok()) s = writer.value()->Close();
    }
    if (s.ok()) s = out->Close();
    if (!s.ok()) {
      state.SkipWithError(s.ToString().c_str());
      return;
    }
    out_size = storage->bytes.size();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * src.live_bytes));
  state.counters["data_MiB"] = static_cast<double>(src.live_bytes) / (1 << 20);
  state.counters["out_MiB"] = static_cast<double>(out_size) / (1 << 20);
}
BENCHMARK(BM_Commit)->ArgName("zfile_threads")->Arg(0)->Arg(1)->Arg(2)->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace ovbd::bench
