// Ordered parallel copy: a ring of in-flight chunk reads (std::async), written front first.
// Buffers are recycled so a long copy allocates `threads + 1` chunks in all.
#include "cli/copy.h"

#include <algorithm>
#include <deque>
#include <future>
#include <thread>
#include <vector>

namespace ovbd::cli {
namespace {

struct Chunk {
  uint64_t offset = 0;
  std::vector<uint8_t> buf;
  std::future<Status> read;
};

int EffectiveThreads(int threads) {
  if (threads > 0) return threads;
  unsigned cores = std::thread::hardware_concurrency();
  return static_cast<int>(std::clamp(cores, 1u, 8u));
}

}  // namespace

Status ParallelCopy(const ReadableFile& in, WritableFile* out, int threads, const ProgressFn& progress) {
  const uint64_t total = in.Size();
  const size_t window = static_cast<size_t>(EffectiveThreads(threads));
  std::deque<Chunk> inflight;
  std::vector<std::vector<uint8_t>> spare;
  uint64_t next = 0;
  uint64_t written = 0;
  Status result;
  auto launch = [&]() {
    Chunk c;
    c.offset = next;
    size_t len = static_cast<size_t>(std::min<uint64_t>(kCopyChunk, total - next));
    if (!spare.empty()) {
      c.buf = std::move(spare.back());
      spare.pop_back();
    }
    c.buf.resize(len);
    std::span<uint8_t> span(c.buf);
    c.read = std::async(std::launch::async, [&in, off = c.offset, span] { return in.ReadAt(off, span); });
    next += len;
    inflight.push_back(std::move(c));
  };
  while (result.ok() && (next < total || !inflight.empty())) {
    while (next < total && inflight.size() < window) launch();
    Chunk c = std::move(inflight.front());
    inflight.pop_front();
    result = c.read.get();
    if (result.ok()) result = out->Append(c.buf);
    written += c.buf.size();
    if (result.ok() && progress) progress(written, total);
    spare.push_back(std::move(c.buf));
  }
  for (auto& c : inflight) (void)c.read.get();  // never leave a reader running on freed buffers
  return result;
}

}  // namespace ovbd::cli
