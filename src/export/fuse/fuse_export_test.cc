// FuseExport against an in-memory device: every file operation the loop driver (and a person
// with dd) uses, checked on the device behind the mount; the stop paths (graceful while the file
// is open, Abort, external umount); errors from the device reaching the caller as errno.
#include "export/fuse/fuse_export.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <dirent.h>
#include <future>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "ovbd/block_device.h"
#include "testutil.h"

namespace ovbd::fuse {
namespace {

constexpr uint64_t kSize = 8u << 20;
constexpr long kFuseMagic = 0x65735546;

// Why FUSE cannot be tested here, or "" if it can.
std::string FuseUnusable() {
  const int fd = ::open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (fd < 0) return std::string("/dev/fuse cannot be opened: ") + std::strerror(errno);
  ::close(fd);
  if (::geteuid() != 0 && ::access("/usr/bin/fusermount3", X_OK) != 0) {
    return "not root and no fusermount3";
  }
  return "";
}

// A device whose Read of a poisoned range and whose Flush fail, on top of a MemDevice.
class FailingDevice final : public BlockDevice {
 public:
  explicit FailingDevice(std::shared_ptr<BlockDevice> inner) : inner_(std::move(inner)) {}
  uint64_t Size() const override { return inner_->Size(); }
  const std::string& Name() const override { return inner_->Name(); }
  BlockDeviceCaps Capabilities() const override { return inner_->Capabilities(); }
  Status Read(uint64_t offset, std::span<uint8_t> buf) override {
    if (offset < kPoisonEnd && offset + buf.size() > kPoison) return Status::Corruption("poisoned block");
    return inner_->Read(offset, buf);
  }
  Status Write(uint64_t offset, std::span<const uint8_t> data, bool fua) override {
    return inner_->Write(offset, data, fua);
  }
  Status Trim(uint64_t offset, uint64_t length, bool fua) override { return inner_->Trim(offset, length, fua); }
  Status Zero(uint64_t offset, uint64_t length, bool fua, bool hole) override {
    return inner_->Zero(offset, length, fua, hole);
  }
  Status Flush() override { return fail_flush ? Status::NoSpace("upper layer full") : inner_->Flush(); }
  Result<std::vector<Extent>> Extents(uint64_t offset, uint64_t length) override {
    return inner_->Extents(offset, length);
  }
  DeviceStats Stats() const override { return inner_->Stats(); }

  static constexpr uint64_t kPoison = 1 << 20;
  static constexpr uint64_t kPoisonEnd = kPoison + 4096;
  std::atomic<bool> fail_flush{false};

 private:
  std::shared_ptr<BlockDevice> inner_;
};

class FuseExportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string why = FuseUnusable();
    if (!why.empty()) GTEST_SKIP() << "FUSE unusable: " << why;
    mnt_ = dir_.Join("mnt");
    ASSERT_EQ(::mkdir(mnt_.c_str(), 0755), 0);
  }
  void TearDown() override {
    if (fd_ >= 0) ::close(fd_);
    exp_.reset();
  }

  void Mount(std::shared_ptr<BlockDevice> dev, FuseExportOptions options = {}) {
    dev_ = dev;
    auto started = FuseExport::Start(std::move(dev), mnt_, std::move(options));
    ASSERT_TRUE(started.ok()) << started.status().ToString();
    exp_ = std::move(started).value();
  }
  void OpenFile(int flags) {
    fd_ = ::open(exp_->file_path().c_str(), flags | O_CLOEXEC);
    ASSERT_GE(fd_, 0) << std::strerror(errno);
  }
  std::vector<uint8_t> DeviceBytes(uint64_t offset, size_t n) {
    std::vector<uint8_t> out(n);
    EXPECT_TRUE(dev_->Read(offset, out).ok());
    return out;
  }
  bool IsFuseMount() {
    struct statfs sf {};
    return ::statfs(mnt_.c_str(), &sf) == 0 && sf.f_type == kFuseMagic;
  }

  ovbd::testing::TempDir dir_;
  std::string mnt_;
  std::shared_ptr<BlockDevice> dev_;
  std::unique_ptr<FuseExport> exp_;
  int fd_ = -1;
};

TEST_F(FuseExportTest, DirectoryHoldsOneFileOfTheDeviceSize) {
  Mount(NewMemDevice(kSize));
  EXPECT_EQ(exp_->file_path(), mnt_ + "/image");
  struct stat st {};
  ASSERT_EQ(::stat(exp_->file_path().c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kSize);
  std::set<std::string> names;
  DIR* d = ::opendir(mnt_.c_str());
  ASSERT_NE(d, nullptr);
  while (dirent* e = ::readdir(d)) names.insert(e->d_name);
  ::closedir(d);
  EXPECT_EQ(names, (std::set<std::string>{".", "..", "image"}));
  EXPECT_LT(::open((mnt_ + "/other").c_str(), O_CREAT | O_RDWR, 0600), 0);
  EXPECT_NE(::truncate(exp_->file_path().c_str(), 4096), 0);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(::truncate(exp_->file_path().c_str(), kSize), 0);  // same size: a no-op
}

TEST_F(FuseExportTest, UnalignedWritesAndReadsReachTheDevice) {
  Mount(NewMemDevice(kSize));
  OpenFile(O_RDWR);
  const auto data = ovbd::testing::MakeData(1, 300001);
  ASSERT_EQ(::pwrite(fd_, data.data(), data.size(), 4096 + 7), static_cast<ssize_t>(data.size()));
  EXPECT_EQ(DeviceBytes(4096 + 7, data.size()), data);
  std::vector<uint8_t> back(data.size());
  ASSERT_EQ(::pread(fd_, back.data(), back.size(), 4096 + 7), static_cast<ssize_t>(back.size()));
  EXPECT_EQ(back, data);
  // No cache in between: a change made on the device is seen at once.
  const auto other = ovbd::testing::MakeData(2, 5000);
  ASSERT_TRUE(dev_->Write(4096 + 7, other, false).ok());
  ASSERT_EQ(::pread(fd_, back.data(), other.size(), 4096 + 7), static_cast<ssize_t>(other.size()));
  EXPECT_TRUE(std::equal(other.begin(), other.end(), back.begin()));
}

TEST_F(FuseExportTest, TheEndOfTheFileIsFixed) {
  Mount(NewMemDevice(kSize));
  OpenFile(O_RDWR);
  std::vector<uint8_t> buf(100, 0x5a);
  EXPECT_EQ(::pwrite(fd_, buf.data(), buf.size(), kSize - 10), 10);
  EXPECT_EQ(::pwrite(fd_, buf.data(), buf.size(), kSize), -1);
  EXPECT_EQ(errno, ENOSPC);
  EXPECT_EQ(::pread(fd_, buf.data(), buf.size(), kSize - 10), 10);
  EXPECT_EQ(::pread(fd_, buf.data(), buf.size(), kSize + 4096), 0);
  EXPECT_EQ(DeviceBytes(kSize - 10, 10), std::vector<uint8_t>(10, 0x5a));
}

TEST_F(FuseExportTest, FallocateMapsToTrimAndZero) {
  Mount(NewMemDevice(kSize));
  OpenFile(O_RDWR);
  std::vector<uint8_t> ones(1 << 20, 0xab);
  ASSERT_EQ(::pwrite(fd_, ones.data(), ones.size(), 0), static_cast<ssize_t>(ones.size()));
  const uint64_t trims_before = dev_->Stats().trims;
  ASSERT_EQ(::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 65536, 131072), 0) << std::strerror(errno);
  ASSERT_EQ(::fallocate(fd_, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 500000, 1000), 0) << std::strerror(errno);
  EXPECT_EQ(dev_->Stats().trims, trims_before + 2);
  auto got = DeviceBytes(0, ones.size());
  std::vector<uint8_t> want = ones;
  std::fill(want.begin() + 65536, want.begin() + 65536 + 131072, 0);
  std::fill(want.begin() + 500000, want.begin() + 501000, 0);
  EXPECT_EQ(got, want);
  // Preallocation inside the file is a no-op; growing it and other modes are refused.
  EXPECT_EQ(::fallocate(fd_, FALLOC_FL_KEEP_SIZE, 0, 4096), 0);
  EXPECT_EQ(::fallocate(fd_, 0, kSize - 4096, 8192), -1);
  EXPECT_EQ(::fallocate(fd_, FALLOC_FL_COLLAPSE_RANGE, 0, 4096), -1);
  EXPECT_EQ(errno, EOPNOTSUPP);
  // An unsupported mode did not switch fallocate off: punching still works.
  EXPECT_EQ(::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096), 0);
  EXPECT_EQ(DeviceBytes(0, 4096), std::vector<uint8_t>(4096, 0));
}

TEST_F(FuseExportTest, FsyncAndCloseAfterWritesFlushTheDevice) {
  Mount(NewMemDevice(kSize));
  OpenFile(O_RDWR);
  std::vector<uint8_t> buf(4096, 1);
  ASSERT_EQ(::pwrite(fd_, buf.data(), buf.size(), 0), 4096);
  uint64_t flushes = dev_->Stats().flushes;
  ASSERT_EQ(::fsync(fd_), 0);
  EXPECT_EQ(dev_->Stats().flushes, flushes + 1);
  ASSERT_EQ(::pwrite(fd_, buf.data(), buf.size(), 8192), 4096);
  ASSERT_EQ(::close(std::exchange(fd_, -1)), 0);
  EXPECT_EQ(dev_->Stats().flushes, flushes + 2);
  OpenFile(O_RDONLY);  // a handle that wrote nothing does not flush on close
  ASSERT_EQ(::close(std::exchange(fd_, -1)), 0);
  EXPECT_EQ(dev_->Stats().flushes, flushes + 2);
}

TEST_F(FuseExportTest, ReadOnlyDeviceGivesReadOnlyFile) {
  Mount(NewMemDevice(kSize, /*writable=*/false));
  EXPECT_TRUE(exp_->read_only());
  struct stat st {};
  ASSERT_EQ(::stat(exp_->file_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0400u);
  EXPECT_LT(::open(exp_->file_path().c_str(), O_RDWR | O_CLOEXEC), 0);
  EXPECT_EQ(errno, EROFS);
  OpenFile(O_RDONLY);
  std::vector<uint8_t> buf(4096, 9);
  EXPECT_EQ(::pread(fd_, buf.data(), buf.size(), 0), 4096);
  EXPECT_EQ(buf, std::vector<uint8_t>(4096, 0));
  ::close(std::exchange(fd_, -1));
  EXPECT_TRUE(exp_->Shutdown().ok());
}

TEST_F(FuseExportTest, DeviceErrorsBecomeErrno) {
  auto failing = std::make_shared<FailingDevice>(NewMemDevice(kSize));
  Mount(failing);
  OpenFile(O_RDWR);
  std::vector<uint8_t> buf(4096);
  EXPECT_EQ(::pread(fd_, buf.data(), buf.size(), FailingDevice::kPoison), -1);
  EXPECT_EQ(errno, EIO);
  EXPECT_EQ(::pread(fd_, buf.data(), buf.size(), 0), 4096);  // the rest still reads
  failing->fail_flush = true;
  EXPECT_EQ(::fsync(fd_), -1);
  EXPECT_EQ(errno, ENOSPC);
  ::close(std::exchange(fd_, -1));
  Status s = exp_->Shutdown();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("upper layer full"), std::string::npos) << s.ToString();
}

TEST_F(FuseExportTest, ParallelWritersLandWhereTheyAimed) {
  FuseExportOptions options;
  options.max_threads = 4;
  Mount(NewMemDevice(kSize), std::move(options));
  OpenFile(O_RDWR);
  constexpr int kThreads = 4;
  constexpr size_t kChunk = 256 * 1024;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([this, t] {
      const auto data = ovbd::testing::MakeData(100 + t, kChunk);
      for (int i = 0; i < 4; ++i) {
        const off_t off = static_cast<off_t>((t * 4 + i) * kChunk);
        EXPECT_EQ(::pwrite(fd_, data.data(), data.size(), off), static_cast<ssize_t>(kChunk));
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) {
    const auto data = ovbd::testing::MakeData(100 + t, kChunk);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(DeviceBytes((t * 4 + i) * kChunk, kChunk), data) << t << " " << i;
  }
}

TEST_F(FuseExportTest, ShutdownWaitsUntilTheFileIsClosedThenFlushes) {
  Mount(NewMemDevice(kSize));
  OpenFile(O_RDWR);
  std::vector<uint8_t> buf(4096, 3);
  ASSERT_EQ(::pwrite(fd_, buf.data(), buf.size(), 0), 4096);
  const uint64_t flushes = dev_->Stats().flushes;
  auto done = std::async(std::launch::async, [this] { return exp_->Shutdown(); });
  EXPECT_EQ(done.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout);
  EXPECT_EQ(::pread(fd_, buf.data(), buf.size(), 0), 4096);  // still served meanwhile
  ::close(std::exchange(fd_, -1));
  ASSERT_EQ(done.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_TRUE(done.get().ok());
  EXPECT_GT(dev_->Stats().flushes, flushes);
  EXPECT_TRUE(exp_->Ended());
  EXPECT_FALSE(IsFuseMount());
  EXPECT_TRUE(exp_->Shutdown().ok());  // idempotent
}

TEST_F(FuseExportTest, AbortEndsAShutdownThatWaitsForUsers) {
  Mount(NewMemDevice(kSize));
  OpenFile(O_RDWR);
  auto done = std::async(std::launch::async, [this] { return exp_->Shutdown(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  exp_->Abort();
  ASSERT_EQ(done.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_TRUE(done.get().ok());
  std::vector<uint8_t> buf(4096);
  EXPECT_EQ(::pread(fd_, buf.data(), buf.size(), 0), -1);  // the connection is gone
  EXPECT_FALSE(IsFuseMount());
}

TEST_F(FuseExportTest, ExternalUnmountEndsTheSession) {
  if (::geteuid() != 0) GTEST_SKIP() << "umount(2) needs root";
  std::atomic<bool> ended{false};
  FuseExportOptions options;
  options.on_session_end = [&ended] { ended = true; };
  Mount(NewMemDevice(kSize), std::move(options));
  ASSERT_EQ(::umount2(mnt_.c_str(), 0), 0) << std::strerror(errno);
  for (int i = 0; i < 200 && !ended; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_TRUE(ended);
  EXPECT_TRUE(exp_->Ended());
  EXPECT_TRUE(exp_->Shutdown().ok());
}

TEST_F(FuseExportTest, RejectsBadOptions) {
  FuseExportOptions options;
  options.file_name = "a/b";
  auto bad_name = FuseExport::Start(NewMemDevice(kSize), mnt_, options);
  EXPECT_EQ(bad_name.status().code(), Code::kInvalidArgument);
  auto no_dir = FuseExport::Start(NewMemDevice(kSize), mnt_ + "/missing");
  EXPECT_FALSE(no_dir.ok());
  EXPECT_NE(no_dir.status().message().find("missing"), std::string::npos);
}

}  // namespace
}  // namespace ovbd::fuse
