// SwitchableDevice: the swap, its refusals, and writes and reads running through many swaps
// (nothing lost, nothing read wrong, a stream of writes cannot hold a switch off).
#include "ovbd/switchable_device.h"

#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <thread>
#include <vector>

namespace ovbd {
namespace {

constexpr uint64_t kSize = 1 << 20;

std::vector<uint8_t> Contents(BlockDevice& d) {
  std::vector<uint8_t> out(d.Size());
  EXPECT_TRUE(d.Read(0, out).ok());
  return out;
}

// The change of most tests: a new in-memory device holding what the current one holds.
Result<std::shared_ptr<BlockDevice>> CopyOf(BlockDevice& current) {
  std::shared_ptr<BlockDevice> next = NewMemDevice(current.Size(), true, "mem");
  const auto bytes = Contents(current);
  OVBD_RETURN_IF_ERROR(next->Write(0, bytes, false));
  return next;
}

TEST(SwitchableDevice, SwitchesToTheNextDevice) {
  auto first = std::shared_ptr<BlockDevice>(NewMemDevice(kSize));
  SwitchableDevice dev(first);
  std::vector<uint8_t> a(4096, 0xaa);
  ASSERT_TRUE(dev.Write(8192, a, false).ok());
  ASSERT_TRUE(dev.Switch(CopyOf).ok());
  EXPECT_EQ(dev.switches(), 1u);
  EXPECT_NE(dev.current(), first);
  std::vector<uint8_t> b(4096, 0xbb);
  ASSERT_TRUE(dev.Write(0, b, false).ok());
  std::vector<uint8_t> back(4096);
  ASSERT_TRUE(dev.Read(8192, back).ok());
  EXPECT_EQ(back, a);  // copied over
  ASSERT_TRUE(first->Read(0, back).ok());
  EXPECT_EQ(back, std::vector<uint8_t>(4096, 0));  // the new write went to the new device only
  const DeviceStats s = dev.Stats();
  EXPECT_EQ(s.writes, 1u + 1u + 1u);  // a, the copy into the next device, b
  EXPECT_EQ(dev.Name(), first->Name());
}

TEST(SwitchableDevice, AFailedChangeSwapsNothing) {
  auto first = std::shared_ptr<BlockDevice>(NewMemDevice(kSize));
  SwitchableDevice dev(first);
  Status s = dev.Switch([](BlockDevice&) -> Result<std::shared_ptr<BlockDevice>> {
    return Status::IOError("seal failed");
  });
  EXPECT_EQ(s.code(), Code::kIOError);
  EXPECT_EQ(dev.current(), first);
  EXPECT_EQ(dev.switches(), 0u);
  std::vector<uint8_t> a(512, 1);
  EXPECT_TRUE(dev.Write(0, a, false).ok());  // the gate opened again
  EXPECT_EQ(dev.Switch([](BlockDevice&) -> Result<std::shared_ptr<BlockDevice>> { return std::shared_ptr<BlockDevice>(); }).code(),
            Code::kInvalidArgument);
  EXPECT_EQ(dev.Switch([](BlockDevice&) -> Result<std::shared_ptr<BlockDevice>> {
              return std::shared_ptr<BlockDevice>(NewMemDevice(kSize, /*writable=*/false));
            }).code(),
            Code::kInvalidArgument);  // other capabilities
  EXPECT_EQ(dev.current(), first);
}

TEST(SwitchableDevice, SizeFollowsTheCurrentDevice) {
  SwitchableDevice dev(std::shared_ptr<BlockDevice>(NewMemDevice(kSize)));
  ASSERT_TRUE(dev.Switch([](BlockDevice&) -> Result<std::shared_ptr<BlockDevice>> {
                   return std::shared_ptr<BlockDevice>(NewMemDevice(2 * kSize));
                 })
                  .ok());
  EXPECT_EQ(dev.Size(), 2 * kSize);
}

// 4 writers on disjoint stripes keep a model; 2 readers check bytes that no one writes any more;
// the main thread switches 30 times, each time copying the content. Every write that returned
// must be in the final device, and no read sees anything but what was written.
TEST(SwitchableDevice, WritesAndReadsThroughManySwitches) {
  SwitchableDevice dev(std::shared_ptr<BlockDevice>(NewMemDevice(kSize)));
  constexpr int kWriters = 4;
  constexpr uint64_t kStripe = kSize / kWriters;
  // The last 4 KiB of each stripe is written once before the threads start and then only read.
  std::vector<uint8_t> fixed(4096, 0x5c);
  for (int w = 0; w < kWriters; w++) ASSERT_TRUE(dev.Write((w + 1) * kStripe - 4096, fixed, false).ok());
  std::vector<std::vector<uint8_t>> model(kWriters, std::vector<uint8_t>(kStripe - 4096, 0));
  std::atomic<bool> stop{false};
  std::atomic<int> read_errors{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; w++) {
    threads.emplace_back([&, w] {
      std::mt19937 rng(w);
      while (!stop) {
        const uint64_t len = 1 + rng() % 8192;
        const uint64_t off = rng() % (kStripe - 4096 - len);
        std::vector<uint8_t> data(len, static_cast<uint8_t>(rng()));
        if (!dev.Write(w * kStripe + off, data, false).ok()) {
          read_errors++;
          return;
        }
        std::copy(data.begin(), data.end(), model[w].begin() + off);
      }
    });
  }
  for (int r = 0; r < 2; r++) {
    threads.emplace_back([&] {
      std::vector<uint8_t> buf(4096);
      while (!stop) {
        for (int w = 0; w < kWriters; w++) {
          if (!dev.Read((w + 1) * kStripe - 4096, buf).ok() || buf != fixed) read_errors++;
        }
      }
    });
  }
  for (int i = 0; i < 30; i++) {
    ASSERT_TRUE(dev.Switch(CopyOf).ok());  // a steady stream of writes does not hold it off
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  stop = true;
  for (auto& t : threads) t.join();
  EXPECT_EQ(read_errors.load(), 0);
  EXPECT_EQ(dev.switches(), 30u);
  const auto final_bytes = Contents(dev);
  for (int w = 0; w < kWriters; w++) {
    EXPECT_TRUE(std::equal(model[w].begin(), model[w].end(), final_bytes.begin() + w * kStripe)) << "stripe " << w;
  }
}

}  // namespace
}  // namespace ovbd
