// Deterministic benchmark data shared by the benchmarks and bench_make_data.
//
//   block i (4 KiB) of "disk-like" content = f(seed, i):
//     ~28% zeros | ~46% text-like | ~13% structured binary | ~13% random
//   -> LZ4 (4 KiB blocks) ratio around 2-3x, like a real root-filesystem image.
//
// Any byte range can be generated on its own (block content depends only on seed and block
// number), so a 512 MiB file and an in-memory 64 MiB working set hold the same kind of bytes.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace ovbd::bench {

inline constexpr uint64_t kDataBlock = 4096;
inline constexpr uint64_t kDefaultSeed = 0x0bd5eedULL;

// A small fast PRNG (splitmix64): deterministic across platforms.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n), n > 0 (tiny modulo bias is fine for benchmarks).
  uint64_t Below(uint64_t n) { return Next() % n; }
  // Uniform in [lo, hi].
  uint64_t Between(uint64_t lo, uint64_t hi) { return lo + Below(hi - lo + 1); }

 private:
  uint64_t state_;
};

// Fills `out` with the disk-like content found at byte `offset` of the virtual data stream.
void FillDiskLike(uint64_t offset, std::span<uint8_t> out, uint64_t seed = kDefaultSeed);
// `size` bytes of disk-like content starting at offset 0.
std::vector<uint8_t> MakeDiskLike(size_t size, uint64_t seed = kDefaultSeed);

// Directory for on-disk benchmark data: $OVBD_BENCH_DIR, else /var/tmp/ovbd-bench (not /tmp,
// which may be tmpfs). Created if missing.
std::string BenchDir();

// Anonymous resident memory in bytes (/proc/self/statm resident - shared, so file pages that
// are mapped or cached do not count), 0 if unknown.
uint64_t AnonResidentBytes();
// Heap bytes in use (glibc mallinfo2: main arena + mmapped chunks), 0 if unknown.
uint64_t HeapBytesInUse();
// Returns free heap memory to the OS (malloc_trim) so RSS deltas mean live memory.
void TrimHeap();

}  // namespace ovbd::bench
