// Streaming a ReadableFile (a decompressed ZFile, a merged image) to an output as fast as the
// reader allows: `threads` workers read consecutive 4 MiB chunks concurrently (ReadAt is
// thread-safe by contract) while the caller's thread writes them in order with large appends.
#pragma once

#include "ovbd/io.h"
#include "ovbd/status.h"

namespace ovbd::cli {

inline constexpr size_t kCopyChunk = 4 << 20;

// Copies all of `in` to `out`; progress(bytes_written, total). threads <= 0: one per core
// (at most 8).
Status ParallelCopy(const ReadableFile& in, WritableFile* out, int threads,
                    const ProgressFn& progress = nullptr);

}  // namespace ovbd::cli
