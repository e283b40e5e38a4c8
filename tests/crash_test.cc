// Crash and I/O-error tests of the writable LSMT layer.
//
//   RwLayer ── FaultInjectionFile ── MemFile ── MemStorage (data)      "the disk" survives;
//           └─ FaultInjectionFile ── MemFile ── MemStorage (index)     handles are thrown away
//
// Every sector written gets a recognisable pattern: bytes 0..3 = write id, 4..11 = sector number,
// the rest derived from both; id 0 means zeros (never written, or discarded). The test keeps, per
// sector, the value it held at the last successful Sync() and every value it took since. After a
// simulated power cut (DropUnsyncedWrites on both files, sometimes keeping a torn prefix of the
// newest write) the layer is reopened over the same storages and every sector must hold its
// synced value or one of the values it took since: never garbage, never an older value.
//
// A crash must not run the layer's clean-close path against the "disk": the files are handed to
// the layer through a CrashableFile that goes dead (every call fails) at the moment of the crash,
// so whatever the destructor tries to flush afterwards is lost, as it would be in a real crash.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "ovbd/io.h"
#include "ovbd/lsmt.h"

namespace ovbd {
namespace {

constexpr uint64_t kSector = 512;
constexpr uint64_t kMiB = 1 << 20;

uint64_t Mix(uint64_t x) {  // splitmix64 finaliser
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// The 512 bytes sector `sector` holds after write `id` (id 0 = zeros).
void FillSector(uint32_t id, uint64_t sector, uint8_t* out) {
  if (id == 0) {
    std::memset(out, 0, kSector);
    return;
  }
  uint64_t words[kSector / 8];
  words[0] = id | (sector << 32);
  words[1] = sector >> 32 | 0xC0DE0000ULL << 32;
  for (size_t i = 2; i < kSector / 8; i++) words[i] = Mix(words[0] * 31 + i);
  std::memcpy(out, words, kSector);
}

// Which id a sector's bytes belong to, or -1 if they match no write to that sector.
int64_t IdentifySector(const uint8_t* bytes, uint64_t sector) {
  uint8_t want[kSector];
  uint32_t id;
  std::memcpy(&id, bytes, 4);
  FillSector(id, sector, want);
  if (std::memcmp(want, bytes, kSector) != 0) return -1;
  return id;
}

// Forwards to a FaultInjectionFile the test keeps, until `dead` is set: then every call fails.
class CrashableFile : public RandomRWFile {
 public:
  CrashableFile(std::shared_ptr<FaultInjectionFile> base, std::shared_ptr<bool> dead)
      : base_(std::move(base)), dead_(std::move(dead)) {}
  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) const override {
    return *dead_ ? Dead() : base_->ReadAt(offset, buf);
  }
  uint64_t Size() const override { return base_->Size(); }
  const std::string& Name() const override { return base_->Name(); }
  Status WriteAt(uint64_t offset, std::span<const uint8_t> buf) override {
    return *dead_ ? Dead() : base_->WriteAt(offset, buf);
  }
  Status Truncate(uint64_t size) override { return *dead_ ? Dead() : base_->Truncate(size); }
  Status Trim(uint64_t offset, uint64_t length) override { return *dead_ ? Dead() : base_->Trim(offset, length); }
  Status Sync() override { return *dead_ ? Dead() : base_->Sync(); }

 private:
  Status Dead() const { return Status::IOError(Name() + ": the process crashed"); }
  std::shared_ptr<FaultInjectionFile> base_;
  std::shared_ptr<bool> dead_;
};

class CrashHarness {
 public:
  CrashHarness(uint64_t seed, uint64_t vsize)
      : rng_(seed), vsize_(vsize), sectors_(vsize / kSector), synced_(sectors_, 0), current_(sectors_, 0),
        pending_(sectors_) {}

  uint64_t Rand(uint64_t n) { return n == 0 ? 0 : rng_() % n; }
  bool Chance(int percent) { return Rand(100) < static_cast<uint64_t>(percent); }
  lsmt::RwLayer& layer() { return *layer_; }
  FaultInjectionFile& data() { return *data_fi_; }
  FaultInjectionFile& index() { return *index_fi_; }
  uint32_t next_id() const { return next_id_; }

  void Create() {
    auto [d, i] = WrapFiles();
    lsmt::CreateOptions opts;
    opts.virtual_size = vsize_;
    auto rw = lsmt::CreateRwLayer(std::move(d), std::move(i), opts);
    ASSERT_TRUE(rw.ok()) << rw.status().ToString();
    layer_ = std::move(rw).value();
    ASSERT_EQ(data_fi_->UnsyncedWriteCount(), 0u) << "CreateRwLayer must sync its headers";
    ASSERT_EQ(index_fi_->UnsyncedWriteCount(), 0u) << "CreateRwLayer must sync its headers";
  }

  // Writes sectors [first, first+count) with a new id. Returns the layer's status.
  Status Write(uint64_t first, uint64_t count) {
    const uint32_t id = next_id_++;
    std::vector<uint8_t> buf(count * kSector);
    for (uint64_t i = 0; i < count; i++) FillSector(id, first + i, &buf[i * kSector]);
    Status s = layer_->Write(first * kSector, buf);
    Record(first, count, id, s);
    return s;
  }

  Status Discard(uint64_t first, uint64_t count) {
    Status s = layer_->Discard(first * kSector, count * kSector);
    Record(first, count, 0, s);
    return s;
  }

  Status Sync() {
    Status s = layer_->Sync();
    if (s.ok()) {
      synced_ = current_;
      for (auto& p : pending_) p.clear();
    }
    return s;
  }

  // After a failed op the affected sectors hold the old or the new value; read them back to learn
  // which (the live layer must already be consistent with one of them).
  void ResolveAfterFailure(uint64_t first, uint64_t count, uint32_t id, uint32_t* olds) {
    std::vector<uint8_t> buf(count * kSector);
    Status s = layer_->Read(first * kSector, buf);
    ASSERT_TRUE(s.ok()) << "read after a failed op: " << s.ToString();
    for (uint64_t i = 0; i < count; i++) {
      int64_t got = IdentifySector(&buf[i * kSector], first + i);
      ASSERT_TRUE(got == olds[i] || got == id)
          << "sector " << first + i << " after a failed op holds " << got << ", want " << olds[i] << " or " << id;
      current_[first + i] = static_cast<uint32_t>(got);
    }
  }

  void RandomOp(uint64_t* failed_ops) {
    int r = static_cast<int>(Rand(100));
    if (r < 60) {
      uint64_t count = Chance(2) ? (8192 + 1 + Rand(2048)) : 1 + Rand(Chance(80) ? 16 : 512);
      count = std::min(count, sectors_);
      uint64_t first = Rand(sectors_ - count + 1);
      if (!Write(first, count).ok()) ++*failed_ops;
    } else if (r < 75) {
      uint64_t count = std::min<uint64_t>(sectors_, Chance(3) ? 16383 + 1 + Rand(2000) : 1 + Rand(256));
      uint64_t first = Rand(sectors_ - count + 1);
      if (!Discard(first, count).ok()) ++*failed_ops;
    } else if (r < 90) {
      if (!Sync().ok()) ++*failed_ops;
    } else {
      ASSERT_NO_FATAL_FAILURE(CheckLive(Rand(sectors_), 1 + Rand(64)));
    }
  }

  // Live reads (no crash) must see exactly the latest values.
  void CheckLive(uint64_t first, uint64_t count) {
    count = std::min(count, sectors_ - first);
    std::vector<uint8_t> buf(count * kSector);
    Status s = layer_->Read(first * kSector, buf);
    ASSERT_TRUE(s.ok()) << s.ToString();
    for (uint64_t i = 0; i < count; i++) {
      int64_t got = IdentifySector(&buf[i * kSector], first + i);
      ASSERT_EQ(got, current_[first + i]) << "live read of sector " << first + i;
    }
  }

  // kCleanClose: the layer is destroyed normally (no crash): every completed write must survive.
  // kProcessKill: the process dies (no destructor I/O), the OS keeps every completed file write.
  // kPowerCut..kZeroTail: the process dies and unsynced file writes are lost; kTorn* keep a
  // prefix of the newest write of a file; kZeroTail also grows both files by zeros (the size
  // reached the disk, the content did not).
  enum class CrashKind { kCleanClose, kProcessKill, kPowerCut, kTornIndex, kTornData, kTornBoth, kZeroTail };
  static constexpr int kCrashKinds = 7;

  void CrashAndReopen(CrashKind kind) {
    const bool strict = kind == CrashKind::kCleanClose;
    if (kind != CrashKind::kCleanClose) *dead_ = true;  // before the destructor runs
    layer_.reset();
    if (kind != CrashKind::kCleanClose && kind != CrashKind::kProcessKill) {
      const bool torn_index = kind == CrashKind::kTornIndex || kind == CrashKind::kTornBoth;
      const bool torn_data = kind == CrashKind::kTornData || kind == CrashKind::kTornBoth;
      // A torn record (1..15 bytes), or any prefix of a longer index write.
      uint64_t keep_index = torn_index ? (Chance(50) ? 1 + Rand(15) : 1 + Rand(8192)) : 0;
      uint64_t keep_data = torn_data ? 1 + Rand(8191) : 0;
      ASSERT_TRUE(data_fi_->DropUnsyncedWrites(keep_data).ok());
      ASSERT_TRUE(index_fi_->DropUnsyncedWrites(keep_index).ok());
      if (kind == CrashKind::kZeroTail) {
        index_storage_->bytes.resize(index_storage_->bytes.size() + 16 * (1 + Rand(64)) + Rand(16), 0);
        data_storage_->bytes.resize(data_storage_->bytes.size() + 512 * Rand(16) + Rand(512), 0);
      }
    }
    auto [d, i] = WrapFiles();
    auto rw = lsmt::OpenRwLayer(std::move(d), std::move(i));
    ASSERT_TRUE(rw.ok()) << "reopen after a crash failed: " << rw.status().ToString();
    layer_ = std::move(rw).value();
    ASSERT_NO_FATAL_FAILURE(CheckAfterCrash(strict));
  }

  // A power cut, then `damage` applied to the storages (what a crash in the middle of an I/O could
  // leave behind), then reopen and the non-strict check.
  void CrashAndReopenWith(const std::function<void(std::vector<uint8_t>& data, std::vector<uint8_t>& index)>& damage) {
    *dead_ = true;
    layer_.reset();
    ASSERT_TRUE(data_fi_->DropUnsyncedWrites().ok());
    ASSERT_TRUE(index_fi_->DropUnsyncedWrites().ok());
    damage(data_storage_->bytes, index_storage_->bytes);
    auto [d, i] = WrapFiles();
    auto rw = lsmt::OpenRwLayer(std::move(d), std::move(i));
    ASSERT_TRUE(rw.ok()) << "reopen after a crash failed: " << rw.status().ToString();
    layer_ = std::move(rw).value();
    ASSERT_NO_FATAL_FAILURE(CheckAfterCrash(false));
  }

  // Reopens without dropping anything more; on success checks every sector (non-strict). Returns
  // the reopen status so a test can accept a clean failure.
  Status TryReopen() {
    *dead_ = true;
    layer_.reset();
    auto [d, i] = WrapFiles();
    auto rw = lsmt::OpenRwLayer(std::move(d), std::move(i));
    if (!rw.ok()) return rw.status();
    layer_ = std::move(rw).value();
    EXPECT_NO_FATAL_FAILURE(CheckAfterCrash(false));
    return Status::OK();
  }

  void CheckAfterCrash(bool strict) {
    std::vector<uint8_t> buf(kMiB);
    const uint64_t per = buf.size() / kSector;
    for (uint64_t first = 0; first < sectors_; first += per) {
      uint64_t n = std::min(per, sectors_ - first);
      Status s = layer_->Read(first * kSector, std::span(buf.data(), n * kSector));
      ASSERT_TRUE(s.ok()) << s.ToString();
      for (uint64_t i = 0; i < n; i++) {
        const uint64_t sec = first + i;
        int64_t got = IdentifySector(&buf[i * kSector], sec);
        ASSERT_GE(got, 0) << "sector " << sec << " holds garbage after the crash";
        if (strict) {
          ASSERT_EQ(got, current_[sec]) << "sector " << sec << " lost a completed write (no data was dropped)";
        } else {
          const auto& p = pending_[sec];
          bool allowed = got == synced_[sec] || std::find(p.begin(), p.end(), got) != p.end();
          ASSERT_TRUE(allowed) << "sector " << sec << " holds write " << got << "; synced value " << synced_[sec]
                               << ", " << p.size() << " later values";
        }
        current_[sec] = static_cast<uint32_t>(got);
      }
    }
    synced_ = current_;  // the new handles start with nothing unsynced
    for (auto& p : pending_) p.clear();
    for (const auto& seg : layer_->Segments()) {
      ASSERT_GE(seg.length, 1u);
      ASSERT_LE(seg.end(), sectors_);
    }
  }

 private:
  std::pair<std::unique_ptr<RandomRWFile>, std::unique_ptr<RandomRWFile>> WrapFiles() {
    data_fi_ = std::make_shared<FaultInjectionFile>(NewMemFile("crash.data", data_storage_));
    index_fi_ = std::make_shared<FaultInjectionFile>(NewMemFile("crash.index", index_storage_));
    dead_ = std::make_shared<bool>(false);
    return {std::make_unique<CrashableFile>(data_fi_, dead_), std::make_unique<CrashableFile>(index_fi_, dead_)};
  }

  void Record(uint64_t first, uint64_t count, uint32_t id, const Status& s) {
    std::vector<uint32_t> olds(current_.begin() + static_cast<ptrdiff_t>(first),
                               current_.begin() + static_cast<ptrdiff_t>(first + count));
    for (uint64_t i = 0; i < count; i++) {
      auto& p = pending_[first + i];
      if (std::find(p.begin(), p.end(), id) == p.end()) p.push_back(id);
      current_[first + i] = id;
    }
    if (!s.ok()) ResolveAfterFailure(first, count, id, olds.data());
  }

  std::mt19937_64 rng_;
  const uint64_t vsize_;
  const uint64_t sectors_;
  std::vector<uint32_t> synced_;                 // value at the last successful Sync
  std::vector<uint32_t> current_;                // latest value (live view)
  std::vector<std::vector<uint32_t>> pending_;   // values taken since the last Sync
  uint32_t next_id_ = 1;
  std::shared_ptr<MemStorage> data_storage_ = std::make_shared<MemStorage>();
  std::shared_ptr<MemStorage> index_storage_ = std::make_shared<MemStorage>();
  std::shared_ptr<FaultInjectionFile> data_fi_;   // the layer's files, under its CrashableFiles
  std::shared_ptr<FaultInjectionFile> index_fi_;
  std::shared_ptr<bool> dead_;
  std::unique_ptr<lsmt::RwLayer> layer_;
};

// ---- random crashes --------------------------------------------------------------------------

class RandomCrashTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(RandomCrashTest, SyncedWritesSurviveAndNothingIsGarbage) {
  CrashHarness h(GetParam(), 6 * kMiB);
  ASSERT_NO_FATAL_FAILURE(h.Create());
  uint64_t failed = 0;
  for (int round = 0; round < 25; round++) {
    SCOPED_TRACE("round " + std::to_string(round));
    int ops = 5 + static_cast<int>(h.Rand(40));
    for (int i = 0; i < ops; i++) ASSERT_NO_FATAL_FAILURE(h.RandomOp(&failed));
    auto kind = static_cast<CrashHarness::CrashKind>(h.Rand(CrashHarness::kCrashKinds));
    ASSERT_NO_FATAL_FAILURE(h.CrashAndReopen(kind));
  }
  EXPECT_EQ(failed, 0u) << "no fault was injected, yet operations failed";
}

INSTANTIATE_TEST_SUITE_P(Seeds, RandomCrashTest, ::testing::Values(101, 102, 103, 104));

// ---- torn trailing index record, every length ----------------------------------------------------

TEST(CrashTest, TornIndexRecordOfEveryLengthIsIgnored) {
  for (uint64_t keep = 1; keep < 16; keep++) {
    SCOPED_TRACE("keep " + std::to_string(keep) + " bytes of the newest record");
    CrashHarness h(keep, 1 * kMiB);
    ASSERT_NO_FATAL_FAILURE(h.Create());
    ASSERT_TRUE(h.Write(10, 4).ok());
    ASSERT_TRUE(h.Discard(12, 1).ok());
    ASSERT_TRUE(h.Sync().ok());
    ASSERT_TRUE(h.Write(11, 8).ok());  // unsynced
    // The crash interrupted the append of a record: only its first `keep` bytes reached the disk
    // (a copy of the newest record on disk, so that whole it would be a plausible record).
    ASSERT_NO_FATAL_FAILURE(h.CrashAndReopenWith([keep](std::vector<uint8_t>&, std::vector<uint8_t>& index) {
      ASSERT_GE(index.size(), 4096u + 16);
      std::vector<uint8_t> last(index.end() - 16, index.end());
      index.insert(index.end(), last.begin(), last.begin() + static_cast<ptrdiff_t>(keep));
    }));
    // The next record must replace the torn bytes, not land after them.
    ASSERT_TRUE(h.Write(100, 3).ok());
    ASSERT_TRUE(h.Sync().ok());
    ASSERT_NO_FATAL_FAILURE(h.CrashAndReopen(CrashHarness::CrashKind::kPowerCut));
    ASSERT_NO_FATAL_FAILURE(h.CheckLive(0, 128));
    ASSERT_TRUE(h.Write(50, 2).ok());
    ASSERT_NO_FATAL_FAILURE(h.CrashAndReopen(CrashHarness::CrashKind::kCleanClose));
  }
}

// A torn data write (only a prefix of the newest data piece reached the disk, its record did not):
// the data file ends unaligned; reopen must cope and later writes must land correctly.
TEST(CrashTest, TornDataWriteLeavesAnUnalignedDataFile) {
  for (uint64_t keep : {1u, 100u, 511u, 512u, 513u, 4095u}) {
    SCOPED_TRACE("keep " + std::to_string(keep));
    CrashHarness h(7 + keep, 1 * kMiB);
    ASSERT_NO_FATAL_FAILURE(h.Create());
    ASSERT_TRUE(h.Write(0, 16).ok());
    ASSERT_TRUE(h.Sync().ok());
    ASSERT_TRUE(h.Write(20, 16).ok());
    ASSERT_TRUE(h.data().DropUnsyncedWrites(keep).ok());
    ASSERT_TRUE(h.index().DropUnsyncedWrites().ok());
    ASSERT_NO_FATAL_FAILURE(h.CrashAndReopen(CrashHarness::CrashKind::kPowerCut));
    for (int i = 0; i < 5; i++) ASSERT_TRUE(h.Write(30 + i * 7, 5).ok());
    ASSERT_TRUE(h.Sync().ok());
    ASSERT_NO_FATAL_FAILURE(h.CrashAndReopen(CrashHarness::CrashKind::kPowerCut));
    ASSERT_NO_FATAL_FAILURE(h.CheckLive(0, 128));
  }
}

// Unsynced index records may reach the disk while their data does not (two files, no ordering
// between them without a sync). The format has no checksums, so the layer cannot tell stale from
// fresh bytes in general; what it must do is never crash and never return bytes that were never
// written: reopen either fails with Corruption naming the index file, or every sector reads
// a value it held.
TEST(CrashTest, IndexRecordSurvivesButItsDataDoesNot) {
  CrashHarness h(5, 1 * kMiB);
  ASSERT_NO_FATAL_FAILURE(h.Create());
  ASSERT_TRUE(h.Write(0, 8).ok());
  ASSERT_TRUE(h.Sync().ok());
  ASSERT_TRUE(h.Write(4, 8).ok());                  // data and record unsynced
  ASSERT_TRUE(h.data().DropUnsyncedWrites().ok());  // the data is lost, the record kept
  Status s = h.TryReopen();
  if (!s.ok()) {
    EXPECT_EQ(s.code(), Code::kCorruption) << s.ToString();
    EXPECT_NE(s.message().find("crash.index"), std::string::npos) << "names the index file: " << s.ToString();
    std::cout << "[ info     ] reopen refuses a record pointing past the data file: " << s.ToString() << "\n";
  }
}

// ---- injected I/O errors ---------------------------------------------------------------------

class IoErrorTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(IoErrorTest, FailedWritesAndSyncsReportErrorsAndLeaveNoWrongData) {
  CrashHarness h(GetParam(), 6 * kMiB);
  ASSERT_NO_FATAL_FAILURE(h.Create());
  uint64_t injected = 0, reported = 0;
  for (int round = 0; round < 40; round++) {
    SCOPED_TRACE("round " + std::to_string(round));
    // Arm one fault on one file, then run ops until an op fails (or a few ops pass).
    const int what = static_cast<int>(h.Rand(4));
    const uint64_t n = 1 + h.Rand(3);
    switch (what) {
      case 0: h.data().FailNthWrite(n); break;
      case 1: h.index().FailNthWrite(n); break;
      case 2: h.data().FailNthSync(n); break;
      default: h.index().FailNthSync(n); break;
    }
    injected++;
    for (int i = 0; i < 12; i++) {
      uint64_t failed = 0;
      ASSERT_NO_FATAL_FAILURE(h.RandomOp(&failed));
      if (failed) {
        reported++;
        break;
      }
    }
    h.data().FailNthWrite(0);
    h.index().FailNthWrite(0);
    h.data().FailNthSync(0);
    h.index().FailNthSync(0);
    // The layer stays usable: reads are right, new writes and a sync work.
    ASSERT_NO_FATAL_FAILURE(h.CheckLive(h.Rand(12288), 64));
    Status w = h.Write(h.Rand(12000), 8);
    ASSERT_TRUE(w.ok()) << "write after a recovered fault: " << w.ToString();
    if (h.Chance(50)) {
      Status s = h.Sync();
      ASSERT_TRUE(s.ok()) << "sync after a recovered fault: " << s.ToString();
    }
    if (h.Chance(40)) {
      ASSERT_NO_FATAL_FAILURE(h.CrashAndReopen(static_cast<CrashHarness::CrashKind>(h.Rand(CrashHarness::kCrashKinds))));
    }
  }
  EXPECT_GT(reported, injected / 4) << "injected faults should surface as errors";
  ASSERT_NO_FATAL_FAILURE(h.CrashAndReopen(CrashHarness::CrashKind::kPowerCut));
}

INSTANTIATE_TEST_SUITE_P(Seeds, IoErrorTest, ::testing::Values(201, 202, 203));

// Each kind of fault, deterministically.
TEST(IoErrorTest, DataWriteErrorIsReported) {
  CrashHarness h(9, 1 * kMiB);
  ASSERT_NO_FATAL_FAILURE(h.Create());
  ASSERT_TRUE(h.Write(0, 4).ok());
  h.data().FailNthWrite(1);
  Status s = h.Write(2, 4);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kIOError) << s.ToString();
  EXPECT_NE(s.message().find("crash.data"), std::string::npos) << "error names the file: " << s.ToString();
  ASSERT_NO_FATAL_FAILURE(h.CheckLive(0, 16));
  ASSERT_TRUE(h.Write(2, 4).ok());
  ASSERT_TRUE(h.Sync().ok());
  ASSERT_NO_FATAL_FAILURE(h.CrashAndReopen(CrashHarness::CrashKind::kPowerCut));
  ASSERT_NO_FATAL_FAILURE(h.CheckLive(0, 16));
}

// The index record of a write may be appended at once or at the next Sync(): the injected
// index-file error must surface from one of the calls, naming the index file, and the layer must
// recover once the file works again.
TEST(IoErrorTest, IndexWriteErrorIsReported) {
  CrashHarness h(10, 1 * kMiB);
  ASSERT_NO_FATAL_FAILURE(h.Create());
  ASSERT_TRUE(h.Write(0, 4).ok());
  ASSERT_TRUE(h.Sync().ok());
  h.index().FailNthWrite(1);
  Status first;
  for (Status s : {h.Write(2, 4), h.Discard(0, 2), h.Sync()}) {
    if (first.ok() && !s.ok()) first = s;
  }
  ASSERT_FALSE(first.ok()) << "an injected index write error was swallowed";
  EXPECT_EQ(first.code(), Code::kIOError) << first.ToString();
  EXPECT_NE(first.message().find("crash.index"), std::string::npos) << first.ToString();
  h.index().FailNthWrite(0);
  ASSERT_NO_FATAL_FAILURE(h.CheckLive(0, 16));
  Status s = h.Sync();
  ASSERT_TRUE(s.ok()) << "sync once the index file works again: " << s.ToString();
  ASSERT_NO_FATAL_FAILURE(h.CrashAndReopen(CrashHarness::CrashKind::kPowerCut));
  ASSERT_NO_FATAL_FAILURE(h.CheckLive(0, 16));
}

TEST(IoErrorTest, SyncErrorsAreReportedAndNothingCountsAsSynced) {
  for (int which = 0; which < 2; which++) {
    SCOPED_TRACE(which == 0 ? "data sync fails" : "index sync fails");
    CrashHarness h(11 + which, 1 * kMiB);
    ASSERT_NO_FATAL_FAILURE(h.Create());
    ASSERT_TRUE(h.Write(0, 4).ok());
    ASSERT_TRUE(h.Sync().ok());
    ASSERT_TRUE(h.Write(1, 2).ok());
    if (which == 0) h.data().FailNthSync(1);
    else h.index().FailNthSync(1);
    Status s = h.Sync();
    EXPECT_FALSE(s.ok());
    EXPECT_EQ(s.code(), Code::kIOError) << s.ToString();
    // A power cut now may lose the write of sectors 1..2 (the sync did not succeed), but never
    // sectors 0..3 of the synced write.
    ASSERT_NO_FATAL_FAILURE(h.CrashAndReopen(CrashHarness::CrashKind::kPowerCut));
    ASSERT_TRUE(h.Write(8, 1).ok());
    ASSERT_TRUE(h.Sync().ok());
    ASSERT_NO_FATAL_FAILURE(h.CrashAndReopen(CrashHarness::CrashKind::kPowerCut));
    ASSERT_NO_FATAL_FAILURE(h.CheckLive(0, 16));
  }
}

// A write over 4 MiB is split into pieces; a failure in a later piece leaves earlier pieces
// written and the rest old, never garbage.
TEST(IoErrorTest, FailureInTheMiddleOfASplitWrite) {
  CrashHarness h(12, 6 * kMiB);
  ASSERT_NO_FATAL_FAILURE(h.Create());
  ASSERT_TRUE(h.Write(0, 12288).ok());
  ASSERT_TRUE(h.Sync().ok());
  h.data().FailNthWrite(2);                 // the second 4 MiB piece's data
  EXPECT_FALSE(h.Write(100, 10000).ok());   // 5,120,000 bytes: two pieces
  ASSERT_NO_FATAL_FAILURE(h.CheckLive(0, 12288));
  ASSERT_TRUE(h.Sync().ok());
  ASSERT_NO_FATAL_FAILURE(h.CrashAndReopen(CrashHarness::CrashKind::kPowerCut));
  ASSERT_NO_FATAL_FAILURE(h.CheckLive(0, 12288));
}

}  // namespace
}  // namespace ovbd
