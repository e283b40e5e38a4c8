// FaultInjectionFile: a RandomRWFile decorator that breaks on purpose.
//
// Crash model: the base file holds every write as it happens; an undo log remembers, for each
// mutation since the last Sync(), what the touched bytes (and size) were before. A "power cut"
// (DropUnsyncedWrites) replays the undo log newest first, so the base ends up as it was at the
// last Sync, optionally keeping a prefix of the newest write (a torn write).
#include <algorithm>
#include <mutex>

#include "ovbd/io.h"

namespace ovbd {

struct FaultInjectionFile::State {
  struct Undo {
    uint64_t offset = 0;
    std::vector<uint8_t> old_bytes;  // bytes of [offset, offset+old_bytes.size()) before the write
    uint64_t old_size = 0;           // file size before the mutation
    uint64_t new_length = 0;         // length the mutation wrote
  };
  mutable std::mutex mu;
  std::vector<Undo> undo;
  uint64_t fail_read = 0, fail_write = 0, fail_sync = 0;  // countdowns; 0 = off
  uint64_t flip_offset = 0;
  uint8_t flip_mask = 0;
};

namespace {
// Decrements a countdown; true when it reaches zero on this call.
bool Fires(uint64_t& countdown) {
  if (countdown == 0) return false;
  return --countdown == 0;
}
}  // namespace

FaultInjectionFile::FaultInjectionFile(std::unique_ptr<RandomRWFile> base)
    : base_(std::move(base)), state_(std::make_unique<State>()) {}
FaultInjectionFile::~FaultInjectionFile() = default;

Status FaultInjectionFile::ReadAt(uint64_t offset, std::span<uint8_t> buf) const {
  uint64_t flip_offset;
  uint8_t flip_mask;
  {
    std::lock_guard lock(state_->mu);
    if (Fires(state_->fail_read)) {
      return Status::IOError(Name() + ": injected read error at offset " + std::to_string(offset));
    }
    flip_offset = state_->flip_offset;
    flip_mask = state_->flip_mask;
  }
  OVBD_RETURN_IF_ERROR(base_->ReadAt(offset, buf));
  if (flip_mask != 0 && flip_offset >= offset && flip_offset - offset < buf.size()) {
    buf[flip_offset - offset] ^= flip_mask;
  }
  return Status::OK();
}

uint64_t FaultInjectionFile::Size() const { return base_->Size(); }
const std::string& FaultInjectionFile::Name() const { return base_->Name(); }

Status FaultInjectionFile::WriteAt(uint64_t offset, std::span<const uint8_t> buf) {
  std::lock_guard lock(state_->mu);
  if (Fires(state_->fail_write)) {
    return Status::IOError(Name() + ": injected write error at offset " + std::to_string(offset));
  }
  State::Undo undo;
  undo.offset = offset;
  undo.old_size = base_->Size();
  undo.new_length = buf.size();
  if (offset < undo.old_size) {
    undo.old_bytes.resize(std::min<uint64_t>(buf.size(), undo.old_size - offset));
    OVBD_RETURN_IF_ERROR(base_->ReadAt(offset, undo.old_bytes));
  }
  OVBD_RETURN_IF_ERROR(base_->WriteAt(offset, buf));
  state_->undo.push_back(std::move(undo));
  return Status::OK();
}

Status FaultInjectionFile::Truncate(uint64_t size) {
  std::lock_guard lock(state_->mu);
  if (Fires(state_->fail_write)) return Status::IOError(Name() + ": injected truncate error");
  State::Undo undo;
  undo.old_size = base_->Size();
  undo.offset = std::min(size, undo.old_size);
  undo.old_bytes.resize(undo.old_size - undo.offset);
  OVBD_RETURN_IF_ERROR(base_->ReadAt(undo.offset, undo.old_bytes));
  OVBD_RETURN_IF_ERROR(base_->Truncate(size));
  state_->undo.push_back(std::move(undo));
  return Status::OK();
}

Status FaultInjectionFile::Trim(uint64_t offset, uint64_t length) {
  std::lock_guard lock(state_->mu);
  if (Fires(state_->fail_write)) return Status::IOError(Name() + ": injected trim error");
  State::Undo undo;
  undo.offset = offset;
  undo.old_size = base_->Size();
  if (offset < undo.old_size) {
    undo.old_bytes.resize(std::min<uint64_t>(length, undo.old_size - offset));
    OVBD_RETURN_IF_ERROR(base_->ReadAt(offset, undo.old_bytes));
  }
  OVBD_RETURN_IF_ERROR(base_->Trim(offset, length));
  state_->undo.push_back(std::move(undo));
  return Status::OK();
}

Status FaultInjectionFile::Sync() {
  std::lock_guard lock(state_->mu);
  if (Fires(state_->fail_sync)) return Status::IOError(Name() + ": injected sync error");
  OVBD_RETURN_IF_ERROR(base_->Sync());
  state_->undo.clear();
  return Status::OK();
}

Status FaultInjectionFile::DropUnsyncedWrites(uint64_t keep_bytes_of_last_write) {
  std::lock_guard lock(state_->mu);
  auto& log = state_->undo;
  // The surviving prefix of the newest write (a torn write), saved before anything is undone.
  uint64_t keep_offset = 0;
  std::vector<uint8_t> kept;
  if (!log.empty() && keep_bytes_of_last_write > 0) {
    const State::Undo& last = log.back();
    keep_offset = last.offset;
    kept.resize(std::min(keep_bytes_of_last_write, last.new_length));
    OVBD_RETURN_IF_ERROR(base_->ReadAt(keep_offset, kept));
  }
  for (size_t i = log.size(); i-- > 0;) {
    const State::Undo& u = log[i];
    if (!u.old_bytes.empty()) OVBD_RETURN_IF_ERROR(base_->WriteAt(u.offset, u.old_bytes));
    if (base_->Size() != u.old_size) OVBD_RETURN_IF_ERROR(base_->Truncate(u.old_size));
  }
  if (!kept.empty()) OVBD_RETURN_IF_ERROR(base_->WriteAt(keep_offset, kept));
  log.clear();
  return Status::OK();
}

void FaultInjectionFile::FailNthRead(uint64_t n) {
  std::lock_guard lock(state_->mu);
  state_->fail_read = n;
}
void FaultInjectionFile::FailNthWrite(uint64_t n) {
  std::lock_guard lock(state_->mu);
  state_->fail_write = n;
}
void FaultInjectionFile::FailNthSync(uint64_t n) {
  std::lock_guard lock(state_->mu);
  state_->fail_sync = n;
}
void FaultInjectionFile::FlipByteOnRead(uint64_t offset, uint8_t mask) {
  std::lock_guard lock(state_->mu);
  state_->flip_offset = offset;
  state_->flip_mask = mask;
}
uint64_t FaultInjectionFile::UnsyncedWriteCount() const {
  std::lock_guard lock(state_->mu);
  return state_->undo.size();
}

}  // namespace ovbd
