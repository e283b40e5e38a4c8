// LiveIndex against a per-sector model: after any sequence of inserts, every sector maps to the
// last insert covering it, with the right moffset.
#include "lsmt/live_index.h"

#include <gtest/gtest.h>

#include <random>

namespace ovbd::lsmt {
namespace {

struct SectorModel {
  bool mapped = false;
  bool zeroed = false;
  uint64_t msector = 0;  // moffset of this very sector (data only)
};

void ApplyToModel(std::vector<SectorModel>* model, const Segment& s) {
  for (uint64_t k = 0; k < s.length; k++) (*model)[s.offset + k] = {true, s.zeroed, s.moffset + k};
}

void ExpectMatchesModel(const LiveIndex& index, const std::vector<SectorModel>& model) {
  std::vector<SectorModel> seen(model.size());
  uint64_t prev_end = 0;
  for (const Segment& s : index.All()) {
    ASSERT_GE(s.offset, prev_end) << "unsorted or overlapping";
    ASSERT_GT(s.length, 0u);
    prev_end = s.end();
    for (uint64_t k = 0; k < s.length; k++) {
      seen[s.offset + k] = {true, s.zeroed, s.zeroed ? 0 : s.moffset + k};
    }
  }
  for (size_t i = 0; i < model.size(); i++) {
    ASSERT_EQ(seen[i].mapped, model[i].mapped) << "sector " << i;
    if (!model[i].mapped) continue;
    ASSERT_EQ(seen[i].zeroed, model[i].zeroed) << "sector " << i;
    if (!model[i].zeroed) {
      ASSERT_EQ(seen[i].msector, model[i].msector) << "sector " << i;
    }
  }
}

TEST(LiveIndex, OverwriteCasesFromTheNotes) {
  LiveIndex index;
  index.Insert(Segment{10, 20, 100});        // [10,30)
  index.Insert(Segment{15, 5, 200});         // inside: split
  index.Insert(Segment{25, 10, 300, true});  // tail overlap, zeroed
  index.Insert(Segment{5, 7, 400});          // head overlap
  std::vector<Segment> expected = {
      {5, 7, 400}, {12, 3, 102}, {15, 5, 200}, {20, 5, 110}, {25, 10, 300, true}};
  EXPECT_EQ(index.All(), expected);
  index.Insert(Segment{0, 100, 500});  // covers everything
  EXPECT_EQ(index.All(), (std::vector<Segment>{{0, 100, 500}}));
  EXPECT_EQ(index.size(), 1u);
}

TEST(LiveIndex, ZeroedEntryTrimmedAtFrontKeepsMOffset) {
  LiveIndex index;
  index.Insert(Segment{0, 100, 50, true});
  index.Insert(Segment{0, 10, 60});
  EXPECT_EQ(index.All()[1], (Segment{10, 90, 50, true}));
}

TEST(LiveIndex, LookupClipsToTheRange) {
  LiveIndex index;
  index.Insert(Segment{10, 20, 100});
  index.Insert(Segment{40, 10, 0, true});
  std::vector<Segment> got;
  index.Lookup(15, 30, [&](const Segment& s) { got.push_back(s); });
  EXPECT_EQ(got, (std::vector<Segment>{{15, 15, 105}, {40, 5, 0, true}}));
  got.clear();
  index.Lookup(30, 10, [&](const Segment& s) { got.push_back(s); });
  EXPECT_TRUE(got.empty());
}

TEST(LiveIndex, RandomInsertsMatchModel) {
  constexpr uint64_t kSectors = 3000;
  std::mt19937_64 rng(42);
  LiveIndex index;
  std::vector<SectorModel> model(kSectors);
  uint64_t next_moffset = 8;
  for (int i = 0; i < 3000; i++) {
    uint64_t length = 1 + rng() % (rng() % 4 == 0 ? 400 : 16);
    uint64_t offset = rng() % (kSectors - length);
    Segment s{offset, static_cast<uint32_t>(length), next_moffset, rng() % 5 == 0, 0};
    if (!s.zeroed) next_moffset += length;
    index.Insert(s);
    ApplyToModel(&model, s);
    if (i % 97 == 0) ExpectMatchesModel(index, model);
  }
  ExpectMatchesModel(index, model);
}

}  // namespace
}  // namespace ovbd::lsmt
