// ZFile: OverlayBD's random-access compressed container (normative spec: docs/format/zfile.md).
//
//   | header 512 | block0 [crc] | block1 [crc] | ... | jump table: N x u32 | trailer 512 |
//
//   zfile::Open(file)  -> a ReadableFile of the decompressed content (random access, thread-safe)
//   zfile::Builder     -> streaming writer (LZ4 / zstd, 4K..64K blocks, per-block CRC32C,
//                         N compression threads producing the same bytes as one)
//
// Untrusted input: every header field and jump-table entry is checked against the caps in
// the spec before it is used or allocated. A per-block CRC mismatch or a failed decompression is
// an error naming file, block and offset; wrong bytes are never returned.
//
// What Open accepts (stricter than the reference reader where noted):
//   * header: magic, size field 96, HEADER and TYPE bits, digest if CALC_DIGEST;
//   * trailer (unless the header has HEADER_OVERWRITE): magic, size 96, TYPE and SEALED set,
//     HEADER and HEADER_OVERWRITE clear, digest if CALC_DIGEST (the reference skips this one);
//   * flag bits 6..63 set in the header or the trailer: NotSupported; IDX_COMP (bit 5):
//     NotSupported; SEALED on a header is ignored;
//   * algo 1/2 (else NotSupported), dict_size 0 (else NotSupported), block_size a power of two
//     in [4 KiB, 64 KiB] (else Corruption), verify 0/1 (else Corruption); level, use_dict and
//     reserved bytes are ignored;
//   * index_size <= 1e9, 512 <= index_offset, jump table inside [index_offset, trailer),
//     index_size == ceil(original_size / block_size), jump-table CRC if CALC_DIGEST, each entry
//     in [1 (5 with CRC), compressBound(block_size) (+4)], entries summing to index_offset - 512.
// Blocks that grew when compressed (larger than block_size) are valid and read back.
//
// Refetch: compressed bytes that fail a check (a block CRC or a failed decompression on read;
// the header/trailer digest, jump-table CRC or a cap at Open) are dropped from the file below
// with ReadableFile::Invalidate. If it says a reread may differ (a cache over a registry blob),
// the bytes are read and checked again, ReadOptions::attempts reads in all, waiting `backoff`
// before the second read and twice as long before each next one; then (or at once if the file
// says rereading is pointless) the Corruption is returned, naming the file, block, compressed
// offset and cause, plus "after N reads" when it was retried.
#pragma once

#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "ovbd/io.h"
#include "ovbd/status.h"

namespace ovbd::zfile {

enum class Algorithm : uint8_t { kLz4 = 1, kZstd = 2 };

inline constexpr uint32_t kMinBlockSize = 4096;
inline constexpr uint32_t kMaxBlockSize = 65536;
inline constexpr uint32_t kDefaultBlockSize = 4096;

// "lz4" / "zstd"
const char* AlgorithmName(Algorithm a);
Result<Algorithm> ParseAlgorithm(std::string_view name);

struct Options {
  Algorithm algorithm = Algorithm::kLz4;
  uint32_t block_size = kDefaultBlockSize;  // power of two in [4 KiB, 64 KiB]
  bool crc = true;                          // per-block CRC32C ("verify")
  int threads = 1;                          // compression threads; output bytes do not depend on it
  // Rewrite the header at Finish with the index fields and flag HEADER_OVERWRITE (as
  // overlaybd-commit -z does). Needs a seekable output.
  bool overwrite_header = false;
};

// What a ZFile says about itself (from the header, or the trailer when the header is not
// overwritten).
struct Info {
  uint64_t header_flags = 0;
  uint64_t trailer_flags = 0;       // 0 when Open did not read the trailer (overwritten header);
                                    // from Builder::Finish always 0x16
  bool header_overwritten = false;  // metadata came from the header (flag bit 3)
  bool has_digest = false;          // CALC_DIGEST: header/trailer digest and jump-table CRC checked
  Algorithm algorithm = Algorithm::kLz4;
  uint32_t block_size = 0;
  bool crc = false;                 // per-block CRC present
  uint64_t index_offset = 0;        // byte offset of the jump table
  uint64_t block_count = 0;         // index_size: number of jump-table entries
  uint64_t original_size = 0;       // decompressed size
  uint32_t index_crc = 0;
  uint64_t file_size = 0;           // compressed file size
};

inline constexpr int kDefaultReadAttempts = 3;
inline constexpr std::chrono::milliseconds kDefaultRefetchBackoff{100};

// How a Reader rereads bytes that failed a check (see "Refetch" above).
struct ReadOptions {
  int attempts = kDefaultReadAttempts;  // reads in all, >= 1
  std::chrono::milliseconds backoff = kDefaultRefetchBackoff;
};

// True if `file` starts with a ZFile header (magic + HEADER flag). Does not check more.
// An I/O error reading the first 512 bytes is returned as such; a short file is just "false".
Result<bool> IsZFile(const ReadableFile& file);

// A decompressed view of a ZFile. ReadAt/Size refer to the original (decompressed) bytes.
class Reader : public ReadableFile {
 public:
  const Info& info() const { return info_; }
  // Checks every block: its CRC if present, and that it decompresses to the right length.
  // Calls progress(blocks_done, blocks_total) now and then. Returns the first failure.
  virtual Status VerifyAll(const ProgressFn& progress = nullptr) const = 0;
  // The underlying compressed file.
  virtual const ReadableFile& compressed() const = 0;

 protected:
  Info info_;
};

// Opens a ZFile: reads the header, then the trailer unless the header was overwritten, checks
// digests and caps, loads the jump table. Takes ownership of `file`.
Result<std::unique_ptr<Reader>> Open(std::unique_ptr<ReadableFile> file);
// Same, sharing ownership of the compressed file.
Result<std::unique_ptr<Reader>> Open(std::shared_ptr<const ReadableFile> file);
// Same, with how failed checks are retried (default: ReadOptions{}).
Result<std::unique_ptr<Reader>> Open(std::shared_ptr<const ReadableFile> file, const ReadOptions& options);
// Resolves the ambiguity for a unique_ptr to a derived file type (e.g. FaultInjectionFile).
template <typename F>
  requires(std::derived_from<F, ReadableFile> && !std::same_as<F, ReadableFile>)
Result<std::unique_ptr<Reader>> Open(std::unique_ptr<F> file) {
  return Open(std::unique_ptr<ReadableFile>(std::move(file)));
}

// Streaming writer. Append() any amount of bytes; Finish() writes the last block, jump table and
// trailer (and rewrites the header if asked). `out` must outlive the builder and is not closed.
// The first error (codec or output I/O) sticks: every later call returns it. Not thread-safe
// (one producer); Options.threads only sets the internal compression workers.
class Builder {
 public:
  virtual ~Builder() = default;
  virtual Status Append(std::span<const uint8_t> data) = 0;
  virtual Result<Info> Finish() = 0;
  // Uncompressed bytes appended so far.
  virtual uint64_t InputBytes() const = 0;
};
Result<std::unique_ptr<Builder>> NewBuilder(WritableFile* out, const Options& options);

// A WritableFile that compresses what is appended into a ZFile written to `out` (not owned, not
// closed). Close() finishes the ZFile (a second Close returns the first result). Not seekable;
// Position() counts uncompressed bytes. Destroying it without Close() does NOT finish the ZFile:
// the output lacks its jump table and trailer and fails to open, so an aborted producer cannot
// leave a valid-looking truncated ZFile behind. Lets a sequential producer (LSMT commit,
// merge, import) write compressed output without knowing about ZFile.
Result<std::unique_ptr<WritableFile>> NewCompressingWriter(WritableFile* out, const Options& options);

// Compresses all of `in` into `out` with a Builder. progress(bytes_done, bytes_total).
Result<Info> Compress(const ReadableFile& in, WritableFile* out, const Options& options,
                      const ProgressFn& progress = nullptr);

}  // namespace ovbd::zfile
