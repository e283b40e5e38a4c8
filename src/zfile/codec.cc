#include "zfile/codec.h"

#include <lz4.h>
#include <zstd.h>

#include <algorithm>
#include <memory>
#include <string>

namespace ovbd::zfile {
namespace {

// The reference always compresses zstd blocks at level 3 (the header's level byte is ignored).
constexpr int kZstdLevel = 3;

struct CCtxDeleter {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};
struct DCtxDeleter {
  void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
};

// One context per thread, created on first use and freed when the thread exits.
ZSTD_CCtx* ThreadCCtx() {
  thread_local std::unique_ptr<ZSTD_CCtx, CCtxDeleter> cctx(ZSTD_createCCtx());
  return cctx.get();
}
ZSTD_DCtx* ThreadDCtx() {
  thread_local std::unique_ptr<ZSTD_DCtx, DCtxDeleter> dctx(ZSTD_createDCtx());
  return dctx.get();
}

Status LengthMismatch(size_t got, size_t want) {
  return Status::Corruption("block decompressed to " + std::to_string(got) + " bytes, expected " +
                            std::to_string(want));
}

Status DecompressLz4(std::span<const uint8_t> src, std::span<uint8_t> dst) {
  const int n = LZ4_decompress_safe(reinterpret_cast<const char*>(src.data()),
                                    reinterpret_cast<char*>(dst.data()), static_cast<int>(src.size()),
                                    static_cast<int>(dst.size()));
  if (n < 0) return Status::Corruption("malformed LZ4 block (LZ4_decompress_safe " + std::to_string(n) + ")");
  if (static_cast<size_t>(n) != dst.size()) return LengthMismatch(static_cast<size_t>(n), dst.size());
  return Status::OK();
}

Status DecompressZstd(std::span<const uint8_t> src, std::span<uint8_t> dst) {
  ZSTD_DCtx* dctx = ThreadDCtx();
  if (dctx == nullptr) return Status::NoSpace("ZSTD_createDCtx failed");
  const size_t n = ZSTD_decompressDCtx(dctx, dst.data(), dst.size(), src.data(), src.size());
  if (ZSTD_isError(n)) {
    return Status::Corruption(std::string("malformed zstd frame: ") + ZSTD_getErrorName(n));
  }
  if (n != dst.size()) return LengthMismatch(n, dst.size());
  return Status::OK();
}

}  // namespace

const char* AlgorithmName(Algorithm a) {
  switch (a) {
    case Algorithm::kLz4:
      return "lz4";
    case Algorithm::kZstd:
      return "zstd";
  }
  return "unknown";
}

Result<Algorithm> ParseAlgorithm(std::string_view name) {
  if (name == "lz4" || name == "LZ4") return Algorithm::kLz4;
  if (name == "zstd" || name == "ZSTD") return Algorithm::kZstd;
  return Status::InvalidArgument("unknown compression algorithm '" + std::string(name) +
                                 "' (expected lz4 or zstd)");
}

size_t MaxCompressedSize(Algorithm algorithm, size_t n) {
  if (algorithm == Algorithm::kZstd) return ZSTD_compressBound(n);
  return static_cast<size_t>(LZ4_compressBound(static_cast<int>(n)));
}

size_t MaxCompressedSizeAnyAlgorithm(size_t block_size) {
  return std::max(MaxCompressedSize(Algorithm::kLz4, block_size),
                  MaxCompressedSize(Algorithm::kZstd, block_size));
}

Result<size_t> CompressBlock(Algorithm algorithm, std::span<const uint8_t> src, std::span<uint8_t> dst) {
  if (dst.size() < MaxCompressedSize(algorithm, src.size())) {
    return Status::InvalidArgument("compression buffer smaller than the worst case");
  }
  if (algorithm == Algorithm::kZstd) {
    ZSTD_CCtx* cctx = ThreadCCtx();
    if (cctx == nullptr) return Status::NoSpace("ZSTD_createCCtx failed");
    const size_t n = ZSTD_compressCCtx(cctx, dst.data(), dst.size(), src.data(), src.size(), kZstdLevel);
    if (ZSTD_isError(n)) return Status::InvalidArgument(std::string("ZSTD_compress: ") + ZSTD_getErrorName(n));
    return n;
  }
  const int n = LZ4_compress_default(reinterpret_cast<const char*>(src.data()), reinterpret_cast<char*>(dst.data()),
                                     static_cast<int>(src.size()), static_cast<int>(dst.size()));
  // An empty input compresses to one token byte; 0 means failure.
  if (n <= 0) return Status::InvalidArgument("LZ4_compress_default failed");
  return static_cast<size_t>(n);
}

Status DecompressBlock(Algorithm algorithm, std::span<const uint8_t> src, std::span<uint8_t> dst) {
  if (algorithm == Algorithm::kZstd) return DecompressZstd(src, dst);
  return DecompressLz4(src, dst);
}

}  // namespace ovbd::zfile
