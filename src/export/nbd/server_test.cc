// The NBD server end to end over a Unix socket, with a raw test client (nbd_test_client.h) and,
// when installed, real clients (nbdinfo, python3-libnbd).
#include "export/nbd/server.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>
#include <sstream>
#include <thread>

#include "export/nbd/nbd_test_client.h"
#include "export/nbd/protocol.h"
#include "export/nbd/tls.h"
#include "testutil.h"

namespace ovbd::nbd {
namespace {

using nbdtest::Chunk;
using nbdtest::InfoRequestData;
using nbdtest::MetaContextData;
using nbdtest::TestClient;

constexpr uint64_t kSize = 8 << 20;

std::vector<uint8_t> Pattern(uint64_t seed, size_t n) { return ovbd::testing::MakeData(seed, n); }

// A server on a MemDevice, running on its own thread for the length of a test.
class ServerFixture {
 public:
  explicit ServerFixture(ServerOptions options = DefaultOptions(), std::shared_ptr<BlockDevice> device = nullptr)
      : device_(device ? std::move(device) : std::shared_ptr<BlockDevice>(NewMemDevice(kSize))),
        socket_(dir_.Join("nbd.sock")) {
    auto server = Server::Create(device_, std::move(options));
    EXPECT_TRUE(server.ok()) << server.status().ToString();
    if (!server.ok()) return;
    server_ = std::move(*server);
    EXPECT_TRUE(server_->ListenUnix(socket_).ok());
    thread_ = std::thread([this] { run_status_ = server_->Run(); });
  }
  ~ServerFixture() { (void)Stop(); }
  Status Stop() {
    if (thread_.joinable()) {
      server_->Shutdown();
      thread_.join();
    }
    return run_status_;
  }
  static ServerOptions DefaultOptions() {
    ServerOptions o;
    o.export_name = "disk";
    o.description = "test disk";
    o.workers = 4;
    return o;
  }
  const std::string& socket() const { return socket_; }
  BlockDevice& device() { return *device_; }
  Server& server() { return *server_; }

 private:
  std::shared_ptr<BlockDevice> device_;
  ovbd::testing::TempDir dir_;
  std::string socket_;
  std::unique_ptr<Server> server_;
  Status run_status_;
  std::thread thread_;
};

// A well-behaved client: handshakes, then a write + read round trip per Check().
class Bystander {
 public:
  explicit Bystander(const std::string& socket) : client_(socket) {
    EXPECT_TRUE(client_.ok());
    EXPECT_TRUE(client_.Handshake("disk").has_value());
  }
  void Check(uint64_t seed) {
    const auto data = Pattern(seed, 4096);
    ASSERT_EQ(client_.Write(kSize - 4096, data), 0);
    std::vector<uint8_t> back;
    ASSERT_EQ(client_.Read(kSize - 4096, 4096, &back), 0);
    EXPECT_EQ(back, data);
  }

 private:
  TestClient client_;
};

// ---- handshake variants -----------------------------------------------------------------------

TEST(NbdServer, GoAdvertisesTheExport) {
  ServerFixture f;
  TestClient c(f.socket());
  ASSERT_TRUE(c.ok());
  auto go = c.Handshake("disk");
  ASSERT_TRUE(go);
  EXPECT_EQ(go->size, kSize);
  EXPECT_EQ(go->name, "disk");
  EXPECT_EQ(go->description, "test disk");
  EXPECT_EQ(go->min_block, 1u);  // any alignment: the device does read-modify-write
  EXPECT_EQ(go->preferred_block, 4096u);
  EXPECT_EQ(go->max_payload, 32u << 20);
  for (uint16_t flag : {kTxHasFlags, kTxSendFlush, kTxSendFua, kTxSendTrim, kTxSendWriteZeroes, kTxSendFastZero,
                        kTxSendCache, kTxCanMultiConn}) {
    EXPECT_TRUE(go->flags & flag) << flag;
  }
  EXPECT_FALSE(go->flags & kTxReadOnly);
}

TEST(NbdServer, HandshakeGreetingFlags) {
  ServerFixture f;
  TestClient c(f.socket());
  uint16_t flags = 0;
  ASSERT_TRUE(c.ReadGreeting(&flags));
  EXPECT_EQ(flags, kFlagFixedNewstyle | kFlagNoZeroes);
}

TEST(NbdServer, InfoThenExportName) {
  ServerFixture f;
  TestClient c(f.socket());
  uint16_t flags = 0;
  ASSERT_TRUE(c.ReadGreeting(&flags));
  ASSERT_TRUE(c.SendClientFlags(kClientFlagFixedNewstyle));  // no NO_ZEROES: expect the padding
  ASSERT_TRUE(c.SendOption(kOptInfo, InfoRequestData("", {})));
  auto info = c.ReadOptionReply();
  ASSERT_TRUE(info);
  EXPECT_EQ(info->type, kRepInfo);
  for (auto r = c.ReadOptionReply(); r && r->type != kRepAck; r = c.ReadOptionReply()) EXPECT_EQ(r->type, kRepInfo);
  ASSERT_TRUE(c.SendOption(kOptExportName, {'d', 'i', 's', 'k'}));
  std::vector<uint8_t> reply;
  ASSERT_TRUE(c.Recv(10 + 124, &reply));
  EXPECT_EQ(GetBE64(reply.data()), kSize);
  EXPECT_EQ(reply.back(), 0);
  std::vector<uint8_t> back;
  EXPECT_EQ(c.Read(0, 512, &back), 0);  // transmission works after EXPORT_NAME
}

TEST(NbdServer, ListAbortUnknownOptionAndUnknownExport) {
  ServerFixture f;
  TestClient c(f.socket());
  uint16_t flags = 0;
  ASSERT_TRUE(c.ReadGreeting(&flags));
  ASSERT_TRUE(c.SendClientFlags(kClientFlagFixedNewstyle | kClientFlagNoZeroes));
  ASSERT_TRUE(c.SendOption(kOptList, {}));
  auto entry = c.ReadOptionReply();
  ASSERT_TRUE(entry);
  EXPECT_EQ(entry->type, kRepServer);
  EXPECT_EQ(std::string(entry->data.begin() + 4, entry->data.end()), "disktest disk");  // name, description
  EXPECT_EQ(c.ReadOptionReply()->type, kRepAck);
  ASSERT_TRUE(c.SendOption(4242, {1, 2, 3}));
  EXPECT_EQ(c.ReadOptionReply()->type, kRepErrUnsup);
  ASSERT_TRUE(c.SendOption(kOptGo, InfoRequestData("other", {})));
  EXPECT_EQ(c.ReadOptionReply()->type, kRepErrUnknown);
  ASSERT_TRUE(c.SendOption(kOptAbort, {}));
  EXPECT_EQ(c.ReadOptionReply()->type, kRepAck);
  EXPECT_TRUE(c.WaitClosed());
}

TEST(NbdServer, ExportNameUnknownCloses) {
  ServerFixture f;
  TestClient c(f.socket());
  uint16_t flags = 0;
  ASSERT_TRUE(c.ReadGreeting(&flags));
  ASSERT_TRUE(c.SendClientFlags(kClientFlagFixedNewstyle | kClientFlagNoZeroes));
  ASSERT_TRUE(c.SendOption(kOptExportName, {'n', 'o'}));
  EXPECT_TRUE(c.WaitClosed());
}

// ---- transmission round trips -----------------------------------------------------------------

TEST(NbdServer, ReadWriteTrimZeroFlushCache) {
  ServerFixture f;
  TestClient c(f.socket());
  ASSERT_TRUE(c.Handshake("disk"));
  const auto data = Pattern(1, 64 << 10);
  ASSERT_EQ(c.Write(1 << 20, data), 0);
  ASSERT_EQ(c.Write(2 << 20, data, kCmdFlagFua), 0);
  std::vector<uint8_t> back;
  ASSERT_EQ(c.Read(1 << 20, 64 << 10, &back), 0);
  EXPECT_EQ(back, data);
  EXPECT_EQ(c.Command(kCmdFlush, 0, 0), 0);
  EXPECT_EQ(c.Command(kCmdTrim, 1 << 20, 4096), 0);
  EXPECT_EQ(c.Command(kCmdWriteZeroes, (1 << 20) + 4096, 4096, kCmdFlagNoHole), 0);
  EXPECT_EQ(c.Command(kCmdWriteZeroes, (1 << 20) + 8192, 4096, kCmdFlagFastZero), 0);
  EXPECT_EQ(c.Command(kCmdWriteZeroes, (1 << 20) + 8192, 4096, kCmdFlagFastZero | kCmdFlagNoHole), kENOTSUP);
  EXPECT_EQ(c.Command(kCmdCache, 0, 1 << 20), 0);
  ASSERT_EQ(c.Read(1 << 20, 64 << 10, &back), 0);
  auto expect = data;
  std::fill(expect.begin(), expect.begin() + 3 * 4096, 0);
  EXPECT_EQ(back, expect);
  std::vector<uint8_t> direct(64 << 10);
  ASSERT_TRUE(f.device().Read(2 << 20, direct).ok());
  EXPECT_EQ(direct, data);
  EXPECT_GE(f.device().Stats().flushes, 1u);
}

TEST(NbdServer, StructuredRepliesAndBlockStatus) {
  ServerFixture f;
  TestClient c(f.socket());
  ASSERT_TRUE(c.Handshake("disk", /*structured=*/true, /*base_allocation=*/true));
  const auto data = Pattern(2, 8192);
  ASSERT_TRUE(c.SendRequest(kCmdWrite, 0, 1, 8192, 8192, data));
  auto w = c.ReadChunk();
  ASSERT_TRUE(w);
  EXPECT_EQ(w->error, 0u);
  ASSERT_TRUE(c.SendRequest(kCmdRead, 0, 2, 8192, 8192));
  auto r = c.ReadChunk();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->type, kReplyTypeOffsetData);
  EXPECT_EQ(r->flags & kReplyFlagDone, kReplyFlagDone);
  EXPECT_EQ(GetBE64(r->payload.data()), 8192u);
  EXPECT_EQ(std::vector<uint8_t>(r->payload.begin() + 8, r->payload.end()), data);
  ASSERT_TRUE(c.SendRequest(kCmdBlockStatus, 0, 3, 0, 5 * 4096));
  auto bs = c.ReadChunk();
  ASSERT_TRUE(bs);
  ASSERT_EQ(bs->type, kReplyTypeBlockStatus);
  ASSERT_EQ(bs->payload.size(), 4u + 3 * 8);
  EXPECT_EQ(GetBE32(bs->payload.data()), kBaseAllocationId);
  EXPECT_EQ(GetBE32(bs->payload.data() + 4), 8192u);
  EXPECT_EQ(GetBE32(bs->payload.data() + 8), kStateHole | kStateZero);
  EXPECT_EQ(GetBE32(bs->payload.data() + 12), 8192u);
  EXPECT_EQ(GetBE32(bs->payload.data() + 16), 0u);
  EXPECT_EQ(GetBE32(bs->payload.data() + 20), 4096u);
  EXPECT_EQ(GetBE32(bs->payload.data() + 24), kStateHole | kStateZero);
  ASSERT_TRUE(c.SendRequest(kCmdBlockStatus, kCmdFlagReqOne, 5, 0, 5 * 4096));
  auto one = c.ReadChunk();
  ASSERT_TRUE(one);
  ASSERT_EQ(one->payload.size(), 4u + 8);  // REQ_ONE: a single descriptor
  EXPECT_EQ(GetBE32(one->payload.data() + 4), 8192u);
  ASSERT_TRUE(c.SendRequest(kCmdRead, 0, 4, kSize, 512));
  auto err = c.ReadChunk();
  ASSERT_TRUE(err);
  EXPECT_EQ(err->type, kReplyTypeError);
  EXPECT_EQ(err->error, kEINVAL);
}

TEST(NbdServer, BlockStatusWithoutMetaContextIsEinval) {
  ServerFixture f;
  TestClient c(f.socket());
  ASSERT_TRUE(c.Handshake("disk", /*structured=*/true, /*base_allocation=*/false));
  ASSERT_TRUE(c.SendRequest(kCmdBlockStatus, 0, 1, 0, 4096));
  auto r = c.ReadChunk();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->error, kEINVAL);
}

TEST(NbdServer, ReadOnlyExportRefusesWritesWithEperm) {
  ServerOptions o = ServerFixture::DefaultOptions();
  o.read_only = true;
  ServerFixture f(o);
  TestClient c(f.socket());
  auto go = c.Handshake("disk");
  ASSERT_TRUE(go);
  EXPECT_TRUE(go->flags & kTxReadOnly);
  EXPECT_FALSE(go->flags & (kTxSendFlush | kTxSendTrim | kTxSendWriteZeroes | kTxSendFua));
  EXPECT_EQ(c.Write(0, Pattern(3, 4096)), kEPERM);
  EXPECT_EQ(c.Command(kCmdTrim, 0, 4096), kEPERM);
  EXPECT_EQ(c.Command(kCmdWriteZeroes, 0, 4096), kEPERM);
  std::vector<uint8_t> back;
  ASSERT_EQ(c.Read(0, 4096, &back), 0);
  EXPECT_EQ(back, std::vector<uint8_t>(4096, 0));  // the refused write changed nothing
}

TEST(NbdServer, RejectCreateWithBadBlockSizes) {
  class OddDevice : public BlockDevice {
   public:
    explicit OddDevice(BlockDeviceCaps caps) : caps_(caps) {}
    uint64_t Size() const override { return 4096; }
    const std::string& Name() const override { return name_; }
    BlockDeviceCaps Capabilities() const override { return caps_; }
    Status Read(uint64_t, std::span<uint8_t>) override { return Status::OK(); }
    Status Write(uint64_t, std::span<const uint8_t>, bool) override { return Status::OK(); }
    Status Trim(uint64_t, uint64_t, bool) override { return Status::OK(); }
    Status Zero(uint64_t, uint64_t, bool, bool) override { return Status::OK(); }
    Status Flush() override { return Status::OK(); }
    Result<std::vector<Extent>> Extents(uint64_t, uint64_t) override { return std::vector<Extent>{}; }
    DeviceStats Stats() const override { return {}; }

   private:
    BlockDeviceCaps caps_;
    std::string name_ = "odd";
  };
  BlockDeviceCaps odd_preferred;
  odd_preferred.preferred_block = 3000;  // not a power of two
  EXPECT_EQ(Server::Create(std::make_shared<OddDevice>(odd_preferred), {}).status().code(), Code::kInvalidArgument);
  BlockDeviceCaps small_max;
  small_max.max_request = 2048;  // below the preferred 4096
  EXPECT_EQ(Server::Create(std::make_shared<OddDevice>(small_max), {}).status().code(), Code::kInvalidArgument);
  BlockDeviceCaps odd_min;
  odd_min.min_block = 768;  // the device's own alignment is not advertised (the minimum sent is 1)
  EXPECT_TRUE(Server::Create(std::make_shared<OddDevice>(odd_min), {}).ok());
  EXPECT_FALSE(Server::Create(nullptr, {}).ok());
}

TEST(NbdServer, RejectListenOnNonSocketAndRunWithoutListener) {
  ovbd::testing::TempDir dir;
  ovbd::testing::WriteFileBytes(dir.Join("file"), {1, 2, 3});
  auto server = Server::Create(std::shared_ptr<BlockDevice>(NewMemDevice(4096)), {});
  ASSERT_TRUE(server.ok());
  EXPECT_EQ((*server)->ListenUnix(dir.Join("file")).code(), Code::kAlreadyExists);
  EXPECT_FALSE((*server)->Run().ok());
}

TEST(NbdServer, StaleSocketIsReplacedLiveOneIsNot) {
  ovbd::testing::TempDir dir;
  const std::string path = dir.Join("stale.sock");
  {  // a socket file left behind by a server that is gone
    const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size());
    ASSERT_EQ(bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)), 0);
    close(fd);
  }
  auto server = Server::Create(std::shared_ptr<BlockDevice>(NewMemDevice(4096)), {});
  ASSERT_TRUE(server.ok());
  ASSERT_TRUE((*server)->ListenUnix(path).ok());
  struct stat st{};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // The path is now live: a second server must not steal it.
  auto second = Server::Create(std::shared_ptr<BlockDevice>(NewMemDevice(4096)), {});
  ASSERT_TRUE(second.ok());
  EXPECT_EQ((*second)->ListenUnix(path).code(), Code::kAlreadyExists);
  (*server)->Shutdown();
  EXPECT_TRUE((*server)->Run().ok());  // Shutdown before Run: returns at once
  EXPECT_NE(access(path.c_str(), F_OK), 0);  // and removes its socket file
}

// ---- robustness: each misbehaving client leaves the others working ------------------------------

TEST(NbdServer, HostileClientsDoNotHurtOthers) {
  ServerFixture f;
  Bystander bystander(f.socket());
  bystander.Check(100);

  {  // truncated handshake: half of the client flags, then gone
    TestClient c(f.socket());
    uint16_t flags = 0;
    ASSERT_TRUE(c.ReadGreeting(&flags));
    ASSERT_TRUE(c.Send({0, 0}));
  }
  bystander.Check(101);
  {  // oversized option: the server hangs up without reading it
    TestClient c(f.socket());
    uint16_t flags = 0;
    ASSERT_TRUE(c.ReadGreeting(&flags));
    ASSERT_TRUE(c.SendClientFlags(kClientFlagFixedNewstyle));
    std::vector<uint8_t> header;
    AppendBE64(&header, kOptionMagic);
    AppendBE32(&header, kOptInfo);
    AppendBE32(&header, 1u << 30);
    ASSERT_TRUE(c.Send(header));
    EXPECT_TRUE(c.WaitClosed());
  }
  bystander.Check(102);
  {  // truncated request header
    TestClient c(f.socket());
    ASSERT_TRUE(c.Handshake("disk"));
    auto req = EncodeRequest(RequestHeader{0, kCmdRead, 1, 0, 512});
    ASSERT_TRUE(c.Send(std::vector<uint8_t>(req.begin(), req.begin() + 10)));
  }
  bystander.Check(103);
  {  // bad request magic: disconnected
    TestClient c(f.socket());
    ASSERT_TRUE(c.Handshake("disk"));
    auto req = EncodeRequest(RequestHeader{0, kCmdRead, 1, 0, 512});
    req[0] = 0;
    ASSERT_TRUE(c.Send(req));
    EXPECT_TRUE(c.WaitClosed());
  }
  bystander.Check(104);
  {  // a 4 GiB write header: nothing of that size is allocated; the client leaves mid-payload
    TestClient c(f.socket());
    ASSERT_TRUE(c.Handshake("disk"));
    ASSERT_TRUE(c.SendRequest(kCmdWrite, 0, 1, 0, 0xffffffffu, std::vector<uint8_t>(1 << 20, 9)));
  }
  bystander.Check(105);
  {  // disconnect mid-write-payload of a valid write
    TestClient c(f.socket());
    ASSERT_TRUE(c.Handshake("disk"));
    ASSERT_TRUE(c.SendRequest(kCmdWrite, 0, 1, 0, 65536, std::vector<uint8_t>(1000, 9)));
  }
  bystander.Check(106);
  {  // disconnect mid-request: a large read whose reply nobody reads (EPIPE, never SIGPIPE)
    TestClient c(f.socket());
    ASSERT_TRUE(c.Handshake("disk"));
    for (uint64_t i = 0; i < 4; i++) ASSERT_TRUE(c.SendRequest(kCmdRead, 0, i, 0, 8u << 20));
  }
  bystander.Check(107);
  EXPECT_GE(f.server().Stats().connections_total, 8u);
}

TEST(NbdServer, BadRequestsGetErrorsAndTheConnectionGoesOn) {
  ServerFixture f;
  TestClient c(f.socket());
  ASSERT_TRUE(c.Handshake("disk"));
  std::vector<uint8_t> back;
  EXPECT_EQ(c.Read(kSize, 512, &back), kEINVAL);             // past the end
  EXPECT_EQ(c.Read(UINT64_MAX - 511, 512, &back), kEINVAL);  // offset + length overflows
  EXPECT_EQ(c.Write(kSize - 512, std::vector<uint8_t>(1024, 1)), kENOSPC);
  EXPECT_EQ(c.Command(kCmdWriteZeroes, kSize, 512), kENOSPC);
  EXPECT_EQ(c.Command(kCmdTrim, kSize, 512), kEINVAL);
  EXPECT_EQ(c.Command(77, 0, 512), kEINVAL);                 // unknown command
  EXPECT_EQ(c.Command(kCmdRead, 0, 512, 1u << 9), kEINVAL);  // unknown flag
  EXPECT_EQ(c.Command(kCmdFlush, 512, 0), kEINVAL);
  EXPECT_EQ(c.Command(kCmdBlockStatus, 0, 512), kEINVAL);    // not negotiated
  EXPECT_EQ(f.server().Stats().requests_refused, 9u);        // each one above, counted once
  const auto data = Pattern(5, 4096);
  ASSERT_EQ(c.Write(4096, data), 0);
  ASSERT_EQ(c.Read(4096, 4096, &back), 0);
  EXPECT_EQ(back, data);
  ASSERT_EQ(c.Read(4097, 10, &back), 0);
  const ServerStats stats = f.server().Stats();
  EXPECT_EQ(stats.requests_refused, 9u);  // served requests do not count
  EXPECT_EQ(stats.unaligned_requests, 1u);
}

// Minimum block size 1: a client that asked for the block sizes (as the test client does) may
// still read and write single bytes; the device does the read-modify-write.
TEST(NbdServer, UnalignedRequestsAreServedAfterAgreeingToBlockSizes) {
  ServerFixture f;
  TestClient c(f.socket());
  auto go = c.Handshake("disk");
  ASSERT_TRUE(go);
  ASSERT_EQ(go->min_block, 1u);
  const auto before = Pattern(8, 4096);
  ASSERT_EQ(c.Write(0, before), 0);
  ASSERT_EQ(c.Write(1000, {'a', 'b', 'c'}), 0);
  std::vector<uint8_t> back;
  ASSERT_EQ(c.Read(999, 5, &back), 0);
  EXPECT_EQ(back, (std::vector<uint8_t>{before[999], 'a', 'b', 'c', before[1003]}));
  EXPECT_EQ(c.Command(kCmdWriteZeroes, 2001, 7), 0);
  EXPECT_EQ(c.Command(kCmdTrim, 3001, 13), 0);
  std::vector<uint8_t> want = before;
  std::copy_n("abc", 3, want.begin() + 1000);
  std::fill_n(want.begin() + 2001, 7, 0);
  std::fill_n(want.begin() + 3001, 13, 0);
  std::vector<uint8_t> stored(4096);
  ASSERT_TRUE(f.device().Read(0, stored).ok());
  EXPECT_EQ(stored, want);
}

TEST(NbdServer, OversizedRequestsAreRefusedAndWritePayloadConsumed) {
  ServerFixture f(ServerFixture::DefaultOptions(), std::shared_ptr<BlockDevice>(NewMemDevice(48u << 20)));
  TestClient c(f.socket());
  ASSERT_TRUE(c.Handshake("disk"));
  std::vector<uint8_t> back;
  EXPECT_EQ(c.Read(0, (32u << 20) + 512, &back), kEINVAL);  // over the maximum payload
  // An oversized write with its whole payload: refused, the payload is consumed (not stored),
  // the stream stays in sync.
  EXPECT_EQ(c.Write(0, std::vector<uint8_t>((32u << 20) + 512, 5)), kEINVAL);
  ASSERT_EQ(c.Read(0, 4096, &back), 0);
  EXPECT_EQ(back, std::vector<uint8_t>(4096, 0));
  EXPECT_EQ(c.Write(0, std::vector<uint8_t>(32u << 20, 6)), 0);  // exactly the maximum is fine
}

TEST(NbdServer, UnalignedRequestsServedWithoutBlockSizeAgreement) {
  ServerFixture f;
  TestClient c(f.socket());
  ASSERT_TRUE(c.Handshake("disk", false, false, /*ask_block_size=*/false));
  const auto data = Pattern(6, 1000);
  ASSERT_EQ(c.Write(12345, data), 0);
  std::vector<uint8_t> back;
  ASSERT_EQ(c.Read(12345, 1000, &back), 0);
  EXPECT_EQ(back, data);
}

TEST(NbdServer, DiscWaitsForPipelinedRequests) {
  ServerFixture f;
  TestClient c(f.socket());
  ASSERT_TRUE(c.Handshake("disk"));
  const auto data = Pattern(7, 4096);
  for (uint64_t i = 0; i < 16; i++) ASSERT_TRUE(c.SendRequest(kCmdWrite, 0, i, i * 4096, 4096, data));
  ASSERT_TRUE(c.SendRequest(kCmdDisc, 0, 99, 0, 0));
  for (int i = 0; i < 16; i++) {
    auto r = c.ReadSimpleReply();
    ASSERT_TRUE(r) << i;
    EXPECT_EQ(r->error, 0u);
  }
  EXPECT_TRUE(c.WaitClosed());
  std::vector<uint8_t> back(4096);
  ASSERT_TRUE(f.device().Read(15 * 4096, back).ok());
  EXPECT_EQ(back, data);
}

TEST(NbdServer, MaxConnectionsClosesExtraClients) {
  ServerOptions o = ServerFixture::DefaultOptions();
  o.max_connections = 1;
  ServerFixture f(o);
  TestClient first(f.socket());
  ASSERT_TRUE(first.Handshake("disk"));
  TestClient second(f.socket());
  EXPECT_TRUE(second.WaitClosed());
  EXPECT_EQ(f.server().Stats().clients, 1u);
  EXPECT_EQ(f.server().Stats().refused, 1u);
  std::vector<uint8_t> back;
  EXPECT_EQ(first.Read(0, 512, &back), 0);
}

// ---- connection limits: handshake deadline, negotiating cap, transmission cap ------------------

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

ServerOptions LimitOptions(std::chrono::milliseconds timeout, size_t max_handshakes = 128,
                           size_t max_connections = 64) {
  ServerOptions o = ServerFixture::DefaultOptions();
  o.handshake_timeout = timeout;
  o.max_handshakes = max_handshakes;
  o.max_connections = max_connections;
  return o;
}

// Counters that a connection's thread updates after the client saw its socket close: polled.
bool StatsReach(const Server& server, const std::function<bool(const ServerStats&)>& want) {
  const auto until = Clock::now() + std::chrono::seconds(10);
  while (!want(server.Stats())) {
    if (Clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

// A client the server has accepted (it read the greeting) and that then says nothing.
std::unique_ptr<TestClient> IdleClient(const std::string& socket) {
  auto c = std::make_unique<TestClient>(socket);
  uint16_t flags = 0;
  EXPECT_TRUE(c->ReadGreeting(&flags));
  return c;
}

// The rest of a handshake after the greeting: client flags, GO; the reply type of GO.
uint32_t FinishHandshake(TestClient& c) {
  if (!c.SendClientFlags(kClientFlagFixedNewstyle | kClientFlagNoZeroes)) return 0;
  if (!c.SendOption(kOptGo, InfoRequestData("disk", {}))) return 0;
  for (auto r = c.ReadOptionReply(); r; r = c.ReadOptionReply()) {
    if (r->type != kRepInfo) return r->type;
  }
  return 0;
}

TEST(NbdServerLimits, SilentClientIsClosedAtTheHandshakeTimeout) {
  ServerFixture f(LimitOptions(std::chrono::milliseconds(500)));
  const auto start = Clock::now();
  auto idle = IdleClient(f.socket());
  EXPECT_TRUE(idle->WaitClosed(5000));
  EXPECT_GE(SecondsSince(start), 0.45);
  EXPECT_LT(SecondsSince(start), 3.0);
  const ServerStats s = f.server().Stats();
  EXPECT_EQ(s.handshake_timeouts, 1u);
  EXPECT_EQ(s.negotiating, 0u);
  EXPECT_EQ(s.clients, 0u);
  EXPECT_EQ(s.connections_total, 1u);
  EXPECT_EQ(s.evicted, 0u);
  EXPECT_EQ(s.refused, 0u);
}

// One byte every 100 ms of a long option: every read makes progress, yet the deadline is total.
TEST(NbdServerLimits, SlowLorisIsClosedAtTheDeadline) {
  ServerFixture f(LimitOptions(std::chrono::milliseconds(1000)));
  const auto start = Clock::now();
  TestClient loris(f.socket());
  uint16_t flags = 0;
  ASSERT_TRUE(loris.ReadGreeting(&flags));
  std::vector<uint8_t> trickle;
  AppendBE32(&trickle, kClientFlagFixedNewstyle);
  AppendBE64(&trickle, kOptionMagic);
  AppendBE32(&trickle, kOptInfo);
  AppendBE32(&trickle, 4000);
  trickle.resize(trickle.size() + 4000, 'x');
  bool closed = false;
  size_t sent = 0;
  while (!closed && sent < trickle.size() && SecondsSince(start) < 5) {
    if (!loris.Send({trickle[sent]})) break;
    sent++;
    closed = loris.WaitClosed(100);
  }
  EXPECT_TRUE(closed || loris.WaitClosed(1000));
  EXPECT_GE(sent, 8u);  // it did trickle
  EXPECT_GE(SecondsSince(start), 0.95);
  EXPECT_LT(SecondsSince(start), 2.5);
  ASSERT_TRUE(StatsReach(f.server(), [](const ServerStats& s) { return s.clients == 0; }));
  EXPECT_EQ(f.server().Stats().handshake_timeouts, 1u);
}

TEST(NbdServerLimits, ZeroTimeoutMeansNoLimit) {
  ServerFixture f(LimitOptions(std::chrono::milliseconds(0)));
  auto idle = IdleClient(f.socket());
  EXPECT_FALSE(idle->WaitClosed(700));
  EXPECT_EQ(FinishHandshake(*idle), kRepAck);
  EXPECT_EQ(f.server().Stats().handshake_timeouts, 0u);
}

TEST(NbdServerLimits, FullHandshakeCapEvictsTheOldest) {
  ServerFixture f(LimitOptions(std::chrono::milliseconds(0), /*max_handshakes=*/2));
  auto first = IdleClient(f.socket());
  auto second = IdleClient(f.socket());
  EXPECT_EQ(f.server().Stats().negotiating, 2u);
  auto third = IdleClient(f.socket());  // the cap is full: the oldest goes
  EXPECT_TRUE(first->WaitClosed(5000));
  ServerStats s = f.server().Stats();
  EXPECT_EQ(s.evicted, 1u);
  EXPECT_EQ(s.negotiating, 2u);
  EXPECT_EQ(FinishHandshake(*second), kRepAck);  // the others were left alone
  EXPECT_EQ(FinishHandshake(*third), kRepAck);
  ASSERT_TRUE(StatsReach(f.server(), [](const ServerStats& s) { return s.clients == 2; }));
  s = f.server().Stats();
  EXPECT_EQ(s.negotiating, 0u);
  EXPECT_EQ(s.transmitting, 2u);
  EXPECT_EQ(s.connections_total, 3u);
  EXPECT_EQ(s.evicted, 1u);
  EXPECT_EQ(s.handshake_timeouts, 0u);
  EXPECT_EQ(s.refused, 0u);
}

// Clients in transmission do not count against the handshake cap, and a good client gets through
// while idle ones hold every handshake slot.
TEST(NbdServerLimits, GoodClientsServedWhileHandshakeSlotsAreHeld) {
  constexpr size_t kCap = 8;
  ServerFixture f(LimitOptions(std::chrono::milliseconds(10000), kCap));
  Bystander early(f.socket());
  std::vector<std::unique_ptr<TestClient>> idle;
  for (size_t i = 0; i < kCap; i++) idle.push_back(IdleClient(f.socket()));
  EXPECT_EQ(f.server().Stats().negotiating, kCap);
  early.Check(200);
  for (int round = 0; round < 3; round++) {
    Bystander late(f.socket());  // evicts the oldest idle one, then leaves negotiation
    late.Check(201 + round);
    early.Check(210 + round);
  }
  for (size_t i = 0; i < kCap; i++) idle.push_back(IdleClient(f.socket()));  // a second wave
  early.Check(220);
  ASSERT_TRUE(StatsReach(f.server(), [](const ServerStats& s) { return s.clients == 1 + kCap; }));
  // The first late client evicted one idle client; the slot it left on entering transmission
  // served the other late ones and the first of the second wave; the rest of that wave evicted
  // one each: kCap evictions in all.
  const ServerStats s = f.server().Stats();
  EXPECT_EQ(s.evicted, kCap);
  EXPECT_EQ(s.negotiating, kCap);
  EXPECT_EQ(s.transmitting, 1u);
  EXPECT_EQ(s.connections_total, 1 + 2 * kCap + 3);
  EXPECT_EQ(s.handshake_timeouts, 0u);
  size_t closed = 0;
  for (auto& c : idle) closed += c->WaitClosed(50) ? 1 : 0;
  EXPECT_EQ(closed, kCap);
}

// max_connections counts the transmission phase only: over it, a newcomer is closed at once and
// a GO gets ERR_POLICY; once a client leaves, the same negotiating client may enter.
TEST(NbdServerLimits, TransmissionCapRefusesAtAcceptAndAtGo) {
  ServerFixture f(LimitOptions(std::chrono::milliseconds(10000), 128, /*max_connections=*/1));
  auto waiting = IdleClient(f.socket());
  auto served = std::make_unique<TestClient>(f.socket());
  ASSERT_TRUE(served->Handshake("disk"));
  TestClient refused(f.socket());
  EXPECT_TRUE(refused.WaitClosed(5000));
  uint16_t flags = 0;
  EXPECT_FALSE(refused.ReadGreeting(&flags));
  EXPECT_EQ(FinishHandshake(*waiting), kRepErrPolicy);
  served.reset();
  ASSERT_TRUE(StatsReach(f.server(), [](const ServerStats& s) { return s.transmitting == 0; }));
  ASSERT_TRUE(waiting->SendOption(kOptGo, InfoRequestData("disk", {})));
  auto r = waiting->ReadOptionReply();
  while (r && r->type == kRepInfo) r = waiting->ReadOptionReply();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->type, kRepAck);
  std::vector<uint8_t> back;
  EXPECT_EQ(waiting->Read(0, 512, &back), 0);
  const ServerStats s = f.server().Stats();
  EXPECT_EQ(s.refused, 1u);
  EXPECT_EQ(s.go_refused, 1u);
  EXPECT_EQ(s.connections_total, 2u);
  EXPECT_EQ(s.transmitting, 1u);
  EXPECT_EQ(s.negotiating, 0u);
}

// The TLS handshake runs on the socket's reads and writes, so the handshake deadline bounds it:
// a client that sends STARTTLS and then nothing, or trickles a TLS record, is cut off in time.
TEST(NbdServerLimits, DeadlineBoundsTheTlsHandshake) {
  ovbd::testing::TempDir dir;
  const std::string key = "alice:0123456789abcdef0123456789abcdef\n";
  ovbd::testing::WriteFileBytes(dir.Join("k.psk"), std::vector<uint8_t>(key.begin(), key.end()));
  TlsOptions tls;
  tls.mode = TlsMode::kRequire;
  tls.psk_file = dir.Join("k.psk");
  auto context = TlsContext::Load(tls);
  ASSERT_TRUE(context.ok()) << context.status().ToString();
  ServerOptions o = LimitOptions(std::chrono::milliseconds(800));
  o.tls = *context;
  ServerFixture f(o);
  auto start_tls = [&](TestClient& c) {
    uint16_t flags = 0;
    ASSERT_TRUE(c.ReadGreeting(&flags));
    ASSERT_TRUE(c.SendClientFlags(kClientFlagFixedNewstyle | kClientFlagNoZeroes));
    ASSERT_TRUE(c.SendOption(kOptStartTls, {}));
    auto ack = c.ReadOptionReply();
    ASSERT_TRUE(ack);
    ASSERT_EQ(ack->type, kRepAck);
  };
  {  // silent after the ACK
    const auto start = Clock::now();
    TestClient c(f.socket());
    start_tls(c);
    EXPECT_TRUE(c.WaitClosed(5000));
    EXPECT_GE(SecondsSince(start), 0.75);
    EXPECT_LT(SecondsSince(start), 3.0);
  }
  {  // a handshake record header claiming 512 bytes, then its body one byte per 50 ms
    const auto start = Clock::now();
    TestClient c(f.socket());
    start_tls(c);
    ASSERT_TRUE(c.Send({0x16, 0x03, 0x01, 0x02, 0x00}));
    bool closed = false;
    for (int i = 0; i < 100 && !closed; i++) closed = !c.Send({0x01}) || c.WaitClosed(50);
    EXPECT_TRUE(closed || c.WaitClosed(1000));
    EXPECT_GE(SecondsSince(start), 0.75);
    EXPECT_LT(SecondsSince(start), 3.0);
  }
  ASSERT_TRUE(StatsReach(f.server(), [](const ServerStats& s) { return s.clients == 0; }));
  const ServerStats s = f.server().Stats();
  EXPECT_EQ(s.handshake_timeouts, 2u);
  EXPECT_EQ(s.tls_handshake_failures, 2u);
  EXPECT_EQ(s.tls_sessions, 0u);
  EXPECT_NE(s.tls_last_failure.find("handshake not finished within 0.8 s"), std::string::npos) << s.tls_last_failure;
}

TEST(NbdServerLimits, RejectZeroCaps) {
  auto device = std::shared_ptr<BlockDevice>(NewMemDevice(4096));
  ServerOptions o;
  o.max_handshakes = 0;
  EXPECT_EQ(Server::Create(device, o).status().code(), Code::kInvalidArgument);
  o = ServerOptions{};
  o.max_connections = 0;
  EXPECT_EQ(Server::Create(device, o).status().code(), Code::kInvalidArgument);
}

// ---- concurrency ------------------------------------------------------------------------------

TEST(NbdServer, EightClientsOnDisjointRanges) {
  ServerFixture f;
  constexpr int kClients = 8;
  constexpr uint64_t kRange = kSize / kClients;
  constexpr uint32_t kChunk = 64 << 10;
  std::vector<std::thread> threads;
  std::vector<int> failures(kClients, 0);
  for (int i = 0; i < kClients; i++) {
    threads.emplace_back([&, i] {
      TestClient c(f.socket());
      if (!c.Handshake("disk")) return void(failures[i]++);
      const auto data = Pattern(1000 + i, kRange);
      const uint64_t base = i * kRange;
      // Pipelined: all writes first, then all replies (served concurrently by the workers).
      for (uint64_t off = 0; off < kRange; off += kChunk) {
        std::vector<uint8_t> piece(data.begin() + off, data.begin() + off + kChunk);
        if (!c.SendRequest(kCmdWrite, 0, off, base + off, kChunk, piece)) failures[i]++;
      }
      for (uint64_t off = 0; off < kRange; off += kChunk) {
        auto r = c.ReadSimpleReply();
        if (!r || r->error != 0) failures[i]++;
      }
      std::vector<uint8_t> back;
      for (uint64_t off = 0; off < kRange; off += kChunk) {
        if (c.Read(base + off, kChunk, &back) != 0 || !std::equal(back.begin(), back.end(), data.begin() + off)) {
          failures[i]++;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kClients; i++) EXPECT_EQ(failures[i], 0) << "client " << i;
  for (int i = 0; i < kClients; i++) {
    std::vector<uint8_t> back(kRange);
    ASSERT_TRUE(f.device().Read(i * kRange, back).ok());
    EXPECT_EQ(back, Pattern(1000 + i, kRange)) << "range " << i;
  }
}

// ---- shutdown ---------------------------------------------------------------------------------

// A MemDevice whose reads wait at a gate: the test holds a read in flight while it shuts down.
class GatedDevice final : public BlockDevice {
 public:
  GatedDevice() : inner_(NewMemDevice(kSize)) {}
  uint64_t Size() const override { return inner_->Size(); }
  const std::string& Name() const override { return inner_->Name(); }
  BlockDeviceCaps Capabilities() const override { return inner_->Capabilities(); }
  Status Read(uint64_t offset, std::span<uint8_t> buf) override {
    std::unique_lock lock(mu_);
    entered_ = true;
    cv_.notify_all();
    cv_.wait(lock, [this] { return open_; });
    lock.unlock();
    return inner_->Read(offset, buf);
  }
  Status Write(uint64_t o, std::span<const uint8_t> d, bool fua) override { return inner_->Write(o, d, fua); }
  Status Trim(uint64_t o, uint64_t l, bool fua) override { return inner_->Trim(o, l, fua); }
  Status Zero(uint64_t o, uint64_t l, bool fua, bool h) override { return inner_->Zero(o, l, fua, h); }
  Status Flush() override { return inner_->Flush(); }
  Result<std::vector<Extent>> Extents(uint64_t o, uint64_t l) override { return inner_->Extents(o, l); }
  DeviceStats Stats() const override { return inner_->Stats(); }

  void WaitEntered() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return entered_; });
  }
  void Open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::unique_ptr<BlockDevice> inner_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool entered_ = false, open_ = false;
};

TEST(NbdServer, ShutdownFinishesInFlightRequests) {
  auto device = std::make_shared<GatedDevice>();
  ASSERT_TRUE(device->Write(0, Pattern(8, 4096), false).ok());
  ServerFixture f(ServerFixture::DefaultOptions(), device);
  TestClient busy(f.socket());
  ASSERT_TRUE(busy.Handshake("disk"));
  TestClient idle(f.socket());
  ASSERT_TRUE(idle.Handshake("disk"));
  TestClient handshaking(f.socket());
  uint16_t flags = 0;
  ASSERT_TRUE(handshaking.ReadGreeting(&flags));

  ASSERT_TRUE(busy.SendRequest(kCmdRead, 0, 77, 0, 4096));
  device->WaitEntered();  // the read is in flight, held in the device
  std::thread stopper([&] { f.server().Shutdown(); });
  stopper.join();
  device->Open();
  auto reply = busy.ReadSimpleReply(4096);  // the in-flight read still gets its reply
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->cookie, 77u);
  EXPECT_EQ(reply->error, 0u);
  EXPECT_EQ(reply->payload, Pattern(8, 4096));
  EXPECT_TRUE(busy.WaitClosed());
  EXPECT_TRUE(idle.WaitClosed());
  EXPECT_TRUE(handshaking.WaitClosed());
  EXPECT_TRUE(f.Stop().ok());
  EXPECT_EQ(f.server().Stats().clients, 0u);
  EXPECT_NE(access(f.socket().c_str(), F_OK), 0);  // the socket file is gone
}

TEST(NbdServer, ListenTcpOnAnyPort) {
  auto server = Server::Create(std::shared_ptr<BlockDevice>(NewMemDevice(4096)), {});
  ASSERT_TRUE(server.ok());
  ASSERT_TRUE((*server)->ListenTcp("127.0.0.1", 0).ok());
  EXPECT_NE((*server)->tcp_port(), 0);
  std::thread run([&] { EXPECT_TRUE((*server)->Run().ok()); });
  (*server)->Shutdown();
  run.join();
}

// ---- real clients -----------------------------------------------------------------------------

bool HaveNbdinfo() { return access("/usr/bin/nbdinfo", X_OK) == 0; }
bool HavePythonNbd() {
  return access("/usr/bin/python3", X_OK) == 0 &&
         ovbd::testing::RunCommand("/usr/bin/python3 -c 'import nbd'").exit_code == 0;
}

TEST(NbdServer, NbdinfoReportsSizeAndMap) {
  if (!HaveNbdinfo() || !HavePythonNbd()) GTEST_SKIP() << "needs /usr/bin/nbdinfo and python3-libnbd";
  ServerFixture f;
  ASSERT_TRUE(f.device().Write(64 << 10, Pattern(9, 64 << 10), false).ok());
  const std::string uri = "'nbd+unix:///disk?socket=" + f.socket() + "'";
  auto json = ovbd::testing::RunCommand("/usr/bin/nbdinfo --json " + uri, false);
  ASSERT_EQ(json.exit_code, 0) << json.output;
  EXPECT_NE(json.output.find("\"export-size\": " + std::to_string(kSize)), std::string::npos) << json.output;
  EXPECT_NE(json.output.find("\"export-name\": \"disk\""), std::string::npos) << json.output;
  EXPECT_NE(json.output.find("\"is_read_only\": false"), std::string::npos) << json.output;

  auto map = ovbd::testing::RunCommand("/usr/bin/nbdinfo --map " + uri, false);
  ASSERT_EQ(map.exit_code, 0) << map.output;
  std::istringstream lines(map.output);
  std::vector<std::tuple<uint64_t, uint64_t, uint32_t>> runs;
  uint64_t offset, length;
  uint32_t type;
  std::string description;
  while (lines >> offset >> length >> type && std::getline(lines, description)) runs.emplace_back(offset, length, type);
  const std::vector<std::tuple<uint64_t, uint64_t, uint32_t>> expect = {
      {0, 64 << 10, 3}, {64 << 10, 64 << 10, 0}, {128 << 10, kSize - (128 << 10), 3}};
  EXPECT_EQ(runs, expect) << map.output;
}

TEST(NbdServer, PythonLibnbdRoundTrip) {
  if (!HavePythonNbd()) GTEST_SKIP() << "needs /usr/bin/python3 with the nbd module (python3-libnbd)";
  ServerFixture f;
  const std::string script =
      "import nbd, sys\n"
      "h = nbd.NBD()\n"
      "h.add_meta_context('base:allocation')\n"
      "h.connect_uri(sys.argv[1])\n"
      "assert h.get_size() == " + std::to_string(kSize) + "\n"
      "assert h.can_multi_conn() and h.can_flush() and h.can_trim() and h.can_zero() and h.can_fua()\n"
      "data = bytes(range(256)) * 256\n"
      "h.pwrite(data, 1048576, nbd.CMD_FLAG_FUA)\n"
      "assert h.pread(65536, 1048576) == data\n"
      "h.zero(4096, 1048576)\n"
      "h.trim(4096, 1048576 + 8192)\n"
      "h.flush()\n"
      "got = h.pread(65536, 1048576)\n"
      "assert got[:4096] == bytes(4096) and got[4096:8192] == data[4096:8192]\n"
      "assert got[8192:12288] == bytes(4096) and got[12288:] == data[12288:]\n"
      "seen = []\n"
      "h.block_status(65536, 1048576, lambda ctx, off, ents, err: seen.append((ctx, list(ents))) or 0)\n"
      "assert seen and seen[0][0] == 'base:allocation', seen\n"
      "h.shutdown()\n"
      "print('ok')\n";
  ovbd::testing::TempDir dir;
  const std::string path = dir.Join("client.py");
  ovbd::testing::WriteFileBytes(path, std::vector<uint8_t>(script.begin(), script.end()));
  auto r = ovbd::testing::RunCommand("/usr/bin/python3 " + path + " 'nbd+unix:///disk?socket=" + f.socket() + "'");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("ok"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace ovbd::nbd
