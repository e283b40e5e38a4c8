// Per-chunk verification of registry blobs: a digest table per blob, and a ReadableFile that
// returns only bytes the table proves.
//
//   ovbd push:  layer blob ──BuildDigestTable──> DigestTable ──Encode──> table blob (its own
//               OCI blob; config.v1.json lowers[i].digestTable = {"digest", "size"})
//
//   lazy read:  table blob ──(sha256 = config digest)──> DecodeDigestTable ──┐
//               BlobFile (registry ranges) ──> NewVerifiedFile(source, table) ─┴─> cache ─> zfile/lsmt
//                  ReadAt(o, n): widen to whole chunks ── one source read ── sha256 per chunk
//                                ── mismatch: re-read that chunk (attempts, backoff) ── Corruption
//
// The whole-blob OCI digest proves a blob only when it is read completely and in order; a lazy
// reader reads scattered ranges, so without the table a plain LSMT layer (no checksums) or a
// ZFile without per-block CRCs would be served unverified. Format: docs/format/digest-table.md.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ovbd/io.h"
#include "ovbd/remote.h"
#include "ovbd/status.h"

namespace ovbd::remote {

// The chunk of a blob up to 16 GiB: the cache's default block (include/ovbd/cache.h), so a
// scattered cache miss fetches no byte more than it needs.
inline constexpr uint32_t kDefaultDigestChunkSize = 16u << 10;
inline constexpr uint32_t kMinDigestChunkSize = 4u << 10;
inline constexpr uint32_t kMaxDigestChunkSize = 16u << 20;
// Implementation limit of readers: a table of more chunks (512 MiB of digests) is NotSupported.
inline constexpr uint64_t kMaxDigestChunks = 16u << 20;
inline constexpr size_t kDigestTableHeaderSize = 64;
inline constexpr size_t kDigestSize = 32;  // sha256

struct DigestTable {
  uint32_t chunk_size = kDefaultDigestChunkSize;
  uint64_t blob_size = 0;
  std::vector<std::array<uint8_t, 32>> chunks;  // sha256 of each chunk, chunk i = [i*c, min((i+1)*c, blob_size))
  uint64_t ChunkCount() const { return chunks.size(); }
};

// The chunk size `ovbd push` uses for a blob of `blob_size` bytes: 16 KiB, doubled while the
// table would have more than 1 Mi chunks (32 MiB of digests), at most 16 MiB.
uint32_t ChooseDigestChunkSize(uint64_t blob_size);

// The encoded size of a table of `chunk_count` chunks: 64 + 32 * chunk_count (no overflow for
// chunk_count <= kMaxDigestChunks).
constexpr uint64_t DigestTableBytes(uint64_t chunk_count) { return kDigestTableHeaderSize + kDigestSize * chunk_count; }

// Reads `blob` once from start to end, in reads of 4 MiB (or one chunk if larger; BlobFile
// splits them into parallel range requests), and hashes each chunk. `progress(done, total)`
// counts bytes read. Errors: InvalidArgument (chunk_size not a power of two in 4 KiB..16 MiB),
// NotSupported (more than kMaxDigestChunks chunks), read errors of `blob` with its name.
Result<DigestTable> BuildDigestTable(const ReadableFile& blob, uint32_t chunk_size,
                                     const ProgressFn& progress = nullptr);

// The encoding of docs/format/digest-table.md. `table` must be valid (as BuildDigestTable
// makes it); the result decodes to an equal table.
std::vector<uint8_t> EncodeDigestTable(const DigestTable& table);

// Decodes a table blob. Untrusted input: every rule of the spec is checked, in the order the
// spec lists, before anything is allocated by a size read from it. Errors (Corruption or
// NotSupported, as the spec says per field) name `name`, the field and its offset.
Result<DigestTable> DecodeDigestTable(std::span<const uint8_t> bytes, const std::string& name);

struct VerifyOptions {
  unsigned attempts = 3;                   // reads of a chunk before Corruption (>= 1)
  std::chrono::milliseconds backoff{100};  // wait before the 2nd attempt; doubles
};

// Counters of a VerifiedFile, updated atomically (relaxed: they are statistics, not
// synchronisation); read them with .load() or by conversion to uint64_t.
struct VerifyStats {
  std::atomic<uint64_t> verified_chunks{0};  // chunk reads whose sha256 matched
  std::atomic<uint64_t> mismatches{0};       // chunk reads whose sha256 did not match
  std::atomic<uint64_t> refetches{0};        // chunks read again after a mismatch
};

// A ReadableFile with the bytes of `source` (a registry blob; its Size() must equal
// table->blob_size), every byte returned checked against `table`:
//  * ReadAt(o, buf) is widened to whole chunks [floor(o/c)*c, min(ceil((o+n)/c)*c, size)) and
//    read from `source` in one read: straight into `buf` when the read already is that range
//    (the cache's aligned blocks), into a temporary buffer otherwise;
//  * each chunk's sha256 is compared with the table; a chunk that does not match is read again,
//    alone, up to `attempts` reads in all (waiting `backoff`, doubling, before each re-read),
//    then ReadAt fails with Corruption naming `blob_name`, the chunk index, its byte range and
//    both hashes (expected and got, hex);
//  * source errors (IOError, Unavailable: the source retries by itself) are returned as they are;
//  * nothing unverified is copied out of a temporary buffer; after an error the content of
//    `buf` is unspecified (it may hold unverified bytes of a direct read), the error is returned;
//  * a range past Size() is OutOfRange, checked before any source read.
// Prefetch is forwarded to `source` widened to whole chunks. The file does not override
// Invalidate (false): what it returned is proven, re-reading cannot help. Name() is blob_name.
// Thread-safe (ReadAt may be called concurrently); `stats`, if given, is updated atomically.
// Errors at creation: InvalidArgument (null source or table, sizes that differ, a table whose
// chunk_size or chunk count breaks the spec, attempts == 0).
Result<std::unique_ptr<ReadableFile>> NewVerifiedFile(std::shared_ptr<const ReadableFile> source,
                                                      std::shared_ptr<const DigestTable> table,
                                                      std::string blob_name, VerifyOptions options = {},
                                                      std::shared_ptr<VerifyStats> stats = nullptr);

struct LayerPushResult {
  PushResult blob;
  std::optional<PushResult> table;  // unset when pushed without a table
};

// Pushes `blob` (as PushBlob does) and, unless `with_table` is false, its digest table: built
// with ChooseDigestChunkSize(blob.Size()), encoded, and pushed from memory as a blob of its own
// (the same upload mode). `progress` counts the layer blob's uploaded bytes. The library entry
// point of `ovbd push`.
Result<LayerPushResult> PushLayer(const std::string& repo_url, const ReadableFile& blob, const RemoteOptions& options,
                                  bool chunked, uint64_t chunk_size, bool with_table,
                                  const ProgressFn& progress = nullptr);

}  // namespace ovbd::remote
