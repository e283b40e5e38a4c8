// File abstractions every format module is written against.
//
//   ReadableFile      positional reads of a fixed-size byte sequence (a blob, a decompressed
//     |               ZFile, a stacked image). Thread-safe: ReadAt may be called concurrently.
//   RandomRWFile      + positional writes, trim, truncate, sync (the RW layer's data and index).
//   WritableFile      sequential output (commit, compress, merge), optionally seekable so a
//                     header can be rewritten once its fields are known.
//
// Formats are decorators: zfile::Open(unique_ptr<ReadableFile>) returns a ReadableFile of the
// decompressed bytes; lsmt stacks ReadableFiles into an image. Fault injection is one more
// decorator (FaultInjectionFile). All offsets and lengths are in bytes.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <shared_mutex>
#include <span>
#include <string>
#include <vector>

#include "ovbd/status.h"

namespace ovbd {

// Progress of a long operation: (units done, units total). Called from the working thread.
using ProgressFn = std::function<void(uint64_t done, uint64_t total)>;

class ReadableFile {
 public:
  virtual ~ReadableFile() = default;

  // Reads exactly buf.size() bytes at `offset` into buf. A range that ends past Size() is
  // OutOfRange (nothing is zero-filled here; formats decide that). Thread-safe.
  virtual Status ReadAt(uint64_t offset, std::span<uint8_t> buf) const = 0;
  // Current size in bytes.
  virtual uint64_t Size() const = 0;
  // A name for error messages (usually the path).
  virtual const std::string& Name() const = 0;
  // Hint that [offset, offset+length) will be read soon. Default: nothing.
  virtual void Prefetch(uint64_t /*offset*/, uint64_t /*length*/) const {}
  // Drops any copy of [offset, offset+length) this file or a file below it keeps (a cache),
  // so the next read of the range asks the origin again. Called by a reader whose content check
  // (a ZFile block CRC, a digest) failed on bytes this file returned. Returns true if reading the
  // range again may return different bytes (a cache dropped them, or the origin is a network
  // source); false if re-reading is pointless (a local file, verified bytes). Default: false.
  virtual bool Invalidate(uint64_t /*offset*/, uint64_t /*length*/) const { return false; }
};

class RandomRWFile : public ReadableFile {
 public:
  // Writes buf at offset, extending the file if needed. Not atomic; callers serialise writes
  // that overlap. Size() grows to cover the write.
  virtual Status WriteAt(uint64_t offset, std::span<const uint8_t> buf) = 0;
  // Sets the size (zero-extends or cuts). Storage reserved past the new size is freed, also
  // by Truncate(Size()).
  virtual Status Truncate(uint64_t size) = 0;
  // Allocates storage for [offset, offset+length) without changing Size() or any byte read
  // (fallocate FALLOC_FL_KEEP_SIZE), so that later writes there allocate nothing: on ext4 the
  // file system's writeback then does not hold the inode's block map while it reads bitmaps,
  // and appending writers do not wait for it. A hint: NotSupported where the storage cannot
  // (the default).
  virtual Status Reserve(uint64_t /*offset*/, uint64_t /*length*/) {
    return Status::NotSupported(Name() + ": cannot reserve storage");
  }
  // Deallocates [offset, offset+length) so it reads as zeros, keeping the size. May be a no-op
  // that writes zeros where the storage cannot punch holes.
  virtual Status Trim(uint64_t offset, uint64_t length) = 0;
  // Makes every completed write durable (fdatasync). A crash loses at most unsynced writes.
  virtual Status Sync() = 0;
};

class WritableFile {
 public:
  virtual ~WritableFile() = default;
  virtual Status Append(std::span<const uint8_t> data) = 0;
  // Bytes appended so far.
  virtual uint64_t Position() const = 0;
  // Whether Rewrite works (a regular file: yes; a pipe or stdout: usually no).
  virtual bool Seekable() const = 0;
  // Overwrites bytes already appended ([offset, offset+data.size()) <= Position()).
  virtual Status Rewrite(uint64_t offset, std::span<const uint8_t> data) = 0;
  virtual Status Sync() = 0;
  // Flushes and closes. Must be called for output to be complete; the destructor of an
  // unclosed file closes it without reporting errors.
  virtual Status Close() = 0;
  virtual const std::string& Name() const = 0;
};

// ---- POSIX files ---------------------------------------------------------------------------

// Opens a regular file or block device read-only. The size of a block device comes from
// BLKGETSIZE64.
Result<std::unique_ptr<ReadableFile>> OpenReadableFile(const std::string& path);

struct RWOpenOptions {
  bool create = false;     // O_CREAT
  bool exclusive = false;  // O_EXCL: fail with AlreadyExists if the file exists
  bool truncate = false;   // O_TRUNC
};
Result<std::unique_ptr<RandomRWFile>> OpenRandomRWFile(const std::string& path, RWOpenOptions opts);

// Creates `path` for sequential output. Fails with AlreadyExists unless `overwrite`.
// The path "-" means standard output (not seekable).
Result<std::unique_ptr<WritableFile>> CreateWritableFile(const std::string& path, bool overwrite);

// A WritableFile that writes to a RandomRWFile it does not own, starting at offset `start`.
std::unique_ptr<WritableFile> NewRWFileWriter(RandomRWFile* file, uint64_t start);

// A ReadableFile presenting [offset, offset+length) of `base` (a layer at the start of a larger
// file or device: "PATH:LENGTH").
Result<std::unique_ptr<ReadableFile>> NewSliceFile(std::shared_ptr<const ReadableFile> base,
                                                   uint64_t offset, uint64_t length);

// ---- In-memory files (tests, fuzzing) -------------------------------------------------------

// Byte storage shared between a MemFile and whoever wants to reopen it ("the disk").
struct MemStorage {
  std::vector<uint8_t> bytes;
  std::shared_mutex mu;  // held by every handle while it touches `bytes`
};

// A RandomRWFile in memory. Several MemFiles may share one storage (reopen after a crash).
// Thread-safe.
std::unique_ptr<RandomRWFile> NewMemFile(std::string name,
                                         std::shared_ptr<MemStorage> storage = nullptr);
// A read-only file over a copy of `bytes`.
std::unique_ptr<ReadableFile> NewMemReadableFile(std::string name, std::vector<uint8_t> bytes);
// A WritableFile appending to `storage` (seekable).
std::unique_ptr<WritableFile> NewMemWritableFile(std::string name, std::shared_ptr<MemStorage> storage);

// ---- Fault injection ------------------------------------------------------------------------

// Decorates a RandomRWFile to break it on purpose (principle 6):
//  * crash simulation: every write since the last Sync() is remembered; DropUnsyncedWrites()
//    reverts them (optionally keeping a prefix of the last one: a torn write) as a power cut would;
//  * error injection: the n-th read/write/sync from now fails with IOError;
//  * bit rot: reads return data with one byte flipped at a chosen offset.
// Thread-safe.
class FaultInjectionFile : public RandomRWFile {
 public:
  explicit FaultInjectionFile(std::unique_ptr<RandomRWFile> base);
  ~FaultInjectionFile() override;

  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) const override;
  uint64_t Size() const override;
  const std::string& Name() const override;
  bool Invalidate(uint64_t offset, uint64_t length) const override { return base_->Invalidate(offset, length); }
  Status WriteAt(uint64_t offset, std::span<const uint8_t> buf) override;
  Status Truncate(uint64_t size) override;
  Status Trim(uint64_t offset, uint64_t length) override;
  // Forwarded: a reservation changes no byte, so a simulated crash has nothing to revert.
  Status Reserve(uint64_t offset, uint64_t length) override { return base_->Reserve(offset, length); }
  Status Sync() override;

  // Reverts every write/truncate/trim since the last successful Sync(), newest first. If
  // `keep_bytes_of_last_write` > 0, that many leading bytes of the newest write survive (a torn
  // write).
  Status DropUnsyncedWrites(uint64_t keep_bytes_of_last_write = 0);
  // The n-th (1-based) call of that kind from now fails with IOError; 0 disarms.
  void FailNthRead(uint64_t n);
  void FailNthWrite(uint64_t n);
  void FailNthSync(uint64_t n);
  // Every read covering `offset` returns that byte XOR `mask`; mask 0 disarms.
  void FlipByteOnRead(uint64_t offset, uint8_t mask);
  // Number of writes since the last Sync.
  uint64_t UnsyncedWriteCount() const;

 private:
  struct State;
  std::unique_ptr<RandomRWFile> base_;
  std::unique_ptr<State> state_;
};

// ---- Atomic output --------------------------------------------------------------------------

// How an AtomicFile is moved into place.
//   sync:    Commit() fdatasyncs the file before the rename and fsyncs the directory after it,
//            so once Commit() returns, a crash leaves the complete new PATH. Without it, PATH
//            is as durable as what `cp` writes: never torn under its final name by an error,
//            but after a power cut it may be missing or short until the kernel has written it
//            back. Outputs that something else will name (a config, a cache entry, an upload)
//            are written with sync; user-facing outputs only when asked (`--sync`).
//   replace: an existing PATH is replaced. Otherwise Create() refuses an existing PATH and
//            Commit() one that appeared meanwhile (the move is a link(), which never replaces),
//            both with AlreadyExists.
//   temp_suffix: the temporary file is PATH + temp_suffix, in PATH's directory.
struct AtomicFileOptions {
  bool sync = true;
  bool replace = true;
  std::string temp_suffix = ".tmp";
};

// A file written under a temporary name and moved to PATH only by Commit(): an error or a crash
// never leaves a half-written file named PATH. Not thread-safe; one writer.
class AtomicFile {
 public:
  static Result<std::unique_ptr<AtomicFile>> Create(const std::string& path, const AtomicFileOptions& options);
  // Over `temp_file`, already open for writing at `temp_path` (tests decorate the file).
  static std::unique_ptr<AtomicFile> Adopt(std::string path, std::string temp_path,
                                           std::unique_ptr<WritableFile> temp_file,
                                           const AtomicFileOptions& options);
  ~AtomicFile();  // unless Commit() succeeded: closes the temporary file and removes it

  WritableFile* file() { return file_.get(); }
  const std::string& path() const { return path_; }
  // Syncs if asked, closes, moves into place (and syncs the directory if asked). After an
  // error nothing is named PATH by this object and the temporary file goes with it.
  Status Commit();

 private:
  AtomicFile(std::string path, std::string temp, std::unique_ptr<WritableFile> file, AtomicFileOptions options)
      : path_(std::move(path)), temp_(std::move(temp)), file_(std::move(file)), options_(std::move(options)) {}
  Status MoveIntoPlace();

  std::string path_;
  std::string temp_;
  std::unique_ptr<WritableFile> file_;
  AtomicFileOptions options_;
  bool committed_ = false;
};

// Writes `bytes` as PATH through an AtomicFile (small files: configs, state, traces).
Status WriteFileAtomically(const std::string& path, std::span<const uint8_t> bytes,
                           const AtomicFileOptions& options = {});
// fsync of the directory that holds `path`, which makes a rename or creation in it durable.
Status SyncParentDirectory(const std::string& path);
// fdatasync of an existing file (opened read-only): makes what others wrote to it durable.
Status SyncFile(const std::string& path);

// ---- Helpers -------------------------------------------------------------------------------

// One spelling of a path for comparing two of them: absolute, with "..", "." and symlinks
// resolved as far as the path exists (std::filesystem::weakly_canonical); `path` unchanged if
// that fails.
std::string CanonicalPath(const std::string& path);
// Reads the whole file into memory (tests and small metadata only).
Result<std::vector<uint8_t>> ReadAll(const ReadableFile& file);
// Copies all of `in` to `out` in `chunk`-byte reads, calling `progress(done, total)` if set.
Status CopyFile(const ReadableFile& in, WritableFile* out, const ProgressFn& progress = nullptr,
                size_t chunk = 1 << 20);

}  // namespace ovbd
