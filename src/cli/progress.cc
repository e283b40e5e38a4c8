// Progress display. The rate is the average since the start; the ETA extrapolates it.
#include "cli/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace ovbd::cli {
namespace {

constexpr int kBarWidth = 24;
constexpr auto kRedrawInterval = std::chrono::milliseconds(100);

std::string FormatDuration(double seconds) {
  if (seconds < 0 || seconds > 359999) return "--:--";
  auto s = static_cast<uint64_t>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%llu:%02llu:%02llu", static_cast<unsigned long long>(s / 3600),
                  static_cast<unsigned long long>(s / 60 % 60), static_cast<unsigned long long>(s % 60));
  } else {
    std::snprintf(buf, sizeof buf, "%llu:%02llu", static_cast<unsigned long long>(s / 60),
                  static_cast<unsigned long long>(s % 60));
  }
  return buf;
}

}  // namespace

std::string FormatProgressLine(const std::string& label, uint64_t done, uint64_t total,
                               double seconds, bool bytes) {
  double fraction = total == 0 ? 1.0 : static_cast<double>(std::min(done, total)) / static_cast<double>(total);
  int filled = static_cast<int>(fraction * kBarWidth);
  std::string bar(static_cast<size_t>(filled), '#');
  bar.append(static_cast<size_t>(kBarWidth - filled), '-');
  double rate = seconds > 0 ? static_cast<double>(done) / seconds : 0;
  double eta = rate > 0 ? static_cast<double>(total - std::min(done, total)) / rate : -1;
  char buf[256];
  if (bytes) {
    std::snprintf(buf, sizeof buf, "%-8s [%s] %3d%%  %8.1f MiB/s  ETA %s", label.c_str(), bar.c_str(),
                  static_cast<int>(fraction * 100), rate / (1024 * 1024), FormatDuration(eta).c_str());
  } else {
    std::snprintf(buf, sizeof buf, "%-8s [%s] %3d%%  %8.0f /s  ETA %s", label.c_str(), bar.c_str(),
                  static_cast<int>(fraction * 100), rate, FormatDuration(eta).c_str());
  }
  return buf;
}

Progress::Progress(std::string label, bool quiet, bool bytes)
    : label_(std::move(label)),
      enabled_(!quiet && ::isatty(STDERR_FILENO) == 1),
      bytes_(bytes),
      start_(std::chrono::steady_clock::now()) {}

Progress::~Progress() { Finish(); }

void Progress::Update(uint64_t done, uint64_t total) {
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mu_);
  last_done_ = done;
  last_total_ = total;
  auto now = std::chrono::steady_clock::now();
  if (drawn_ && now - last_draw_ < kRedrawInterval && done < total) return;
  last_draw_ = now;
  Draw(done, total, std::chrono::duration<double>(now - start_).count());
}

void Progress::Draw(uint64_t done, uint64_t total, double seconds) {
  std::string line = FormatProgressLine(label_, done, total, seconds, bytes_);
  std::fprintf(stderr, "\r%s\x1b[K", line.c_str());
  std::fflush(stderr);
  drawn_ = true;
}

void Progress::Finish() {
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (!drawn_) return;
  auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  Draw(last_done_, last_total_, seconds);
  std::fputc('\n', stderr);
  drawn_ = false;
  enabled_ = false;
}

ProgressFn Progress::Callback() {
  return [this](uint64_t done, uint64_t total) { Update(done, total); };
}

}  // namespace ovbd::cli
