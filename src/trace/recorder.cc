// TraceRecorder and the RecordingFile decorator (include/ovbd/trace.h, "Recording").
//
// Per layer the recorder keeps the union of the layer's ranges in the trace as an interval map
// (start -> end, disjoint and non-adjacent), which answers "already covered?" in O(log n), and
// the index of the layer's newest range, which a contiguous read extends. One mutex guards it
// all: a Record is a few map operations, small next to the read it describes.
#include <algorithm>
#include <iterator>
#include <limits>
#include <map>
#include <mutex>

#include "ovbd/trace.h"

namespace ovbd::trace {
namespace {

constexpr size_t kNoRange = std::numeric_limits<size_t>::max();

struct LayerState {
  std::map<uint64_t, uint64_t> covered;  // start -> end of the union of the layer's ranges
  size_t newest = kNoRange;              // index of the layer's newest range in the trace
};

bool Covered(const std::map<uint64_t, uint64_t>& covered, uint64_t start, uint64_t end) {
  auto it = covered.upper_bound(start);
  if (it == covered.begin()) return false;
  --it;
  return it->first <= start && end <= it->second;
}

void AddCovered(std::map<uint64_t, uint64_t>& covered, uint64_t start, uint64_t end) {
  auto it = covered.upper_bound(start);
  if (it != covered.begin()) {
    auto prev = std::prev(it);
    if (prev->second >= start) {
      start = prev->first;
      end = std::max(end, prev->second);
      it = covered.erase(prev);
    }
  }
  while (it != covered.end() && it->first <= end) {
    end = std::max(end, it->second);
    it = covered.erase(it);
  }
  covered.emplace(start, end);
}

// [start, end) overlaps or is adjacent to r.
bool Touches(const TraceRange& r, uint64_t start, uint64_t end) {
  return start <= r.offset + r.length && end >= r.offset;
}

void Extend(TraceRange& r, uint64_t start, uint64_t end) {
  const uint64_t new_end = std::max(end, r.offset + r.length);
  r.offset = std::min(start, r.offset);
  r.length = new_end - r.offset;
}

class RecordingFile final : public ReadableFile {
 public:
  RecordingFile(std::shared_ptr<const ReadableFile> base, std::shared_ptr<TraceRecorder> recorder,
                uint32_t layer)
      : base_(std::move(base)), recorder_(std::move(recorder)), layer_(layer) {}

  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) const override {
    Status s = base_->ReadAt(offset, buf);
    if (s.ok() && !buf.empty()) recorder_->Record(layer_, offset, buf.size());
    return s;
  }
  uint64_t Size() const override { return base_->Size(); }
  const std::string& Name() const override { return base_->Name(); }
  void Prefetch(uint64_t offset, uint64_t length) const override { base_->Prefetch(offset, length); }
  bool Invalidate(uint64_t offset, uint64_t length) const override { return base_->Invalidate(offset, length); }

 private:
  std::shared_ptr<const ReadableFile> base_;
  std::shared_ptr<TraceRecorder> recorder_;
  uint32_t layer_;
};

}  // namespace

struct TraceRecorder::State {
  std::vector<std::string> keys;
  size_t max_ranges = 0;
  mutable std::mutex mu;
  std::vector<TraceRange> ranges;  // guarded by mu, as everything below
  std::vector<LayerState> layers;
  size_t dropped = 0;

  // Appends or extends; false if the range had to be dropped (max_ranges).
  bool Add(uint32_t layer, uint64_t start, uint64_t end) {
    LayerState& ls = layers[layer];
    if (ls.newest != kNoRange && Touches(ranges[ls.newest], start, end)) {
      Extend(ranges[ls.newest], start, end);
      return true;
    }
    if (ranges.size() >= max_ranges) return false;
    ls.newest = ranges.size();
    ranges.push_back({layer, start, end - start});
    return true;
  }
};

TraceRecorder::TraceRecorder(std::vector<std::string> layer_keys, size_t max_ranges)
    : state_(std::make_unique<State>()) {
  state_->layers.resize(layer_keys.size());
  state_->keys = std::move(layer_keys);
  state_->max_ranges = std::min(max_ranges, kMaxRanges);
}

TraceRecorder::~TraceRecorder() = default;

void TraceRecorder::Record(uint32_t layer, uint64_t offset, uint64_t length) {
  // A read can never reach past 2^64; clamp rather than wrap.
  const uint64_t end = offset + std::min(length, std::numeric_limits<uint64_t>::max() - offset);
  if (end == offset) return;
  std::lock_guard lock(state_->mu);
  if (layer >= state_->layers.size()) {
    state_->dropped++;
    return;
  }
  auto& covered = state_->layers[layer].covered;
  if (Covered(covered, offset, end)) return;
  if (!state_->Add(layer, offset, end)) {
    state_->dropped++;
    return;
  }
  AddCovered(covered, offset, end);
}

Trace TraceRecorder::Snapshot() const {
  std::lock_guard lock(state_->mu);
  return Trace{state_->keys, state_->ranges};
}

size_t TraceRecorder::dropped() const {
  std::lock_guard lock(state_->mu);
  return state_->dropped;
}

std::unique_ptr<ReadableFile> NewRecordingFile(std::shared_ptr<const ReadableFile> base,
                                               std::shared_ptr<TraceRecorder> recorder,
                                               uint32_t layer) {
  return std::make_unique<RecordingFile>(std::move(base), std::move(recorder), layer);
}

}  // namespace ovbd::trace
