// Prefetcher: background replay of a Trace (include/ovbd/trace.h, "Replay").
//
// One cursor (next range, and the unread part [pos, end) of the current one) hands out reads of
// at most max_read bytes under a mutex, so reads start in trace order and the memory needed is
// one buffer per worker whatever the trace holds. Workers read without the lock; Cancel() only
// stops the cursor, so in-flight reads finish and the workers then exit.
#include <algorithm>
#include <mutex>
#include <system_error>
#include <thread>

#include "ovbd/trace.h"

namespace ovbd::trace {
namespace {

struct Chunk {
  const ReadableFile* file = nullptr;
  uint64_t offset = 0;
  uint64_t length = 0;
};

}  // namespace

struct Prefetcher::Impl {
  Trace trace;
  std::vector<std::shared_ptr<const ReadableFile>> files;  // by layer id; null = skipped layer
  std::vector<uint64_t> sizes;                             // Size() of files, taken at Start
  uint64_t max_read = kDefaultPrefetchRead;

  std::mutex mu;  // guards everything below
  size_t next_range = 0;
  const ReadableFile* file = nullptr;  // current range: file and the part not yet handed out
  uint64_t pos = 0;
  uint64_t end = 0;
  bool cancel = false;
  size_t running = 0;
  PrefetchStats stats;

  std::mutex join_mu;  // serialises Wait()
  std::vector<std::thread> threads;

  void ResolveFiles(const std::map<std::string, std::shared_ptr<const ReadableFile>>& by_key);
  void StartWorkers(unsigned n);
  void Worker();
  bool NextChunk(Chunk* c);
  void BeginRange(const TraceRange& r);
  void Account(const Chunk& c, const Status& s);
};

void Prefetcher::Impl::ResolveFiles(
    const std::map<std::string, std::shared_ptr<const ReadableFile>>& by_key) {
  files.resize(trace.layers.size());
  sizes.resize(trace.layers.size());
  for (size_t i = 0; i < trace.layers.size(); i++) {
    auto it = by_key.find(trace.layers[i]);
    if (it == by_key.end() || !it->second) {
      stats.skipped_layers++;
      continue;
    }
    files[i] = it->second;
    sizes[i] = files[i]->Size();
  }
}

void Prefetcher::Impl::StartWorkers(unsigned n) {
  // Workers block on `mu` until all are started, so `running` is right before any can exit.
  std::lock_guard lock(mu);
  for (unsigned i = 0; i < n; i++) {
    try {
      threads.emplace_back([this] { Worker(); });
    } catch (const std::system_error& e) {
      stats.first_error = std::string("prefetch: cannot start a worker thread: ") + e.what();
      break;
    }
    running++;
  }
  if (running == 0) stats.finished = true;
}

void Prefetcher::Impl::Worker() {
  std::vector<uint8_t> buf;
  Chunk c;
  while (NextChunk(&c)) {
    buf.resize(c.length);
    Account(c, c.file->ReadAt(c.offset, buf));
  }
  std::lock_guard lock(mu);
  if (--running == 0) stats.finished = true;
}

bool Prefetcher::Impl::NextChunk(Chunk* c) {
  std::lock_guard lock(mu);
  while (!cancel) {
    if (pos < end) {
      *c = Chunk{file, pos, std::min(max_read, end - pos)};
      pos += c->length;
      return true;
    }
    if (next_range == trace.ranges.size()) return false;
    BeginRange(trace.ranges[next_range++]);
  }
  return false;
}

// Sets the cursor to `r` clamped to its file's size, or counts it as skipped.
void Prefetcher::Impl::BeginRange(const TraceRange& r) {
  if (r.layer >= files.size() || !files[r.layer] || r.offset >= sizes[r.layer]) {
    stats.skipped_ranges++;
    return;
  }
  stats.ranges++;
  file = files[r.layer].get();
  pos = r.offset;
  end = r.offset + std::min(r.length, sizes[r.layer] - r.offset);
}

void Prefetcher::Impl::Account(const Chunk& c, const Status& s) {
  std::lock_guard lock(mu);
  if (s.ok()) {
    stats.bytes_done += c.length;
    return;
  }
  stats.bytes_failed += c.length;
  stats.reads_failed++;
  if (stats.first_error.empty()) stats.first_error = s.ToString();
}

Prefetcher::Prefetcher(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Prefetcher::~Prefetcher() {
  Cancel();
  Wait();
}

std::unique_ptr<Prefetcher> Prefetcher::Start(
    Trace trace, std::map<std::string, std::shared_ptr<const ReadableFile>> files,
    PrefetchOptions options) {
  auto impl = std::make_unique<Impl>();
  impl->trace = std::move(trace);
  impl->ResolveFiles(files);
  impl->max_read = options.max_read == 0 ? kDefaultPrefetchRead
                                         : std::min(options.max_read, kMaxPrefetchRead);
  const unsigned parallel = std::clamp(options.parallel, 1u, kMaxPrefetchParallel);
  std::unique_ptr<Prefetcher> p(new Prefetcher(std::move(impl)));
  p->impl_->StartWorkers(parallel);
  return p;
}

void Prefetcher::Cancel() {
  std::lock_guard lock(impl_->mu);
  impl_->cancel = true;
  if (!impl_->stats.finished) impl_->stats.cancelled = true;
}

void Prefetcher::Wait() {
  std::lock_guard lock(impl_->join_mu);
  for (std::thread& t : impl_->threads) {
    if (t.joinable()) t.join();
  }
}

PrefetchStats Prefetcher::Stats() const {
  std::lock_guard lock(impl_->mu);
  return impl_->stats;
}

}  // namespace ovbd::trace
