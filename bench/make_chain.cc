// bench_make_chain: the 3-layer content of the NBD serving benchmark (bench/nbd_bench.sh).
//
//   bench_make_chain [--size MIB] [--writes1 N] [--writes2 N] [--seed S] DIR
//
//   raw0 = base: the virtual disk cut into 1 MiB regions, ~60% of them filled with disk-like
//          data (bench_data.h: ~28% zero blocks, text, tables, random -> lz4 ratio ~2-3x), the
//          rest holes
//   raw1 = raw0 + N1 scattered writes (4 KiB..1 MiB, log-uniform length, 4 KiB aligned)
//   raw2 = raw1 + N2 more scattered writes (other content)
//
// Writes to DIR (every file replaced; RECIPE last, so a complete set is recognisable):
//   raw0.img raw1.img raw2.img   sparse raw images: every all-zero 4 KiB block is a hole
//   base.lsmt                    lsmt::ImportRaw(raw0.img) (zero 4 KiB blocks become holes)
//   l1.lsmt l2.lsmt              the commit of an RW layer that received ONLY that layer's writes
//   l1.writes l2.writes          the writes, "OFFSET LENGTH" (bytes) per line, in write order
//                                (nbd_bench.sh replays them into the qcow2 overlays)
//   RECIPE                       the parameters, one line
// Everything depends only on the parameters (fixed default seed): same bytes on every run.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "bench_data.h"
#include "ovbd/io.h"
#include "ovbd/lsmt.h"

namespace ovbd::bench {
namespace {

constexpr uint64_t kRegion = 1 << 20;
constexpr uint64_t kBlock = 4096;

struct Params {
  uint64_t size = 1ULL << 30;
  uint64_t writes1 = 1024;
  uint64_t writes2 = 512;
  uint64_t seed = kDefaultSeed;
  std::string dir;
};

struct Extent {
  uint64_t offset;
  uint64_t length;
};

[[noreturn]] void Die(const std::string& what, const Status& s) {
  std::fprintf(stderr, "bench_make_chain: %s: %s\n", what.c_str(), s.ToString().c_str());
  std::exit(1);
}
void Check(const Status& s, const std::string& what) {
  if (!s.ok()) Die(what, s);
}

std::string LayerUuid(int layer) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%08X-0000-4000-8000-00000000C4A1", layer + 1);
  return buf;
}

uint64_t LayerSeed(const Params& p, int layer) { return p.seed + 1000003ULL * layer; }

bool BaseRegionFilled(const Params& p, uint64_t region) {
  return Rng(p.seed ^ (0xBA5EULL + region * 0x9E3779B97F4A7C15ULL)).Below(100) < 60;
}

// Layer `layer` (1 or 2): `count` writes, 4 KiB aligned, length 2^(8u) blocks (u uniform), i.e.
// log-uniform in 4 KiB..1 MiB.
std::vector<Extent> MakeWrites(const Params& p, int layer, uint64_t count) {
  Rng rng(LayerSeed(p, layer) ^ 0x3717E5ULL);
  std::vector<Extent> writes;
  for (uint64_t i = 0; i < count; ++i) {
    const double u = static_cast<double>(rng.Next() >> 11) / 9007199254740992.0;
    const uint64_t blocks = std::min<uint64_t>(256, static_cast<uint64_t>(std::llround(std::exp2(8.0 * u))));
    const uint64_t length = std::max<uint64_t>(1, blocks) * kBlock;
    const uint64_t offset = rng.Below((p.size - length) / kBlock + 1) * kBlock;
    writes.push_back({offset, length});
  }
  return writes;
}

bool IsZero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != 0) return false;
  }
  return true;
}

// Writes buf at `offset` of a sparse raw file: runs of non-zero 4 KiB blocks are written, runs of
// zero blocks are punched (they may cover data of an earlier layer).
void WriteSparse(RandomRWFile* f, uint64_t offset, const std::vector<uint8_t>& buf, size_t n) {
  size_t i = 0;
  while (i < n) {
    const bool zero = IsZero(buf.data() + i, kBlock);
    size_t j = i + kBlock;
    while (j < n && IsZero(buf.data() + j, kBlock) == zero) j += kBlock;
    if (zero) {
      Check(f->Trim(offset + i, j - i), f->Name() + ": punch hole");
    } else {
      Check(f->WriteAt(offset + i, std::span<const uint8_t>(buf.data() + i, j - i)), f->Name() + ": write");
    }
    i = j;
  }
}

// raw_<layers>.img: the base plus the writes of layers 1..layers.
void WriteRaw(const Params& p, int layers, const std::vector<Extent>* overlay_writes) {
  const std::string path = p.dir + "/raw" + std::to_string(layers) + ".img";
  auto file = OpenRandomRWFile(path, RWOpenOptions{.create = true, .truncate = true});
  if (!file.ok()) Die(path, file.status());
  RandomRWFile* f = file.value().get();
  Check(f->Truncate(p.size), path + ": truncate");
  std::vector<uint8_t> buf(kRegion);
  for (uint64_t region = 0; region * kRegion < p.size; ++region) {
    if (!BaseRegionFilled(p, region)) continue;
    const uint64_t off = region * kRegion;
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kRegion, p.size - off));
    FillDiskLike(off, std::span<uint8_t>(buf.data(), n), LayerSeed(p, 0));
    WriteSparse(f, off, buf, n);
  }
  for (int layer = 1; layer <= layers; ++layer) {
    for (const Extent& w : overlay_writes[layer - 1]) {
      FillDiskLike(w.offset, std::span<uint8_t>(buf.data(), w.length), LayerSeed(p, layer));
      WriteSparse(f, w.offset, buf, w.length);
    }
  }
  Check(f->Sync(), path + ": sync");
}

void CommitTo(const lsmt::Image& image, const std::string& path, const lsmt::CommitOptions& options) {
  const std::string tmp = path + ".tmp";
  auto out = CreateWritableFile(tmp, /*overwrite=*/true);
  if (!out.ok()) Die(tmp, out.status());
  Check(lsmt::Commit(image, out.value().get(), options), "commit " + path);
  Check(out.value()->Close(), "close " + tmp);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) Die("rename " + tmp, Status::FromErrno(errno, tmp));
}

void WriteBase(const Params& p) {
  const std::string raw_path = p.dir + "/raw0.img";
  const std::string path = p.dir + "/base.lsmt";
  auto raw = OpenReadableFile(raw_path);
  if (!raw.ok()) Die(raw_path, raw.status());
  const std::string tmp = path + ".tmp";
  auto out = CreateWritableFile(tmp, /*overwrite=*/true);
  if (!out.ok()) Die(tmp, out.status());
  lsmt::CommitOptions options;
  options.uuid = LayerUuid(0);
  options.parent_uuid = std::string();
  options.user_tag = "nbd bench base";
  Check(lsmt::ImportRaw(*raw.value(), out.value().get(), options), "import " + raw_path);
  Check(out.value()->Close(), "close " + tmp);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) Die("rename " + tmp, Status::FromErrno(errno, tmp));
}

void WriteOverlay(const Params& p, int layer, const std::vector<Extent>& writes) {
  lsmt::CreateOptions create;
  create.virtual_size = p.size;
  create.uuid = LayerUuid(layer);
  create.parent_uuid = LayerUuid(layer - 1);
  auto rw = lsmt::CreateRwLayer(NewMemFile("l" + std::to_string(layer) + ".data"),
                                NewMemFile("l" + std::to_string(layer) + ".index"), create);
  if (!rw.ok()) Die("CreateRwLayer", rw.status());
  std::vector<uint8_t> buf(kRegion);
  for (const Extent& w : writes) {
    FillDiskLike(w.offset, std::span<uint8_t>(buf.data(), w.length), LayerSeed(p, layer));
    Check(rw.value()->Write(w.offset, std::span<const uint8_t>(buf.data(), w.length)), "RwLayer::Write");
  }
  auto image = lsmt::OpenImage({}, std::move(rw).value());
  if (!image.ok()) Die("OpenImage", image.status());
  lsmt::CommitOptions options;
  options.uuid = LayerUuid(layer);
  options.parent_uuid = LayerUuid(layer - 1);
  options.user_tag = "nbd bench layer " + std::to_string(layer);
  CommitTo(*image.value(), p.dir + "/l" + std::to_string(layer) + ".lsmt", options);

  const std::string list = p.dir + "/l" + std::to_string(layer) + ".writes";
  std::ofstream out(list, std::ios::trunc);
  for (const Extent& w : writes) out << w.offset << ' ' << w.length << '\n';
  if (!out.flush()) Die(list, Status::FromErrno(errno, list));
}

int Usage() {
  std::fprintf(stderr,
               "usage: bench_make_chain [--size MIB] [--writes1 N] [--writes2 N] [--seed S] DIR\n"
               "  writes DIR/raw{0,1,2}.img, DIR/{base,l1,l2}.lsmt, DIR/l{1,2}.writes, DIR/RECIPE\n");
  return 2;
}

}  // namespace
}  // namespace ovbd::bench

int main(int argc, char** argv) {
  using namespace ovbd::bench;
  Params p;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> uint64_t {
      if (i + 1 >= argc) std::exit(Usage());
      return std::strtoull(argv[++i], nullptr, 0);
    };
    if (arg == "--size") {
      p.size = value() << 20;
    } else if (arg == "--writes1") {
      p.writes1 = value();
    } else if (arg == "--writes2") {
      p.writes2 = value();
    } else if (arg == "--seed") {
      p.seed = value();
    } else if (!arg.empty() && arg[0] == '-') {
      return Usage();
    } else if (p.dir.empty()) {
      p.dir = arg;
    } else {
      return Usage();
    }
  }
  if (p.dir.empty() || p.size < (4ULL << 20)) return Usage();
  std::remove((p.dir + "/RECIPE").c_str());

  const std::vector<Extent> writes[2] = {MakeWrites(p, 1, p.writes1), MakeWrites(p, 2, p.writes2)};
  for (int layers = 0; layers <= 2; ++layers) WriteRaw(p, layers, writes);
  WriteBase(p);
  WriteOverlay(p, 1, writes[0]);
  WriteOverlay(p, 2, writes[1]);

  char recipe[256];
  std::snprintf(recipe, sizeof(recipe), "v1 size=%llu writes1=%llu writes2=%llu seed=%llu\n",
                static_cast<unsigned long long>(p.size), static_cast<unsigned long long>(p.writes1),
                static_cast<unsigned long long>(p.writes2), static_cast<unsigned long long>(p.seed));
  std::ofstream(p.dir + "/RECIPE") << recipe;
  return 0;
}
