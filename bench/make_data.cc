// bench_make_data SIZE_MIB PATH: writes SIZE_MIB MiB of the benchmarks' disk-like content
// (bench_data.h) to PATH. Used by bench/run.sh for the CLI comparisons.
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "bench_data.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: bench_make_data SIZE_MIB PATH\n");
    return 2;
  }
  const uint64_t size = std::strtoull(argv[1], nullptr, 10) << 20;
  FILE* f = std::fopen(argv[2], "wb");
  if (!f) {
    std::perror(argv[2]);
    return 1;
  }
  std::vector<uint8_t> chunk(8 << 20);
  for (uint64_t off = 0; off < size; off += chunk.size()) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(chunk.size(), size - off));
    ovbd::bench::FillDiskLike(off, std::span<uint8_t>(chunk.data(), n));
    if (std::fwrite(chunk.data(), 1, n, f) != n) {
      std::perror(argv[2]);
      return 1;
    }
  }
  if (std::fclose(f) != 0) {
    std::perror(argv[2]);
    return 1;
  }
  return 0;
}
