// Executors for NBD requests: a fixed pool of threads shared by every connection of a server, and
// an inline executor (tests, fuzzing) that runs each task on the submitting thread.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace ovbd::nbd {

class Executor {
 public:
  virtual ~Executor() = default;
  // Runs task once, on some thread, soon. Thread-safe.
  virtual void Submit(std::function<void()> task) = 0;
};

class InlineExecutor final : public Executor {
 public:
  void Submit(std::function<void()> task) override { task(); }
};

// A FIFO queue served by `threads` threads. The destructor runs every queued task, then joins.
// Tasks must not throw. The queue is unbounded: callers bound what they submit (each connection
// caps its requests in flight).
class WorkerPool final : public Executor {
 public:
  explicit WorkerPool(unsigned threads);
  ~WorkerPool() override;
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  void Submit(std::function<void()> task) override;

 private:
  void Work();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace ovbd::nbd
