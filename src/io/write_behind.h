// A WritableFile decorator that writes behind the producer: appended bytes are queued in 2 MiB
// buffers and written to `base` by a background thread, which also calls base->Sync() every
// `sync_every` bytes (0: never; the owner decides whether the output is synced at all). The disk writeback of a large output then overlaps with whatever produces
// the bytes (compression), instead of all of it waiting for the final fdatasync.
//
//   producer --Append--> [ 2 MiB buffers, at most 8 queued ] --thread--> base->Append
//                                                                        + base->Sync() every sync_every
//
// Contract:
//   * One producer thread calls Append/Position/Sync/Close; `base` is only touched by the
//     background thread until Close() (or Sync()) returns. `base` must outlive this object.
//   * Not seekable: Rewrite() is NotSupported.
//   * Sync() writes everything queued, then calls base->Sync().
//   * Close() writes everything queued and stops the thread; it does NOT close `base` (its owner
//     does). A second Close() returns the first result. The destructor closes.
//   * The first error of `base` sticks: every later Append/Sync/Close returns it.
#pragma once

#include <cstdint>
#include <memory>

#include "ovbd/io.h"

namespace ovbd {

inline constexpr uint64_t kWriteBehindSyncBytes = 16 << 20;

std::unique_ptr<WritableFile> NewWriteBehindFile(WritableFile* base, uint64_t sync_every = kWriteBehindSyncBytes);

}  // namespace ovbd
