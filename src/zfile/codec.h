// Block codecs of ZFile: one block in, one block out.
//
//   LZ4   raw block format: LZ4_compress_default / LZ4_decompress_safe
//   zstd  one complete frame per block, level 3 (content size recorded, no checksum):
//         ZSTD_compressCCtx / ZSTD_decompressDCtx with a per-thread context
//
// Every block is compressed, even when it grows: the output may be larger than the input, up to
// MaxCompressedSize(). Thread-safe: contexts are thread_local.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "ovbd/status.h"
#include "ovbd/zfile.h"

namespace ovbd::zfile {

// Worst-case compressed size of `n` input bytes (n <= kMaxBlockSize).
size_t MaxCompressedSize(Algorithm algorithm, size_t n);
// Worst-case compressed size of any block of either algorithm, for sizes <= block_size.
size_t MaxCompressedSizeAnyAlgorithm(size_t block_size);

// Compresses `src` into `dst` (dst.size() >= MaxCompressedSize(src.size())). Returns the
// compressed size. Fails only on a codec error (reported as InvalidArgument).
Result<size_t> CompressBlock(Algorithm algorithm, std::span<const uint8_t> src, std::span<uint8_t> dst);

// Decompresses `src` into exactly dst.size() bytes. Corruption (a bare cause, no file context)
// if the data is malformed or decodes to another length. Never writes outside `dst`.
Status DecompressBlock(Algorithm algorithm, std::span<const uint8_t> src, std::span<uint8_t> dst);

}  // namespace ovbd::zfile
