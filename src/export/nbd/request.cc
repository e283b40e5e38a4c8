// One NBD request: edge check, payload handling, execution into a reply.
#include "export/nbd/request.h"

#include <algorithm>
#include <new>

#include "base/checked.h"

namespace ovbd::nbd {
namespace {

bool IsWriteCommand(uint16_t type) {
  return type == kCmdWrite || type == kCmdTrim || type == kCmdWriteZeroes;
}

// Commands the session allows (advertised by flags, or negotiated).
bool CommandNegotiated(uint16_t type, const Session& s) {
  switch (type) {
    case kCmdRead: return true;
    case kCmdWrite: return (s.flags & kTxReadOnly) == 0;
    case kCmdFlush: return (s.flags & kTxSendFlush) != 0;
    case kCmdTrim: return (s.flags & kTxSendTrim) != 0;
    case kCmdCache: return (s.flags & kTxSendCache) != 0;
    case kCmdWriteZeroes: return (s.flags & kTxSendWriteZeroes) != 0;
    case kCmdBlockStatus: return s.structured && s.base_allocation;
    default: return false;
  }
}

// Command flags valid for a command. FUA is valid on every command once SEND_FUA is advertised
// (the spec: the server MUST accept it, even by ignoring it). DF only on READ, once SEND_DF was
// sent (with structured replies); a read reply is always one chunk, so it needs nothing more.
uint16_t AllowedFlags(uint16_t type, const Session& s) {
  uint16_t allowed = (s.flags & kTxSendFua) ? kCmdFlagFua : 0;
  if (type == kCmdRead && (s.flags & kTxSendDf)) allowed |= kCmdFlagDf;
  if (type == kCmdWriteZeroes) {
    allowed |= kCmdFlagNoHole;
    if (s.flags & kTxSendFastZero) allowed |= kCmdFlagFastZero;
  }
  if (type == kCmdBlockStatus) allowed |= kCmdFlagReqOne;
  return allowed;
}

bool KnownCommand(uint16_t type) { return type <= kCmdBlockStatus && type != kCmdDisc; }

bool Aligned(const RequestHeader& r, const Session& s) {
  if (s.min_block <= 1) return true;
  // The tail of an export whose size is not a multiple of min_block is reachable unaligned.
  const bool length_ok = r.length % s.min_block == 0 || r.offset + r.length == s.size;
  return r.offset % s.min_block == 0 && length_ok;
}

Verdict Refuse(uint32_t error, const char* message) { return Verdict{error, message}; }

// ---- replies ----------------------------------------------------------------------------------

std::vector<uint8_t> ErrorReply(const Session& s, uint64_t cookie, uint32_t error, std::string_view message) {
  std::vector<uint8_t> out;
  if (s.structured) {
    AppendErrorChunk(&out, cookie, error, message);
  } else {
    AppendSimpleReply(&out, error, cookie);
  }
  return out;
}

std::vector<uint8_t> OkReply(uint64_t cookie) {
  std::vector<uint8_t> out;
  AppendSimpleReply(&out, 0, cookie);
  return out;
}

std::vector<uint8_t> StatusReply(const Session& s, uint64_t cookie, const Status& status) {
  if (status.ok()) return OkReply(cookie);
  return ErrorReply(s, cookie, WireError(status), status.message());
}

// A read reply with the data read straight into its tail: one allocation, no copy.
std::vector<uint8_t> ReadReply(BlockDevice& device, const Session& s, const RequestHeader& r) {
  std::vector<uint8_t> out;
  if (r.length == 0) {
    if (!s.structured) return OkReply(r.cookie);
    AppendStructuredHeader(&out, kReplyFlagDone, kReplyTypeNone, r.cookie, 0);
    return out;
  }
  const size_t head = s.structured ? kStructuredHeaderSize + 8 : kSimpleReplySize;
  try {
    out.reserve(head + r.length);
  } catch (const std::bad_alloc&) {
    return ErrorReply(s, r.cookie, kENOMEM, "out of memory for the read buffer");
  }
  if (s.structured) {
    AppendStructuredHeader(&out, kReplyFlagDone, kReplyTypeOffsetData, r.cookie, 8 + r.length);
    AppendBE64(&out, r.offset);
  } else {
    AppendSimpleReply(&out, 0, r.cookie);
  }
  out.resize(head + r.length);
  const Status status = device.Read(r.offset, std::span<uint8_t>(out.data() + head, r.length));
  if (!status.ok()) return ErrorReply(s, r.cookie, WireError(status), status.message());
  return out;
}

std::vector<uint8_t> ZeroReply(BlockDevice& device, const Session& s, const RequestHeader& r) {
  const bool fua = (r.flags & kCmdFlagFua) != 0;
  const bool no_hole = (r.flags & kCmdFlagNoHole) != 0;
  // Zeroing without a hole stores zero bytes: not guaranteed faster than a write, so FAST_ZERO
  // must fail at once (the client then falls back to its own strategy).
  if (no_hole && (r.flags & kCmdFlagFastZero)) {
    return ErrorReply(s, r.cookie, kENOTSUP, "fast zero without holes is not supported");
  }
  if (r.length == 0) return OkReply(r.cookie);
  return StatusReply(s, r.cookie, device.Zero(r.offset, r.length, fua, !no_hole));
}

std::vector<BlockStatusDescriptor> ToDescriptors(const std::vector<Extent>& extents, uint32_t length,
                                                 bool req_one) {
  std::vector<BlockStatusDescriptor> out;
  uint64_t left = length;
  for (const auto& e : extents) {
    if (left == 0 || out.size() == kMaxBlockStatusDescriptors || (req_one && !out.empty())) break;
    const auto n = static_cast<uint32_t>(std::min<uint64_t>(e.length, left));
    if (n == 0) continue;
    out.push_back({n, (e.hole ? kStateHole : 0u) | (e.zero ? kStateZero : 0u)});
    left -= n;
  }
  return out;
}

std::vector<uint8_t> BlockStatusReply(BlockDevice& device, const Session& s, const RequestHeader& r) {
  const bool req_one = (r.flags & kCmdFlagReqOne) != 0;
  auto extents = device.FirstExtents(r.offset, r.length, req_one ? 1 : kMaxBlockStatusDescriptors);
  if (!extents.ok()) return StatusReply(s, r.cookie, extents.status());
  const auto descriptors = ToDescriptors(*extents, r.length, req_one);
  if (descriptors.empty()) return ErrorReply(s, r.cookie, kEIO, "device returned no extents");
  std::vector<uint8_t> out;
  AppendBlockStatusChunk(&out, r.cookie, kBaseAllocationId, descriptors);
  return out;
}

}  // namespace

Session MakeSession(const ExportInfo& info, const Negotiated& negotiated) {
  Session s;
  s.size = info.size;
  s.flags = ClientFlags(info.flags, negotiated.structured_replies);
  s.structured = negotiated.structured_replies;
  s.base_allocation = negotiated.base_allocation;
  s.min_block = negotiated.block_size_agreed ? info.min_block : 1;
  s.max_payload = info.max_payload;
  return s;
}

Verdict CheckRequest(const RequestHeader& r, const Session& s) {
  if (!KnownCommand(r.type)) return Refuse(kEINVAL, "unknown command");
  if ((r.flags & ~AllowedFlags(r.type, s)) != 0) return Refuse(kEINVAL, "flag not valid for this command");
  if (IsWriteCommand(r.type) && (s.flags & kTxReadOnly)) return Refuse(kEPERM, "the export is read-only");
  if (!CommandNegotiated(r.type, s)) return Refuse(kEINVAL, "command not negotiated");
  if (r.type == kCmdFlush) {
    return (r.offset == 0 && r.length == 0) ? Verdict{} : Refuse(kEINVAL, "flush with offset or length");
  }
  if (r.type == kCmdBlockStatus && r.length == 0) return Refuse(kEINVAL, "block status of zero bytes");
  if (!RangeWithin(r.offset, r.length, s.size)) {
    const bool grows = r.type == kCmdWrite || r.type == kCmdWriteZeroes;
    return Refuse(grows ? kENOSPC : kEINVAL, "request past the end of the export");
  }
  if ((r.type == kCmdRead || r.type == kCmdWrite) && r.length > s.max_payload) {
    // A DF read asks for its data in one chunk, and one that large is not sent: the spec's EOVERFLOW.
    if (r.flags & kCmdFlagDf) return Refuse(kEOVERFLOW, "read with DF larger than the maximum payload");
    return Refuse(kEINVAL, "request larger than the maximum payload");
  }
  if (!Aligned(r, s)) return Refuse(kEINVAL, "request not aligned to the minimum block size");
  return Verdict{};
}

bool UnalignedToSectors(const RequestHeader& r, const Session& s) {
  const bool moves_data = r.type == kCmdRead || r.type == kCmdWrite || r.type == kCmdTrim || r.type == kCmdWriteZeroes;
  if (!moves_data) return false;
  const bool length_ok = r.length % kSectorSize == 0 || r.offset + r.length == s.size;
  return r.offset % kSectorSize != 0 || !length_ok;
}

uint32_t PayloadLength(const RequestHeader& r) { return r.type == kCmdWrite ? r.length : 0; }

Status DiscardPayload(ByteStream& stream, uint64_t n) {
  std::vector<uint8_t> scratch(std::min<uint64_t>(n, 64u << 10));
  while (n > 0) {
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, scratch.size()));
    OVBD_RETURN_IF_ERROR(stream.ReadFull(std::span<uint8_t>(scratch.data(), chunk)));
    n -= chunk;
  }
  return Status::OK();
}

uint64_t RequestFootprint(const RequestHeader& r, const Verdict& verdict) {
  constexpr uint64_t kOverhead = 256;
  if (verdict.error != 0) return kOverhead;
  if (r.type == kCmdRead || r.type == kCmdWrite) return kOverhead + r.length;
  if (r.type == kCmdBlockStatus) return kOverhead + 8 * kMaxBlockStatusDescriptors;
  return kOverhead;
}

std::vector<uint8_t> Execute(BlockDevice& device, const Session& s, const RequestHeader& r,
                             const Verdict& verdict, std::span<const uint8_t> payload) {
  if (verdict.error != 0) return ErrorReply(s, r.cookie, verdict.error, verdict.message);
  const bool fua = (r.flags & kCmdFlagFua) != 0;
  switch (r.type) {
    case kCmdRead: return ReadReply(device, s, r);
    case kCmdWrite:
      if (payload.empty()) return OkReply(r.cookie);
      return StatusReply(s, r.cookie, device.Write(r.offset, payload, fua));
    case kCmdFlush: return StatusReply(s, r.cookie, device.Flush());
    case kCmdTrim:
      if (r.length == 0) return OkReply(r.cookie);
      return StatusReply(s, r.cookie, device.Trim(r.offset, r.length, fua));
    case kCmdWriteZeroes: return ZeroReply(device, s, r);
    case kCmdCache: return StatusReply(s, r.cookie, device.Cache(r.offset, r.length));
    case kCmdBlockStatus: return BlockStatusReply(device, s, r);
    default: return ErrorReply(s, r.cookie, kEINVAL, "unknown command");
  }
}

}  // namespace ovbd::nbd
