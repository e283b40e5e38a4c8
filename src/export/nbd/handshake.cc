// NBD option negotiation. One Negotiator per connection; each option has its own short handler.
#include "export/nbd/handshake.h"

#include <algorithm>
#include <array>
#include <vector>

#include "export/nbd/protocol.h"

namespace ovbd::nbd {
namespace {

enum class Next { kContinue, kTransmission };

class Negotiator {
 public:
  Negotiator(ByteStream& stream, const ExportInfo& info, const TlsNegotiation& tls, const AdmitFn& admit)
      : stream_(&stream), info_(info), tls_(tls), admit_(admit) {}

  Result<Negotiated> Run() {
    OVBD_RETURN_IF_ERROR(Write(EncodeGreeting(kFlagFixedNewstyle | kFlagNoZeroes)));
    OVBD_RETURN_IF_ERROR(ReadClientFlags());
    for (int i = 0; i < kMaxOptions; i++) {
      OVBD_ASSIGN_OR_RETURN(Next next, HandleOneOption());
      if (next == Next::kTransmission) {
        state_.stream = stream_;
        return state_;
      }
    }
    return Status::InvalidArgument("nbd: more than " + std::to_string(kMaxOptions) + " options");
  }

 private:
  Status Write(const std::vector<uint8_t>& bytes) { return stream_->WriteAll(bytes); }
  Status Reply(uint32_t type, std::span<const uint8_t> payload = {}) {
    return Write(EncodeOptionReply(option_, type, payload));
  }
  Status ErrorReply(uint32_t type, std::string_view message) {
    return Write(EncodeOptionReply(option_, type, message));
  }
  bool IsOurExport(const std::string& name) const { return name.empty() || name == info_.name; }
  bool TlsMissing() const { return tls_.mode == TlsMode::kRequire && !state_.tls; }
  // What this client is told now: SEND_DF appears once it negotiated structured replies.
  uint16_t Flags() const { return ClientFlags(info_.flags, state_.structured_replies); }
  bool Admitted() const { return !admit_ || admit_(); }

  Status ReadClientFlags();
  Result<Next> HandleOneOption();
  Result<Next> Dispatch();
  Result<Next> RefuseWithoutTls();
  Result<Next> StartTls();
  Result<Next> ExportName();
  Result<Next> List();
  Result<Next> InfoOrGo();
  Status SendInfos(const InfoRequest& request);
  Result<Next> StructuredReply();
  Result<Next> MetaContext();
  Status SendMetaContexts(const MetaContextRequest& request, bool set);

  ByteStream* stream_;  // the socket, or the TLS stream once STARTTLS succeeded
  const ExportInfo& info_;
  const TlsNegotiation& tls_;
  const AdmitFn& admit_;
  Negotiated state_;
  bool no_zeroes_ = false;
  uint32_t option_ = 0;
  std::vector<uint8_t> data_;
};

Status Negotiator::ReadClientFlags() {
  std::array<uint8_t, kClientFlagsSize> bytes;
  OVBD_RETURN_IF_ERROR(stream_->ReadFull(bytes));
  const uint32_t flags = GetBE32(bytes.data());
  // The spec: the server MUST drop the connection on a flag it did not offer. A client without
  // FIXED_NEWSTYLE is served as if it had set it.
  if ((flags & ~kClientFlagsKnown) != 0) return Status::InvalidArgument("nbd: unknown client flags");
  no_zeroes_ = (flags & kClientFlagNoZeroes) != 0;
  return Status::OK();
}

Result<Next> Negotiator::HandleOneOption() {
  std::array<uint8_t, kOptionHeaderSize> bytes;
  OVBD_RETURN_IF_ERROR(stream_->ReadFull(bytes));
  OVBD_ASSIGN_OR_RETURN(OptionHeader header, DecodeOptionHeader(bytes));
  // Cap before allocating: a larger option is no client we know; close rather than read it.
  if (header.length > kMaxOptionData) {
    return Status::InvalidArgument("nbd: option " + std::to_string(header.option) + " carries " +
                                   std::to_string(header.length) + " bytes");
  }
  option_ = header.option;
  data_.assign(header.length, 0);
  OVBD_RETURN_IF_ERROR(stream_->ReadFull(data_));
  return Dispatch();
}

Result<Next> Negotiator::Dispatch() {
  if (option_ == kOptStartTls) return StartTls();
  if (TlsMissing()) return RefuseWithoutTls();
  switch (option_) {
    case kOptExportName: return ExportName();
    case kOptAbort:
      (void)Reply(kRepAck);  // the client may already be gone
      return Status::Unavailable("nbd: client aborted the handshake");
    case kOptList: return List();
    case kOptInfo:
    case kOptGo: return InfoOrGo();
    case kOptStructuredReply: return StructuredReply();
    case kOptListMetaContext:
    case kOptSetMetaContext: return MetaContext();
    default:
      OVBD_RETURN_IF_ERROR(ErrorReply(kRepErrUnsup, "option not supported by this server"));
      return Next::kContinue;
  }
}

// FORCEDTLS: nothing about the export leaves the server before TLS is up.
Result<Next> Negotiator::RefuseWithoutTls() {
  if (option_ == kOptExportName) return Status::InvalidArgument("nbd: NBD_OPT_EXPORT_NAME before TLS (required)");
  if (option_ == kOptAbort) {
    (void)Reply(kRepAck);
    return Status::Unavailable("nbd: client aborted the handshake");
  }
  OVBD_RETURN_IF_ERROR(ErrorReply(kRepErrTlsReqd, "TLS is required: send NBD_OPT_STARTTLS first"));
  return Next::kContinue;
}

Result<Next> Negotiator::StartTls() {
  const char* refusal = nullptr;
  uint32_t type = kRepErrInvalid;
  if (!data_.empty()) {
    refusal = "NBD_OPT_STARTTLS carries no data";
  } else if (state_.tls) {
    refusal = "TLS is already active";
  } else if (tls_.mode == TlsMode::kOff || !tls_.start) {
    refusal = "TLS is not enabled on this server";
    type = kRepErrPolicy;
  }
  if (refusal != nullptr) {
    OVBD_RETURN_IF_ERROR(ErrorReply(type, refusal));
    return Next::kContinue;
  }
  OVBD_RETURN_IF_ERROR(Reply(kRepAck));
  OVBD_ASSIGN_OR_RETURN(ByteStream * upgraded, tls_.start());
  stream_ = upgraded;
  state_ = Negotiated{};  // nothing negotiated in plaintext survives (the specification's MUST)
  state_.tls = true;
  return Next::kContinue;
}

Result<Next> Negotiator::ExportName() {
  // EXPORT_NAME cannot report errors: an unknown (or oversized) name closes the connection.
  const std::string name(data_.begin(), data_.end());
  if (name.size() > kMaxNameLength || !IsOurExport(name)) {
    return Status::NotFound("nbd: client asked for an unknown export");
  }
  if (!Admitted()) return Status::Unavailable("nbd: too many clients in transmission, EXPORT_NAME refused");
  OVBD_RETURN_IF_ERROR(Write(EncodeExportNameReply(info_.size, Flags(), no_zeroes_)));
  return Next::kTransmission;
}

Result<Next> Negotiator::List() {
  if (!data_.empty()) {
    OVBD_RETURN_IF_ERROR(ErrorReply(kRepErrInvalid, "NBD_OPT_LIST carries no data"));
    return Next::kContinue;
  }
  OVBD_RETURN_IF_ERROR(Reply(kRepServer, EncodeServerEntry(info_.name, info_.description)));
  OVBD_RETURN_IF_ERROR(Reply(kRepAck));
  return Next::kContinue;
}

Result<Next> Negotiator::InfoOrGo() {
  InfoRequest request;
  OptionError error;
  if (!DecodeInfoRequest(data_, &request, &error)) {
    OVBD_RETURN_IF_ERROR(ErrorReply(error.reply, error.message));
    return Next::kContinue;
  }
  if (!IsOurExport(request.name)) {
    OVBD_RETURN_IF_ERROR(ErrorReply(kRepErrUnknown, "no export of that name"));
    return Next::kContinue;
  }
  if (option_ == kOptGo && !Admitted()) {  // before any NBD_REP_INFO: the error is the only reply
    OVBD_RETURN_IF_ERROR(ErrorReply(kRepErrPolicy, "too many clients connected to this server; try again later"));
    return Next::kContinue;
  }
  OVBD_RETURN_IF_ERROR(SendInfos(request));
  OVBD_RETURN_IF_ERROR(Reply(kRepAck));
  if (option_ != kOptGo) return Next::kContinue;
  const auto& infos = request.infos;
  state_.block_size_agreed = std::find(infos.begin(), infos.end(), kInfoBlockSize) != infos.end();
  return Next::kTransmission;
}

// NBD_INFO_EXPORT and NBD_INFO_BLOCK_SIZE always (the spec allows unrequested information; the
// server only relies on block sizes the client asked for); NAME and DESCRIPTION when asked.
Status Negotiator::SendInfos(const InfoRequest& request) {
  auto asked = [&](uint16_t type) {
    return std::find(request.infos.begin(), request.infos.end(), type) != request.infos.end();
  };
  OVBD_RETURN_IF_ERROR(Reply(kRepInfo, EncodeInfoExport(info_.size, Flags())));
  if (asked(kInfoName)) OVBD_RETURN_IF_ERROR(Reply(kRepInfo, EncodeInfoString(kInfoName, info_.name)));
  if (asked(kInfoDescription) && !info_.description.empty()) {
    OVBD_RETURN_IF_ERROR(Reply(kRepInfo, EncodeInfoString(kInfoDescription, info_.description)));
  }
  return Reply(kRepInfo, EncodeInfoBlockSize(info_.min_block, info_.preferred_block, info_.max_payload));
}

Result<Next> Negotiator::StructuredReply() {
  if (!data_.empty()) {
    OVBD_RETURN_IF_ERROR(ErrorReply(kRepErrInvalid, "NBD_OPT_STRUCTURED_REPLY carries no data"));
    return Next::kContinue;
  }
  state_.structured_replies = true;
  OVBD_RETURN_IF_ERROR(Reply(kRepAck));
  return Next::kContinue;
}

Result<Next> Negotiator::MetaContext() {
  const bool set = option_ == kOptSetMetaContext;
  if (set) state_.base_allocation = false;  // SET replaces the selection, even when it fails
  if (!state_.structured_replies) {
    OVBD_RETURN_IF_ERROR(ErrorReply(kRepErrInvalid, "negotiate structured replies first"));
    return Next::kContinue;
  }
  MetaContextRequest request;
  OptionError error;
  if (!DecodeMetaContextRequest(data_, &request, &error)) {
    OVBD_RETURN_IF_ERROR(ErrorReply(error.reply, error.message));
    return Next::kContinue;
  }
  if (!IsOurExport(request.name)) {
    OVBD_RETURN_IF_ERROR(ErrorReply(kRepErrUnknown, "no export of that name"));
    return Next::kContinue;
  }
  OVBD_RETURN_IF_ERROR(SendMetaContexts(request, set));
  OVBD_RETURN_IF_ERROR(Reply(kRepAck));
  return Next::kContinue;
}

// The one context is base:allocation. LIST matches it with no query, "base:" or its full name;
// SET only with its full name. Queries of other namespaces are ignored (the spec's rule).
Status Negotiator::SendMetaContexts(const MetaContextRequest& request, bool set) {
  bool match = !set && request.queries.empty();
  for (const auto& query : request.queries) {
    match = match || query == kBaseAllocation || (!set && query == "base:");
  }
  if (!match) return Status::OK();
  if (set) state_.base_allocation = true;
  return Reply(kRepMetaContext, EncodeMetaContext(set ? kBaseAllocationId : 0, kBaseAllocation));
}

}  // namespace

Result<Negotiated> Negotiate(ByteStream& stream, const ExportInfo& info, const TlsNegotiation& tls,
                             const AdmitFn& admit) {
  Negotiator negotiator(stream, info, tls, admit);
  return negotiator.Run();
}

}  // namespace ovbd::nbd
