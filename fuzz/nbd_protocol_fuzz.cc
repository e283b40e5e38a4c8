// Fuzz target: hostile bytes as an NBD client stream, in memory.
//
//   bytes -> MemoryStream -> Connection::Serve (handshake, request loop, InlineExecutor)
//         -> a 64 KiB MemDevice
//   bytes -> Negotiate with TLS required (STARTTLS continues on the same bytes)
//   bytes -> DecodeInfoRequest / DecodeMetaContextRequest / DecodeRequest (the option and request
//            decoders on their own)
//
// Besides "no crash / no UB / no leak", it checks that the connection never reads past the input
// and that every reply the server wrote is framed (simple or structured magic at each boundary) —
// once the handshake is over, which the test finds by replaying the handshake alone.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <vector>

#include "export/nbd/connection.h"
#include "export/nbd/handshake.h"
#include "export/nbd/protocol.h"
#include "export/nbd/stream.h"
#include "export/nbd/worker_pool.h"
#include "ovbd/block_device.h"

namespace {

using namespace ovbd::nbd;

constexpr uint64_t kDeviceSize = 64 << 10;

ExportInfo FuzzExport(const ovbd::BlockDevice& device) {
  ExportInfo info;
  info.name = "fuzz";
  info.description = "fuzz export";
  info.size = device.Size();
  info.flags = TransmissionFlags(device.Capabilities(), false);
  info.min_block = 512;
  info.preferred_block = 4096;
  info.max_payload = 32 << 10;
  return info;
}

void Fail(const char* what) {
  std::fprintf(stderr, "nbd_protocol_fuzz: %s\n", what);
  std::abort();
}

// Walks the replies after the handshake: each must start with a reply magic and be whole.
void CheckFraming(const std::vector<uint8_t>& out, size_t pos) {
  while (pos < out.size()) {
    if (out.size() - pos < 4) Fail("partial reply magic");
    const uint32_t magic = GetBE32(out.data() + pos);
    if (magic == kSimpleReplyMagic) {
      if (out.size() - pos < kSimpleReplySize) Fail("partial simple reply");
      pos += kSimpleReplySize;
      // A successful simple read reply carries data of unknown length here: stop checking.
      if (GetBE32(out.data() + pos - 12) == 0) return;
      continue;
    }
    if (magic != kStructuredReplyMagic) Fail("reply without a magic");
    if (out.size() - pos < kStructuredHeaderSize) Fail("partial structured header");
    const uint32_t length = GetBE32(out.data() + pos + 16);
    if (out.size() - pos - kStructuredHeaderSize < length) Fail("partial structured chunk");
    pos += kStructuredHeaderSize + length;
  }
}

void FuzzDecoders(std::span<const uint8_t> bytes) {
  InfoRequest info;
  MetaContextRequest meta;
  OptionError error;
  (void)DecodeInfoRequest(bytes, &info, &error);
  (void)DecodeMetaContextRequest(bytes, &meta, &error);
  if (bytes.size() >= kRequestSize) (void)DecodeRequest(bytes.first<kRequestSize>());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<uint8_t> input(data, data + size);
  FuzzDecoders(input);
  auto device = ovbd::NewMemDevice(kDeviceSize);
  const ExportInfo info = FuzzExport(*device);

  // The handshake alone, to learn where transmission replies start in the full run's output.
  MemoryStream handshake_only(input);
  const bool entered = Negotiate(handshake_only, info).ok();
  const size_t handshake_bytes = handshake_only.output().size();

  MemoryStream stream(input);
  InlineExecutor executor;
  Connection connection(stream, *device, info, executor, nullptr, ConnectionLimits{4, 256 << 10});
  (void)connection.Serve();
  if (stream.consumed() > input.size()) Fail("read past the input");
  const auto out = stream.output();
  if (out.size() < handshake_bytes) Fail("handshake output differs between runs");
  // Structured read replies are framed; simple ones carry unframed data, handled in CheckFraming.
  if (entered) CheckFraming(out, handshake_bytes);

  // The same bytes against a server that requires TLS. The "TLS stream" is the plain one, so the
  // input also drives the options after STARTTLS (the state reset, a second STARTTLS).
  MemoryStream forced(input);
  TlsNegotiation tls{TlsMode::kRequire, [&]() -> ovbd::Result<ByteStream*> { return &forced; }};
  (void)Negotiate(forced, info, tls);
  if (forced.consumed() > input.size()) Fail("read past the input (TLS required)");
  return 0;
}
