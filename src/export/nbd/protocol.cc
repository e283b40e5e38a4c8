// NBD wire format: encoders, decoders, and the small policy functions tied to the wire.
#include "export/nbd/protocol.h"

#include <algorithm>
#include <cerrno>

namespace ovbd::nbd {

static_assert(kGreetingSize == 8 + 8 + 2);
static_assert(kOptionHeaderSize == 8 + 4 + 4);
static_assert(kOptionReplyHeaderSize == 8 + 4 + 4 + 4);
static_assert(kRequestSize == 4 + 2 + 2 + 8 + 8 + 4);
static_assert(kSimpleReplySize == 4 + 4 + 8);
static_assert(kStructuredHeaderSize == 4 + 2 + 2 + 8 + 4);

void AppendBE16(std::vector<uint8_t>* out, uint16_t v) {
  uint8_t b[2];
  PutBE16(b, v);
  out->insert(out->end(), b, b + 2);
}
void AppendBE32(std::vector<uint8_t>* out, uint32_t v) {
  uint8_t b[4];
  PutBE32(b, v);
  out->insert(out->end(), b, b + 4);
}
void AppendBE64(std::vector<uint8_t>* out, uint64_t v) {
  uint8_t b[8];
  PutBE64(b, v);
  out->insert(out->end(), b, b + 8);
}
void AppendBytes(std::vector<uint8_t>* out, std::string_view bytes) {
  out->insert(out->end(), bytes.begin(), bytes.end());
}

// ---- handshake --------------------------------------------------------------------------------

std::vector<uint8_t> EncodeGreeting(uint16_t handshake_flags) {
  std::vector<uint8_t> out;
  out.reserve(kGreetingSize);
  AppendBE64(&out, kInitMagic);
  AppendBE64(&out, kOptionMagic);
  AppendBE16(&out, handshake_flags);
  return out;
}

Result<OptionHeader> DecodeOptionHeader(std::span<const uint8_t, kOptionHeaderSize> bytes) {
  if (GetBE64(bytes.data()) != kOptionMagic) {
    return Status::Corruption("nbd: option without the IHAVEOPT magic");
  }
  return OptionHeader{GetBE32(bytes.data() + 8), GetBE32(bytes.data() + 12)};
}

std::vector<uint8_t> EncodeOptionReply(uint32_t option, uint32_t type, std::span<const uint8_t> payload) {
  std::vector<uint8_t> out;
  out.reserve(kOptionReplyHeaderSize + payload.size());
  AppendBE64(&out, kOptionReplyMagic);
  AppendBE32(&out, option);
  AppendBE32(&out, type);
  AppendBE32(&out, static_cast<uint32_t>(payload.size()));
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

std::vector<uint8_t> EncodeOptionReply(uint32_t option, uint32_t type, std::string_view payload) {
  const auto* p = reinterpret_cast<const uint8_t*>(payload.data());
  return EncodeOptionReply(option, type, std::span<const uint8_t>(p, payload.size()));
}

std::vector<uint8_t> EncodeExportNameReply(uint64_t size, uint16_t flags, bool no_zeroes) {
  std::vector<uint8_t> out;
  AppendBE64(&out, size);
  AppendBE16(&out, flags);
  if (!no_zeroes) out.resize(out.size() + kExportNameZeroPad, 0);
  return out;
}

std::vector<uint8_t> EncodeServerEntry(std::string_view name, std::string_view description) {
  std::vector<uint8_t> out;
  AppendBE32(&out, static_cast<uint32_t>(name.size()));
  AppendBytes(&out, name);
  AppendBytes(&out, description);
  return out;
}

std::vector<uint8_t> EncodeInfoExport(uint64_t size, uint16_t flags) {
  std::vector<uint8_t> out;
  AppendBE16(&out, kInfoExport);
  AppendBE64(&out, size);
  AppendBE16(&out, flags);
  return out;
}

std::vector<uint8_t> EncodeInfoString(uint16_t info_type, std::string_view text) {
  std::vector<uint8_t> out;
  AppendBE16(&out, info_type);
  AppendBytes(&out, text);
  return out;
}

std::vector<uint8_t> EncodeInfoBlockSize(uint32_t min_block, uint32_t preferred, uint32_t max_payload) {
  std::vector<uint8_t> out;
  AppendBE16(&out, kInfoBlockSize);
  AppendBE32(&out, min_block);
  AppendBE32(&out, preferred);
  AppendBE32(&out, max_payload);
  return out;
}

std::vector<uint8_t> EncodeMetaContext(uint32_t id, std::string_view name) {
  std::vector<uint8_t> out;
  AppendBE32(&out, id);
  AppendBytes(&out, name);
  return out;
}

// ---- option data decoders ---------------------------------------------------------------------

namespace {

// A cursor over hostile option data: every read checks the bytes left.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> data) : data_(data) {}
  size_t left() const { return data_.size() - pos_; }
  bool U16(uint16_t* v) { return Fixed(2) && (*v = GetBE16(Take(2)), true); }
  bool U32(uint32_t* v) { return Fixed(4) && (*v = GetBE32(Take(4)), true); }
  bool String(uint32_t length, std::string* out) {
    if (length > left()) return false;
    const uint8_t* p = Take(length);
    out->assign(reinterpret_cast<const char*>(p), length);
    return true;
  }

 private:
  bool Fixed(size_t n) const { return left() >= n; }
  const uint8_t* Take(size_t n) {
    const uint8_t* p = data_.data() + pos_;
    pos_ += n;
    return p;
  }
  std::span<const uint8_t> data_;
  size_t pos_ = 0;
};

bool Fail(OptionError* error, uint32_t reply, std::string message) {
  error->reply = reply;
  error->message = std::move(message);
  return false;
}

// A string field (export name or query): length-prefixed, at most kMaxNameLength bytes.
bool ReadName(Reader* r, std::string* out, OptionError* error, const char* what) {
  uint32_t length = 0;
  if (!r->U32(&length)) return Fail(error, kRepErrInvalid, std::string(what) + " length is missing");
  if (length > kMaxNameLength) {
    return Fail(error, kRepErrTooBig, std::string(what) + " is longer than 4096 bytes");
  }
  if (!r->String(length, out)) return Fail(error, kRepErrInvalid, std::string(what) + " is truncated");
  return true;
}

}  // namespace

bool DecodeInfoRequest(std::span<const uint8_t> data, InfoRequest* out, OptionError* error) {
  Reader r(data);
  if (!ReadName(&r, &out->name, error, "export name")) return false;
  uint16_t count = 0;
  if (!r.U16(&count)) return Fail(error, kRepErrInvalid, "information request count is missing");
  if (r.left() != static_cast<size_t>(count) * 2) {
    return Fail(error, kRepErrInvalid, "information request list does not match the option length");
  }
  out->infos.resize(count);
  for (auto& info : out->infos) (void)r.U16(&info);
  return true;
}

bool DecodeMetaContextRequest(std::span<const uint8_t> data, MetaContextRequest* out, OptionError* error) {
  Reader r(data);
  if (!ReadName(&r, &out->name, error, "export name")) return false;
  uint32_t count = 0;
  if (!r.U32(&count)) return Fail(error, kRepErrInvalid, "query count is missing");
  // Each query takes at least its 4-byte length: a count the data cannot hold is malformed.
  if (count > r.left() / 4) return Fail(error, kRepErrInvalid, "query count does not fit the option");
  if (count > kMaxMetaQueries) return Fail(error, kRepErrTooBig, "too many metadata context queries");
  out->queries.resize(count);
  for (auto& query : out->queries) {
    if (!ReadName(&r, &query, error, "query")) return false;
  }
  if (r.left() != 0) return Fail(error, kRepErrInvalid, "trailing bytes after the queries");
  return true;
}

// ---- transmission -----------------------------------------------------------------------------

Result<RequestHeader> DecodeRequest(std::span<const uint8_t, kRequestSize> bytes) {
  const uint8_t* p = bytes.data();
  if (GetBE32(p) != kRequestMagic) return Status::Corruption("nbd: request without the request magic");
  RequestHeader h;
  h.flags = GetBE16(p + 4);
  h.type = GetBE16(p + 6);
  h.cookie = GetBE64(p + 8);
  h.offset = GetBE64(p + 16);
  h.length = GetBE32(p + 24);
  return h;
}

std::vector<uint8_t> EncodeRequest(const RequestHeader& request) {
  std::vector<uint8_t> out;
  out.reserve(kRequestSize);
  AppendBE32(&out, kRequestMagic);
  AppendBE16(&out, request.flags);
  AppendBE16(&out, request.type);
  AppendBE64(&out, request.cookie);
  AppendBE64(&out, request.offset);
  AppendBE32(&out, request.length);
  return out;
}

void AppendSimpleReply(std::vector<uint8_t>* out, uint32_t error, uint64_t cookie) {
  AppendBE32(out, kSimpleReplyMagic);
  AppendBE32(out, error);
  AppendBE64(out, cookie);
}

void AppendStructuredHeader(std::vector<uint8_t>* out, uint16_t flags, uint16_t type, uint64_t cookie,
                            uint32_t length) {
  AppendBE32(out, kStructuredReplyMagic);
  AppendBE16(out, flags);
  AppendBE16(out, type);
  AppendBE64(out, cookie);
  AppendBE32(out, length);
}

void AppendErrorChunk(std::vector<uint8_t>* out, uint64_t cookie, uint32_t error, std::string_view message) {
  message = message.substr(0, kMaxErrorMessage);
  AppendStructuredHeader(out, kReplyFlagDone, kReplyTypeError, cookie, static_cast<uint32_t>(6 + message.size()));
  AppendBE32(out, error);
  AppendBE16(out, static_cast<uint16_t>(message.size()));
  AppendBytes(out, message);
}

void AppendBlockStatusChunk(std::vector<uint8_t>* out, uint64_t cookie, uint32_t context_id,
                            std::span<const BlockStatusDescriptor> descriptors) {
  const auto length = static_cast<uint32_t>(4 + 8 * descriptors.size());
  AppendStructuredHeader(out, kReplyFlagDone, kReplyTypeBlockStatus, cookie, length);
  AppendBE32(out, context_id);
  for (const auto& d : descriptors) {
    AppendBE32(out, d.length);
    AppendBE32(out, d.flags);
  }
}

// ---- policy -----------------------------------------------------------------------------------

uint16_t TransmissionFlags(const BlockDeviceCaps& caps, bool read_only) {
  uint16_t flags = kTxHasFlags | kTxSendCache;
  if (caps.can_multi_conn) flags |= kTxCanMultiConn;
  if (read_only || !caps.writable) return flags | kTxReadOnly;
  flags |= kTxSendWriteZeroes;
  if (caps.can_flush) flags |= kTxSendFlush;
  if (caps.can_fua) flags |= kTxSendFua;
  if (caps.can_trim) flags |= kTxSendTrim;
  if (caps.can_zero) flags |= kTxSendFastZero;
  return flags;
}

uint16_t ClientFlags(uint16_t export_flags, bool structured_replies) {
  return structured_replies ? static_cast<uint16_t>(export_flags | kTxSendDf) : export_flags;
}

uint32_t WireError(const Status& status) {
  switch (status.posix_errno()) {
    case EPERM: return kEPERM;
    case ENOMEM: return kENOMEM;
    case EINVAL: return kEINVAL;
    case ENOSPC:
    case EDQUOT:
    case EFBIG: return kENOSPC;
    case EOVERFLOW: return kEOVERFLOW;
    case ENOTSUP: return kENOTSUP;
    case ESHUTDOWN: return kESHUTDOWN;
    default: return kEIO;
  }
}

Status CheckBlockSizes(uint32_t min_block, uint32_t preferred, uint32_t max_payload) {
  auto pow2 = [](uint32_t v) { return v != 0 && (v & (v - 1)) == 0; };
  if (!pow2(min_block) || min_block > (64u << 10)) {
    return Status::InvalidArgument("nbd: minimum block size " + std::to_string(min_block) +
                                   " is not a power of two <= 64 KiB");
  }
  if (!pow2(preferred) || preferred < min_block) {
    return Status::InvalidArgument("nbd: preferred block size " + std::to_string(preferred) +
                                   " is not a power of two >= the minimum");
  }
  if (max_payload < preferred || max_payload % min_block != 0) {
    return Status::InvalidArgument("nbd: maximum request size " + std::to_string(max_payload) +
                                   " is below the preferred block size or not a multiple of the minimum");
  }
  return Status::OK();
}

}  // namespace ovbd::nbd
