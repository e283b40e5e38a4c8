// NBD wire format: constants and pure encode/decode functions (no sockets, no threads), so every
// parser here can be unit-tested and fuzzed from memory. See docs/nbd.md for what the server does
// with these messages; the protocol itself is NetworkBlockDevice/nbd doc/proto.md.
//
//   handshake   S: "NBDMAGIC" "IHAVEOPT" u16 handshake-flags        C: u32 client-flags
//   option      C: "IHAVEOPT" u32 option u32 length data            (16-byte header)
//   opt reply   S: u64 0x3e889045565a9 u32 option u32 type u32 length data   (20-byte header)
//   request     C: u32 0x25609513 u16 flags u16 type u64 cookie u64 offset u32 length [payload]
//   simple      S: u32 0x67446698 u32 error u64 cookie [data]        (16 bytes)
//   structured  S: u32 0x668e33ef u16 flags u16 type u64 cookie u32 length payload   (20 bytes)
//
// Everything is big-endian ("network order") on the wire; fields are encoded one by one with the
// helpers below, never by casting structs. Decoders treat their input as hostile: every length is
// checked against the bytes present and against the named caps before anything is allocated.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ovbd/block_device.h"
#include "ovbd/status.h"

namespace ovbd::nbd {

// ---- big-endian coding ------------------------------------------------------------------------
inline void PutBE16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
inline void PutBE32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = static_cast<uint8_t>(v >> (24 - 8 * i));
}
inline void PutBE64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = static_cast<uint8_t>(v >> (56 - 8 * i));
}
inline uint16_t GetBE16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
inline uint32_t GetBE32(const uint8_t* p) {
  return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) |
         (static_cast<uint32_t>(p[2]) << 8) | static_cast<uint32_t>(p[3]);
}
inline uint64_t GetBE64(const uint8_t* p) {
  return (static_cast<uint64_t>(GetBE32(p)) << 32) | GetBE32(p + 4);
}
// Appending forms, for building messages in a byte vector.
void AppendBE16(std::vector<uint8_t>* out, uint16_t v);
void AppendBE32(std::vector<uint8_t>* out, uint32_t v);
void AppendBE64(std::vector<uint8_t>* out, uint64_t v);
void AppendBytes(std::vector<uint8_t>* out, std::string_view bytes);

// ---- magics and fixed sizes -------------------------------------------------------------------
inline constexpr uint64_t kInitMagic = 0x4e42444d41474943ull;    // "NBDMAGIC"
inline constexpr uint64_t kOptionMagic = 0x49484156454f5054ull;  // "IHAVEOPT"
inline constexpr uint64_t kOptionReplyMagic = 0x0003e889045565a9ull;
inline constexpr uint32_t kRequestMagic = 0x25609513u;
inline constexpr uint32_t kSimpleReplyMagic = 0x67446698u;
inline constexpr uint32_t kStructuredReplyMagic = 0x668e33efu;

inline constexpr size_t kGreetingSize = 18;          // magic, magic, u16 handshake flags
inline constexpr size_t kClientFlagsSize = 4;
inline constexpr size_t kOptionHeaderSize = 16;
inline constexpr size_t kOptionReplyHeaderSize = 20;
inline constexpr size_t kExportNameReplySize = 10;   // u64 size, u16 flags (+124 zeros, optional)
inline constexpr size_t kExportNameZeroPad = 124;
inline constexpr size_t kRequestSize = 28;
inline constexpr size_t kSimpleReplySize = 16;
inline constexpr size_t kStructuredHeaderSize = 20;

// ---- handshake flags (server) and client flags ------------------------------------------------
inline constexpr uint16_t kFlagFixedNewstyle = 1u << 0;
inline constexpr uint16_t kFlagNoZeroes = 1u << 1;
inline constexpr uint32_t kClientFlagFixedNewstyle = 1u << 0;
inline constexpr uint32_t kClientFlagNoZeroes = 1u << 1;
inline constexpr uint32_t kClientFlagsKnown = kClientFlagFixedNewstyle | kClientFlagNoZeroes;

// ---- options ----------------------------------------------------------------------------------
inline constexpr uint32_t kOptExportName = 1;
inline constexpr uint32_t kOptAbort = 2;
inline constexpr uint32_t kOptList = 3;
inline constexpr uint32_t kOptStartTls = 5;
inline constexpr uint32_t kOptInfo = 6;
inline constexpr uint32_t kOptGo = 7;
inline constexpr uint32_t kOptStructuredReply = 8;
inline constexpr uint32_t kOptListMetaContext = 9;
inline constexpr uint32_t kOptSetMetaContext = 10;

// ---- option replies ---------------------------------------------------------------------------
inline constexpr uint32_t kRepAck = 1;
inline constexpr uint32_t kRepServer = 2;
inline constexpr uint32_t kRepInfo = 3;
inline constexpr uint32_t kRepMetaContext = 4;
inline constexpr uint32_t kRepErrorBit = 1u << 31;
inline constexpr uint32_t kRepErrUnsup = kRepErrorBit | 1;
inline constexpr uint32_t kRepErrPolicy = kRepErrorBit | 2;
inline constexpr uint32_t kRepErrInvalid = kRepErrorBit | 3;
inline constexpr uint32_t kRepErrPlatform = kRepErrorBit | 4;
inline constexpr uint32_t kRepErrTlsReqd = kRepErrorBit | 5;
inline constexpr uint32_t kRepErrUnknown = kRepErrorBit | 6;
inline constexpr uint32_t kRepErrShutdown = kRepErrorBit | 7;
inline constexpr uint32_t kRepErrBlockSizeReqd = kRepErrorBit | 8;
inline constexpr uint32_t kRepErrTooBig = kRepErrorBit | 9;

// ---- NBD_INFO_* (in NBD_REP_INFO) -------------------------------------------------------------
inline constexpr uint16_t kInfoExport = 0;
inline constexpr uint16_t kInfoName = 1;
inline constexpr uint16_t kInfoDescription = 2;
inline constexpr uint16_t kInfoBlockSize = 3;

// ---- transmission flags -----------------------------------------------------------------------
inline constexpr uint16_t kTxHasFlags = 1u << 0;
inline constexpr uint16_t kTxReadOnly = 1u << 1;
inline constexpr uint16_t kTxSendFlush = 1u << 2;
inline constexpr uint16_t kTxSendFua = 1u << 3;
inline constexpr uint16_t kTxRotational = 1u << 4;
inline constexpr uint16_t kTxSendTrim = 1u << 5;
inline constexpr uint16_t kTxSendWriteZeroes = 1u << 6;
inline constexpr uint16_t kTxSendDf = 1u << 7;
inline constexpr uint16_t kTxCanMultiConn = 1u << 8;
inline constexpr uint16_t kTxSendResize = 1u << 9;
inline constexpr uint16_t kTxSendCache = 1u << 10;
inline constexpr uint16_t kTxSendFastZero = 1u << 11;

// ---- commands and command flags ---------------------------------------------------------------
inline constexpr uint16_t kCmdRead = 0;
inline constexpr uint16_t kCmdWrite = 1;
inline constexpr uint16_t kCmdDisc = 2;
inline constexpr uint16_t kCmdFlush = 3;
inline constexpr uint16_t kCmdTrim = 4;
inline constexpr uint16_t kCmdCache = 5;
inline constexpr uint16_t kCmdWriteZeroes = 6;
inline constexpr uint16_t kCmdBlockStatus = 7;

inline constexpr uint16_t kCmdFlagFua = 1u << 0;
inline constexpr uint16_t kCmdFlagNoHole = 1u << 1;
inline constexpr uint16_t kCmdFlagDf = 1u << 2;
inline constexpr uint16_t kCmdFlagReqOne = 1u << 3;
inline constexpr uint16_t kCmdFlagFastZero = 1u << 4;

// ---- structured reply types and flags ---------------------------------------------------------
inline constexpr uint16_t kReplyFlagDone = 1u << 0;
inline constexpr uint16_t kReplyTypeNone = 0;
inline constexpr uint16_t kReplyTypeOffsetData = 1;
inline constexpr uint16_t kReplyTypeOffsetHole = 2;
inline constexpr uint16_t kReplyTypeBlockStatus = 5;
inline constexpr uint16_t kReplyTypeError = (1u << 15) | 1;
inline constexpr uint16_t kReplyTypeErrorOffset = (1u << 15) | 2;

// ---- errors on the wire (fixed values, not the host's errno) ----------------------------------
inline constexpr uint32_t kEPERM = 1;
inline constexpr uint32_t kEIO = 5;
inline constexpr uint32_t kENOMEM = 12;
inline constexpr uint32_t kEINVAL = 22;
inline constexpr uint32_t kENOSPC = 28;
inline constexpr uint32_t kEOVERFLOW = 75;
inline constexpr uint32_t kENOTSUP = 95;
inline constexpr uint32_t kESHUTDOWN = 108;

// ---- base:allocation --------------------------------------------------------------------------
inline constexpr std::string_view kBaseAllocation = "base:allocation";
inline constexpr uint32_t kBaseAllocationId = 1;  // the id SET_META_CONTEXT hands out
inline constexpr uint32_t kStateHole = 1u << 0;
inline constexpr uint32_t kStateZero = 1u << 1;

// ---- implementation limits (ours, see docs/nbd.md) --------------------------------------------
inline constexpr uint32_t kMaxOptionData = 64u << 10;   // larger option data: disconnect
inline constexpr size_t kMaxNameLength = 4096;          // export names, queries (spec: MUST <= 4096)
inline constexpr size_t kMaxMetaQueries = 128;          // more: NBD_REP_ERR_TOO_BIG
inline constexpr size_t kMaxErrorMessage = 1024;        // error strings we send are cut here

// ---- handshake messages -----------------------------------------------------------------------
struct OptionHeader {
  uint32_t option = 0;
  uint32_t length = 0;
};
// The server greeting: NBDMAGIC, IHAVEOPT, handshake flags.
std::vector<uint8_t> EncodeGreeting(uint16_t handshake_flags);
// A 16-byte option header; Corruption on a bad magic.
Result<OptionHeader> DecodeOptionHeader(std::span<const uint8_t, kOptionHeaderSize> bytes);
// An option reply: 20-byte header + payload.
std::vector<uint8_t> EncodeOptionReply(uint32_t option, uint32_t type, std::span<const uint8_t> payload);
std::vector<uint8_t> EncodeOptionReply(uint32_t option, uint32_t type, std::string_view payload = {});
// Reply to NBD_OPT_EXPORT_NAME: size, transmission flags, 124 zeros unless no_zeroes.
std::vector<uint8_t> EncodeExportNameReply(uint64_t size, uint16_t flags, bool no_zeroes);
// NBD_REP_SERVER payload: u32 name length, name, then the description (the spec leaves the bytes
// after the name to the implementation, as text for people; libnbd reports it as the description).
std::vector<uint8_t> EncodeServerEntry(std::string_view name, std::string_view description = {});
// NBD_REP_INFO payloads.
std::vector<uint8_t> EncodeInfoExport(uint64_t size, uint16_t flags);
std::vector<uint8_t> EncodeInfoString(uint16_t info_type, std::string_view text);  // NAME, DESCRIPTION
std::vector<uint8_t> EncodeInfoBlockSize(uint32_t min_block, uint32_t preferred, uint32_t max_payload);
// NBD_REP_META_CONTEXT payload: u32 id, name.
std::vector<uint8_t> EncodeMetaContext(uint32_t id, std::string_view name);

// Data of NBD_OPT_INFO / NBD_OPT_GO: u32 name length, name, u16 count, u16 x count.
struct InfoRequest {
  std::string name;
  std::vector<uint16_t> infos;
};
// Data of NBD_OPT_{LIST,SET}_META_CONTEXT: u32 name length, name, u32 count, (u32 len, query) x count.
struct MetaContextRequest {
  std::string name;
  std::vector<std::string> queries;
};
// A decode failure of option data, with the option reply error to send (kRepErrInvalid for
// malformed data, kRepErrTooBig for names/queries over the caps).
struct OptionError {
  uint32_t reply = kRepErrInvalid;
  std::string message;
};
// Decoders of option data. On failure they return false and fill *error.
bool DecodeInfoRequest(std::span<const uint8_t> data, InfoRequest* out, OptionError* error);
bool DecodeMetaContextRequest(std::span<const uint8_t> data, MetaContextRequest* out, OptionError* error);

// ---- transmission messages --------------------------------------------------------------------
struct RequestHeader {
  uint16_t flags = 0;
  uint16_t type = 0;
  uint64_t cookie = 0;
  uint64_t offset = 0;
  uint32_t length = 0;
  bool operator==(const RequestHeader&) const = default;
};
// A 28-byte request header; Corruption on a bad magic (the stream is then out of sync).
Result<RequestHeader> DecodeRequest(std::span<const uint8_t, kRequestSize> bytes);
std::vector<uint8_t> EncodeRequest(const RequestHeader& request);  // for clients and tests
void AppendSimpleReply(std::vector<uint8_t>* out, uint32_t error, uint64_t cookie);
void AppendStructuredHeader(std::vector<uint8_t>* out, uint16_t flags, uint16_t type, uint64_t cookie,
                            uint32_t length);
// A whole NBD_REPLY_TYPE_ERROR chunk (with NBD_REPLY_FLAG_DONE); the message is cut to
// kMaxErrorMessage bytes.
void AppendErrorChunk(std::vector<uint8_t>* out, uint64_t cookie, uint32_t error, std::string_view message);
// A whole NBD_REPLY_TYPE_BLOCK_STATUS chunk (with NBD_REPLY_FLAG_DONE): context id, then
// (u32 length, u32 flags) per descriptor.
struct BlockStatusDescriptor {
  uint32_t length = 0;
  uint32_t flags = 0;
  bool operator==(const BlockStatusDescriptor&) const = default;
};
void AppendBlockStatusChunk(std::vector<uint8_t>* out, uint64_t cookie, uint32_t context_id,
                            std::span<const BlockStatusDescriptor> descriptors);

// ---- policy helpers ---------------------------------------------------------------------------
// Transmission flags for a device: each SEND_* only where the capability exists, READ_ONLY when
// the device is not writable or the export is read-only. Never SEND_DF: that one depends on the
// client (ClientFlags).
uint16_t TransmissionFlags(const BlockDeviceCaps& caps, bool read_only);
// The flags one client is sent (NBD_INFO_EXPORT, the EXPORT_NAME reply) and held to: the export's
// flags plus SEND_DF once structured replies are negotiated. The spec requires SEND_DF clear
// without structured replies; with them, every read is one chunk anyway, so DF is always honoured.
uint16_t ClientFlags(uint16_t export_flags, bool structured_replies);
// The wire error for a Status: EPERM, EIO, ENOMEM, EINVAL, ENOSPC, EOVERFLOW, ENOTSUP, ESHUTDOWN;
// anything else is EIO. Never 0 for a non-ok status.
uint32_t WireError(const Status& status);
// Checks block-size constraints: min a power of two in [1, 64 KiB], preferred a power of two
// >= min and <= 32 MiB, max >= preferred (the spec's rules for NBD_INFO_BLOCK_SIZE).
Status CheckBlockSizes(uint32_t min_block, uint32_t preferred, uint32_t max_payload);

}  // namespace ovbd::nbd
