// ZFile read/compress throughput against the raw codec doing the same work.
//
//   disk-like data (64 MiB, bench_data.h)
//     ├─ cut into blocks, each compressed with LZ4_compress_default / ZSTD_compress(3), kept in
//     │  memory ──> BM_Raw*: decompress those blocks with the bare codec (LZ4_decompress_safe,
//     │             ZSTD_decompressDCtx with a reused context): the floor of any reader
//     └─ zfile::Compress into a MemWritableFile ──> zfile::Open(NewMemReadableFile)
//                                                   ──> BM_ZFile*: ReadAt through the reader
//
// Baseline and ZFile read the same blocks of the same bytes, from memory, into a 1 MiB
// destination, so the ratio is the cost of the ZFile reader itself (jump table lookup, CRC32C,
// copies, locking). bench/run.sh turns the pairs into ratios.
#include <benchmark/benchmark.h>
#include <lz4.h>
#include <zstd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "bench_data.h"
#include "ovbd/io.h"
#include "ovbd/zfile.h"

namespace ovbd::bench {
namespace {

constexpr size_t kDataSize = 64 << 20;
constexpr size_t kReadSize = 1 << 20;
constexpr size_t kRandomReads = 1 << 16;  // distinct random offsets cycled through

[[noreturn]] void Die(const std::string& what, const Status& s) {
  std::fprintf(stderr, "zfile_bench: %s: %s\n", what.c_str(), s.ToString().c_str());
  std::exit(1);
}

const std::vector<uint8_t>& Data() {
  static const std::vector<uint8_t> data = MakeDiskLike(kDataSize);
  return data;
}

// The blocks a ZFile of Data() holds, compressed by the bare codec, back to back in memory.
struct RawBlocks {
  uint32_t block_size = 0;
  std::vector<uint8_t> bytes;
  std::vector<size_t> offsets;  // block i = bytes[offsets[i], offsets[i+1])

  size_t count() const { return offsets.size() - 1; }
  const char* src(size_t i) const { return reinterpret_cast<const char*>(bytes.data() + offsets[i]); }
  int src_size(size_t i) const { return static_cast<int>(offsets[i + 1] - offsets[i]); }
  size_t raw_size(size_t i) const {
    return std::min<size_t>(block_size, Data().size() - i * block_size);
  }
};

RawBlocks CompressRaw(zfile::Algorithm algo, uint32_t block_size) {
  const auto& data = Data();
  RawBlocks raw;
  raw.block_size = block_size;
  raw.offsets.push_back(0);
  std::vector<uint8_t> tmp(std::max<size_t>(LZ4_compressBound(block_size),
                                            ZSTD_compressBound(block_size)));
  for (size_t off = 0; off < data.size(); off += block_size) {
    size_t n = std::min<size_t>(block_size, data.size() - off);
    size_t c;
    if (algo == zfile::Algorithm::kLz4) {
      c = LZ4_compress_default(reinterpret_cast<const char*>(data.data() + off),
                               reinterpret_cast<char*>(tmp.data()), static_cast<int>(n),
                               static_cast<int>(tmp.size()));
    } else {
      c = ZSTD_compress(tmp.data(), tmp.size(), data.data() + off, n, 3);
      if (ZSTD_isError(c)) c = 0;
    }
    if (c == 0) Die("raw compress", Status::Corruption("codec failed"));
    raw.bytes.insert(raw.bytes.end(), tmp.begin(), tmp.begin() + c);
    raw.offsets.push_back(raw.bytes.size());
  }
  return raw;
}

const RawBlocks& Raw(zfile::Algorithm algo, uint32_t block_size) {
  static std::map<std::pair<int, uint32_t>, RawBlocks> cache;
  auto key = std::make_pair(static_cast<int>(algo), block_size);
  auto it = cache.find(key);
  if (it == cache.end()) it = cache.emplace(key, CompressRaw(algo, block_size)).first;
  return it->second;
}

std::vector<uint8_t> CompressZFile(const zfile::Options& options) {
  auto in = NewMemReadableFile("bench.raw", Data());
  auto storage = std::make_shared<MemStorage>();
  auto out = NewMemWritableFile("bench.zfile", storage);
  auto info = zfile::Compress(*in, out.get(), options);
  if (!info.ok()) Die("zfile::Compress", info.status());
  Status s = out->Close();
  if (!s.ok()) Die("close", s);
  return std::move(storage->bytes);
}

// A ZFile of Data() (CRC on), opened from memory.
const zfile::Reader& ZFile(zfile::Algorithm algo, uint32_t block_size) {
  static std::map<std::pair<int, uint32_t>, std::unique_ptr<zfile::Reader>> cache;
  auto key = std::make_pair(static_cast<int>(algo), block_size);
  auto it = cache.find(key);
  if (it == cache.end()) {
    zfile::Options options;
    options.algorithm = algo;
    options.block_size = block_size;
    options.crc = true;
    auto reader = zfile::Open(NewMemReadableFile("bench.zfile", CompressZFile(options)));
    if (!reader.ok()) Die("zfile::Open", reader.status());
    if (reader.value()->Size() != Data().size()) {
      Die("zfile::Open", Status::Corruption("decompressed size differs from the input"));
    }
    it = cache.emplace(key, std::move(reader).value()).first;
  }
  return *it->second;
}

const std::vector<uint64_t>& RandomBlocks() {
  static const std::vector<uint64_t> blocks = [] {
    Rng rng(7);
    std::vector<uint64_t> v(kRandomReads);
    for (auto& b : v) b = rng.Below(kDataSize / 4096);
    return v;
  }();
  return blocks;
}

zfile::Algorithm AlgoArg(const benchmark::State& state) {
  return state.range(0) == 2 ? zfile::Algorithm::kZstd : zfile::Algorithm::kLz4;
}

// Decompresses every block with the bare codec into a rotating 1 MiB destination.
// zstd uses one reused ZSTD_DCtx: ZSTD_decompress() builds a fresh context per call, which on a
// 4 KiB block costs more than the decompression itself, so it would be a weak baseline.
bool DecompressAll(const RawBlocks& raw, zfile::Algorithm algo, std::vector<uint8_t>& dst) {
  static ZSTD_DCtx* const dctx = ZSTD_createDCtx();
  const size_t per_buffer = dst.size() / raw.block_size;
  for (size_t i = 0; i < raw.count(); ++i) {
    char* out = reinterpret_cast<char*>(dst.data() + (i % per_buffer) * raw.block_size);
    size_t want = raw.raw_size(i);
    size_t got;
    if (algo == zfile::Algorithm::kLz4) {
      int r = LZ4_decompress_safe(raw.src(i), out, raw.src_size(i), static_cast<int>(want));
      got = r < 0 ? 0 : static_cast<size_t>(r);
    } else {
      got = ZSTD_decompressDCtx(dctx, out, want, raw.src(i), raw.src_size(i));
      if (ZSTD_isError(got)) got = 0;
    }
    if (got != want) return false;
  }
  benchmark::DoNotOptimize(dst.data());
  benchmark::ClobberMemory();
  return true;
}

void RawDecompressBlocks(benchmark::State& state, zfile::Algorithm algo, uint32_t block_size) {
  const RawBlocks& raw = Raw(algo, block_size);
  std::vector<uint8_t> dst(kReadSize);
  for (auto _ : state) {
    if (!DecompressAll(raw, algo, dst)) {
      state.SkipWithError("raw decompression failed");
      return;
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * Data().size()));
  state.counters["ratio"] = static_cast<double>(Data().size()) / raw.bytes.size();
}

// (a) LZ4_decompress_safe over the 4 KiB blocks of the ZFile, sequentially.
void BM_RawLz4DecompressBlocks(benchmark::State& state) {
  RawDecompressBlocks(state, zfile::Algorithm::kLz4, 4096);
}
BENCHMARK(BM_RawLz4DecompressBlocks)->Unit(benchmark::kMillisecond);

// (c) ZSTD_decompressDCtx (one reused context) over 4K/16K/64K blocks.
void BM_RawZstdDecompressBlocks(benchmark::State& state) {
  RawDecompressBlocks(state, zfile::Algorithm::kZstd, static_cast<uint32_t>(state.range(0)));
}
BENCHMARK(BM_RawZstdDecompressBlocks)
    ->ArgName("bs")->Arg(4096)->Arg(16384)->Arg(65536)->Unit(benchmark::kMillisecond);

// (b)/(c) zfile::Open over an in-memory ZFile, ReadAt sequentially in 1 MiB reads.
void BM_ZFileSequentialRead(benchmark::State& state) {
  const zfile::Reader& reader = ZFile(AlgoArg(state), static_cast<uint32_t>(state.range(1)));
  std::vector<uint8_t> buf(kReadSize);
  for (auto _ : state) {
    for (uint64_t off = 0; off < reader.Size(); off += kReadSize) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(kReadSize, reader.Size() - off));
      Status s = reader.ReadAt(off, std::span<uint8_t>(buf.data(), n));
      if (!s.ok()) {
        state.SkipWithError(s.ToString().c_str());
        return;
      }
    }
    benchmark::DoNotOptimize(buf.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * reader.Size()));
  state.counters["ratio"] =
      static_cast<double>(reader.Size()) / reader.compressed().Size();
}
BENCHMARK(BM_ZFileSequentialRead)
    ->ArgNames({"algo", "bs"})
    ->Args({1, 4096})
    ->Args({2, 4096})
    ->Args({2, 16384})
    ->Args({2, 65536})
    ->Unit(benchmark::kMillisecond);

// (d) Random 4 KiB-aligned 4 KiB reads through the ZFile reader (lz4, 4K blocks).
void BM_ZFileRandomRead4K(benchmark::State& state) {
  const zfile::Reader& reader = ZFile(zfile::Algorithm::kLz4, 4096);
  const auto& blocks = RandomBlocks();
  std::vector<uint8_t> buf(4096);
  size_t k = 0;
  for (auto _ : state) {
    Status s = reader.ReadAt(blocks[k++ % blocks.size()] * 4096, buf);
    if (!s.ok()) {
      state.SkipWithError(s.ToString().c_str());
      return;
    }
    benchmark::DoNotOptimize(buf.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * 4096));
}
BENCHMARK(BM_ZFileRandomRead4K);

// (d) baseline: decompress the same random blocks with LZ4_decompress_safe.
void BM_RawLz4RandomBlock(benchmark::State& state) {
  const RawBlocks& raw = Raw(zfile::Algorithm::kLz4, 4096);
  const auto& blocks = RandomBlocks();
  std::vector<uint8_t> buf(4096);
  size_t k = 0;
  for (auto _ : state) {
    size_t i = blocks[k++ % blocks.size()];
    int r = LZ4_decompress_safe(raw.src(i), reinterpret_cast<char*>(buf.data()), raw.src_size(i),
                                4096);
    if (r != 4096) {
      state.SkipWithError("raw decompression failed");
      return;
    }
    benchmark::DoNotOptimize(buf.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * 4096));
}
BENCHMARK(BM_RawLz4RandomBlock);

// (e) zfile::Compress (lz4, 4K, CRC) from memory into a MemWritableFile, 1 and 2 threads.
void BM_Compress(benchmark::State& state) {
  auto in = NewMemReadableFile("bench.raw", Data());
  zfile::Options options;
  options.algorithm = zfile::Algorithm::kLz4;
  options.block_size = 4096;
  options.threads = static_cast<int>(state.range(0));
  uint64_t out_size = 0;
  for (auto _ : state) {
    state.PauseTiming();
    auto storage = std::make_shared<MemStorage>();
    storage->bytes.reserve(Data().size());
    auto out = NewMemWritableFile("bench.zfile", storage);
    state.ResumeTiming();
    auto info = zfile::Compress(*in, out.get(), options);
    Status s = info.ok() ? out->Close() : info.status();
    if (!s.ok()) {
      state.SkipWithError(s.ToString().c_str());
      return;
    }
    out_size = storage->bytes.size();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * Data().size()));
  state.counters["ratio"] = out_size ? static_cast<double>(Data().size()) / out_size : 0;
}
BENCHMARK(BM_Compress)->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

// (e) baseline: LZ4_compress_default over the same 4 KiB blocks, one thread.
void BM_RawLz4CompressBlocks(benchmark::State& state) {
  const auto& data = Data();
  std::vector<char> out(static_cast<size_t>(LZ4_compressBound(4096)));
  for (auto _ : state) {
    size_t total = 0;
    for (size_t off = 0; off < data.size(); off += 4096) {
      total += static_cast<size_t>(
          LZ4_compress_default(reinterpret_cast<const char*>(data.data() + off), out.data(),
                               4096, static_cast<int>(out.size())));
    }
    benchmark::DoNotOptimize(total);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * data.size()));
}
BENCHMARK(BM_RawLz4CompressBlocks)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace ovbd::bench
