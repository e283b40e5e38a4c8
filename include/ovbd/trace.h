// Trace record/replay: prefetch a container's start-up working set (docs/format/trace.md).
//
//   record (ovbd serve --record-trace FILE)
//     reader ── RecordingFile(layer id) ──> base file
//                     │ every successful ReadAt: (layer, offset, bytes read)
//                     v
//               TraceRecorder ── Snapshot() ──> Trace ── SaveTrace ──> FILE (text, CRC32C)
//
//   replay (ovbd serve --replay-trace FILE)
//     FILE ── LoadTrace ──> Trace ──> Prefetcher: `parallel` threads, trace order, reads of at
//                                        │        most `max_read` bytes, data discarded
//                                        v
//                          files[layer key] (cache-backed: the read fills the local cache)
//
// Layers are named by key ("sha256:<hex>" of the blob, or a local file name), not by position,
// so a trace replays on any image that shares layers; ranges of layers it lacks are skipped.
// A trace is only a hint: replay never fails the image, it counts what it could not read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ovbd/io.h"
#include "ovbd/status.h"

namespace ovbd::trace {

inline constexpr uint32_t kTraceVersion = 1;
// Format caps (docs/format/trace.md §4). A file within them is at most kMaxTraceFileSize bytes.
inline constexpr size_t kMaxLayers = 255;
inline constexpr size_t kMaxRanges = size_t{1} << 20;
inline constexpr size_t kMaxKeyLength = 256;
inline constexpr uint64_t kMaxTraceFileSize = uint64_t{64} << 20;

struct TraceRange {
  uint32_t layer = 0;   // index into Trace::layers
  uint64_t offset = 0;  // bytes into the layer blob
  uint64_t length = 0;  // bytes, > 0; offset + length fits in 64 bits
  friend bool operator==(const TraceRange&, const TraceRange&) = default;
};

struct Trace {
  std::vector<std::string> layers;  // layer keys, index = layer id
  std::vector<TraceRange> ranges;   // in first-read order
  friend bool operator==(const Trace&, const Trace&) = default;
};

// ---- Format ---------------------------------------------------------------------------------

// OK if `t` obeys every rule a decoded trace obeys (caps, keys of 1..kMaxKeyLength printable
// ASCII chars without spaces, unique keys, layer ids in range, length > 0, no overflow);
// InvalidArgument naming the first violation otherwise.
Status ValidateTrace(const Trace& t);

// The canonical encoding of `t`. Precondition: ValidateTrace(t).ok() (otherwise the output does
// not decode). DecodeTrace(EncodeTrace(t)) == t for every valid t.
std::string EncodeTrace(const Trace& t);

// Parses untrusted bytes. Strict: exactly one encoding per trace, so a successful decode
// re-encodes to the same bytes. Errors name the line, its byte offset and the cause:
//   InvalidArgument  not a trace file (first line is not "ovbd-trace VERSION")
//   NotSupported     a version other than kTraceVersion
//   Corruption       anything else that breaks the spec (counts, numbers, caps, checksum, ...)
// On success the trace satisfies ValidateTrace.
Result<Trace> DecodeTrace(std::string_view bytes);

// CRC-32C (Castagnoli, standard form: init and final XOR 0xFFFFFFFF) of `bytes`: the value the
// "crc32c" line stores for the bytes before it. Check value: "123456789" -> 0xe3069283.
uint32_t TraceChecksum(std::string_view bytes);

// ---- Files ----------------------------------------------------------------------------------

// Reads and decodes `path`. Files larger than kMaxTraceFileSize are Corruption (unread). Every
// error message starts with the path.
Result<Trace> LoadTrace(const std::string& path);

// Writes `t` atomically (AtomicFile, synced): PATH.tmp is written and fdatasynced, renamed over
// PATH, and the directory fsynced. A crash leaves either the old PATH or the new one (and maybe
// a stale PATH.tmp). InvalidArgument if `t` is not
// valid (ValidateTrace), before anything is written.
Status SaveTrace(const std::string& path, const Trace& t);

// ---- Recording ------------------------------------------------------------------------------

// Collects reads into a Trace. Thread-safe: Record may be called from any number of threads.
//
// Merging, per layer, in the order Record calls are serialised:
//   * a read fully covered by ranges already in the trace (of the same layer) is dropped;
//   * else a read overlapping or adjacent to the newest range of its layer extends that range
//     (to the union of both);
//   * else it is appended as a new range, unless the trace already holds max_ranges ranges: then
//     it is dropped and counted in dropped().
// Reads with length 0 are ignored; reads of a layer id >= layer_keys.size() are counted in
// dropped(). Memory: O(ranges).
class TraceRecorder {
 public:
  // max_ranges is clamped to kMaxRanges so that every snapshot can be saved.
  explicit TraceRecorder(std::vector<std::string> layer_keys, size_t max_ranges = kMaxRanges);
  ~TraceRecorder();
  TraceRecorder(const TraceRecorder&) = delete;
  TraceRecorder& operator=(const TraceRecorder&) = delete;

  void Record(uint32_t layer, uint64_t offset, uint64_t length);
  // The trace so far (layers = the keys given to the constructor).
  Trace Snapshot() const;
  // Reads not recorded because of max_ranges or an unknown layer id.
  size_t dropped() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// A ReadableFile decorator: forwards everything to `base`; each successful ReadAt of n > 0 bytes
// is reported to `recorder` as (layer, offset, n). Failed reads and Prefetch hints are not
// recorded. Thread-safe as `base` is.
std::unique_ptr<ReadableFile> NewRecordingFile(std::shared_ptr<const ReadableFile> base,
                                               std::shared_ptr<TraceRecorder> recorder,
                                               uint32_t layer);

// ---- Replay ---------------------------------------------------------------------------------

inline constexpr unsigned kMaxPrefetchParallel = 64;
inline constexpr uint64_t kDefaultPrefetchRead = uint64_t{1} << 20;
inline constexpr uint64_t kMaxPrefetchRead = uint64_t{64} << 20;

struct PrefetchOptions {
  unsigned parallel = 4;  // worker threads = reads in flight, clamped to [1, kMaxPrefetchParallel]
  // Ranges are split into reads of at most this many bytes; 0 = default, clamped to
  // kMaxPrefetchRead. Each worker holds one buffer of this size.
  uint64_t max_read = kDefaultPrefetchRead;
};

struct PrefetchStats {
  uint64_t ranges = 0;          // ranges replayed (had a file, started inside its Size)
  uint64_t skipped_ranges = 0;  // ranges of a skipped layer, or starting at/after the file's Size
  uint64_t bytes_done = 0;      // bytes read successfully
  uint64_t bytes_failed = 0;    // bytes of reads that failed
  uint64_t reads_failed = 0;    // reads that failed
  uint64_t skipped_layers = 0;  // trace layers with no (or a null) file
  std::string first_error;      // message of the first failed read, empty if none
  bool cancelled = false;       // Cancel() was called before the replay ended
  bool finished = false;        // every worker has stopped (all done, or cancelled)
};

// Background replay of a Trace. The ranges are handed out in trace order, each split into reads
// of at most max_read bytes, to `parallel` worker threads, so at most `parallel` reads are in
// flight; the data read is discarded. A range is clamped to its file's Size() (taken at Start);
// a failed read is counted and the replay goes on. Never fails: everything is in Stats().
// All methods are thread-safe, except that the Prefetcher must not be destroyed concurrently
// with other calls. The files are kept alive until the Prefetcher is destroyed.
class Prefetcher {
 public:
  // files: layer key -> file to read through. Starts the workers and returns at once.
  static std::unique_ptr<Prefetcher> Start(Trace trace,
                                           std::map<std::string, std::shared_ptr<const ReadableFile>> files,
                                           PrefetchOptions options);
  ~Prefetcher();  // Cancel() + Wait()
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  // Stops handing out reads; in-flight reads finish. Returns at once.
  void Cancel();
  // Blocks until every worker has stopped (replay done, or cancelled and in-flight reads done).
  void Wait();
  PrefetchStats Stats() const;

 private:
  struct Impl;
  explicit Prefetcher(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ovbd::trace
