// Wire format round trips and rejections, and the request edge check (one case per rule).
#include "export/nbd/protocol.h"

#include <gtest/gtest.h>

#include <array>

#include "export/nbd/nbd_test_client.h"
#include "export/nbd/request.h"

namespace ovbd::nbd {
namespace {

std::vector<uint8_t> Bytes(std::initializer_list<int> v) { return std::vector<uint8_t>(v.begin(), v.end()); }

TEST(NbdProtocol, BigEndianHelpers) {
  uint8_t b[8];
  PutBE16(b, 0x1234);
  EXPECT_EQ(b[0], 0x12);
  EXPECT_EQ(b[1], 0x34);
  PutBE32(b, 0x89abcdef);
  EXPECT_EQ(GetBE32(b), 0x89abcdefu);
  EXPECT_EQ(b[0], 0x89);
  PutBE64(b, 0x0102030405060708ull);
  EXPECT_EQ(b[0], 1);
  EXPECT_EQ(b[7], 8);
  EXPECT_EQ(GetBE64(b), 0x0102030405060708ull);
}

TEST(NbdProtocol, GreetingLayout) {
  const auto g = EncodeGreeting(kFlagFixedNewstyle | kFlagNoZeroes);
  ASSERT_EQ(g.size(), kGreetingSize);
  EXPECT_EQ(std::string(g.begin(), g.begin() + 8), "NBDMAGIC");
  EXPECT_EQ(std::string(g.begin() + 8, g.begin() + 16), "IHAVEOPT");
  EXPECT_EQ(GetBE16(g.data() + 16), 3);
}

TEST(NbdProtocol, OptionHeaderDecodes) {
  std::array<uint8_t, kOptionHeaderSize> b{};
  PutBE64(b.data(), kOptionMagic);
  PutBE32(b.data() + 8, kOptGo);
  PutBE32(b.data() + 12, 77);
  auto h = DecodeOptionHeader(b);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->option, kOptGo);
  EXPECT_EQ(h->length, 77u);
}

TEST(NbdProtocol, RejectOptionHeaderBadMagic) {
  std::array<uint8_t, kOptionHeaderSize> b{};
  PutBE64(b.data(), kOptionMagic ^ 1);
  EXPECT_TRUE(DecodeOptionHeader(b).status().IsCorruption());
}

TEST(NbdProtocol, OptionReplyLayout) {
  const auto r = EncodeOptionReply(kOptList, kRepErrUnsup, "no");
  ASSERT_EQ(r.size(), kOptionReplyHeaderSize + 2);
  EXPECT_EQ(GetBE64(r.data()), kOptionReplyMagic);
  EXPECT_EQ(GetBE32(r.data() + 8), kOptList);
  EXPECT_EQ(GetBE32(r.data() + 12), 0x80000001u);
  EXPECT_EQ(GetBE32(r.data() + 16), 2u);
  EXPECT_EQ(r[20], 'n');
}

TEST(NbdProtocol, ExportNameReplyPadding) {
  EXPECT_EQ(EncodeExportNameReply(1, 1, true).size(), 10u);
  const auto padded = EncodeExportNameReply(4096, 3, false);
  ASSERT_EQ(padded.size(), 134u);
  EXPECT_EQ(GetBE64(padded.data()), 4096u);
  EXPECT_EQ(GetBE16(padded.data() + 8), 3);
  EXPECT_EQ(padded.back(), 0);
}

TEST(NbdProtocol, InfoPayloads) {
  const auto e = EncodeInfoExport(1ull << 40, 0x1234);
  ASSERT_EQ(e.size(), 12u);
  EXPECT_EQ(GetBE16(e.data()), kInfoExport);
  EXPECT_EQ(GetBE64(e.data() + 2), 1ull << 40);
  EXPECT_EQ(GetBE16(e.data() + 10), 0x1234);
  const auto b = EncodeInfoBlockSize(512, 4096, 1u << 25);
  ASSERT_EQ(b.size(), 14u);
  EXPECT_EQ(GetBE16(b.data()), kInfoBlockSize);
  EXPECT_EQ(GetBE32(b.data() + 2), 512u);
  EXPECT_EQ(GetBE32(b.data() + 6), 4096u);
  EXPECT_EQ(GetBE32(b.data() + 10), 1u << 25);
  const auto n = EncodeInfoString(kInfoName, "disk");
  EXPECT_EQ(n.size(), 6u);
  const auto m = EncodeMetaContext(1, kBaseAllocation);
  EXPECT_EQ(GetBE32(m.data()), 1u);
  EXPECT_EQ(std::string(m.begin() + 4, m.end()), "base:allocation");
}

TEST(NbdProtocol, ServerEntryLayout) {
  const auto plain = EncodeServerEntry("disk");
  EXPECT_EQ(plain, (std::vector<uint8_t>{0, 0, 0, 4, 'd', 'i', 's', 'k'}));
  const auto described = EncodeServerEntry("", "ovbd: 1 layer");
  ASSERT_EQ(described.size(), 4u + 13);
  EXPECT_EQ(GetBE32(described.data()), 0u);  // the name length tells where the description starts
  EXPECT_EQ(std::string(described.begin() + 4, described.end()), "ovbd: 1 layer");
}

std::vector<uint8_t> InfoData(const std::string& name, std::vector<uint16_t> infos) {
  std::vector<uint8_t> b;
  AppendBE32(&b, static_cast<uint32_t>(name.size()));
  AppendBytes(&b, name);
  AppendBE16(&b, static_cast<uint16_t>(infos.size()));
  for (auto i : infos) AppendBE16(&b, i);
  return b;
}

TEST(NbdProtocol, InfoRequestRoundTrip) {
  InfoRequest r;
  OptionError e;
  ASSERT_TRUE(DecodeInfoRequest(InfoData("disk", {kInfoName, kInfoBlockSize}), &r, &e));
  EXPECT_EQ(r.name, "disk");
  EXPECT_EQ(r.infos, (std::vector<uint16_t>{kInfoName, kInfoBlockSize}));
  ASSERT_TRUE(DecodeInfoRequest(InfoData("", {}), &r, &e));
  EXPECT_EQ(r.name, "");
  EXPECT_TRUE(r.infos.empty());
}

TEST(NbdProtocol, RejectInfoRequestMalformed) {
  InfoRequest r;
  OptionError e;
  EXPECT_FALSE(DecodeInfoRequest(Bytes({0, 0, 0}), &r, &e));  // no room for the name length
  EXPECT_EQ(e.reply, kRepErrInvalid);
  EXPECT_FALSE(DecodeInfoRequest(Bytes({0, 0, 0, 9, 'a'}), &r, &e));  // name past the end
  EXPECT_EQ(e.reply, kRepErrInvalid);
  EXPECT_FALSE(DecodeInfoRequest(Bytes({0, 0, 0, 0, 0}), &r, &e));  // count cut
  auto data = InfoData("x", {1, 2});
  data.pop_back();  // count says 2, only 1.5 present
  EXPECT_FALSE(DecodeInfoRequest(data, &r, &e));
  EXPECT_EQ(e.reply, kRepErrInvalid);
  data = InfoData("x", {1});
  data.push_back(0);  // trailing byte
  EXPECT_FALSE(DecodeInfoRequest(data, &r, &e));
}

TEST(NbdProtocol, RejectInfoRequestNameOverCap) {
  InfoRequest r;
  OptionError e;
  EXPECT_TRUE(DecodeInfoRequest(InfoData(std::string(kMaxNameLength, 'n'), {}), &r, &e));
  EXPECT_FALSE(DecodeInfoRequest(InfoData(std::string(kMaxNameLength + 1, 'n'), {}), &r, &e));
  EXPECT_EQ(e.reply, kRepErrTooBig);
  // A huge claimed length is refused by the cap, before anything is read or allocated.
  EXPECT_FALSE(DecodeInfoRequest(Bytes({0xff, 0xff, 0xff, 0xff, 0, 0}), &r, &e));
  EXPECT_EQ(e.reply, kRepErrTooBig);
}

using nbdtest::MetaContextData;

TEST(NbdProtocol, MetaContextRequestRoundTrip) {
  MetaContextRequest r;
  OptionError e;
  ASSERT_TRUE(DecodeMetaContextRequest(MetaContextData("d", {"base:allocation", "x-foo:bar"}), &r, &e));
  EXPECT_EQ(r.name, "d");
  EXPECT_EQ(r.queries, (std::vector<std::string>{"base:allocation", "x-foo:bar"}));
  ASSERT_TRUE(DecodeMetaContextRequest(MetaContextData("", {}), &r, &e));
  EXPECT_TRUE(r.queries.empty());
}

TEST(NbdProtocol, RejectMetaContextMalformed) {
  MetaContextRequest r;
  OptionError e;
  auto data = MetaContextData("d", {"base:allocation"});
  data.pop_back();
  EXPECT_FALSE(DecodeMetaContextRequest(data, &r, &e));  // query cut short
  EXPECT_EQ(e.reply, kRepErrInvalid);
  data = MetaContextData("d", {"q"});
  data.push_back(7);
  EXPECT_FALSE(DecodeMetaContextRequest(data, &r, &e));  // trailing bytes
  // A count the data cannot hold: refused before reserving anything.
  data = MetaContextData("d", {});
  PutBE32(data.data() + data.size() - 4, 0xffffffffu);
  EXPECT_FALSE(DecodeMetaContextRequest(data, &r, &e));
  EXPECT_EQ(e.reply, kRepErrInvalid);
}

TEST(NbdProtocol, RejectMetaContextOverCaps) {
  MetaContextRequest r;
  OptionError e;
  EXPECT_FALSE(DecodeMetaContextRequest(MetaContextData("d", {std::string(kMaxNameLength + 1, 'q')}), &r, &e));
  EXPECT_EQ(e.reply, kRepErrTooBig);
  EXPECT_FALSE(DecodeMetaContextRequest(MetaContextData(std::string(kMaxNameLength + 1, 'n'), {}), &r, &e));
  EXPECT_EQ(e.reply, kRepErrTooBig);
  std::vector<std::string> many(kMaxMetaQueries + 1, "x:");
  EXPECT_FALSE(DecodeMetaContextRequest(MetaContextData("d", many), &r, &e));
  EXPECT_EQ(e.reply, kRepErrTooBig);
  many.pop_back();
  EXPECT_TRUE(DecodeMetaContextRequest(MetaContextData("d", many), &r, &e));
}

TEST(NbdProtocol, RequestRoundTrip) {
  const RequestHeader h{kCmdFlagFua, kCmdWrite, 0xdeadbeefcafef00dull, 1ull << 40, 65536};
  const auto bytes = EncodeRequest(h);
  ASSERT_EQ(bytes.size(), kRequestSize);
  EXPECT_EQ(GetBE32(bytes.data()), kRequestMagic);
  auto decoded = DecodeRequest(std::span<const uint8_t, kRequestSize>(bytes.data(), kRequestSize));
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, h);
}

TEST(NbdProtocol, RejectRequestBadMagic) {
  auto bytes = EncodeRequest(RequestHeader{});
  bytes[0] ^= 0xff;
  auto decoded = DecodeRequest(std::span<const uint8_t, kRequestSize>(bytes.data(), kRequestSize));
  EXPECT_TRUE(decoded.status().IsCorruption());
}

TEST(NbdProtocol, ReplyLayouts) {
  std::vector<uint8_t> out;
  AppendSimpleReply(&out, kEIO, 42);
  ASSERT_EQ(out.size(), kSimpleReplySize);
  EXPECT_EQ(GetBE32(out.data()), kSimpleReplyMagic);
  EXPECT_EQ(GetBE32(out.data() + 4), 5u);
  EXPECT_EQ(GetBE64(out.data() + 8), 42u);

  out.clear();
  AppendErrorChunk(&out, 7, kEINVAL, std::string(5000, 'm'));
  EXPECT_EQ(GetBE32(out.data()), kStructuredReplyMagic);
  EXPECT_EQ(GetBE16(out.data() + 4), kReplyFlagDone);
  EXPECT_EQ(GetBE16(out.data() + 6), kReplyTypeError);
  EXPECT_EQ(GetBE32(out.data() + 16), 6 + kMaxErrorMessage);  // message cut at the cap
  EXPECT_EQ(GetBE32(out.data() + 20), kEINVAL);
  EXPECT_EQ(GetBE16(out.data() + 24), kMaxErrorMessage);
  EXPECT_EQ(out.size(), kStructuredHeaderSize + 6 + kMaxErrorMessage);

  out.clear();
  const std::vector<BlockStatusDescriptor> d = {{4096, kStateHole | kStateZero}, {512, 0}};
  AppendBlockStatusChunk(&out, 9, kBaseAllocationId, d);
  ASSERT_EQ(out.size(), kStructuredHeaderSize + 4 + 16);
  EXPECT_EQ(GetBE16(out.data() + 6), kReplyTypeBlockStatus);
  EXPECT_EQ(GetBE32(out.data() + 16), 20u);
  EXPECT_EQ(GetBE32(out.data() + 20), kBaseAllocationId);
  EXPECT_EQ(GetBE32(out.data() + 24), 4096u);
  EXPECT_EQ(GetBE32(out.data() + 28), 3u);
  EXPECT_EQ(GetBE32(out.data() + 32), 512u);
}

TEST(NbdProtocol, TransmissionFlagsFollowCaps) {
  BlockDeviceCaps caps;
  EXPECT_EQ(TransmissionFlags(caps, false), kTxHasFlags | kTxReadOnly | kTxSendCache);
  caps.writable = caps.can_flush = caps.can_fua = caps.can_trim = caps.can_zero = caps.can_multi_conn = true;
  const uint16_t all = TransmissionFlags(caps, false);
  for (uint16_t f : {kTxSendFlush, kTxSendFua, kTxSendTrim, kTxSendWriteZeroes, kTxSendFastZero, kTxCanMultiConn}) {
    EXPECT_TRUE(all & f) << f;
  }
  EXPECT_FALSE(all & kTxReadOnly);
  EXPECT_FALSE(all & kTxSendDf);
  const uint16_t ro = TransmissionFlags(caps, true);
  EXPECT_TRUE(ro & kTxReadOnly);
  EXPECT_FALSE(ro & (kTxSendFlush | kTxSendFua | kTxSendTrim | kTxSendWriteZeroes | kTxSendFastZero));
  caps.can_trim = false;
  EXPECT_FALSE(TransmissionFlags(caps, false) & kTxSendTrim);
}

TEST(NbdProtocol, WireErrorMapping) {
  EXPECT_EQ(WireError(Status::InvalidArgument("x")), kEINVAL);
  EXPECT_EQ(WireError(Status::OutOfRange("x")), kEINVAL);
  EXPECT_EQ(WireError(Status::NoSpace("x")), kENOSPC);
  EXPECT_EQ(WireError(Status::NotSupported("x")), kENOTSUP);
  EXPECT_EQ(WireError(Status::Corruption("x")), kEIO);
  EXPECT_EQ(WireError(Status::IOError("x")), kEIO);
  EXPECT_EQ(WireError(Status::Unavailable("x")), kEIO);
  EXPECT_EQ(WireError(Status::NotFound("x")), kEIO);
  EXPECT_EQ(WireError(Status::FromErrno(EPERM, "x")), kEIO);  // FromErrno keeps no EPERM code
}

TEST(NbdProtocol, BlockSizeRules) {
  EXPECT_TRUE(CheckBlockSizes(1, 4096, 32u << 20).ok());
  EXPECT_TRUE(CheckBlockSizes(512, 4096, 32u << 20).ok());
  EXPECT_FALSE(CheckBlockSizes(0, 4096, 1u << 20).ok());
  EXPECT_FALSE(CheckBlockSizes(768, 4096, 1u << 20).ok());        // not a power of two
  EXPECT_FALSE(CheckBlockSizes(128u << 10, 128u << 10, 1u << 20).ok());  // min over 64 KiB
  EXPECT_FALSE(CheckBlockSizes(4096, 512, 1u << 20).ok());        // preferred below min
  EXPECT_FALSE(CheckBlockSizes(512, 4096, 2048).ok());            // max below preferred
  EXPECT_FALSE(CheckBlockSizes(512, 4096, (1u << 20) + 1).ok());  // max not a multiple of min
}

// ---- the request edge check -------------------------------------------------------------------

Session WritableSession() {
  BlockDeviceCaps caps;
  caps.writable = caps.can_flush = caps.can_fua = caps.can_trim = caps.can_zero = true;
  Session s;
  s.size = 1 << 20;
  s.flags = TransmissionFlags(caps, false);
  s.structured = true;
  s.base_allocation = true;
  s.min_block = 512;
  s.max_payload = 64 << 10;
  return s;
}

uint32_t Check(uint16_t type, uint64_t offset, uint32_t length, uint16_t flags = 0, Session s = WritableSession()) {
  return CheckRequest(RequestHeader{flags, type, 1, offset, length}, s).error;
}

TEST(NbdRequestCheck, AcceptsValidRequests) {
  EXPECT_EQ(Check(kCmdRead, 0, 4096), 0u);
  EXPECT_EQ(Check(kCmdWrite, 512, 512, kCmdFlagFua), 0u);
  EXPECT_EQ(Check(kCmdFlush, 0, 0), 0u);
  EXPECT_EQ(Check(kCmdTrim, 0, 1 << 20), 0u);  // no payload: max_payload does not apply
  EXPECT_EQ(Check(kCmdWriteZeroes, 0, 4096, kCmdFlagNoHole | kCmdFlagFastZero | kCmdFlagFua), 0u);
  EXPECT_EQ(Check(kCmdCache, 0, 4096), 0u);
  EXPECT_EQ(Check(kCmdBlockStatus, 0, 1 << 20, kCmdFlagReqOne), 0u);
  EXPECT_EQ(Check(kCmdRead, (1 << 20) - 512, 512), 0u);  // up to the last byte
  EXPECT_EQ(Check(kCmdRead, 4096, 0), 0u);
}

TEST(NbdRequestCheck, RejectUnknownCommandAndFlags) {
  EXPECT_EQ(Check(8, 0, 512), kEINVAL);
  EXPECT_EQ(Check(0xffff, 0, 512), kEINVAL);
  EXPECT_EQ(Check(kCmdRead, 0, 512, kCmdFlagDf), kEINVAL);  // SEND_DF not among the session's flags
  EXPECT_EQ(Check(kCmdRead, 0, 512, kCmdFlagReqOne), kEINVAL);
  EXPECT_EQ(Check(kCmdWrite, 0, 512, kCmdFlagNoHole), kEINVAL);
  EXPECT_EQ(Check(kCmdTrim, 0, 512, kCmdFlagFastZero), kEINVAL);
  EXPECT_EQ(Check(kCmdRead, 0, 512, 1u << 15), kEINVAL);
}

TEST(NbdRequestCheck, RejectOutOfRange) {
  EXPECT_EQ(Check(kCmdRead, 1 << 20, 512), kEINVAL);
  EXPECT_EQ(Check(kCmdRead, (1 << 20) - 512, 1024), kEINVAL);
  EXPECT_EQ(Check(kCmdRead, UINT64_MAX - 511, 1024), kEINVAL);  // offset + length overflows
  EXPECT_EQ(Check(kCmdTrim, 1 << 20, 512), kEINVAL);
  EXPECT_EQ(Check(kCmdBlockStatus, 1 << 20, 512), kEINVAL);
  EXPECT_EQ(Check(kCmdWrite, 1 << 20, 512), kENOSPC);  // writes past the end: ENOSPC
  EXPECT_EQ(Check(kCmdWriteZeroes, UINT64_MAX - 511, 1024), kENOSPC);
}

TEST(NbdRequestCheck, RejectOverMaxPayload) {
  EXPECT_EQ(Check(kCmdRead, 0, (64 << 10) + 512), kEINVAL);
  EXPECT_EQ(Check(kCmdWrite, 0, (64 << 10) + 512), kEINVAL);
  EXPECT_EQ(Check(kCmdRead, 0, 64 << 10), 0u);
}

TEST(NbdRequestCheck, RejectMisalignedOnlyWhenAgreed) {
  EXPECT_EQ(Check(kCmdRead, 1, 512), kEINVAL);
  EXPECT_EQ(Check(kCmdWrite, 0, 100), kEINVAL);
  EXPECT_EQ(Check(kCmdBlockStatus, 512, 1), kEINVAL);
  Session loose = WritableSession();
  loose.min_block = 1;  // the client did not ask for block sizes: any alignment
  EXPECT_EQ(Check(kCmdRead, 1, 100, 0, loose), 0u);
  EXPECT_EQ(Check(kCmdWrite, 3, 7, 0, loose), 0u);
  Session odd = WritableSession();
  odd.size = (1 << 20) + 100;  // an unaligned tail is reachable
  EXPECT_EQ(Check(kCmdRead, 1 << 20, 100, 0, odd), 0u);
}

TEST(NbdRequestCheck, DfOnlyOnReadsOnceSendDfWasSent) {
  Session df = WritableSession();
  df.flags |= kTxSendDf;
  EXPECT_EQ(Check(kCmdRead, 0, 4096, kCmdFlagDf, df), 0u);
  for (uint16_t type : {kCmdWrite, kCmdTrim, kCmdWriteZeroes, kCmdCache, kCmdBlockStatus}) {
    EXPECT_EQ(Check(type, 0, 512, kCmdFlagDf, df), kEINVAL) << type;
  }
  EXPECT_EQ(Check(kCmdFlush, 0, 0, kCmdFlagDf, df), kEINVAL);
  // DF asks for one chunk; a read over the maximum payload cannot be one: EOVERFLOW, which the
  // spec allows for DF; without DF the same read is EINVAL.
  EXPECT_EQ(Check(kCmdRead, 0, (64 << 10) + 512, kCmdFlagDf, df), kEOVERFLOW);
  EXPECT_EQ(Check(kCmdRead, 0, (64 << 10) + 512, 0, df), kEINVAL);
}

TEST(NbdRequestCheck, SessionGetsSendDfOnlyWithStructuredReplies) {
  ExportInfo info;
  info.size = 1 << 20;
  info.flags = kTxHasFlags | kTxReadOnly;
  Negotiated negotiated;
  EXPECT_EQ(MakeSession(info, negotiated).flags, info.flags);
  EXPECT_EQ(CheckRequest(RequestHeader{kCmdFlagDf, kCmdRead, 1, 0, 512}, MakeSession(info, negotiated)).error, kEINVAL);
  negotiated.structured_replies = true;
  EXPECT_EQ(MakeSession(info, negotiated).flags, info.flags | kTxSendDf);
  EXPECT_EQ(CheckRequest(RequestHeader{kCmdFlagDf, kCmdRead, 1, 0, 512}, MakeSession(info, negotiated)).error, 0u);
  EXPECT_EQ(ClientFlags(info.flags, false), info.flags);
  EXPECT_EQ(ClientFlags(info.flags, true), info.flags | kTxSendDf);
}

TEST(NbdRequestCheck, RejectFlushWithRange) {
  EXPECT_EQ(Check(kCmdFlush, 512, 0), kEINVAL);
  EXPECT_EQ(Check(kCmdFlush, 0, 512), kEINVAL);
}

TEST(NbdRequestCheck, RejectZeroLengthBlockStatus) { EXPECT_EQ(Check(kCmdBlockStatus, 0, 0), kEINVAL); }

TEST(NbdRequestCheck, ReadOnlyRefusesWritesWithEperm) {
  BlockDeviceCaps caps;
  caps.writable = true;
  Session s = WritableSession();
  s.flags = TransmissionFlags(caps, true);
  EXPECT_EQ(Check(kCmdWrite, 0, 512, 0, s), kEPERM);
  EXPECT_EQ(Check(kCmdTrim, 0, 512, 0, s), kEPERM);
  EXPECT_EQ(Check(kCmdWriteZeroes, 0, 512, 0, s), kEPERM);
  EXPECT_EQ(Check(kCmdWrite, 1 << 20, 512, 0, s), kEPERM);  // read-only wins over range
  EXPECT_EQ(Check(kCmdFlush, 0, 0, 0, s), kEINVAL);           // flush not advertised
  EXPECT_EQ(Check(kCmdRead, 0, 512, kCmdFlagFua, s), kEINVAL);  // FUA not advertised
  EXPECT_EQ(Check(kCmdRead, 0, 512, 0, s), 0u);
}

TEST(NbdRequestCheck, RejectUnnegotiatedCommands) {
  Session s = WritableSession();
  s.base_allocation = false;
  EXPECT_EQ(Check(kCmdBlockStatus, 0, 512, 0, s), kEINVAL);
  s = WritableSession();
  s.flags &= static_cast<uint16_t>(~(kTxSendTrim | kTxSendFastZero));
  EXPECT_EQ(Check(kCmdTrim, 0, 512, 0, s), kEINVAL);
  EXPECT_EQ(Check(kCmdWriteZeroes, 0, 512, kCmdFlagFastZero, s), kEINVAL);
}

TEST(NbdRequestCheck, UnalignedToSectorsCountsDataCommandsOffSectorBoundaries) {
  Session s = WritableSession();
  auto unaligned = [&](uint16_t type, uint64_t offset, uint32_t length) {
    return UnalignedToSectors(RequestHeader{0, type, 1, offset, length}, s);
  };
  for (uint16_t type : {kCmdRead, kCmdWrite, kCmdTrim, kCmdWriteZeroes}) {
    EXPECT_FALSE(unaligned(type, 4096, 512)) << type;
    EXPECT_FALSE(unaligned(type, 512, 0)) << type;
    EXPECT_TRUE(unaligned(type, 1, 512)) << type;
    EXPECT_TRUE(unaligned(type, 512, 100)) << type;
  }
  EXPECT_FALSE(unaligned(kCmdCache, 1, 100));  // no data moves: never counted
  EXPECT_FALSE(unaligned(kCmdBlockStatus, 1, 100));
  EXPECT_FALSE(unaligned(kCmdFlush, 0, 0));
  s.size = (1 << 20) + 100;  // the tail of an odd-sized export is reachable only unaligned
  EXPECT_FALSE(unaligned(kCmdRead, 1 << 20, 100));
  EXPECT_TRUE(unaligned(kCmdRead, 1 << 20, 50));
}

TEST(NbdRequestCheck, PayloadAndFootprint) {
  const RequestHeader write{0, kCmdWrite, 1, 0, 4096};
  const RequestHeader read{0, kCmdRead, 1, 0, 4096};
  EXPECT_EQ(PayloadLength(write), 4096u);
  EXPECT_EQ(PayloadLength(read), 0u);
  EXPECT_GE(RequestFootprint(write, Verdict{}), 4096u);
  EXPECT_GE(RequestFootprint(read, Verdict{}), 4096u);
  EXPECT_LT(RequestFootprint(RequestHeader{0, kCmdWrite, 1, 0, 0xffffffff}, Verdict{kEINVAL, ""}), 4096u);
}

}  // namespace
}  // namespace ovbd::nbd
