// Disk-like data: see bench_data.h. The block kinds imitate what a container root filesystem
// holds: unused (zero) blocks, text (configs, scripts, docs), structured metadata (tables of small
// integers) and already-compressed or encrypted bytes (random).
#include "bench_data.h"

#include <malloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace ovbd::bench {
namespace {

enum class BlockKind { kZero, kText, kStructured, kRandom };

BlockKind KindOf(uint64_t seed, uint64_t block) {
  uint64_t pick = Rng(seed ^ (block * 0x9E3779B97F4A7C15ULL)).Next() % 100;
  if (pick < 28) return BlockKind::kZero;
  if (pick < 74) return BlockKind::kText;
  if (pick < 87) return BlockKind::kStructured;
  return BlockKind::kRandom;
}

// 512 pseudo-words of 2..9 letters, the same for every seed.
const std::array<std::string, 512>& Vocabulary() {
  static const std::array<std::string, 512> words = [] {
    std::array<std::string, 512> w;
    Rng rng(42);
    for (auto& word : w) {
      size_t len = rng.Between(2, 9);
      for (size_t i = 0; i < len; ++i) word.push_back(static_cast<char>('a' + rng.Below(26)));
    }
    return w;
  }();
  return words;
}

void FillText(Rng& rng, uint8_t* out) {
  const auto& vocab = Vocabulary();
  size_t pos = 0;
  size_t line = 0;
  while (pos < kDataBlock) {
    // Zipf-ish: small indexes are much more frequent.
    uint64_t r = rng.Next();
    size_t idx = (r & 0xFF) < 208 ? (r >> 8) % 48 : (r >> 8) % 512;
    const std::string& word = vocab[idx];
    for (char c : word) {
      if (pos == kDataBlock) break;
      out[pos++] = static_cast<uint8_t>(c);
    }
    if (pos == kDataBlock) break;
    line += word.size() + 1;
    if (line > 60 + (r >> 40) % 20) {
      out[pos++] = '\n';
      line = 0;
    } else {
      out[pos++] = ((r >> 32) & 15) == 0 ? ',' : ' ';
    }
  }
}

// 32-byte records: id, small fields, a random word, zero padding (inode tables, ELF headers).
void FillStructured(Rng& rng, uint64_t block, uint8_t* out) {
  std::memset(out, 0, kDataBlock);
  uint32_t id = static_cast<uint32_t>(block * 128);
  for (size_t rec = 0; rec < kDataBlock / 32; ++rec) {
    uint8_t* p = out + rec * 32;
    uint32_t fields[5] = {id + static_cast<uint32_t>(rec), 0x81A4,
                          static_cast<uint32_t>(rng.Below(4096)), 1000,
                          static_cast<uint32_t>(rng.Next())};
    std::memcpy(p, fields, sizeof(fields));
  }
}

void FillRandom(Rng& rng, uint8_t* out) {
  for (size_t i = 0; i < kDataBlock; i += 8) {
    uint64_t v = rng.Next();
    std::memcpy(out + i, &v, 8);
  }
}

void FillBlock(uint64_t seed, uint64_t block, uint8_t* out) {
  Rng rng(seed * 31 + block);
  switch (KindOf(seed, block)) {
    case BlockKind::kZero: std::memset(out, 0, kDataBlock); break;
    case BlockKind::kText: FillText(rng, out); break;
    case BlockKind::kStructured: FillStructured(rng, block, out); break;
    case BlockKind::kRandom: FillRandom(rng, out); break;
  }
}

}  // namespace

void FillDiskLike(uint64_t offset, std::span<uint8_t> out, uint64_t seed) {
  uint8_t tmp[kDataBlock];
  size_t done = 0;
  while (done < out.size()) {
    uint64_t pos = offset + done;
    uint64_t block = pos / kDataBlock;
    size_t in_block = pos % kDataBlock;
    size_t n = std::min<size_t>(kDataBlock - in_block, out.size() - done);
    if (in_block == 0 && n == kDataBlock) {
      FillBlock(seed, block, out.data() + done);
    } else {
      FillBlock(seed, block, tmp);
      std::memcpy(out.data() + done, tmp + in_block, n);
    }
    done += n;
  }
}

std::vector<uint8_t> MakeDiskLike(size_t size, uint64_t seed) {
  std::vector<uint8_t> data(size);
  FillDiskLike(0, data, seed);
  return data;
}

std::string BenchDir() {
  const char* env = std::getenv("OVBD_BENCH_DIR");
  std::string dir = env && *env ? env : "/var/tmp/ovbd-bench";
  ::mkdir(dir.c_str(), 0755);
  return dir;
}

uint64_t AnonResidentBytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long long size = 0, resident = 0, shared = 0;
  int n = std::fscanf(f, "%llu %llu %llu", &size, &resident, &shared);
  std::fclose(f);
  return n == 3 ? (resident - shared) * static_cast<uint64_t>(sysconf(_SC_PAGESIZE)) : 0;
}

uint64_t HeapBytesInUse() {
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

void TrimHeap() { malloc_trim(0); }

}  // namespace ovbd::bench
