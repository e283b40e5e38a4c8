// The writable layer: headers as the reference writes them, write/overwrite/discard semantics
// against a flat model, replay on reopen, torn records, rejected records, sealing.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <chrono>
#include <atomic>
#include <thread>

#include "base/coding.h"
#include "lsmt/format.h"
#include "lsmt/lsmt_test_util.h"

namespace ovbd::lsmt {
namespace {

using namespace ovbd::lsmt::testing;
using ::ovbd::testing::MakeData;

constexpr uint64_t kVsize = 16 << 20;

CreateOptions Opts(uint64_t vsize, std::string uuid = "", std::string parent = "") {
  CreateOptions options;
  options.virtual_size = vsize;
  options.uuid = std::move(uuid);
  options.parent_uuid = std::move(parent);
  return options;
}

// A layer plus a flat copy of what it should read.
struct Model {
  RwDisks disks;
  std::unique_ptr<RwLayer> layer;
  std::vector<uint8_t> flat;

  explicit Model(uint64_t vsize = 2 << 20) : flat(vsize, 0) { layer = MustCreateRw(disks, vsize); }
  void Write(uint64_t offset, size_t n, uint64_t seed) {
    std::vector<uint8_t> data = MakeData(seed, n);
    ASSERT_TRUE(layer->Write(offset, data).ok());
    std::memcpy(&flat[offset], data.data(), n);
  }
  void Discard(uint64_t offset, uint64_t n) {
    ASSERT_TRUE(layer->Discard(offset, n).ok());
    std::memset(&flat[offset], 0, n);
  }
  void ExpectContent(const RwLayer& l) const {
    std::vector<uint8_t> got(flat.size());
    ASSERT_TRUE(l.Read(0, got).ok());
    ASSERT_TRUE(got == flat) << "layer content differs from the model";
  }
  // Records in the index file after a Sync (records reach the file only when synced).
  uint64_t records() const {
    EXPECT_TRUE(layer->Sync().ok());
    return (disks.index->bytes.size() - kHeaderSize) / kSegmentBytes;
  }
};

// Forwards everything to another file; the decorators below override what they watch.
class ForwardingFile : public RandomRWFile {
 public:
  explicit ForwardingFile(std::unique_ptr<RandomRWFile> inner) : inner_(std::move(inner)) {}
  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) const override { return inner_->ReadAt(offset, buf); }
  uint64_t Size() const override { return inner_->Size(); }
  const std::string& Name() const override { return inner_->Name(); }
  Status WriteAt(uint64_t offset, std::span<const uint8_t> buf) override { return inner_->WriteAt(offset, buf); }
  Status Truncate(uint64_t size) override { return inner_->Truncate(size); }
  Status Trim(uint64_t offset, uint64_t length) override { return inner_->Trim(offset, length); }
  Status Reserve(uint64_t offset, uint64_t length) override { return inner_->Reserve(offset, length); }
  Status Sync() override { return inner_->Sync(); }

 private:
  std::unique_ptr<RandomRWFile> inner_;
};

// A data file whose Sync waits until the test opens a gate (a slow disk).
class GatedSyncFile final : public ForwardingFile {
 public:
  GatedSyncFile(std::unique_ptr<RandomRWFile> inner, std::shared_ptr<std::atomic<int>> gate)
      : ForwardingFile(std::move(inner)), gate_(std::move(gate)) {}
  Status Sync() override {
    if (gate_->load() == 1) {  // armed: report that a sync waits, then wait for the release
      gate_->store(2);
      while (gate_->load() != 3) std::this_thread::yield();
    }
    return ForwardingFile::Sync();
  }

 private:
  std::shared_ptr<std::atomic<int>> gate_;
};

// A data file that logs its Reserve and Truncate calls ("R offset length", "T size") and
// answers Reserve with `reserve_answer` (memory files cannot reserve: the log is the point).
// Reservations come from the layer's background thread: Wait() for them.
class ReserveLogFile final : public ForwardingFile {
 public:
  struct Log {
    std::mutex mu;
    std::vector<std::string> entries;
    std::vector<std::string> Get() {
      std::lock_guard lock(mu);
      return entries;
    }
    void Clear() {
      std::lock_guard lock(mu);
      entries.clear();
    }
    // Waits (up to 10 s) until there are n entries; returns them.
    std::vector<std::string> Wait(size_t n) {
      for (int i = 0; i < 10000 && Get().size() < n; i++) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      return Get();
    }
  };
  ReserveLogFile(std::unique_ptr<RandomRWFile> inner, std::shared_ptr<Log> log, Status reserve_answer)
      : ForwardingFile(std::move(inner)), log_(std::move(log)), answer_(std::move(reserve_answer)) {}
  Status Reserve(uint64_t offset, uint64_t length) override {
    Add("R " + std::to_string(offset) + " " + std::to_string(length));
    return answer_;
  }
  Status Truncate(uint64_t size) override {
    Add("T " + std::to_string(size));
    return ForwardingFile::Truncate(size);
  }

 private:
  void Add(std::string entry) {
    std::lock_guard lock(log_->mu);
    log_->entries.push_back(std::move(entry));
  }
  std::shared_ptr<Log> log_;
  Status answer_;
};

// A layer on `data` and the index file of `disks`.
std::unique_ptr<RwLayer> CreateOn(std::unique_ptr<RandomRWFile> data, const RwDisks& disks, uint64_t vsize) {
  auto created = CreateRwLayer(std::move(data), disks.IndexFile(), Opts(vsize));
  EXPECT_TRUE(created.ok()) << created.status().ToString();
  return created.ok() ? std::move(created).value() : nullptr;
}

// A Sync's data-file sync does not hold the writers: a write completes while it waits, and is
// durable only after a later Sync (it was not part of the first one).
TEST(RwLayer, WritesGoOnWhileASyncWaitsForTheDisk) {
  RwDisks disks;
  auto gate = std::make_shared<std::atomic<int>>(0);
  std::unique_ptr<RwLayer> layer = CreateOn(std::make_unique<GatedSyncFile>(disks.DataFile(), gate), disks, 1 << 20);
  ASSERT_NE(layer, nullptr);
  const std::vector<uint8_t> a(4096, 0xaa), b(4096, 0xbb);
  ASSERT_TRUE(layer->Write(0, a).ok());
  gate->store(1);
  Status synced;
  std::thread syncer([&] { synced = layer->Sync(); });
  while (gate->load() != 2) std::this_thread::yield();
  ASSERT_TRUE(layer->Write(4096, b).ok());  // would deadlock if the sync held the writers
  std::vector<uint8_t> got(8192);
  ASSERT_TRUE(layer->Read(0, got).ok());
  EXPECT_TRUE(std::equal(b.begin(), b.end(), got.begin() + 4096));
  gate->store(3);
  syncer.join();
  ASSERT_TRUE(synced.ok()) << synced.ToString();
  // The index file now holds the first write only; a second Sync adds the other.
  EXPECT_EQ(MustOpenRw(disks)->Segments().size(), 1u);
  ASSERT_TRUE(layer->Sync().ok());
  EXPECT_EQ(MustOpenRw(disks)->Segments().size(), 2u);
}

// The sync that 65,536 pending records start runs in the background: the write that starts it
// returns while the data file's sync is stuck, and so do the writes after it; once the disk
// answers, the records are in the index file without any Sync() of the caller's before that.
TEST(RwLayer, ManyPendingRecordsAreSyncedWithoutTheWriterWaiting) {
  RwDisks disks;
  auto gate = std::make_shared<std::atomic<int>>(0);
  std::unique_ptr<RwLayer> layer = CreateOn(std::make_unique<GatedSyncFile>(disks.DataFile(), gate), disks, 128 << 20);
  ASSERT_NE(layer, nullptr);
  gate->store(1);  // armed after the create, which syncs the headers
  const std::vector<uint8_t> sector(512, 0x5a);
  constexpr uint64_t kRecords = 64 * 1024;
  for (uint64_t i = 0; i < kRecords; ++i) ASSERT_TRUE(layer->Write(i * 1024, sector).ok());
  while (gate->load() != 2) std::this_thread::yield();  // the background sync waits for the disk
  ASSERT_TRUE(layer->Write(kRecords * 1024, sector).ok());  // would deadlock if it waited too
  gate->store(3);
  // Sync() waits for the background sync, which wrote the first kRecords records; it adds the last.
  ASSERT_TRUE(layer->Sync().ok());
  EXPECT_EQ(MustOpenRw(disks)->Segments().size(), kRecords + 1);
}

// The background thread reserves up to 64 MiB past the data's end once a write leaves less
// than 32 MiB reserved (the exact offsets show that nothing else was reserved in between); the
// seal frees what is left past the end, once.
TEST(RwLayer, StorageAheadOfTheDataIsReservedAndTheSealFreesTheRest) {
  RwDisks disks;
  auto log = std::make_shared<ReserveLogFile::Log>();
  auto layer = CreateOn(std::make_unique<ReserveLogFile>(disks.DataFile(), log, Status::OK()), disks, 256 << 20);
  ASSERT_NE(layer, nullptr);
  log->Clear();  // the create wrote the header (a Truncate); nothing is reserved before a write
  constexpr uint64_t kMiB = 1 << 20;
  const std::vector<uint8_t> piece = MakeData(1, 4 * kMiB);
  ASSERT_TRUE(layer->Write(0, piece).ok());  // data ends at 4096 + 4 MiB
  EXPECT_EQ(log->Wait(1), (std::vector<std::string>{"R " + std::to_string(4 * kMiB + 4096) + " " +
                                                     std::to_string(64 * kMiB)}));
  // Reserved to 68 MiB + 4096: the writes up to a data end of 36 MiB + 4096 leave 32 MiB.
  for (int i = 1; i < 10; i++) ASSERT_TRUE(layer->Write(i * 4 * kMiB, piece).ok());  // to 40 MiB + 4096
  EXPECT_EQ(log->Wait(2).back(), "R " + std::to_string(68 * kMiB + 4096) + " " + std::to_string(36 * kMiB));
  ASSERT_TRUE(layer->Seal().ok());
  const uint64_t sealed_size = disks.data->bytes.size();
  const std::vector<std::string> entries = log->Get();
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries.back(), "T " + std::to_string(sealed_size));
  layer.reset();  // closing a sealed layer has nothing left to free
  EXPECT_EQ(log->Get(), entries);
  EXPECT_EQ(disks.data->bytes.size(), sealed_size);
}

// Closing frees the reservation too; the bytes and the size are those written.
TEST(RwLayer, ClosingFreesTheReservationAndKeepsEveryByte) {
  RwDisks disks;
  auto log = std::make_shared<ReserveLogFile::Log>();
  auto layer = CreateOn(std::make_unique<ReserveLogFile>(disks.DataFile(), log, Status::OK()), disks, 1 << 20);
  ASSERT_NE(layer, nullptr);
  log->Clear();
  const std::vector<uint8_t> data = MakeData(2, 8192);
  ASSERT_TRUE(layer->Write(4096, data).ok());
  const std::string end = std::to_string(kHeaderSize + 8192);
  EXPECT_EQ(log->Wait(1), (std::vector<std::string>{"R " + end + " 67108864"}));
  layer.reset();
  EXPECT_EQ(log->Get(), (std::vector<std::string>{"R " + end + " 67108864", "T " + end}));
  auto reopened = MustOpenRw(disks);
  ASSERT_NE(reopened, nullptr);
  std::vector<uint8_t> got(8192);
  ASSERT_TRUE(reopened->Read(4096, got).ok());
  EXPECT_EQ(got, data);
}

// A file that cannot reserve (or a full disk) is asked once; writes go on and nothing is freed.
TEST(RwLayer, AFailedReservationTurnsReservingOff) {
  RwDisks disks;
  auto log = std::make_shared<ReserveLogFile::Log>();
  auto layer = CreateOn(std::make_unique<ReserveLogFile>(disks.DataFile(), log, Status::NoSpace("full")), disks,
                        256 << 20);
  ASSERT_NE(layer, nullptr);
  log->Clear();
  const std::vector<uint8_t> piece = MakeData(3, 4 << 20);
  ASSERT_TRUE(layer->Write(0, piece).ok());
  ASSERT_EQ(log->Wait(1).size(), 1u);
  for (int i = 1; i < 20; i++) ASSERT_TRUE(layer->Write(i * (4 << 20), piece).ok());
  layer.reset();  // joins the background thread: whatever it was asked is done
  EXPECT_EQ(log->Get(), (std::vector<std::string>{"R " + std::to_string(kHeaderSize + (4 << 20)) + " 67108864"}));
  EXPECT_EQ(MustOpenRw(disks)->Segments().size(), 20u);
}

TEST(RwLayer, NewHeadersMatchTheReferenceBytes) {
  RwDisks disks;
  CreateOptions options = Opts(64 << 20, "00000000-0000-4000-8000-0000000000a1", kU0);
  auto layer = CreateRwLayer(disks.DataFile(), disks.IndexFile(), options);
  ASSERT_TRUE(layer.ok()) << layer.status().ToString();
  RwDisks golden = Layer1RwCopy();
  ASSERT_EQ(disks.data->bytes.size(), kHeaderSize);
  ASSERT_EQ(disks.index->bytes.size(), kHeaderSize);
  EXPECT_TRUE(std::equal(disks.data->bytes.begin(), disks.data->bytes.end(), golden.data->bytes.begin()));
  EXPECT_TRUE(std::equal(disks.index->bytes.begin(), disks.index->bytes.end(), golden.index->bytes.begin()));
  EXPECT_EQ((*layer)->meta().uuid, kR1);
  EXPECT_EQ((*layer)->meta().parent_uuid, kU0);
}

TEST(RwLayer, CreateRejectsBadOptions) {
  RwDisks disks;
  EXPECT_FALSE(CreateRwLayer(disks.DataFile(), disks.IndexFile(), Opts(0)).ok());
  EXPECT_FALSE(CreateRwLayer(disks.DataFile(), disks.IndexFile(), Opts(1000)).ok());
  EXPECT_FALSE(CreateRwLayer(disks.DataFile(), disks.IndexFile(), Opts(4096, "nope")).ok());
}

TEST(RwLayer, CreateGivesARandomUuid) {
  RwDisks disks;
  auto layer = MustCreateRw(disks, kVsize);
  EXPECT_EQ(layer->meta().uuid.size(), 36u);
  EXPECT_EQ(layer->meta().parent_uuid, "");
  EXPECT_EQ(layer->VirtualSize(), kVsize);
}

TEST(RwLayer, WriteOverwriteDiscardReadBack) {
  Model m(kVsize);
  m.Write(0, 4096, 1);
  m.Write(1 << 20, 64 << 10, 2);
  m.Write((1 << 20) + 4096, 512, 3);        // inside the previous write
  m.Write((1 << 20) - 1024, 2048, 4);       // over its head
  m.Discard((1 << 20) + 8192, 16384);       // a hole in the middle
  m.Write((1 << 20) + 10240, 1536, 5);      // data inside the hole
  m.Write(kVsize - 512, 512, 6);            // last sector
  m.ExpectContent(*m.layer);
  // The data file keeps every written byte (garbage included): 4096 + all writes.
  EXPECT_EQ(m.disks.data->bytes.size(), kHeaderSize + 4096 + (64 << 10) + 512 + 2048 + 1536 + 512);
  EXPECT_EQ(m.records(), 7u);
}

TEST(RwLayer, UnalignedReadsSeeTheSameBytes) {
  Model m;
  m.Write(4096, 8192, 7);
  m.Discard(6144, 1024);
  for (auto [offset, n] : std::vector<std::pair<uint64_t, size_t>>{{4095, 3}, {4097, 1}, {6100, 200}, {1, 12287}}) {
    std::vector<uint8_t> got(n);
    ASSERT_TRUE(m.layer->Read(offset, got).ok());
    EXPECT_TRUE(std::equal(got.begin(), got.end(), m.flat.begin() + offset)) << offset << "+" << n;
  }
}

TEST(RwLayer, RejectsUnalignedAndOutOfRangeWrites) {
  Model m(kVsize);
  std::vector<uint8_t> data(512);
  EXPECT_EQ(m.layer->Write(100, data).code(), Code::kInvalidArgument);
  EXPECT_EQ(m.layer->Write(0, std::span<const uint8_t>(data.data(), 100)).code(), Code::kInvalidArgument);
  EXPECT_EQ(m.layer->Write(kVsize, data).code(), Code::kOutOfRange);
  EXPECT_EQ(m.layer->Discard(kVsize - 512, 1024).code(), Code::kOutOfRange);
  EXPECT_EQ(m.layer->Discard(1, 512).code(), Code::kInvalidArgument);
  std::vector<uint8_t> buf(2);
  EXPECT_EQ(m.layer->Read(kVsize - 1, buf).code(), Code::kOutOfRange);
  EXPECT_EQ(m.records(), 0u);
}

TEST(RwLayer, LargeWritesSplitAt4MiB) {
  Model m(kVsize);
  m.Write(0, 9 << 20, 8);
  ASSERT_EQ(m.records(), 3u);
  std::vector<Segment> segments = m.layer->Segments();
  ASSERT_EQ(segments.size(), 3u);
  EXPECT_EQ(segments[0], (Segment{0, 8192, 8}));
  EXPECT_EQ(segments[1], (Segment{8192, 8192, 8 + 8192}));
  EXPECT_EQ(segments[2], (Segment{16384, 2048, 8 + 16384}));
  m.ExpectContent(*m.layer);
}

TEST(RwLayer, LongDiscardSplitsInto16383SectorRecords) {
  Model m(kVsize);
  m.Write(0, 4096, 9);
  m.Discard(4096, 10 << 20);
  ASSERT_EQ(m.records(), 3u);
  const uint8_t* rec = &m.disks.index->bytes[kHeaderSize + kSegmentBytes];
  EXPECT_EQ(DecodeSegment(rec), (Segment{8, 16383, 16, true}));
  EXPECT_EQ(DecodeSegment(rec + kSegmentBytes), (Segment{8 + 16383, 20480 - 16383, 16, true}));
  m.ExpectContent(*m.layer);
}

TEST(RwLayer, ReopenReplaysToTheSameState) {
  Model m;
  for (int i = 0; i < 200; i++) {
    uint64_t offset = (static_cast<uint64_t>(i) * 7919 % 4000) * 512;
    if (i % 7 == 3) {
      m.Discard(offset, 512 * (1 + i % 40));
    } else {
      m.Write(offset, 512 * (1 + i % 17), 100 + i);
    }
  }
  std::vector<Segment> before = m.layer->Segments();
  m.layer.reset();
  auto reopened = MustOpenRw(m.disks);
  ASSERT_NE(reopened, nullptr);
  EXPECT_EQ(reopened->Segments(), before);
  m.ExpectContent(*reopened);
  // And it keeps working: a write after reopen appends after the old data.
  m.layer = std::move(reopened);
  m.Write(512, 1024, 999);
  m.ExpectContent(*m.layer);
  m.layer.reset();
  m.ExpectContent(*MustOpenRw(m.disks));
}

TEST(RwLayer, TornTrailingRecordIsIgnored) {
  for (size_t cut = 1; cut < kSegmentBytes; cut++) {
    Model m;
    m.Write(0, 4096, 1);
    std::vector<uint8_t> flat_before = m.flat;
    std::vector<Segment> before = m.layer->Segments();
    m.Write(2048, 4096, 2);  // overwrites part of the first write
    m.layer.reset();
    m.disks.index->bytes.resize(m.disks.index->bytes.size() - cut);  // torn last record
    m.flat = flat_before;
    auto reopened = MustOpenRw(m.disks);
    ASSERT_NE(reopened, nullptr) << "cut " << cut;
    EXPECT_EQ(reopened->Segments(), before) << "cut " << cut;
    m.ExpectContent(*reopened);
    // The next record overwrites the torn bytes and lands on a record boundary.
    m.layer = std::move(reopened);
    m.Write(8192, 512, 3);
    ASSERT_TRUE(m.layer->Sync().ok());
    EXPECT_EQ(m.disks.index->bytes.size(), kHeaderSize + 2 * kSegmentBytes);
    m.layer.reset();
    m.ExpectContent(*MustOpenRw(m.disks));
  }
}

// A RW layer on fault-injecting files; `data`/`index` stay usable after the layer takes them.
struct FaultyRw {
  RwDisks disks;
  FaultInjectionFile* data = nullptr;
  FaultInjectionFile* index = nullptr;
  std::unique_ptr<RwLayer> layer;
  FaultyRw() {
    data = new FaultInjectionFile(disks.DataFile());
    index = new FaultInjectionFile(disks.IndexFile());
    auto created = CreateRwLayer(std::unique_ptr<RandomRWFile>(data), std::unique_ptr<RandomRWFile>(index),
                                 Opts(kVsize));
    EXPECT_TRUE(created.ok()) << created.status().ToString();
    if (created.ok()) layer = std::move(created).value();
  }
};

// Simulates a power cut: the files lose their unsynced writes and what is left is "the disk". The
// layer object is then destroyed (its destructor may still write), and the disk is put back as it
// was at the cut, as if the process had died.
void PowerCut(FaultyRw& rw, uint64_t keep_bytes_of_last_index_write = 0) {
  ASSERT_TRUE(rw.index->DropUnsyncedWrites(keep_bytes_of_last_index_write).ok());
  ASSERT_TRUE(rw.data->DropUnsyncedWrites().ok());
  std::vector<uint8_t> data_disk = rw.disks.data->bytes;
  std::vector<uint8_t> index_disk = rw.disks.index->bytes;
  rw.layer.reset();
  rw.disks.data->bytes = data_disk;
  rw.disks.index->bytes = index_disk;
}

TEST(RwLayer, PowerCutKeepsSyncedWritesAndIgnoresATornRecord) {
  for (uint64_t keep = 1; keep < kSegmentBytes; keep++) {
    FaultyRw rw;
    ASSERT_NE(rw.layer, nullptr);
    std::vector<uint8_t> a = MakeData(1, 8192);
    ASSERT_TRUE(rw.layer->Write(0, a).ok());
    ASSERT_TRUE(rw.layer->Sync().ok());
    std::vector<Segment> synced = rw.layer->Segments();
    ASSERT_TRUE(rw.layer->Write(4096, MakeData(2, 4096)).ok());
    // The next Sync writes the record but the power goes before the index file is synced.
    rw.index->FailNthSync(1);
    ASSERT_FALSE(rw.layer->Sync().ok());
    PowerCut(rw, keep);  // `keep` bytes of the record survive
    ASSERT_EQ(rw.disks.index->bytes.size(), kHeaderSize + kSegmentBytes + keep);
    auto reopened = OpenRwLayer(rw.disks.DataFile(), rw.disks.IndexFile());
    ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
    EXPECT_EQ((*reopened)->Segments(), synced);
    std::vector<uint8_t> got(8192);
    ASSERT_TRUE((*reopened)->Read(0, got).ok());
    EXPECT_EQ(got, a);
  }
}

TEST(RwLayer, UnsyncedWritesLeaveNoRecordBehind) {
  // Records reach the index file only after their data is synced, so a power cut before Sync()
  // loses the write cleanly: the layer reopens as it was.
  FaultyRw rw;
  ASSERT_NE(rw.layer, nullptr);
  ASSERT_TRUE(rw.layer->Write(0, MakeData(1, 8192)).ok());
  EXPECT_EQ(rw.disks.index->bytes.size(), kHeaderSize);
  PowerCut(rw);
  auto reopened = OpenRwLayer(rw.disks.DataFile(), rw.disks.IndexFile());
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  EXPECT_TRUE((*reopened)->Segments().empty());
}

TEST(RwLayer, ZeroFilledIndexTailIsIgnored) {
  // A crash while the index file grew can leave its new blocks as zeros.
  Model m;
  m.Write(0, 4096, 1);
  std::vector<Segment> before = m.layer->Segments();
  m.layer.reset();
  m.disks.index->bytes.resize(m.disks.index->bytes.size() + 3 * kSegmentBytes + 5, 0);
  auto reopened = MustOpenRw(m.disks);
  ASSERT_NE(reopened, nullptr);
  EXPECT_EQ(reopened->Segments(), before);
  m.layer = std::move(reopened);
  m.Write(8192, 512, 2);  // overwrites the zero tail
  EXPECT_EQ(m.records(), 2u);
  m.layer.reset();
  m.ExpectContent(*MustOpenRw(m.disks));
}

TEST(RwLayer, ZeroRecordFollowedByARealOneIsCorruption) {
  Model m;
  m.Write(0, 4096, 1);
  m.Write(8192, 4096, 2);
  m.layer.reset();
  std::fill_n(m.disks.index->bytes.begin() + kHeaderSize, kSegmentBytes, 0);
  auto reopened = OpenRwLayer(m.disks.DataFile(), m.disks.IndexFile());
  EXPECT_TRUE(reopened.status().IsCorruption()) << reopened.status().ToString();
}

TEST(RwLayer, DurableRecordWhoseDataWasLostIsRefused) {
  // The ordering Sync() guarantees (data before index) broken by hand: the index record reached
  // the disk, its data did not. Opening must refuse rather than read the missing bytes.
  FaultyRw rw;
  ASSERT_NE(rw.layer, nullptr);
  ASSERT_TRUE(rw.layer->Write(0, MakeData(1, 8192)).ok());
  ASSERT_TRUE(rw.layer->Sync().ok());
  rw.layer.reset();
  rw.disks.data->bytes.resize(kHeaderSize + 4096);
  auto reopened = OpenRwLayer(rw.disks.DataFile(), rw.disks.IndexFile());
  EXPECT_TRUE(reopened.status().IsCorruption()) << reopened.status().ToString();
}

TEST(RwLayer, RecordPastDataEofIsCorruption) {
  Model m;
  m.Write(0, 8192, 1);
  m.layer.reset();
  m.disks.data->bytes.resize(kHeaderSize + 4096);
  auto reopened = OpenRwLayer(m.disks.DataFile(), m.disks.IndexFile());
  ASSERT_TRUE(reopened.status().IsCorruption()) << reopened.status().ToString();
  EXPECT_NE(reopened.status().message().find("index: record 0"), std::string::npos)
      << reopened.status().ToString();
}

TEST(RwLayer, RecordBeforeDataAreaAndZeroLengthAreCorruption) {
  for (Segment bad : {Segment{0, 8, 7}, Segment{0, 0, 8}, Segment{0, 1, 100, true}}) {
    Model m;
    m.Write(0, 4096, 1);
    m.layer.reset();
    EncodeSegment(bad, &m.disks.index->bytes[kHeaderSize]);
    auto reopened = OpenRwLayer(m.disks.DataFile(), m.disks.IndexFile());
    EXPECT_TRUE(reopened.status().IsCorruption()) << DescribeSegment(bad);
  }
}

TEST(RwLayer, PaddingRecordsAndTagsAreSkipped) {
  Model m;
  m.Write(0, 4096, 1);
  m.layer.reset();
  auto& index = m.disks.index->bytes;
  index[kHeaderSize + 15] = 7;  // a tag
  uint8_t pad[kSegmentBytes];
  EncodeSegment(PaddingSegment(), pad);
  index.insert(index.end(), pad, pad + kSegmentBytes);
  auto reopened = MustOpenRw(m.disks);
  ASSERT_NE(reopened, nullptr);
  EXPECT_EQ(reopened->Segments(), (std::vector<Segment>{{0, 8, 8}}));
}

TEST(RwLayer, BadIndexHeaderIsCorruption) {
  Model m;
  m.layer.reset();
  auto poke = [&](size_t at, uint64_t v, bool wide) {
    RwDisks copy;
    copy.data->bytes = m.disks.data->bytes;
    copy.index->bytes = m.disks.index->bytes;
    if (wide) {
      EncodeLE64(&copy.index->bytes[at], v);
    } else {
      EncodeLE32(&copy.index->bytes[at], static_cast<uint32_t>(v));
    }
    return OpenRwLayer(copy.DataFile(), copy.IndexFile()).status();
  };
  EXPECT_TRUE(poke(kOffFlags, 0x03, false).IsCorruption());        // a data header
  EXPECT_TRUE(poke(kOffFlags, 0x05, false).IsCorruption());        // sealed
  EXPECT_TRUE(poke(kOffIndexOffset, 8192, true).IsCorruption());
  EXPECT_TRUE(poke(kOffMagic0, 0, true).IsCorruption());
  m.disks.index->bytes.resize(100);
  EXPECT_TRUE(OpenRwLayer(m.disks.DataFile(), m.disks.IndexFile()).status().IsCorruption());
}

TEST(RwLayer, OpensTheGoldenRwPairLikeTheSealedIndex) {
  RwDisks disks = Layer1RwCopy();
  auto layer = MustOpenRw(disks);
  ASSERT_NE(layer, nullptr);
  auto sealed = ReadLayerInfo(*Vector("layer1.sealed"));
  ASSERT_TRUE(sealed.ok());
  EXPECT_EQ(layer->Segments(), sealed->segments);
  EXPECT_EQ(layer->VirtualSize(), 64u << 20);
  EXPECT_EQ(layer->meta().uuid, kR1);
  EXPECT_EQ(layer->meta().parent_uuid, kU0);
}

TEST(RwLayer, SealMakesAReadOnlyBlob) {
  Model m(kVsize);
  m.Write(4096, 8192, 1);
  m.Discard(1 << 20, 1 << 20);
  m.Write(3 << 20, 4096, 2);
  std::vector<Segment> live = m.layer->Segments();
  const uint64_t data_eof = m.disks.data->bytes.size();
  ASSERT_TRUE(m.layer->Seal().ok());
  EXPECT_EQ(m.layer->Write(0, MakeData(3, 512)).code(), Code::kInvalidArgument);
  EXPECT_EQ(m.layer->Seal().code(), Code::kInvalidArgument);
  m.ExpectContent(*m.layer);  // still readable
  // Reopening it as a writable layer is refused: appending would bury the index and trailer.
  auto reopened = OpenRwLayer(m.disks.DataFile(), m.disks.IndexFile());
  EXPECT_EQ(reopened.status().code(), Code::kInvalidArgument) << reopened.status().ToString();
  EXPECT_NE(reopened.status().message().find("sealed"), std::string::npos);

  auto blob = NewMemReadableFile("sealed", m.disks.data->bytes);
  auto info = ReadLayerInfo(*blob);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->header.flags, 0x03u);
  EXPECT_EQ(info->trailer.flags, 0x06u);
  EXPECT_EQ(info->trailer.index_offset, data_eof);
  EXPECT_EQ(info->trailer.index_size, live.size());
  EXPECT_EQ(info->segments, live);
  EXPECT_EQ(info->trailer.uuid, m.layer->meta().uuid);
  // Index rounded up to 512 bytes with deterministic padding entries.
  EXPECT_EQ(m.disks.data->bytes.size(), data_eof + 512 + kHeaderSize);
  Segment pad = DecodeSegment(&m.disks.data->bytes[data_eof + live.size() * kSegmentBytes]);
  EXPECT_TRUE(IsPadding(pad));

  std::shared_ptr<const ReadableFile> shared = std::move(blob);
  auto image = MustOpenImage({shared});
  ASSERT_NE(image, nullptr);
  std::vector<uint8_t> got(m.flat.size());
  ASSERT_TRUE(image->ReadAt(0, got).ok());
  EXPECT_TRUE(got == m.flat);
}

TEST(RwLayer, ConcurrentReadersSeeStableRegionsWhileWriting) {
  Model m;
  std::vector<uint8_t> stable = MakeData(77, 64 << 10);
  ASSERT_TRUE(m.layer->Write(0, stable).ok());
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  auto reader = [&] {
    std::vector<uint8_t> buf(64 << 10);
    while (!stop.load()) {
      if (!m.layer->Read(0, buf).ok() || buf != stable) bad++;
    }
  };
  std::thread r1(reader), r2(reader);
  int failed_writes = 0;
  for (int i = 0; i < 300; i++) {
    failed_writes += !m.layer->Write((1 << 20) + (i % 64) * 4096, MakeData(i, 4096)).ok();
    if (i % 50 == 0) failed_writes += !m.layer->Sync().ok();
  }
  stop = true;
  r1.join();
  r2.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(failed_writes, 0);
}

}  // namespace
}  // namespace ovbd::lsmt

namespace ovbd::lsmt {
namespace {

using namespace ovbd::lsmt::testing;

TEST(RwLayer, DataAndIndexOfDifferentLayersAreRefused) {
  RwDisks a, b;
  ASSERT_NE(MustCreateRw(a, 1 << 20), nullptr);
  ASSERT_NE(MustCreateRw(b, 1 << 20), nullptr);
  auto mixed = OpenRwLayer(a.DataFile(), b.IndexFile());
  EXPECT_TRUE(mixed.status().IsCorruption()) << mixed.status().ToString();
  EXPECT_NE(mixed.status().message().find("do not belong together"), std::string::npos);
}

// A uuid that does not parse is the null uuid (lsmt.md §2), also when the two headers are
// compared (§8): garbage in both opens; garbage against a real uuid is a mismatch.
TEST(RwLayer, UnparsableUuidsCountAsNullWhenComparingTheHeaders) {
  RwDisks disks;
  ASSERT_NE(MustCreateRw(disks, 1 << 20), nullptr);
  disks.data->bytes[kOffUuid + 8] = 'Z';
  auto one_side = OpenRwLayer(disks.DataFile(), disks.IndexFile());
  EXPECT_EQ(one_side.status().code(), Code::kCorruption) << one_side.status().ToString();
  disks.index->bytes[kOffUuid] = 0xFF;
  auto both = OpenRwLayer(disks.DataFile(), disks.IndexFile());
  ASSERT_TRUE(both.ok()) << both.status().ToString();
  EXPECT_EQ((*both)->meta().uuid, "");
}

// lsmt.md §3 in a writable layer: bit 4 (SPARSE_RW, overlaybd's one-file layer whose index is the
// file's allocation map) and any bit above 5 are NotSupported in either header; bits 3 and 5 are
// ignored.
TEST(RwLayer, FlagBitsBeyondTheFirstThree) {
  RwDisks disks;
  ASSERT_NE(MustCreateRw(disks, 1 << 20), nullptr);
  const RwDisks pristine = disks;
  for (bool index : {false, true}) {
    for (uint32_t bit : {3u, 4u, 5u, 6u, 31u}) {
      SCOPED_TRACE((index ? "index header bit " : "data header bit ") + std::to_string(bit));
      RwDisks copy;
      copy.data->bytes = pristine.data->bytes;
      copy.index->bytes = pristine.index->bytes;
      std::vector<uint8_t>& header = index ? copy.index->bytes : copy.data->bytes;
      EncodeLE32(&header[kOffFlags], DecodeLE32(&header[kOffFlags]) | (1u << bit));
      auto opened = OpenRwLayer(copy.DataFile(), copy.IndexFile());
      if (bit == 3 || bit == 5) {
        EXPECT_TRUE(opened.ok()) << opened.status().ToString();
      } else {
        EXPECT_EQ(opened.status().code(), Code::kNotSupported) << opened.status().ToString();
      }
    }
  }
}

// The virtual_size rule of lsmt.md §2 holds when a writable layer is reopened, too.
TEST(RwLayer, ReopenedVirtualSizeMustBeWholeSectors) {
  for (bool index : {false, true}) {
    RwDisks disks;
    ASSERT_NE(MustCreateRw(disks, 1 << 20), nullptr);
    EncodeLE64(&(index ? disks.index : disks.data)->bytes[kOffVirtualSize], (1 << 20) + 1);
    auto opened = OpenRwLayer(disks.DataFile(), disks.IndexFile());
    EXPECT_EQ(opened.status().code(), Code::kNotSupported) << index << ": " << opened.status().ToString();
  }
}

TEST(RwLayer, UnknownFormatVersionIsNotSupported) {
  RwDisks disks;
  ASSERT_NE(MustCreateRw(disks, 1 << 20), nullptr);
  disks.data->bytes[132] = 2;  // version
  auto opened = OpenRwLayer(disks.DataFile(), disks.IndexFile());
  EXPECT_EQ(opened.status().code(), Code::kNotSupported) << opened.status().ToString();
}

}  // namespace
}  // namespace ovbd::lsmt
