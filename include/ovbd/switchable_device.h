// A BlockDevice whose backing device is replaced while clients keep using it: what online
// operations on a served image (snapshot, merge swap, replace, resize; docs/lifecycle.md) swap.
//
//   export ──> SwitchableDevice ──> current device (ImageDevice over the stack of the moment)
//                 │  reads: the current device, never a lock that a switch holds
//                 └─ writes (Write, Trim, Zero, Flush): a shared gate; Switch closes it,
//                    waits for the writes in flight, runs the change, swaps, reopens it
//
// Reads that began before a switch finish on the old device, which lives until they do (shared
// ownership). Because writes are paused while the change runs, the old and the new device hold
// the same content at the instant of the swap: a read sees one or the other, both right.
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>

#include "ovbd/block_device.h"

namespace ovbd {

class SwitchableDevice final : public BlockDevice {
 public:
  explicit SwitchableDevice(std::shared_ptr<BlockDevice> initial);

  // Builds the next device while no write is in flight and none starts: in-flight writes finish
  // first, new ones wait until the switch ends (reads go on). `change` gets the current device
  // (to flush and seal what it must) and returns the next one, or an error: then nothing is
  // swapped and writes resume on the current device. The next device must have the same
  // capabilities (InvalidArgument otherwise, nothing swapped); its size may differ (a resize).
  // One switch at a time (a second caller waits).
  using Change = std::function<Result<std::shared_ptr<BlockDevice>>(BlockDevice& current)>;
  Status Switch(const Change& change);
  std::shared_ptr<BlockDevice> current() const;
  uint64_t switches() const;

  uint64_t Size() const override { return current()->Size(); }
  const std::string& Name() const override { return name_; }
  BlockDeviceCaps Capabilities() const override { return caps_; }
  Status Read(uint64_t offset, std::span<uint8_t> buf) override { return current()->Read(offset, buf); }
  Status Write(uint64_t offset, std::span<const uint8_t> data, bool fua) override;
  Status Trim(uint64_t offset, uint64_t length, bool fua) override;
  Status Zero(uint64_t offset, uint64_t length, bool fua, bool allow_hole) override;
  Status Flush() override;
  Result<std::vector<Extent>> Extents(uint64_t offset, uint64_t length) override {
    return current()->Extents(offset, length);
  }
  Result<std::vector<Extent>> FirstExtents(uint64_t offset, uint64_t length, size_t max_extents) override {
    return current()->FirstExtents(offset, length, max_extents);
  }
  Status Cache(uint64_t offset, uint64_t length) override { return current()->Cache(offset, length); }
  // The sum over every device this one has served through (counters never go back).
  DeviceStats Stats() const override;

 private:
  // Writes pass while it is open; Close waits for those in flight and holds new ones until
  // Open. A closing gate admits no new write, so a stream of writes cannot starve a switch
  // (a reader-preferring rwlock could).
  class WriteGate {
   public:
    void Enter();
    void Leave();
    void Close();
    void Open();

   private:
    std::mutex mu_;
    std::condition_variable cv_;
    uint64_t in_flight_ = 0;
    bool closed_ = false;
  };
  // Holds the gate for one write.
  struct Pass {
    explicit Pass(WriteGate& g) : gate(g) { gate.Enter(); }
    ~Pass() { gate.Leave(); }
    WriteGate& gate;
  };

  const std::string name_;
  const BlockDeviceCaps caps_;
  WriteGate gate_;
  std::mutex switch_mu_;  // one switch at a time
  mutable std::mutex mu_;         // guards current_, retired_, switches_
  std::shared_ptr<BlockDevice> current_;
  DeviceStats retired_;  // counters of the devices switched away from
  uint64_t switches_ = 0;
};

}  // namespace ovbd
