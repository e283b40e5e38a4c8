// SwitchableDevice: a write gate and a swappable pointer.
#include "ovbd/switchable_device.h"

namespace ovbd {
namespace {

bool SameCaps(const BlockDeviceCaps& a, const BlockDeviceCaps& b) {
  return a.writable == b.writable && a.can_trim == b.can_trim && a.can_zero == b.can_zero &&
         a.can_fua == b.can_fua && a.can_flush == b.can_flush && a.can_extents == b.can_extents &&
         a.can_multi_conn == b.can_multi_conn && a.min_block == b.min_block &&
         a.preferred_block == b.preferred_block && a.max_request == b.max_request;
}

void Add(DeviceStats* total, const DeviceStats& s) {
  total->bytes_read += s.bytes_read;
  total->bytes_written += s.bytes_written;
  total->reads += s.reads;
  total->writes += s.writes;
  total->trims += s.trims;
  total->flushes += s.flushes;
  total->errors += s.errors;
}

}  // namespace

void SwitchableDevice::WriteGate::Enter() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [this] { return !closed_; });
  in_flight_++;
}

void SwitchableDevice::WriteGate::Leave() {
  std::lock_guard lock(mu_);
  if (--in_flight_ == 0) cv_.notify_all();
}

void SwitchableDevice::WriteGate::Close() {
  std::unique_lock lock(mu_);
  closed_ = true;
  cv_.wait(lock, [this] { return in_flight_ == 0; });
}

void SwitchableDevice::WriteGate::Open() {
  std::lock_guard lock(mu_);
  closed_ = false;
  cv_.notify_all();
}

SwitchableDevice::SwitchableDevice(std::shared_ptr<BlockDevice> initial)
    : name_(initial->Name()), caps_(initial->Capabilities()), current_(std::move(initial)) {}

std::shared_ptr<BlockDevice> SwitchableDevice::current() const {
  std::lock_guard lock(mu_);
  return current_;
}

uint64_t SwitchableDevice::switches() const {
  std::lock_guard lock(mu_);
  return switches_;
}

Status SwitchableDevice::Switch(const Change& change) {
  std::lock_guard one_at_a_time(switch_mu_);
  gate_.Close();  // waits for the writes in flight; new ones wait until Open
  struct Reopen {
    WriteGate& gate;
    ~Reopen() { gate.Open(); }
  } reopen{gate_};
  std::shared_ptr<BlockDevice> old = current();
  OVBD_ASSIGN_OR_RETURN(std::shared_ptr<BlockDevice> next, change(*old));
  if (next == nullptr) return Status::InvalidArgument(name_ + ": a switch produced no device");
  if (!SameCaps(next->Capabilities(), caps_)) {
    return Status::InvalidArgument(name_ + ": the next device (" + next->Name() + ") has other capabilities");
  }
  std::lock_guard lock(mu_);
  Add(&retired_, old->Stats());
  current_ = std::move(next);
  switches_++;
  return Status::OK();
}

Status SwitchableDevice::Write(uint64_t offset, std::span<const uint8_t> data, bool fua) {
  Pass pass(gate_);
  return current()->Write(offset, data, fua);
}

Status SwitchableDevice::Trim(uint64_t offset, uint64_t length, bool fua) {
  Pass pass(gate_);
  return current()->Trim(offset, length, fua);
}

Status SwitchableDevice::Zero(uint64_t offset, uint64_t length, bool fua, bool allow_hole) {
  Pass pass(gate_);
  return current()->Zero(offset, length, fua, allow_hole);
}

Status SwitchableDevice::Flush() {
  Pass pass(gate_);
  return current()->Flush();
}

DeviceStats SwitchableDevice::Stats() const {
  std::lock_guard lock(mu_);
  DeviceStats total = retired_;
  Add(&total, current_->Stats());
  return total;
}

}  // namespace ovbd
