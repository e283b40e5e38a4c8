// Streaming a ReadableFile (a decompressed ZFile, a merged image) to an output as fast as the
// reader allows: `threads` persistent workers read consecutive chunks concurrently (ReadAt is
// thread-safe by contract), worker w taking chunks w, w+N, w+2N, ..., while the caller's thread
// writes them in order with large appends.
#pragma once

#include <cstddef>

#include "ovbd/io.h"
#include "ovbd/status.h"

namespace ovbd::cli {

inline constexpr size_t kCopyChunk = 4 << 20;

// Copies all of `in` to `out` in `chunk`-byte pieces; progress(bytes_written, total) on the
// caller's thread. threads <= 0: one per core (at most 8). Holds threads + 2 chunks in memory.
// The first error (a read of any chunk, or a write) stops the copy and is returned; the chunks
// before the failed one have been written. `in` must not change during the copy.
Status ParallelCopy(const ReadableFile& in, WritableFile* out, int threads, const ProgressFn& progress = nullptr,
                    size_t chunk = kCopyChunk);

}  // namespace ovbd::cli
