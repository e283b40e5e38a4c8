// Option negotiation and the transmission loop driven from memory (MemoryStream), no sockets.
#include "export/nbd/handshake.h"

#include <gtest/gtest.h>

#include <optional>

#include "export/nbd/connection.h"
#include "export/nbd/nbd_test_client.h"
#include "export/nbd/protocol.h"
#include "export/nbd/stream.h"
#include "export/nbd/worker_pool.h"

namespace ovbd::nbd {
namespace {

using nbdtest::InfoRequestData;
using nbdtest::MetaContextData;

// Builds a client byte stream.
class ClientBytes {
 public:
  explicit ClientBytes(uint32_t flags = kClientFlagFixedNewstyle | kClientFlagNoZeroes) { AppendBE32(&b_, flags); }
  ClientBytes& Option(uint32_t option, const std::vector<uint8_t>& data = {}) {
    AppendBE64(&b_, kOptionMagic);
    AppendBE32(&b_, option);
    AppendBE32(&b_, static_cast<uint32_t>(data.size()));
    b_.insert(b_.end(), data.begin(), data.end());
    return *this;
  }
  ClientBytes& Request(uint16_t type, uint64_t cookie, uint64_t offset, uint32_t length, uint16_t flags = 0,
                       const std::vector<uint8_t>& payload = {}) {
    auto r = EncodeRequest(RequestHeader{flags, type, cookie, offset, length});
    b_.insert(b_.end(), r.begin(), r.end());
    b_.insert(b_.end(), payload.begin(), payload.end());
    return *this;
  }
  ClientBytes& Raw(const std::vector<uint8_t>& bytes) {
    b_.insert(b_.end(), bytes.begin(), bytes.end());
    return *this;
  }
  std::vector<uint8_t> bytes() const { return b_; }

 private:
  std::vector<uint8_t> b_;
};

// Parses what the server wrote.
class ServerBytes {
 public:
  explicit ServerBytes(std::vector<uint8_t> b) : b_(std::move(b)) {}
  bool Greeting() {
    if (!Has(kGreetingSize) || GetBE64(At()) != kInitMagic) return false;
    pos_ += kGreetingSize;
    return true;
  }
  std::optional<nbdtest::OptionReply> Reply() {
    if (!Has(kOptionReplyHeaderSize) || GetBE64(At()) != kOptionReplyMagic) return std::nullopt;
    nbdtest::OptionReply r;
    r.option = GetBE32(At() + 8);
    r.type = GetBE32(At() + 12);
    const uint32_t len = GetBE32(At() + 16);
    pos_ += kOptionReplyHeaderSize;
    if (!Has(len)) return std::nullopt;
    r.data.assign(At(), At() + len);
    pos_ += len;
    return r;
  }
  std::optional<nbdtest::Chunk> Chunk() {
    if (!Has(4)) return std::nullopt;
    nbdtest::Chunk c;
    if (GetBE32(At()) == kSimpleReplyMagic) {
      if (!Has(kSimpleReplySize)) return std::nullopt;
      c.error = GetBE32(At() + 4);
      c.cookie = GetBE64(At() + 8);
      pos_ += kSimpleReplySize;
      return c;
    }
    if (!Has(kStructuredHeaderSize) || GetBE32(At()) != kStructuredReplyMagic) return std::nullopt;
    c.flags = GetBE16(At() + 4);
    c.type = GetBE16(At() + 6);
    c.cookie = GetBE64(At() + 8);
    const uint32_t len = GetBE32(At() + 16);
    pos_ += kStructuredHeaderSize;
    if (!Has(len)) return std::nullopt;
    c.payload.assign(At(), At() + len);
    pos_ += len;
    if ((c.type & 0x8000) && len >= 4) c.error = GetBE32(c.payload.data());
    return c;
  }
  std::vector<uint8_t> Take(size_t n) {
    if (!Has(n)) return {};
    std::vector<uint8_t> out(At(), At() + n);
    pos_ += n;
    return out;
  }
  bool AtEnd() const { return pos_ == b_.size(); }

 private:
  bool Has(size_t n) const { return b_.size() - pos_ >= n; }
  const uint8_t* At() const { return b_.data() + pos_; }
  std::vector<uint8_t> b_;
  size_t pos_ = 0;
};

ExportInfo TestExport() {
  ExportInfo info;
  info.name = "disk";
  info.description = "a test disk";
  info.size = 1 << 20;
  BlockDeviceCaps caps;
  caps.writable = caps.can_flush = caps.can_fua = caps.can_trim = caps.can_zero = caps.can_extents = true;
  info.flags = TransmissionFlags(caps, false);
  info.min_block = 512;
  info.preferred_block = 4096;
  info.max_payload = 64 << 10;
  return info;
}

struct Outcome {
  Result<Negotiated> result;
  ServerBytes out;
};

Outcome RunHandshake(const ClientBytes& client, const ExportInfo& info = TestExport(), const AdmitFn& admit = {}) {
  MemoryStream stream(client.bytes());
  auto result = Negotiate(stream, info, {}, admit);
  return Outcome{std::move(result), ServerBytes(stream.output())};
}

TEST(NbdHandshake, GoSendsInfoAndEntersTransmission) {
  auto o = RunHandshake(ClientBytes().Option(kOptGo, InfoRequestData("disk", {kInfoName, kInfoDescription, kInfoBlockSize})));
  ASSERT_TRUE(o.result.ok()) << o.result.status().ToString();
  EXPECT_TRUE(o.result->block_size_agreed);
  EXPECT_FALSE(o.result->structured_replies);
  ASSERT_TRUE(o.out.Greeting());
  std::vector<uint16_t> seen;
  for (;;) {
    auto r = o.out.Reply();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->option, kOptGo);
    if (r->type == kRepAck) break;
    ASSERT_EQ(r->type, kRepInfo);
    const uint16_t type = GetBE16(r->data.data());
    seen.push_back(type);
    if (type == kInfoExport) {
      EXPECT_EQ(GetBE64(r->data.data() + 2), 1u << 20);
      EXPECT_EQ(GetBE16(r->data.data() + 10), TestExport().flags);
    }
    const std::string text(r->data.begin() + 2, r->data.end());
    if (type == kInfoName) {
      EXPECT_EQ(text, "disk");
    }
    if (type == kInfoDescription) {
      EXPECT_EQ(text, "a test disk");
    }
    if (type == kInfoBlockSize) {
      EXPECT_EQ(GetBE32(r->data.data() + 2), 512u);
      EXPECT_EQ(GetBE32(r->data.data() + 6), 4096u);
      EXPECT_EQ(GetBE32(r->data.data() + 10), 64u << 10);
    }
  }
  EXPECT_EQ(seen, (std::vector<uint16_t>{kInfoExport, kInfoName, kInfoDescription, kInfoBlockSize}));
  EXPECT_TRUE(o.out.AtEnd());  // no zero padding after GO
}

TEST(NbdHandshake, DefaultExportNameMapsToTheExport) {
  auto o = RunHandshake(ClientBytes().Option(kOptGo, InfoRequestData("", {})));
  ASSERT_TRUE(o.result.ok());
  EXPECT_FALSE(o.result->block_size_agreed);  // not asked for: no alignment is enforced
}

TEST(NbdHandshake, InfoThenGo) {
  auto o = RunHandshake(ClientBytes()
                            .Option(kOptInfo, InfoRequestData("disk", {kInfoBlockSize}))
                            .Option(kOptGo, InfoRequestData("disk", {})));
  ASSERT_TRUE(o.result.ok());
  EXPECT_FALSE(o.result->block_size_agreed);  // INFO alone does not commit the client
}

TEST(NbdHandshake, UnknownExportGetsErrUnknownAndMayRetry) {
  auto o = RunHandshake(ClientBytes()
                            .Option(kOptGo, InfoRequestData("nope", {}))
                            .Option(kOptGo, InfoRequestData("disk", {})));
  ASSERT_TRUE(o.result.ok());
  ASSERT_TRUE(o.out.Greeting());
  auto r = o.out.Reply();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->type, kRepErrUnknown);
}

TEST(NbdHandshake, ExportNameWithAndWithoutZeroes) {
  for (bool no_zeroes : {true, false}) {
    ClientBytes c(kClientFlagFixedNewstyle | (no_zeroes ? kClientFlagNoZeroes : 0));
    c.Option(kOptExportName, std::vector<uint8_t>{'d', 'i', 's', 'k'});
    auto o = RunHandshake(c);
    ASSERT_TRUE(o.result.ok());
    ASSERT_TRUE(o.out.Greeting());
    auto reply = o.out.Take(10);
    ASSERT_EQ(reply.size(), 10u);
    EXPECT_EQ(GetBE64(reply.data()), 1u << 20);
    EXPECT_EQ(GetBE16(reply.data() + 8), TestExport().flags);
    EXPECT_EQ(o.out.Take(124).size(), no_zeroes ? 0u : 124u);
    EXPECT_TRUE(o.out.AtEnd());
  }
}

// The server's transmission cap: a refused GO is answered with ERR_POLICY alone (no INFO replies
// before it) and the client may try again; INFO never asks for admission.
TEST(NbdHandshake, RefusedGoGetsErrPolicyAndMayRetry) {
  int asked = 0;
  const AdmitFn admit = [&] { return ++asked >= 2; };
  auto o = RunHandshake(ClientBytes()
                            .Option(kOptInfo, InfoRequestData("disk", {}))
                            .Option(kOptGo, InfoRequestData("disk", {}))
                            .Option(kOptGo, InfoRequestData("disk", {})),
                        TestExport(), admit);
  ASSERT_TRUE(o.result.ok()) << o.result.status().ToString();
  EXPECT_EQ(asked, 2);
  ASSERT_TRUE(o.out.Greeting());
  auto r = o.out.Reply();
  while (r && r->option == kOptInfo) r = o.out.Reply();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->option, kOptGo);
  EXPECT_EQ(r->type, kRepErrPolicy);
  r = o.out.Reply();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->type, kRepInfo);  // the second GO is admitted
}

TEST(NbdHandshake, RefusedExportNameCloses) {
  auto o = RunHandshake(ClientBytes().Option(kOptExportName, std::vector<uint8_t>{'d', 'i', 's', 'k'}), TestExport(),
                        [] { return false; });
  EXPECT_EQ(o.result.status().code(), Code::kUnavailable);
  ASSERT_TRUE(o.out.Greeting());
  EXPECT_TRUE(o.out.AtEnd());  // no export reply
}

TEST(NbdHandshake, UnknownExportIsNotAskedForAdmission) {
  bool asked = false;
  auto o = RunHandshake(ClientBytes().Option(kOptGo, InfoRequestData("nope", {})), TestExport(), [&] {
    asked = true;
    return true;
  });
  EXPECT_FALSE(o.result.ok());  // end of stream after the ERR_UNKNOWN
  EXPECT_FALSE(asked);
}

TEST(NbdHandshake, ExportNameUnknownCloses) {
  auto o = RunHandshake(ClientBytes().Option(kOptExportName, std::vector<uint8_t>{'x'}));
  EXPECT_FALSE(o.result.ok());
}

TEST(NbdHandshake, ListAbortAndUnknownOption) {
  auto o = RunHandshake(ClientBytes().Option(kOptList).Option(kOptStartTls).Option(999).Option(kOptAbort));
  EXPECT_FALSE(o.result.ok());
  ASSERT_TRUE(o.out.Greeting());
  auto server = o.out.Reply();
  ASSERT_TRUE(server);
  EXPECT_EQ(server->type, kRepServer);
  EXPECT_EQ(GetBE32(server->data.data()), 4u);
  EXPECT_EQ(std::string(server->data.begin() + 4, server->data.begin() + 8), "disk");
  EXPECT_EQ(std::string(server->data.begin() + 8, server->data.end()), "a test disk");  // the description
  EXPECT_EQ(o.out.Reply()->type, kRepAck);
  EXPECT_EQ(o.out.Reply()->type, kRepErrPolicy);  // STARTTLS: TLS is off here
  auto unknown = o.out.Reply();
  EXPECT_EQ(unknown->option, 999u);
  EXPECT_EQ(unknown->type, kRepErrUnsup);
  auto abort = o.out.Reply();
  EXPECT_EQ(abort->option, kOptAbort);
  EXPECT_EQ(abort->type, kRepAck);
  EXPECT_TRUE(o.out.AtEnd());
}

TEST(NbdHandshake, RejectListWithData) {
  auto o = RunHandshake(ClientBytes().Option(kOptList, {1}).Option(kOptStructuredReply, {1}).Option(kOptAbort));
  ASSERT_TRUE(o.out.Greeting());
  EXPECT_EQ(o.out.Reply()->type, kRepErrInvalid);
  EXPECT_EQ(o.out.Reply()->type, kRepErrInvalid);
}

TEST(NbdHandshake, StructuredAndMetaContext) {
  auto o = RunHandshake(ClientBytes()
                            .Option(kOptSetMetaContext, MetaContextData("disk", {"base:allocation"}))  // too early
                            .Option(kOptStructuredReply)
                            .Option(kOptListMetaContext, MetaContextData("disk", {}))
                            .Option(kOptListMetaContext, MetaContextData("disk", {"base:"}))
                            .Option(kOptListMetaContext, MetaContextData("disk", {"x-other:thing"}))
                            .Option(kOptSetMetaContext, MetaContextData("", {"base:allocation", "qemu:dirty"}))
                            .Option(kOptGo, InfoRequestData("disk", {})));
  ASSERT_TRUE(o.result.ok());
  EXPECT_TRUE(o.result->structured_replies);
  EXPECT_TRUE(o.result->base_allocation);
  ASSERT_TRUE(o.out.Greeting());
  EXPECT_EQ(o.out.Reply()->type, kRepErrInvalid);
  EXPECT_EQ(o.out.Reply()->type, kRepAck);
  for (int list = 0; list < 2; list++) {
    auto ctx = o.out.Reply();
    ASSERT_EQ(ctx->type, kRepMetaContext);
    EXPECT_EQ(GetBE32(ctx->data.data()), 0u);  // LIST: id reserved, 0
    EXPECT_EQ(std::string(ctx->data.begin() + 4, ctx->data.end()), "base:allocation");
    EXPECT_EQ(o.out.Reply()->type, kRepAck);
  }
  EXPECT_EQ(o.out.Reply()->type, kRepAck);  // unknown namespace: nothing, then ACK
  auto set = o.out.Reply();
  ASSERT_EQ(set->type, kRepMetaContext);
  EXPECT_EQ(GetBE32(set->data.data()), kBaseAllocationId);
  EXPECT_EQ(o.out.Reply()->type, kRepAck);
}

// The flags of NBD_INFO_EXPORT (or of the EXPORT_NAME reply) in the server's output.
uint16_t InfoExportFlags(const nbdtest::OptionReply& reply) { return GetBE16(reply.data.data() + 10); }

TEST(NbdHandshake, SendDfOnlyAfterStructuredReply) {
  auto o = RunHandshake(ClientBytes()
                            .Option(kOptInfo, InfoRequestData("disk", {}))
                            .Option(kOptStructuredReply)
                            .Option(kOptInfo, InfoRequestData("disk", {}))
                            .Option(kOptGo, InfoRequestData("disk", {})));
  ASSERT_TRUE(o.result.ok());
  ASSERT_TRUE(o.out.Greeting());
  std::vector<uint16_t> flags;  // of each NBD_INFO_EXPORT, in order
  for (auto r = o.out.Reply(); r; r = o.out.Reply()) {
    if (r->type == kRepInfo && GetBE16(r->data.data()) == kInfoExport) flags.push_back(InfoExportFlags(*r));
  }
  ASSERT_EQ(flags.size(), 3u);
  EXPECT_EQ(flags[0], TestExport().flags);  // before STRUCTURED_REPLY: the spec wants SEND_DF clear
  EXPECT_EQ(flags[1], TestExport().flags | kTxSendDf);
  EXPECT_EQ(flags[2], TestExport().flags | kTxSendDf);
}

TEST(NbdHandshake, ExportNameSendsDfOnlyWithStructuredReplies) {
  for (bool structured : {false, true}) {
    ClientBytes c;
    if (structured) c.Option(kOptStructuredReply);
    c.Option(kOptExportName, std::vector<uint8_t>{'d', 'i', 's', 'k'});
    auto o = RunHandshake(c);
    ASSERT_TRUE(o.result.ok());
    ASSERT_TRUE(o.out.Greeting());
    if (structured) {
      EXPECT_EQ(o.out.Reply()->type, kRepAck);
    }
    auto reply = o.out.Take(10);
    ASSERT_EQ(reply.size(), 10u);
    EXPECT_EQ(GetBE16(reply.data() + 8), structured ? TestExport().flags | kTxSendDf : TestExport().flags);
  }
}

TEST(NbdHandshake, SetMetaContextFailureClearsSelection) {
  auto o = RunHandshake(ClientBytes()
                            .Option(kOptStructuredReply)
                            .Option(kOptSetMetaContext, MetaContextData("disk", {"base:allocation"}))
                            .Option(kOptSetMetaContext, MetaContextData("other", {"base:allocation"}))
                            .Option(kOptGo, InfoRequestData("disk", {})));
  ASSERT_TRUE(o.result.ok());
  EXPECT_FALSE(o.result->base_allocation);
}

TEST(NbdHandshake, RejectMalformedOptionData) {
  std::vector<uint8_t> long_name = InfoRequestData(std::string(kMaxNameLength + 1, 'a'), {});
  auto o = RunHandshake(ClientBytes()
                            .Option(kOptGo, {0, 0, 0, 9})  // name length past the data
                            .Option(kOptGo, long_name)
                            .Option(kOptGo, InfoRequestData("disk", {})));
  ASSERT_TRUE(o.result.ok());
  ASSERT_TRUE(o.out.Greeting());
  EXPECT_EQ(o.out.Reply()->type, kRepErrInvalid);
  EXPECT_EQ(o.out.Reply()->type, kRepErrTooBig);
}

TEST(NbdHandshake, RejectOversizedOptionByClosing) {
  ClientBytes c;
  std::vector<uint8_t> header;
  AppendBE64(&header, kOptionMagic);
  AppendBE32(&header, kOptGo);
  AppendBE32(&header, kMaxOptionData + 1);
  c.Raw(header);
  auto o = RunHandshake(c);
  EXPECT_FALSE(o.result.ok());
  ASSERT_TRUE(o.out.Greeting());
  EXPECT_TRUE(o.out.AtEnd());  // nothing read, nothing answered
}

TEST(NbdHandshake, RejectBadClientFlagsAndMagic) {
  EXPECT_FALSE(RunHandshake(ClientBytes(1u << 5).Option(kOptGo, InfoRequestData("", {}))).result.ok());
  ClientBytes c;
  std::vector<uint8_t> bad(kOptionHeaderSize, 0x41);
  c.Raw(bad);
  EXPECT_FALSE(RunHandshake(c).result.ok());
}

TEST(NbdHandshake, TruncatedStreamsEndCleanly) {
  const auto full = ClientBytes().Option(kOptStructuredReply).Option(kOptGo, InfoRequestData("disk", {1, 3})).bytes();
  for (size_t cut = 0; cut < full.size(); cut++) {
    MemoryStream stream(std::vector<uint8_t>(full.begin(), full.begin() + static_cast<long>(cut)));
    EXPECT_FALSE(Negotiate(stream, TestExport()).ok()) << cut;
  }
}

TEST(NbdHandshake, RejectTooManyOptions) {
  ClientBytes c;
  for (int i = 0; i < kMaxOptions; i++) c.Option(kOptStructuredReply);
  c.Option(kOptGo, InfoRequestData("", {}));
  EXPECT_FALSE(RunHandshake(c).result.ok());
}

// ---- the transmission loop from memory ----------------------------------------------------------

struct Served {
  Status status;
  ServerBytes out;
};

Served Serve(BlockDevice& device, const ClientBytes& client, bool read_only = false) {
  ExportInfo info = TestExport();
  info.flags = TransmissionFlags(device.Capabilities(), read_only);
  info.size = device.Size();
  MemoryStream stream(client.bytes());
  InlineExecutor executor;
  Connection connection(stream, device, info, executor);
  Status status = connection.Serve();
  ServerBytes out(stream.output());
  EXPECT_TRUE(out.Greeting());
  for (;;) {  // skip the option replies up to GO's ACK
    auto r = out.Reply();
    if (!r || (r->option == kOptGo && r->type == kRepAck)) break;
  }
  return Served{std::move(status), std::move(out)};
}

TEST(NbdConnection, SimpleRepliesRoundTrip) {
  auto device = NewMemDevice(1 << 20);
  std::vector<uint8_t> data(4096, 0xab);
  auto s = Serve(*device, ClientBytes()
                              .Option(kOptGo, InfoRequestData("", {}))
                              .Request(kCmdWrite, 1, 8192, 4096, 0, data)
                              .Request(kCmdRead, 2, 8192, 4096)
                              .Request(kCmdFlush, 3, 0, 0)
                              .Request(kCmdRead, 4, 1 << 20, 512)
                              .Request(kCmdDisc, 5, 0, 0));
  EXPECT_TRUE(s.status.ok()) << s.status.ToString();
  auto w = s.out.Chunk();
  EXPECT_EQ(w->cookie, 1u);
  EXPECT_EQ(w->error, 0u);
  auto r = s.out.Chunk();
  EXPECT_EQ(r->cookie, 2u);
  EXPECT_EQ(r->error, 0u);
  EXPECT_EQ(s.out.Take(4096), data);
  EXPECT_EQ(s.out.Chunk()->error, 0u);
  auto bad = s.out.Chunk();
  EXPECT_EQ(bad->cookie, 4u);
  EXPECT_EQ(bad->error, kEINVAL);
  EXPECT_TRUE(s.out.AtEnd());  // no payload after an error, no reply to DISC
}

TEST(NbdConnection, RefusedWritePayloadIsConsumed) {
  auto device = NewMemDevice(1 << 20);
  std::vector<uint8_t> data(1024, 1);
  auto s = Serve(*device, ClientBytes()
                              .Option(kOptGo, InfoRequestData("", {}))
                              .Request(kCmdWrite, 1, (1 << 20) - 512, 1024, 0, data)  // past the end
                              .Request(kCmdWrite, 2, 0, 1024, kCmdFlagReqOne, data)   // bad flag
                              .Request(kCmdRead, 3, 0, 16)),
       ro = Serve(*device, ClientBytes()
                               .Option(kOptGo, InfoRequestData("", {}))
                               .Request(kCmdWrite, 4, 0, 1024, 0, data)
                               .Request(kCmdRead, 5, 0, 16),
                  true);
  EXPECT_EQ(s.out.Chunk()->error, kENOSPC);
  EXPECT_EQ(s.out.Chunk()->error, kEINVAL);
  auto read = s.out.Chunk();
  EXPECT_EQ(read->cookie, 3u);  // the stream stayed in sync
  EXPECT_EQ(s.out.Take(16), std::vector<uint8_t>(16, 0));
  EXPECT_EQ(ro.out.Chunk()->error, kEPERM);
  EXPECT_EQ(ro.out.Chunk()->cookie, 5u);
}

TEST(NbdConnection, StructuredReadsAndBlockStatus) {
  auto device = NewMemDevice(1 << 20);
  ASSERT_TRUE(device->Write(4096, std::vector<uint8_t>(4096, 7), false).ok());
  auto s = Serve(*device, ClientBytes()
                              .Option(kOptStructuredReply)
                              .Option(kOptSetMetaContext, MetaContextData("", {"base:allocation"}))
                              .Option(kOptGo, InfoRequestData("", {}))
                              .Request(kCmdRead, 1, 4096, 512)
                              .Request(kCmdRead, 2, 0, 0)
                              .Request(kCmdRead, 3, 1 << 20, 512)
                              .Request(kCmdBlockStatus, 4, 0, 3 * 4096)
                              .Request(kCmdBlockStatus, 5, 0, 3 * 4096, kCmdFlagReqOne));
  auto data = s.out.Chunk();
  EXPECT_EQ(data->type, kReplyTypeOffsetData);
  EXPECT_EQ(data->flags, kReplyFlagDone);
  ASSERT_EQ(data->payload.size(), 8u + 512);
  EXPECT_EQ(GetBE64(data->payload.data()), 4096u);
  EXPECT_EQ(data->payload[8], 7);
  auto empty = s.out.Chunk();
  EXPECT_EQ(empty->type, kReplyTypeNone);
  EXPECT_EQ(empty->flags, kReplyFlagDone);
  auto err = s.out.Chunk();
  EXPECT_EQ(err->type, kReplyTypeError);  // structured read errors are error chunks
  EXPECT_EQ(err->error, kEINVAL);
  auto bs = s.out.Chunk();
  ASSERT_EQ(bs->type, kReplyTypeBlockStatus);
  ASSERT_EQ(bs->payload.size(), 4u + 3 * 8);
  EXPECT_EQ(GetBE32(bs->payload.data()), kBaseAllocationId);
  EXPECT_EQ(GetBE32(bs->payload.data() + 4), 4096u);
  EXPECT_EQ(GetBE32(bs->payload.data() + 8), kStateHole | kStateZero);
  EXPECT_EQ(GetBE32(bs->payload.data() + 12), 4096u);
  EXPECT_EQ(GetBE32(bs->payload.data() + 16), 0u);
  EXPECT_EQ(GetBE32(bs->payload.data() + 20), 4096u);
  auto one = s.out.Chunk();
  EXPECT_EQ(one->payload.size(), 4u + 8);  // REQ_ONE: one descriptor
}

TEST(NbdConnection, DfReadsAreOneChunkWithStructuredRepliesAndRefusedWithout) {
  auto device = NewMemDevice(1 << 20);
  ASSERT_TRUE(device->Write(0, std::vector<uint8_t>(4096, 5), false).ok());
  auto structured = Serve(*device, ClientBytes()
                                       .Option(kOptStructuredReply)
                                       .Option(kOptGo, InfoRequestData("", {}))
                                       .Request(kCmdRead, 1, 100, 3000, kCmdFlagDf)
                                       .Request(kCmdWrite, 2, 0, 16, kCmdFlagDf, std::vector<uint8_t>(16, 1))
                                       .Request(kCmdRead, 3, 0, (64 << 10) + 1, kCmdFlagDf));
  auto data = structured.out.Chunk();
  ASSERT_TRUE(data);
  EXPECT_EQ(data->type, kReplyTypeOffsetData);
  EXPECT_EQ(data->flags, kReplyFlagDone);  // the whole read in one chunk, as DF asks
  ASSERT_EQ(data->payload.size(), 8u + 3000);
  EXPECT_EQ(GetBE64(data->payload.data()), 100u);
  EXPECT_EQ(std::vector<uint8_t>(data->payload.begin() + 8, data->payload.end()), std::vector<uint8_t>(3000, 5));
  EXPECT_EQ(structured.out.Chunk()->error, kEINVAL);     // DF is for reads only
  EXPECT_EQ(structured.out.Chunk()->error, kEOVERFLOW);  // over the maximum payload with DF
  auto simple = Serve(*device, ClientBytes()
                                   .Option(kOptGo, InfoRequestData("", {}))
                                   .Request(kCmdRead, 4, 0, 512, kCmdFlagDf));
  auto refused = simple.out.Chunk();
  EXPECT_EQ(refused->type, nbdtest::Chunk::kSimple);
  EXPECT_EQ(refused->error, kEINVAL);  // no structured replies: SEND_DF was never sent
  std::vector<uint8_t> unchanged(16);
  ASSERT_TRUE(device->Read(0, unchanged).ok());
  EXPECT_EQ(unchanged, std::vector<uint8_t>(16, 5));
}

TEST(NbdConnection, CountsRefusedAndUnalignedRequests) {
  auto device = NewMemDevice(1 << 20);
  ExportInfo info = TestExport();
  info.flags = TransmissionFlags(device->Capabilities(), true);  // read-only
  info.size = device->Size();
  info.min_block = 1;
  const auto client = ClientBytes()
                          .Option(kOptGo, InfoRequestData("", {kInfoBlockSize}))
                          .Request(kCmdRead, 1, 1 << 20, 512)                 // past the end: EINVAL
                          .Request(kCmdWrite, 2, 0, 4, 0, {1, 2, 3, 4})       // read-only: EPERM
                          .Request(kCmdTrim, 3, 0, 512)                       // read-only: EPERM
                          .Request(kCmdRead, 4, 0, 512, kCmdFlagDf)           // DF not negotiated
                          .Request(kCmdRead, 5, 0, 4096)                      // aligned
                          .Request(kCmdRead, 6, 1000, 3)                      // served, unaligned
                          .Request(kCmdRead, 7, 512, 100)                     // served, unaligned
                          .Request(kCmdDisc, 8, 0, 0);
  MemoryStream stream(client.bytes());
  InlineExecutor executor;
  EdgeCounters counters;
  Connection connection(stream, *device, info, executor, nullptr, ConnectionLimits{}, TlsNegotiation{},
                        &counters);
  ASSERT_TRUE(connection.Serve().ok());
  EXPECT_EQ(counters.requests_refused.load(), 4u);
  EXPECT_EQ(counters.unaligned_requests.load(), 2u);
}

TEST(NbdConnection, BadMagicEndsTheConnection) {
  auto device = NewMemDevice(1 << 20);
  auto bytes = EncodeRequest(RequestHeader{0, kCmdRead, 1, 0, 512});
  bytes[3] ^= 1;
  auto s = Serve(*device, ClientBytes().Option(kOptGo, InfoRequestData("", {})).Raw(bytes).Request(kCmdRead, 2, 0, 512));
  EXPECT_FALSE(s.status.ok());
  EXPECT_TRUE(s.out.AtEnd());
}

TEST(NbdConnection, InFlightCapsStillServeOneMaxRequest) {
  auto device = NewMemDevice(1 << 20);
  ExportInfo info = TestExport();
  info.flags = TransmissionFlags(device->Capabilities(), false);
  std::vector<uint8_t> data(64 << 10, 3);
  ClientBytes c;
  c.Option(kOptGo, InfoRequestData("", {}));
  for (uint64_t i = 0; i < 8; i++) c.Request(kCmdWrite, i, i * data.size(), static_cast<uint32_t>(data.size()), 0, data);
  MemoryStream stream(c.bytes());
  InlineExecutor executor;
  Connection connection(stream, *device, info, executor, nullptr, ConnectionLimits{1, 1024});
  (void)connection.Serve();
  std::vector<uint8_t> back(data.size());
  ASSERT_TRUE(device->Read(7 * data.size(), back).ok());
  EXPECT_EQ(back, data);
}

// ---- STARTTLS (the TLS stream is a second MemoryStream: what the client sends inside TLS) -----

struct TlsOutcome {
  Result<Negotiated> result;
  ServerBytes plain;   // what the server wrote before the upgrade
  ServerBytes inside;  // ... and after it
  int upgrades = 0;
};

TlsOutcome RunTlsHandshake(TlsMode mode, const ClientBytes& plain, const std::vector<uint8_t>& inside_bytes = {},
                           bool upgrade_fails = false) {
  MemoryStream plain_stream(plain.bytes());
  MemoryStream inside_stream(inside_bytes);
  int upgrades = 0;
  TlsNegotiation tls;
  tls.mode = mode;
  tls.start = [&]() -> Result<ByteStream*> {
    upgrades++;
    if (upgrade_fails) return Status::IOError("handshake failed");
    return &inside_stream;
  };
  auto result = Negotiate(plain_stream, TestExport(), tls);
  return TlsOutcome{std::move(result), ServerBytes(plain_stream.output()), ServerBytes(inside_stream.output()),
                    upgrades};
}

// Options sent inside TLS: no greeting and no client flags, only options.
std::vector<uint8_t> InsideOptions(std::initializer_list<std::pair<uint32_t, std::vector<uint8_t>>> options) {
  std::vector<uint8_t> b;
  for (const auto& [option, data] : options) {
    AppendBE64(&b, kOptionMagic);
    AppendBE32(&b, option);
    AppendBE32(&b, static_cast<uint32_t>(data.size()));
    b.insert(b.end(), data.begin(), data.end());
  }
  return b;
}

TEST(NbdHandshakeTls, RequiredRefusesEveryOptionButStartTlsAndLeaksNothing) {
  auto o = RunTlsHandshake(TlsMode::kRequire, ClientBytes()
                                                  .Option(kOptList)
                                                  .Option(kOptInfo, InfoRequestData("disk", {kInfoName}))
                                                  .Option(kOptGo, InfoRequestData("", {}))
                                                  .Option(kOptStructuredReply)
                                                  .Option(kOptListMetaContext, MetaContextData("disk", {}))
                                                  .Option(999));
  EXPECT_FALSE(o.result.ok());  // the client ran out of bytes
  ASSERT_TRUE(o.plain.Greeting());
  for (uint32_t option : {kOptList, kOptInfo, kOptGo, kOptStructuredReply, kOptListMetaContext, 999u}) {
    auto r = o.plain.Reply();
    ASSERT_TRUE(r) << option;
    EXPECT_EQ(r->option, option);
    EXPECT_EQ(r->type, kRepErrTlsReqd) << option;
    const std::string text(r->data.begin(), r->data.end());
    EXPECT_EQ(text.find("disk"), std::string::npos) << "the export name leaked: " << text;
  }
  EXPECT_TRUE(o.plain.AtEnd());
  EXPECT_EQ(o.upgrades, 0);
}

TEST(NbdHandshakeTls, RequiredExportNameClosesWithoutAByte) {
  auto o = RunTlsHandshake(TlsMode::kRequire, ClientBytes().Option(kOptExportName, {'d', 'i', 's', 'k'}));
  EXPECT_FALSE(o.result.ok());
  ASSERT_TRUE(o.plain.Greeting());
  EXPECT_TRUE(o.plain.AtEnd());
}

TEST(NbdHandshakeTls, RequiredAbortIsStillAcknowledged) {
  auto o = RunTlsHandshake(TlsMode::kRequire, ClientBytes().Option(kOptAbort));
  EXPECT_FALSE(o.result.ok());
  ASSERT_TRUE(o.plain.Greeting());
  auto r = o.plain.Reply();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->type, kRepAck);
}

TEST(NbdHandshakeTls, StartTlsThenGoInsideTls) {
  auto o = RunTlsHandshake(TlsMode::kRequire, ClientBytes().Option(kOptStartTls),
                           InsideOptions({{kOptGo, InfoRequestData("disk", {})}}));
  ASSERT_TRUE(o.result.ok()) << o.result.status().ToString();
  EXPECT_TRUE(o.result->tls);
  EXPECT_EQ(o.upgrades, 1);
  ASSERT_TRUE(o.plain.Greeting());
  auto ack = o.plain.Reply();
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->option, kOptStartTls);
  EXPECT_EQ(ack->type, kRepAck);
  EXPECT_TRUE(ack->data.empty());
  EXPECT_TRUE(o.plain.AtEnd());  // everything after the ACK went through TLS
  auto info = o.inside.Reply();
  ASSERT_TRUE(info);
  EXPECT_EQ(info->type, kRepInfo);
}

TEST(NbdHandshakeTls, StateFromBeforeStartTlsIsForgotten) {
  auto o = RunTlsHandshake(TlsMode::kOn,
                           ClientBytes()
                               .Option(kOptStructuredReply)
                               .Option(kOptSetMetaContext, MetaContextData("disk", {"base:allocation"}))
                               .Option(kOptStartTls),
                           InsideOptions({{kOptGo, InfoRequestData("disk", {})}}));
  ASSERT_TRUE(o.result.ok()) << o.result.status().ToString();
  EXPECT_TRUE(o.result->tls);
  EXPECT_FALSE(o.result->structured_replies);
  EXPECT_FALSE(o.result->base_allocation);
}

TEST(NbdHandshakeTls, SecondStartTlsIsInvalid) {
  auto o = RunTlsHandshake(TlsMode::kRequire, ClientBytes().Option(kOptStartTls),
                           InsideOptions({{kOptStartTls, {}}, {kOptGo, InfoRequestData("disk", {})}}));
  ASSERT_TRUE(o.result.ok());
  EXPECT_EQ(o.upgrades, 1);
  auto r = o.inside.Reply();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->option, kOptStartTls);
  EXPECT_EQ(r->type, kRepErrInvalid);
}

TEST(NbdHandshakeTls, StartTlsWithDataIsInvalid) {
  auto o = RunTlsHandshake(TlsMode::kRequire, ClientBytes().Option(kOptStartTls, {1, 2, 3}));
  ASSERT_TRUE(o.plain.Greeting());
  auto r = o.plain.Reply();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->type, kRepErrInvalid);
  EXPECT_EQ(o.upgrades, 0);
}

TEST(NbdHandshakeTls, OffRefusesStartTlsByPolicyAndServesPlaintext) {
  auto o = RunTlsHandshake(TlsMode::kOff, ClientBytes().Option(kOptStartTls).Option(kOptGo, InfoRequestData("", {})));
  ASSERT_TRUE(o.result.ok());
  EXPECT_FALSE(o.result->tls);
  ASSERT_TRUE(o.plain.Greeting());
  auto r = o.plain.Reply();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->type, kRepErrPolicy);
  EXPECT_EQ(o.upgrades, 0);
}

TEST(NbdHandshakeTls, OnServesPlaintextClientsToo) {
  auto o = RunTlsHandshake(TlsMode::kOn, ClientBytes().Option(kOptGo, InfoRequestData("", {})));
  ASSERT_TRUE(o.result.ok());
  EXPECT_FALSE(o.result->tls);
}

TEST(NbdHandshakeTls, FailedUpgradeEndsTheConnection) {
  auto o = RunTlsHandshake(TlsMode::kRequire, ClientBytes().Option(kOptStartTls).Option(kOptGo, InfoRequestData("", {})),
                           {}, /*upgrade_fails=*/true);
  EXPECT_FALSE(o.result.ok());
  ASSERT_TRUE(o.plain.Greeting());
  auto ack = o.plain.Reply();
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->type, kRepAck);
  EXPECT_TRUE(o.plain.AtEnd());  // no plaintext fallback: GO was never answered
}

}  // namespace
}  // namespace ovbd::nbd
