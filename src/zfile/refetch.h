// Rereading compressed bytes that failed a check (include/ovbd/zfile.h "Refetch"), shared by the
// reader (block CRCs, decompression) and Open (header/trailer digests, jump-table CRC, caps).
#pragma once

#include <chrono>
#include <string>
#include <thread>

#include "ovbd/status.h"
#include "ovbd/zfile.h"

namespace ovbd::zfile {

// The final Corruption of a check that was tried `reads` times.
inline Status AfterReads(const Status& s, int reads) {
  if (reads <= 1) return s;
  return Status::Corruption(s.message() + " (after " + std::to_string(reads) + " reads)");
}

// Calls `attempt()` (reads bytes and checks them) until it returns anything but Corruption.
// After a Corruption, `invalidate()` drops the bytes read from the file below and says whether
// a reread may differ; only then, and at most options.attempts reads in all, is it tried again,
// after options.backoff (doubling each time).
template <typename Attempt, typename Invalidate>
Status WithRefetch(const ReadOptions& options, Attempt&& attempt, Invalidate&& invalidate) {
  std::chrono::milliseconds backoff = options.backoff;
  for (int reads = 1;; ++reads) {
    Status s = attempt();
    if (s.code() != Code::kCorruption) return s;
    if (!invalidate() || reads >= options.attempts) return AfterReads(s, reads);
    std::this_thread::sleep_for(backoff);
    backoff *= 2;
  }
}

}  // namespace ovbd::zfile
