// Fill workers: the background threads that fetch what CachedFile::Prefetch hints (store_impl.h).
//
// The hinting thread claims the range's absent blocks itself (they become Fetching, as for a
// miss), so the reads that follow it wait for the worker's fetch instead of racing it with
// fetches of their own: one request per run of adjacent absent blocks. Workers fetch runs they
// were handed and never wait on anyone, so readers waiting on them cannot deadlock. A claimed
// job is never dropped: it is fetched by a worker, fetched by the hinting thread itself (queue
// full, store stopping, no thread could be started), or failed when the store stops; a reader
// whose wait on a hinted block fails asks the source again itself (Flight::ahead).
//
// Workers have an explicit lifecycle: they start only when the owner asks (StartFillWorkers, in
// the process that serves: the volume's Start) and end at StopFillWorkers. Before that, and
// after it, hints are ignored: reads fetch on demand as usual. The store does not know about
// fork: an owner that forks opens the store before and starts the workers after (ovbd attach).
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <system_error>

#include "cache/store_impl.h"

namespace ovbd::cache {

void CacheStore::Impl::StartFillWorkers() {
  std::lock_guard<std::mutex> lock(fill_mu);
  if (fill_stop || fill_enabled) return;
  fill_enabled = true;
  // The workers take no process signals (a server waits for SIGTERM in one thread; a worker
  // that got it would end the process): they inherit a fully blocked mask.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  try {
    for (size_t i = 0; i < kFillThreads; ++i) fill_threads.emplace_back([this] { FillWorker(); });
  } catch (const std::system_error&) {
    // Fewer workers (maybe none): hints that find no room in the queue are fetched by the caller.
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

void CacheStore::Impl::Hint(KeyEntry* e, const std::shared_ptr<const ReadableFile>& source, uint64_t offset,
                            uint64_t length) {
  if (length == 0 || offset >= e->size) return;
  {
    std::lock_guard<std::mutex> lock(fill_mu);
    if (!fill_enabled || fill_stop || fill_threads.empty()) return;
  }
  // Claim under one hold of mu: on a warm cache (nothing absent) this is the whole cost. A hint
  // claims at most an eighth of the capacity, so one large hint cannot empty the cache.
  const uint64_t bs = options.block_size;
  const uint64_t last = (offset + std::min(length, e->size - offset) + bs - 1) / bs;
  uint64_t budget = options.capacity / 8;
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
      if (n > budget) break;
      if (!job.run.Joins(block, n)) close_job();
      BlockStep step = ClaimLocked(e, block, true);
      if (step.kind != BlockStep::kFetch) break;  // no room
      budget -= n;
      job.run.Add(Piece{block, n, 0, 0, 0}, std::move(step));
    }
    close_job();
  }
  if (jobs.empty()) return;
  for (FillJob& j : jobs) {  // evict now: victims wait for no queue (and are not evicted twice)
    for (BlockStep& step : j.run.steps) {
      (void)Evict(step.victims);
      step.victims.clear();
    }
  }
  size_t queued = 0;
  {
    std::lock_guard<std::mutex> lock(fill_mu);
    for (; queued < jobs.size() && !fill_stop && fill_jobs.size() < kMaxFillJobs; ++queued) {
      fill_jobs.push_back(std::move(jobs[queued]));
    }
  }
  if (queued > 0) fill_cv.notify_all();
  for (size_t i = queued; i < jobs.size(); ++i) {  // back-pressure: the caller fetches the rest
    (void)FetchRunFrom(this, jobs[i].entry, *jobs[i].source, jobs[i].run, {});
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
    // A hint: a failed fetch reaches only the readers waiting on it, and they ask again.
    (void)FetchRunFrom(this, job.entry, *job.source, job.run, {});
  }
}

void CacheStore::Impl::CancelFill(FillJob& job) {
  for (size_t i = 0; i < job.run.pieces.size(); ++i) {
    (void)Evict(job.run.steps[i].victims);
    FinishFetch(job.entry, job.run.pieces[i].block, Status::Unavailable("cache: closing before a prefetch was fetched"),
                0, false, true);
  }
  job.run.Clear();
}

void CacheStore::Impl::StopFillWorkers() {
  std::vector<std::thread> threads;
  std::deque<FillJob> pending;
  {
    std::lock_guard<std::mutex> lock(fill_mu);
    fill_stop = true;
    threads.swap(fill_threads);
    pending.swap(fill_jobs);  // not fetched: a stopping store does not wait for hints
  }
  fill_cv.notify_all();
  for (FillJob& job : pending) CancelFill(job);  // their waiters ask the source themselves
  for (std::thread& t : threads) {
    if (t.get_id() == std::this_thread::get_id()) {
      t.detach();  // a worker releasing the store's last reference cannot join itself
    } else {
      t.join();  // in-flight fetches finish first
    }
  }
}

}  // namespace ovbd::cache
