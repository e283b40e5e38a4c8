// A one-line progress display on stderr for long operations:
//
//   commit  [##########----------]  51%   212.4 MiB/s  ETA 0:03
//
// Drawn with '\r' only when stderr is a terminal and --quiet was not given; otherwise every call
// is a no-op, so piping or redirecting stderr never gets progress noise. Updates are throttled
// (at most ~10 redraws a second). Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

#include "ovbd/io.h"

namespace ovbd::cli {

class Progress {
 public:
  // `bytes`: units are bytes (shows MiB/s) rather than items (shows items/s).
  Progress(std::string label, bool quiet, bool bytes = true);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  bool enabled() const { return enabled_; }
  void Update(uint64_t done, uint64_t total);
  // Draws the final state and ends the line (if anything was drawn).
  void Finish();
  // A ProgressFn calling Update; valid while this object lives.
  ProgressFn Callback();

 private:
  void Draw(uint64_t done, uint64_t total, double seconds);

  std::string label_;
  bool enabled_;
  bool bytes_;
  bool drawn_ = false;
  uint64_t last_done_ = 0;
  uint64_t last_total_ = 0;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
  std::mutex mu_;
};

// Formats the line (without '\r'); exposed for tests.
std::string FormatProgressLine(const std::string& label, uint64_t done, uint64_t total,
                               double seconds, bool bytes);

}  // namespace ovbd::cli
