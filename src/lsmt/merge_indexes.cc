// MergeIndexes: the upper-wins merge of a stack's per-layer indexes (notes §2.6).
//
// overlaybd merges recursively per gap; the result is, for every entry of every layer, the
// maximal pieces of it that no upper layer covers (zeroed entries cover too), each piece kept as
// its own segment (never coalesced with neighbours) and tagged with the layer index.
//
// "Upper wins" is associative, so we build the same result as a balanced tournament of linear
// two-way overlays: (L0 over L1), (L2 over L3), ... then the pairs of those, and so on. Each
// element takes part in ceil(log2(layers)) linear passes: O(N log k) for N entries and k layers,
// whatever the overlap pattern (a top-down scan against the accumulated result would be O(N k)).
#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "lsmt/segment_index.h"

namespace ovbd::lsmt {
namespace {

// A sorted run of tagged segments in an uninitialised buffer of fixed capacity.
struct Run {
  AlignedArray<PackedSegment> buf;
  size_t size = 0;
  const PackedSegment* begin() const { return buf.data(); }
  const PackedSegment* end() const { return buf.data() + size; }
};

// Validates one layer (sorted, non-overlapping, fields in range) and packs it with its tag.
Result<Run> PackLayer(const std::vector<Segment>& layer, uint8_t tag) {
  Run run{AlignedArray<PackedSegment>(layer.size()), layer.size()};
  uint64_t prev_end = 0;
  for (size_t i = 0; i < layer.size(); ++i) {
    const Segment& s = layer[i];
    if (!IsValidSegment(s) || s.offset < prev_end) {  // let the validator say why
      OVBD_RETURN_IF_ERROR(ValidateSortedSegments(layer, "layer " + std::to_string(tag)));
    }
    prev_end = s.end();
    run.buf[i] = PackedSegment::Pack(s);
    run.buf[i].set_tag(tag);
  }
  return run;
}

// `upper` over `lower`: all of upper, plus the pieces of lower in upper's gaps, sorted. Each
// upper segment splits at most one lower segment in two, so the output fits 2|U| + |L|.
// The piece of l before u is stored unconditionally and kept only if it is not empty (fewer
// unpredictable branches); such a store lands while u is still to be written, so within the
// output's bound.
Run Overlay(const Run& upper, const Run& lower) {
  Run out{AlignedArray<PackedSegment>(2 * upper.size + lower.size), 0};
  PackedSegment* o = out.buf.data();
  const PackedSegment* u = upper.begin();
  const PackedSegment* const u_end = upper.end();
  for (const PackedSegment& l : lower) {
    uint64_t pos = l.offset();  // the part of l before pos is done
    const uint64_t end = l.end();
    for (; u != u_end && u->offset() < end; ++u) {
      const uint64_t u_offset = u->offset(), u_stop = u->end();
      *o = l.Clip(pos, u_offset);  // meaningless unless u_offset > pos
      o += u_offset > pos ? 1 : 0;
      pos = std::max(pos, u_stop);
      if (pos > end) break;  // u reaches past l: it may cover the next lower segments too
      *o++ = *u;
    }
    if (pos < end) *o++ = l.Clip(pos, end);
  }
  for (; u != u_end; ++u) *o++ = *u;
  out.size = static_cast<size_t>(o - out.buf.data());
  return out;
}

Status CheckCap(const Run& run) {
  if (run.size <= kMaxMergedIndexSize) return Status::OK();
  return Status::InvalidArgument("merged index: more than " + std::to_string(kMaxMergedIndexSize) +
                                 " segments");
}

// One tournament round: runs[0] over runs[1], runs[2] over runs[3], ... (top first).
Result<std::vector<Run>> MergeRound(std::vector<Run> runs) {
  std::vector<Run> next;
  next.reserve((runs.size() + 1) / 2);
  for (size_t r = 0; r + 1 < runs.size(); r += 2) {
    next.push_back(Overlay(runs[r], runs[r + 1]));
    runs[r] = Run();  // free the inputs as we go
    runs[r + 1] = Run();
    OVBD_RETURN_IF_ERROR(CheckCap(next.back()));
  }
  if (runs.size() % 2 == 1) next.push_back(std::move(runs.back()));
  return next;
}

// The merged run of all layers (an empty run for no layers).
Result<Run> MergeToRun(const std::vector<std::vector<Segment>>& top_first) {
  OVBD_RETURN_IF_ERROR(CheckLayerCount(top_first.size()).WithContext("merge indexes"));
  std::vector<Run> runs;
  runs.reserve(top_first.size());
  for (size_t layer = 0; layer < top_first.size(); ++layer) {
    OVBD_ASSIGN_OR_RETURN(Run run, PackLayer(top_first[layer], static_cast<uint8_t>(layer)));
    runs.push_back(std::move(run));
  }
  while (runs.size() > 1) {
    OVBD_ASSIGN_OR_RETURN(runs, MergeRound(std::move(runs)));
  }
  if (runs.empty()) return Run();
  OVBD_RETURN_IF_ERROR(CheckCap(runs[0]));
  return std::move(runs[0]);
}

}  // namespace

Result<std::vector<Segment>> MergeIndexes(const std::vector<std::vector<Segment>>& top_first) {
  OVBD_ASSIGN_OR_RETURN(Run run, MergeToRun(top_first));
  std::vector<Segment> merged;
  merged.reserve(run.size);
  for (const PackedSegment& p : run) merged.push_back(p.Unpack());
  return merged;
}

// The merged run is valid, sorted and non-overlapping by construction (every layer was
// validated, and overlaying only clips), so it goes into the index as it is.
Result<std::unique_ptr<SegmentIndex>> BuildMergedIndex(
    const std::vector<std::vector<Segment>>& top_first) {
  OVBD_ASSIGN_OR_RETURN(Run run, MergeToRun(top_first));
  return std::unique_ptr<SegmentIndex>(
      std::make_unique<PackedSegmentIndex>(run.begin(), run.size));
}

}  // namespace ovbd::lsmt
