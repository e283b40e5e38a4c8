// Fill workers: the background threads that fetch what CachedFile::Prefetch hints (store_impl.h).
//
// The hinting thread claims the range's absent blocks itself (they become Fetching, as for a
// miss), so the reads that follow it wait for the worker's fetch instead of racing it with
// fetches of their own: one request per run of adjacent absent blocks. Workers fetch runs they
// were handed and never wait on anyone, so readers waiting on them cannot deadlock. A claimed
// job is never dropped: it is fetched, or failed when the store closes (waking its waiters). A
// hint that finds kMaxFillJobs queued fetches its runs itself (back-pressure).
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

void CacheStore::Impl::Hint(KeyEntry* e, const std::shared_ptr<const ReadableFile>& source, uint64_t offset,
                            uint64_t length) {
  if (length == 0 || offset >= e->size) return;
  // Claim under one hold of mu: on a warm cache (nothing absent) this is the whole cost.
  const uint64_t bs = options.block_size;
  const uint64_t last = (offset + std::min(length, e->size - offset) + bs - 1) / bs;
  std::vector<FillJob> jobs;
  {
    std::lock_guard<std::mutex> lock(mu);
    FillJob job{e, source, Run()};
    const auto close_job = [&] {
      if (!job.run.empty()) jobs.push_back(std::exchange(job, FillJob{e, source, Run()}));
    };
    for (uint64_t block = offset / bs; block < last; ++block) {
      const size_t n = BlockLength(*e, block);
      if (e->blocks[block].state != BlockState::kAbsent) {
        close_job();
        continue;
      }
      if (!job.run.Joins(block, n)) close_job();
      BlockStep step = ClaimLocked(e, block);
      if (step.kind != BlockStep::kFetch) {  // no room: nothing more to claim
        close_job();
        break;
      }
      job.run.Add(Piece{block, n, 0, 0, 0}, std::move(step));
    }
    close_job();
  }
  if (jobs.empty()) return;
  bool stopping = false;
  {
    std::lock_guard<std::mutex> lock(fill_mu);
    stopping = fill_stop;
    if (!fill_stop && fill_jobs.size() < kMaxFillJobs) {
      if (fill_pid != ::getpid()) {  // first hint, or a forked child: the threads are not ours
        ForgetThreads(fill_threads);
        fill_pid = ::getpid();
        for (size_t i = 0; i < kFillThreads; ++i) fill_threads.emplace_back([this] { FillWorker(); });
      }
      for (FillJob& j : jobs) fill_jobs.push_back(std::move(j));
      jobs.clear();
    }
  }
  fill_cv.notify_all();
  for (FillJob& j : jobs) {
    if (stopping) {
      CancelFill(j);  // the store is closing: released unfetched
    } else {
      (void)FetchRunFrom(this, j.entry, *j.source, j.run, {});  // queue full: back-pressure
    }
  }
}

void CacheStore::Impl::FillWorker() {
  for (;;) {
    FillJob job;
    {
      std::unique_lock<std::mutex> lock(fill_mu);
      fill_cv.wait(lock, [this] { return fill_stop || !fill_jobs.empty(); });
      if (fill_stop) return;  // pending jobs were taken by StopFillWorkers
      job = std::move(fill_jobs.front());
      fill_jobs.pop_front();
    }
    // A hint: a failed fetch reaches the readers waiting on it, nobody else.
    (void)FetchRunFrom(this, job.entry, *job.source, job.run, {});
  }
}

void CacheStore::Impl::CancelFill(FillJob& job) {
  for (size_t i = 0; i < job.run.pieces.size(); ++i) {
    (void)Evict(job.run.steps[i].victims);
    FinishFetch(job.entry, job.run.pieces[i].block, Status::Unavailable("cache: closing before a prefetch was fetched"), 0, false, true);
  }
  job.run = Run();
}

void CacheStore::Impl::StopFillWorkers() {
  std::vector<std::thread> threads;
  std::deque<FillJob> pending;
  bool ours = false;
  {
    std::lock_guard<std::mutex> lock(fill_mu);
    fill_stop = true;
    ours = fill_pid == ::getpid();
    threads.swap(fill_threads);
    pending.swap(fill_jobs);  // not fetched: a closing store does not wait for hints
  }
  fill_cv.notify_all();
  for (FillJob& job : pending) CancelFill(job);
  if (!ours) return ForgetThreads(threads);
  for (std::thread& t : threads) t.join();  // in-flight fetches finish first
}

}  // namespace ovbd::cache
