// The writable layer (notes §3): data file + index file, both appended to only.
//
//   Write(off, bytes):  data file  += bytes (at data EOF, 512-aligned)      one record per
//                       index file += {off, len, moffset = old EOF, 0}      4 MiB piece
//   Discard(off, len):  index file += {off, len<=16383, moffset = EOF, zeroed} per piece
//   Open:               replay the index file's records in order (last write wins)
//
// Locking: write_mu_ serialises everything that appends (Write, Discard, Seal); index_mu_
// (shared) guards only the in-memory index, so readers never wait for a writer's file I/O. Data
// bytes are never rewritten once a record points at them, so a reader may read them unlocked.
// sync_mu_ serialises syncs (taken before write_mu_): a Sync takes the pending records under
// write_mu_ and then syncs the data file and writes the records WITHOUT it, so writers go on
// while the disk works; what they append meanwhile goes to the next Sync.
//
// Durability order: records are held in memory (pending_) and reach the index file only in
// Sync(), after the data file has been synced. So every record in the index file points at
// durable data, and after a crash the layer reopens with exactly the writes of the last completed
// Sync() (plus possibly some of an interrupted one). A torn trailing record, or a zero-filled tail
// left by a crash while the index file grew, is ignored on open. Reads see pending writes at once
// (the in-memory index has them). The destructor syncs what is pending; a very long run of writes
// without Sync() syncs by itself every kMaxPendingRecords records, in a background thread so that
// no writer waits for the disk. The thread starts at the first write that asks it for work (the
// first write of the layer, for a reservation below), so a layer opened but never written has
// none: a process that opens a layer and then forks (attach) serves it in the child. A
// background sync that fails keeps its records pending; the next Sync() retries them and reports
// the error, and until then no other background sync is tried.
//
// Storage ahead of the data file's end is reserved (RandomRWFile::Reserve, beyond the file's
// size, which it does not change) so that the file system's writeback allocates nothing while
// writers append: on ext4 an allocating writeback holds the inode's block map while it waits for
// bitmap reads queued behind its own writes, and every appending writer waits for it (20-60 ms
// under a sync of a few hundred MiB; docs/performance.md). The reservation itself allocates, and
// holds the inode's lock meanwhile, so it is not done by a writer or while a sync floods the
// disk: once less than half of kReserveChunk is left, a writer asks the background thread, which
// reserves up to kReserveChunk past the end while holding sync_mu_ (no Sync of this layer runs
// then), before any sync it was asked for. What is reserved past the end is freed when the layer
// is sealed or closed, by the process that reserved it (a crash leaves it; the next open writes
// into it). Storage that cannot reserve, or a failed reservation (a full disk), turns reserving
// off for the layer: the writes themselves report real errors.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/checked.h"
#include "lsmt/format.h"
#include "lsmt/live_index.h"
#include "lsmt/segment_read.h"
#include "ovbd/lsmt.h"

namespace ovbd::lsmt {

std::vector<Segment> RwLayer::Lookup(uint64_t offset, uint64_t length) const {
  std::vector<Segment> out;
  for (const Segment& s : Segments()) {
    if (s.end() > offset && s.offset < offset + length) out.push_back(ClipSegment(s, offset, offset + length));
  }
  return out;
}

namespace {

constexpr size_t kReplayChunkRecords = 64 * 1024;  // 1 MiB of records per read
constexpr size_t kMaxPendingRecords = 64 * 1024;   // records held before an implicit Sync
constexpr uint64_t kReserveChunk = 64ull << 20;     // reserved at a time, when half of it is left

struct OpenState {
  HeaderTrailer data_meta;
  HeaderTrailer index_meta;
  uint64_t data_eof = 0;   // bytes, 512-aligned
  uint64_t index_eof = 0;  // bytes: 4096 + 16 * whole records
  LiveIndex live;
};

class RwLayerImpl final : public RwLayer {
 public:
  RwLayerImpl(std::unique_ptr<RandomRWFile> data, std::unique_ptr<RandomRWFile> index, OpenState state)
      : data_(std::move(data)),
        index_file_(std::move(index)),
        data_meta_(std::move(state.data_meta)),
        index_meta_(std::move(state.index_meta)),
        virtual_size_(index_meta_.virtual_size),
        live_(std::move(state.live)),
        data_eof_(state.data_eof),
        index_eof_(state.index_eof) {}
  ~RwLayerImpl() override {
    StopSyncer();
    std::lock_guard sync(sync_mu_);
    std::lock_guard lock(write_mu_);
    (void)SyncLocked();  // best effort: a caller that needs the outcome calls Sync() first
    ReleaseReserved();
  }

  Status Write(uint64_t offset, std::span<const uint8_t> data) override;
  Status Discard(uint64_t offset, uint64_t length) override;
  Status Read(uint64_t offset, std::span<uint8_t> buf) const override;
  Status Sync() override;
  Status Seal() override;
  std::vector<Segment> Segments() const override;
  std::vector<Segment> Lookup(uint64_t offset, uint64_t length) const override;
  const HeaderTrailer& meta() const override { return data_meta_; }
  uint64_t VirtualSize() const override { return virtual_size_.load(std::memory_order_acquire); }
  Status Resize(uint64_t virtual_size) override;
  const ReadableFile& data_file() const override { return *data_; }

 private:
  Status CheckWritable(uint64_t offset, uint64_t length, const char* op) const;
  Status WritePiece(uint64_t offset, std::span<const uint8_t> piece);
  // Whether less than half of kReserveChunk is reserved past the data's end.
  bool WantsReserve() const;  // needs write_mu_
  void AskToReserve();
  void ReserveAhead();        // in the background thread; takes sync_mu_ and write_mu_
  void ReleaseReserved();     // needs sync_mu_ and write_mu_ (or no other thread)
  void WakeSyncer();          // needs syncer_mu_; starts the thread at its first use
  Status AppendRecord(const Segment& s);
  Status SyncLocked();  // needs sync_mu_ and write_mu_
  Status SyncHeld();    // needs sync_mu_ only
  // Writes the index file's tail up to `end` durably (a torn tail found at open is cut).
  Status SyncIndexFile(uint64_t end);
  // After a write or discard (write_mu_ released): an implicit Sync once many records are
  // pending, unless a Sync is running already.
  Status MaybeSync(bool many_pending);
  void SyncerLoop();
  void StopSyncer();

  std::unique_ptr<RandomRWFile> data_;
  std::unique_ptr<RandomRWFile> index_file_;
  HeaderTrailer data_meta_;   // written only by Resize, under write_mu_
  HeaderTrailer index_meta_;  // likewise
  std::atomic<uint64_t> virtual_size_;  // index_meta_.virtual_size, for readers without a lock

  std::mutex sync_mu_;
  std::mutex write_mu_;
  mutable std::shared_mutex index_mu_;
  LiveIndex live_;          // guarded by index_mu_ (written only with write_mu_ also held)
  uint64_t data_eof_;       // guarded by write_mu_
  uint64_t index_eof_;      // guarded by write_mu_: where the pending records go in the index file
  std::vector<uint8_t> pending_;  // guarded by write_mu_: encoded records not yet in the file
  bool index_unsynced_ = false;   // guarded by sync_mu_: records written but not yet synced
  bool sealed_ = false;     // guarded by write_mu_
  // Storage is reserved up to here; written under sync_mu_ and write_mu_ (read under either).
  uint64_t reserved_end_ = 0;
  std::atomic<bool> reserving_{true};  // off once a reservation failed

  // The background syncer (see the top of the file).
  std::mutex syncer_mu_;
  std::condition_variable syncer_cv_;
  std::thread syncer_;                 // guarded by syncer_mu_
  bool sync_wanted_ = false;           // guarded by syncer_mu_
  bool reserve_wanted_ = false;        // guarded by syncer_mu_
  bool syncer_stopping_ = false;       // guarded by syncer_mu_
  std::atomic<bool> background_failed_{false};  // a background sync failed; cleared by Sync()
};

Status RwLayerImpl::CheckWritable(uint64_t offset, uint64_t length, const char* op) const {
  if (sealed_) return Status::InvalidArgument(data_->Name() + ": " + op + " on a sealed layer");
  if (!IsAligned(offset, kSectorSize) || !IsAligned(length, kSectorSize)) {
    return Status::InvalidArgument(data_->Name() + ": " + op + " at " + std::to_string(offset) +
                                   " length " + std::to_string(length) + " is not 512-byte aligned");
  }
  // A layer whose header says 0 takes its size from the layers below (notes §3.7): then only
  // the format's own limit applies and the Image checks its size.
  uint64_t limit = VirtualSize() > 0 ? VirtualSize() : kMaxOffset * kSectorSize;
  if (!RangeWithin(offset, length, limit)) {
    return Status::OutOfRange(data_->Name() + ": " + op + " at " + std::to_string(offset) +
                              " length " + std::to_string(length) + " is past the virtual size " +
                              std::to_string(limit));
  }
  return Status::OK();
}

Status RwLayerImpl::AppendRecord(const Segment& s) {
  if ((index_eof_ - kHeaderSize + pending_.size()) / kSegmentBytes >= kMaxRwIndexRecords) {
    return Status::NoSpace(index_file_->Name() + ": the index holds the maximum of " +
                           std::to_string(kMaxRwIndexRecords) + " records");
  }
  uint8_t record[kSegmentBytes];
  EncodeSegment(s, record);
  pending_.insert(pending_.end(), record, record + kSegmentBytes);
  {
    std::unique_lock lock(index_mu_);
    live_.Insert(s);
  }
  return Status::OK();
}

void RwLayerImpl::WakeSyncer() {
  if (!syncer_.joinable()) syncer_ = std::thread([this] { SyncerLoop(); });
  syncer_cv_.notify_one();
}

Status RwLayerImpl::MaybeSync(bool many_pending) {
  if (!many_pending || background_failed_.load(std::memory_order_relaxed)) return Status::OK();
  std::lock_guard lock(syncer_mu_);
  if (syncer_stopping_) return Status::OK();
  sync_wanted_ = true;
  WakeSyncer();
  return Status::OK();
}

void RwLayerImpl::SyncerLoop() {
  std::unique_lock lock(syncer_mu_);
  for (;;) {
    syncer_cv_.wait(lock, [this] { return sync_wanted_ || reserve_wanted_ || syncer_stopping_; });
    if (syncer_stopping_) return;
    const bool sync = sync_wanted_, reserve = reserve_wanted_;
    sync_wanted_ = reserve_wanted_ = false;
    lock.unlock();
    if (reserve) ReserveAhead();  // first: while the disk is not busy with this layer's sync
    if (sync) {
      std::lock_guard hold(sync_mu_);
      if (!SyncHeld().ok()) background_failed_.store(true, std::memory_order_relaxed);
    }
    lock.lock();
  }
}

void RwLayerImpl::StopSyncer() {
  {
    std::lock_guard lock(syncer_mu_);
    syncer_stopping_ = true;
  }
  syncer_cv_.notify_one();
  if (syncer_.joinable()) syncer_.join();
}

Status RwLayerImpl::WritePiece(uint64_t offset, std::span<const uint8_t> piece) {
  Segment s{offset / kSectorSize, static_cast<uint32_t>(piece.size() / kSectorSize),
            data_eof_ / kSectorSize, false, 0};
  if (s.moffset + s.length > kMaxMOffset) {
    return Status::NoSpace(data_->Name() + ": data file is at the 2^55-sector moffset limit");
  }
  OVBD_RETURN_IF_ERROR(data_->WriteAt(data_eof_, piece).WithContext(data_->Name()));
  data_eof_ += piece.size();
  return AppendRecord(s);
}

bool RwLayerImpl::WantsReserve() const {
  return reserving_.load(std::memory_order_relaxed) && data_eof_ + kReserveChunk / 2 > reserved_end_;
}

void RwLayerImpl::AskToReserve() {
  std::lock_guard lock(syncer_mu_);
  if (syncer_stopping_) return;
  reserve_wanted_ = true;
  WakeSyncer();
}

void RwLayerImpl::ReserveAhead() {
  std::lock_guard sync(sync_mu_);
  uint64_t from = 0, to = 0;
  {
    std::lock_guard lock(write_mu_);
    if (sealed_ || !reserving_.load(std::memory_order_relaxed)) return;
    from = std::max(reserved_end_, data_eof_ / 4096 * 4096);
    to = data_eof_ + kReserveChunk;
  }
  if (to <= from) return;
  // Writers go on meanwhile (they append below `to`); only Seal, Resize and Sync wait.
  const bool reserved = data_->Reserve(from, to - from).ok();
  std::lock_guard lock(write_mu_);
  if (reserved) {
    reserved_end_ = to;
  } else {
    reserving_.store(false, std::memory_order_relaxed);
  }
}

// Only the process whose writes reserved the storage has reserved_end_ > 0, and its Size() is
// current: a process that opened the layer and forked (attach) never truncates the child's data.
void RwLayerImpl::ReleaseReserved() {
  if (reserved_end_ > data_->Size()) (void)data_->Truncate(data_->Size());  // best effort: no byte changes
  reserved_end_ = 0;
}

Status RwLayerImpl::Write(uint64_t offset, std::span<const uint8_t> data) {
  bool many_pending = false;
  bool reserve = false;
  {
    std::lock_guard lock(write_mu_);
    OVBD_RETURN_IF_ERROR(CheckWritable(offset, data.size(), "write"));
    for (uint64_t done = 0; done < data.size();) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(kMaxIoSize, data.size() - done));
      OVBD_RETURN_IF_ERROR(WritePiece(offset + done, data.subspan(done, n)));
      done += n;
    }
    many_pending = pending_.size() >= kMaxPendingRecords * kSegmentBytes;
    reserve = WantsReserve();
  }
  if (reserve) AskToReserve();
  return MaybeSync(many_pending);
}

Status RwLayerImpl::Discard(uint64_t offset, uint64_t length) {
  bool many_pending = false;
  {
    std::lock_guard lock(write_mu_);
    OVBD_RETURN_IF_ERROR(CheckWritable(offset, length, "discard"));
    uint64_t sector = offset / kSectorSize;
    const uint64_t end = (offset + length) / kSectorSize;
    while (sector < end) {
      uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(kMaxSegmentLength, end - sector));
      OVBD_RETURN_IF_ERROR(AppendRecord(Segment{sector, n, data_eof_ / kSectorSize, true, 0}));
      sector += n;
    }
    many_pending = pending_.size() >= kMaxPendingRecords * kSegmentBytes;
  }
  return MaybeSync(many_pending);
}

Status RwLayerImpl::Read(uint64_t offset, std::span<uint8_t> buf) const {
  uint64_t limit = VirtualSize() > 0 ? VirtualSize() : kMaxOffset * kSectorSize;
  if (!RangeWithin(offset, buf.size(), limit)) {
    return Status::OutOfRange(data_->Name() + ": read at " + std::to_string(offset) + " length " +
                              std::to_string(buf.size()) + " is past the virtual size");
  }
  SectorRange range = CoveringSectors(offset, buf.size());
  std::vector<Segment> segments = Lookup(range.offset, range.length);
  return FillFromSegments(segments, offset, buf,
                          [this](uint8_t, uint64_t at, std::span<uint8_t> out) {
                            return ReadZeroPadded(*data_, at, out);
                          });
}

Status RwLayerImpl::Sync() {
  std::lock_guard sync(sync_mu_);
  Status s = SyncHeld();
  if (s.ok()) background_failed_.store(false, std::memory_order_relaxed);
  return s;
}

// The records pending now point at data whose writes completed before they were taken, so the
// data file's sync (after taking them) makes that data durable before the records are written.
Status RwLayerImpl::SyncHeld() {
  std::vector<uint8_t> records;
  uint64_t at = 0;
  {
    std::lock_guard lock(write_mu_);
    if (sealed_) return SyncLocked();
    records.swap(pending_);
    at = index_eof_;
    index_eof_ += records.size();  // reserved: the next records go after these
  }
  Status s = data_->Sync().WithContext(data_->Name());
  if (s.ok() && !records.empty()) {
    s = index_file_->WriteAt(at, records).WithContext(index_file_->Name());
    if (s.ok()) index_unsynced_ = true;
  }
  if (s.ok()) s = SyncIndexFile(at + records.size());
  if (!s.ok()) {  // the records go back in front: the next Sync rewrites them at the same place
    std::lock_guard lock(write_mu_);
    pending_.insert(pending_.begin(), records.begin(), records.end());
    index_eof_ = at;
  }
  return s;
}

Status RwLayerImpl::SyncIndexFile(uint64_t end) {
  if (!index_unsynced_) return Status::OK();
  if (index_file_->Size() > end) {  // a torn or zero tail found at open, now overwritten
    OVBD_RETURN_IF_ERROR(index_file_->Truncate(end).WithContext(index_file_->Name()));
  }
  OVBD_RETURN_IF_ERROR(index_file_->Sync().WithContext(index_file_->Name()));
  index_unsynced_ = false;
  return Status::OK();
}

// Data first, then the records that point at it (see the top of the file). On failure the
// pending records stay and the next Sync rewrites them at the same place.
Status RwLayerImpl::SyncLocked() {
  OVBD_RETURN_IF_ERROR(data_->Sync().WithContext(data_->Name()));
  if (!pending_.empty()) {
    OVBD_RETURN_IF_ERROR(index_file_->WriteAt(index_eof_, pending_).WithContext(index_file_->Name()));
    index_eof_ += pending_.size();
    pending_.clear();
    index_unsynced_ = true;
  }
  return SyncIndexFile(index_eof_);
}

// Appends the sorted index (rounded up to 512 bytes with padding entries: deterministic, unlike
// the reference, which leaves heap garbage there) and a trailer whose index_size excludes the
// padding (notes §3.4).
Status RwLayerImpl::Seal() {
  std::lock_guard sync(sync_mu_);
  std::lock_guard lock(write_mu_);
  if (sealed_) return Status::InvalidArgument(data_->Name() + ": already sealed");
  OVBD_RETURN_IF_ERROR(SyncLocked());  // the index file stays a faithful log of the layer
  std::vector<Segment> segments = live_.All();
  std::vector<uint8_t> index(RoundUp(segments.size() * kSegmentBytes, kSectorSize));
  for (size_t i = 0; i < index.size() / kSegmentBytes; i++) {
    EncodeSegment(i < segments.size() ? segments[i] : PaddingSegment(), &index[i * kSegmentBytes]);
  }
  HeaderTrailer trailer = data_meta_;
  trailer.flags = kFlagsTrailer;
  trailer.index_offset = data_eof_;
  trailer.index_size = segments.size();
  OVBD_RETURN_IF_ERROR(data_->WriteAt(data_eof_, index).WithContext(data_->Name()));
  OVBD_RETURN_IF_ERROR(data_->WriteAt(data_eof_ + index.size(), EncodeHeaderTrailer(trailer))
                           .WithContext(data_->Name()));
  OVBD_RETURN_IF_ERROR(data_->Sync().WithContext(data_->Name()));
  sealed_ = true;
  ReleaseReserved();
  return Status::OK();
}

Status RwLayerImpl::Resize(uint64_t virtual_size) {
  std::lock_guard sync(sync_mu_);
  std::lock_guard lock(write_mu_);
  if (sealed_) return Status::InvalidArgument(data_->Name() + ": resize of a sealed layer");
  if (virtual_size == 0 || !IsAligned(virtual_size, kSectorSize) || virtual_size / kSectorSize > kMaxOffset) {
    return Status::InvalidArgument(data_->Name() + ": virtual size " + std::to_string(virtual_size) +
                                   " must be a positive multiple of 512 below 2^59 bytes");
  }
  HeaderTrailer data_meta = data_meta_;
  HeaderTrailer index_meta = index_meta_;
  data_meta.virtual_size = index_meta.virtual_size = virtual_size;
  OVBD_RETURN_IF_ERROR(SyncLocked());
  OVBD_RETURN_IF_ERROR(data_->WriteAt(0, EncodeHeaderTrailer(data_meta)).WithContext(data_->Name()));
  OVBD_RETURN_IF_ERROR(data_->Sync().WithContext(data_->Name()));
  OVBD_RETURN_IF_ERROR(index_file_->WriteAt(0, EncodeHeaderTrailer(index_meta)).WithContext(index_file_->Name()));
  OVBD_RETURN_IF_ERROR(index_file_->Sync().WithContext(index_file_->Name()));
  data_meta_ = data_meta;
  index_meta_ = index_meta;
  virtual_size_.store(virtual_size, std::memory_order_release);
  return Status::OK();
}

std::vector<Segment> RwLayerImpl::Segments() const {
  std::shared_lock lock(index_mu_);
  return live_.All();
}

std::vector<Segment> RwLayerImpl::Lookup(uint64_t offset, uint64_t length) const {
  std::vector<Segment> out;
  std::shared_lock lock(index_mu_);
  live_.Lookup(offset, length, [&out](const Segment& s) { out.push_back(s); });
  return out;
}

// ---- opening -------------------------------------------------------------------------------

Result<HeaderTrailer> ReadHeader(const ReadableFile& file) {
  if (file.Size() < kHeaderSize) {
    return Status::Corruption(file.Name() + ": file size " + std::to_string(file.Size()) +
                              " is smaller than the 4096-byte header");
  }
  std::vector<uint8_t> bytes(kHeaderSize);
  OVBD_RETURN_IF_ERROR(file.ReadAt(0, bytes).WithContext(file.Name()));
  auto ht = DecodeHeaderTrailer(bytes);
  if (!ht.ok()) return ht.status().WithContext(file.Name() + ": header at offset 0");
  return ht;
}

// overlaybd's one-file "sparse" writable layer keeps data in place and has no index records: its
// index is the file's allocation map (SEEK_DATA/SEEK_HOLE). Replaying an index file for it would
// read the wrong bytes, so it is refused rather than misread.
Status RefuseSparse(const ReadableFile& file, const HeaderTrailer& h) {
  if (!(h.flags & kFlagSparseRw)) return Status::OK();
  return Status::NotSupported(file.Name() + ": header at offset 0: flag bit 4 (SPARSE_RW): a sparse "
                              "writable layer, whose index is the file's allocation map");
}

Status CheckDataHeader(const ReadableFile& file, const HeaderTrailer& h) {
  if (!(h.flags & kFlagHeader) || !(h.flags & kFlagDataFile)) {
    return Status::Corruption(file.Name() + ": header at offset 0: flags " + std::to_string(h.flags) +
                              " are not those of an RW data file (header|data)");
  }
  return RefuseSparse(file, h);
}

Status CheckIndexHeader(const ReadableFile& file, const HeaderTrailer& h) {
  if (!(h.flags & kFlagHeader) || (h.flags & kFlagDataFile) || (h.flags & kFlagSealed)) {
    return Status::Corruption(file.Name() + ": header at offset 0: flags " + std::to_string(h.flags) +
                              " are not those of an RW index file (header, not data, not sealed)");
  }
  if (h.index_offset != kHeaderSize) {
    return Status::Corruption(file.Name() + ": header at offset 0: index_offset " +
                              std::to_string(h.index_offset) + " is not 4096");
  }
  return RefuseSparse(file, h);
}

// A sealed data file ends with an index and a trailer (Seal); appending to it would bury them,
// so it no longer opens as a writable layer. It is a read-only layer now.
Status RefuseSealed(const ReadableFile& data) {
  if (data.Size() < 2 * kHeaderSize) return Status::OK();
  std::vector<uint8_t> tail(kHeaderSize);
  OVBD_RETURN_IF_ERROR(data.ReadAt(data.Size() - kHeaderSize, tail).WithContext(data.Name()));
  auto trailer = DecodeHeaderTrailer(tail);
  if (!trailer.ok() || (trailer->flags & kFlagHeader) || !(trailer->flags & kFlagSealed)) return Status::OK();
  return Status::InvalidArgument(data.Name() + ": the layer is sealed (it ends with an index and a "
                                 "trailer); use it as a read-only lower layer");
}

Status CheckRecord(const Segment& s, uint64_t data_end_sector) {
  OVBD_RETURN_IF_ERROR(CheckSegmentShape(s));
  return CheckSegmentMOffset(s, kSectorsPerHeader, data_end_sector);
}

bool AllZero(const uint8_t* p, size_t n) {
  return std::all_of(p, p + n, [](uint8_t b) { return b == 0; });
}

// Replays the whole records of the index file in order. A torn trailing partial record (the
// file size is not 4096 + a multiple of 16) is ignored, and so is a tail of all-zero records (the
// file grew but its new blocks never reached the disk); the next append overwrites them. An
// all-zero record followed by a real one is corruption.
Status ReplayIndex(const ReadableFile& index, uint64_t data_size, OpenState* state) {
  const uint64_t records = (index.Size() - kHeaderSize) / kSegmentBytes;
  if (records > kMaxRwIndexRecords) {
    return Status::Corruption(index.Name() + ": " + std::to_string(records) +
                              " records exceed the cap of " + std::to_string(kMaxRwIndexRecords));
  }
  const uint64_t data_end_sector = data_size / kSectorSize;
  std::vector<uint8_t> chunk;
  uint64_t zero_run_start = records;  // first record of the current run of all-zero records
  for (uint64_t first = 0; first < records; first += kReplayChunkRecords) {
    uint64_t n = std::min<uint64_t>(kReplayChunkRecords, records - first);
    chunk.resize(n * kSegmentBytes);
    uint64_t at = kHeaderSize + first * kSegmentBytes;
    OVBD_RETURN_IF_ERROR(index.ReadAt(at, chunk).WithContext(index.Name()));
    for (uint64_t i = 0; i < n; i++) {
      if (AllZero(&chunk[i * kSegmentBytes], kSegmentBytes)) {
        zero_run_start = std::min(zero_run_start, first + i);
        continue;
      }
      if (zero_run_start < records) {
        return Status::Corruption(index.Name() + ": record " + std::to_string(zero_run_start) +
                                  " at byte " + std::to_string(kHeaderSize + zero_run_start * kSegmentBytes) +
                                  " is all zeros but records follow it");
      }
      Segment s = DecodeSegment(&chunk[i * kSegmentBytes]);
      if (IsPadding(s)) continue;
      s.tag = 0;
      Status st = CheckRecord(s, data_end_sector);
      if (!st.ok()) {
        return st.WithContext(index.Name() + ": record " + std::to_string(first + i) + " at byte " +
                              std::to_string(at + i * kSegmentBytes) + " (" + DescribeSegment(s) + ")");
      }
      state->live.Insert(s);
    }
  }
  state->index_eof = kHeaderSize + std::min(records, zero_run_start) * kSegmentBytes;
  return Status::OK();
}

Result<CreateOptions> NormalizeCreateOptions(const CreateOptions& in) {
  CreateOptions out;
  if (in.virtual_size == 0 || !IsAligned(in.virtual_size, kSectorSize) ||
      in.virtual_size / kSectorSize > kMaxOffset) {
    return Status::InvalidArgument("virtual size " + std::to_string(in.virtual_size) +
                                   " must be a positive multiple of 512 below 2^59 bytes");
  }
  out.virtual_size = in.virtual_size;
  OVBD_ASSIGN_OR_RETURN(out.uuid, NormalizeUuid(in.uuid));
  if (out.uuid.empty()) out.uuid = NewRandomUuid();
  OVBD_ASSIGN_OR_RETURN(out.parent_uuid, NormalizeUuid(in.parent_uuid));
  return out;
}

Status WriteNewHeader(RandomRWFile* file, const HeaderTrailer& h) {
  OVBD_RETURN_IF_ERROR(file->WriteAt(0, EncodeHeaderTrailer(h)).WithContext(file->Name()));
  OVBD_RETURN_IF_ERROR(file->Truncate(kHeaderSize).WithContext(file->Name()));
  return file->Sync().WithContext(file->Name());
}

}  // namespace

Result<std::unique_ptr<RwLayer>> CreateRwLayer(std::unique_ptr<RandomRWFile> data,
                                               std::unique_ptr<RandomRWFile> index,
                                               const CreateOptions& options) {
  if (!data || !index) return Status::InvalidArgument("CreateRwLayer: null file");
  OVBD_ASSIGN_OR_RETURN(CreateOptions opts, NormalizeCreateOptions(options));
  OpenState state;
  state.data_meta.flags = kFlagsRwDataHeader;
  state.data_meta.virtual_size = opts.virtual_size;
  state.data_meta.uuid = opts.uuid;
  state.data_meta.parent_uuid = opts.parent_uuid;
  state.index_meta = state.data_meta;
  state.index_meta.flags = kFlagsRwIndexHeader;
  state.index_meta.index_offset = kHeaderSize;
  OVBD_RETURN_IF_ERROR(WriteNewHeader(data.get(), state.data_meta));
  OVBD_RETURN_IF_ERROR(WriteNewHeader(index.get(), state.index_meta));
  state.data_eof = kHeaderSize;
  state.index_eof = kHeaderSize;
  return std::unique_ptr<RwLayer>(new RwLayerImpl(std::move(data), std::move(index), std::move(state)));
}

Result<bool> IsSealedFrom(const ReadableFile& data, const ReadableFile& index) {
  OpenState state;
  OVBD_ASSIGN_OR_RETURN(state.data_meta, ReadHeader(data));
  OVBD_RETURN_IF_ERROR(CheckDataHeader(data, state.data_meta));
  OVBD_ASSIGN_OR_RETURN(state.index_meta, ReadHeader(index));
  OVBD_RETURN_IF_ERROR(CheckIndexHeader(index, state.index_meta));
  OVBD_RETURN_IF_ERROR(ReplayIndex(index, data.Size(), &state));
  auto info = ReadLayerInfo(data);
  if (!info.ok()) return false;  // no trailer: the seal never finished
  const std::vector<Segment> live = state.live.All();
  if (info->segments.size() != live.size()) return false;
  for (size_t i = 0; i < live.size(); i++) {
    const Segment& a = info->segments[i];
    const Segment& b = live[i];
    if (a.offset != b.offset || a.length != b.length || a.zeroed != b.zeroed || (!a.zeroed && a.moffset != b.moffset)) {
      return false;
    }
  }
  return true;
}

Result<std::unique_ptr<RwLayer>> OpenRwLayer(std::unique_ptr<RandomRWFile> data,
                                             std::unique_ptr<RandomRWFile> index) {
  if (!data || !index) return Status::InvalidArgument("OpenRwLayer: null file");
  OpenState state;
  OVBD_ASSIGN_OR_RETURN(state.data_meta, ReadHeader(*data));
  OVBD_RETURN_IF_ERROR(CheckDataHeader(*data, state.data_meta));
  OVBD_RETURN_IF_ERROR(RefuseSealed(*data));
  OVBD_ASSIGN_OR_RETURN(state.index_meta, ReadHeader(*index));
  OVBD_RETURN_IF_ERROR(CheckIndexHeader(*index, state.index_meta));
  if (state.data_meta.uuid != state.index_meta.uuid) {
    return Status::Corruption(data->Name() + " and " + index->Name() + " do not belong together: uuid " +
                              state.data_meta.uuid + " vs " + state.index_meta.uuid);
  }
  const uint64_t data_size = data->Size();
  OVBD_RETURN_IF_ERROR(ReplayIndex(*index, data_size, &state));
  state.data_eof = RoundUp(data_size, kSectorSize);  // a torn unaligned tail is skipped over
  return std::unique_ptr<RwLayer>(new RwLayerImpl(std::move(data), std::move(index), std::move(state)));
}

}  // namespace ovbd::lsmt
