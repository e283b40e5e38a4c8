// Fill workers: the background threads that serve CachedFile::Prefetch hints (store_impl.h).
//
// A hint only names a range; its blocks are claimed when a worker takes the job, so a queued job
// never holds anything a reader could wait for, and a reader that gets there first simply
// fetches the blocks itself (the worker then skips them).
#include <unistd.h>

#include <algorithm>

#include "cache/store_impl.h"

namespace ovbd::cache {
namespace {

// In a forked child the parent's threads do not exist: they can be neither joined nor detached,
// and destroying a joinable std::thread terminates. Their handles are left behind on purpose.
void ForgetThreads(std::vector<std::thread>& threads) {
  if (!threads.empty()) (void)new std::vector<std::thread>(std::move(threads));
  threads.clear();
}

}  // namespace

bool CacheStore::Impl::NothingToFill(const FillJob& job) {
  const uint64_t size = job.entry->size;
  if (job.length == 0 || job.offset >= size) return true;
  const uint64_t bs = options.block_size;
  const uint64_t last = (job.offset + std::min(job.length, size - job.offset) + bs - 1) / bs;
  std::lock_guard<std::mutex> lock(mu);
  for (uint64_t b = job.offset / bs; b < last; ++b) {
    if (job.entry->blocks[b].state == BlockState::kAbsent) return false;
  }
  return true;
}

void CacheStore::Impl::Hint(FillJob job) {
  if (NothingToFill(job)) return;  // the common case on a warm cache: no thread hand-off
  std::lock_guard<std::mutex> lock(fill_mu);
  if (fill_stop) return;
  if (fill_pid != ::getpid()) {  // first hint, or a forked child: the threads are not ours
    ForgetThreads(fill_threads);
    fill_jobs.clear();
    fill_pid = ::getpid();
    for (size_t i = 0; i < kFillThreads; ++i) fill_threads.emplace_back([this] { FillWorker(); });
  }
  if (fill_jobs.size() >= kMaxFillJobs) return;
  fill_jobs.push_back(std::move(job));
  fill_cv.notify_one();
}

void CacheStore::Impl::FillWorker() {
  for (;;) {
    FillJob job;
    {
      std::unique_lock<std::mutex> lock(fill_mu);
      fill_cv.wait(lock, [this] { return fill_stop || !fill_jobs.empty(); });
      if (fill_stop) return;
      job = std::move(fill_jobs.front());
      fill_jobs.pop_front();
    }
    FillRange(this, job);
  }
}

void CacheStore::Impl::StopFillWorkers() {
  std::vector<std::thread> threads;
  bool ours = false;
  {
    std::lock_guard<std::mutex> lock(fill_mu);
    fill_stop = true;
    fill_jobs.clear();
    threads.swap(fill_threads);
    ours = fill_pid == ::getpid();
  }
  fill_cv.notify_all();
  if (!ours) return ForgetThreads(threads);
  for (std::thread& t : threads) t.join();  // in-flight fetches finish first
}

}  // namespace ovbd::cache
