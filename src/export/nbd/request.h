// One NBD transmission request: the edge check, payload handling and execution into a whole reply.
// Pure functions of (request, session, device): no threads, no sockets; the Connection calls them
// from its reader thread (check, payload) and from workers (execute).
//
//   header ──> CheckRequest ──ok──> [payload] ──> Execute ──> reply bytes (simple or structured)
//                  └── error ─────> [discard] ──> Execute ──> error reply (device untouched)
//
// Every request is validated here once: command and flags negotiated, offset + length inside the
// export (no overflow), payload within max_payload, alignment to min_block when the client agreed
// to the block sizes. The device then only sees requests it can serve.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "export/nbd/handshake.h"
#include "export/nbd/protocol.h"
#include "export/nbd/stream.h"
#include "ovbd/block_device.h"

namespace ovbd::nbd {

// The transmission-phase view of one connection, fixed after the handshake.
struct Session {
  uint64_t size = 0;
  uint16_t flags = 0;              // transmission flags sent to the client
  bool structured = false;         // structured replies negotiated
  bool base_allocation = false;    // NBD_CMD_BLOCK_STATUS allowed
  uint32_t min_block = 1;          // alignment enforced (1 unless the client agreed to block sizes)
  uint32_t max_payload = 32u << 20;
};
Session MakeSession(const ExportInfo& info, const Negotiated& negotiated);

// The outcome of the edge check: error 0 means "serve it".
struct Verdict {
  uint32_t error = 0;
  const char* message = "";
};
Verdict CheckRequest(const RequestHeader& request, const Session& session);

// The unit of the unaligned-request measure below: a sector, what qemu and the kernel align to.
inline constexpr uint32_t kSectorSize = 512;
// True for a READ, WRITE, TRIM or WRITE_ZEROES whose offset or length is not a multiple of
// kSectorSize (a length that ends exactly at the end of the export excepted: an odd-sized
// export's tail is not reachable otherwise). Such a request costs the device a read-modify-write;
// the server counts them (ServerStats::unaligned_requests) to show that clients stay aligned
// although the minimum block size advertised is 1. Other commands move no data and never count.
bool UnalignedToSectors(const RequestHeader& request, const Session& session);

// Bytes following the header on the wire: length for NBD_CMD_WRITE, else 0.
uint32_t PayloadLength(const RequestHeader& request);
// Reads and drops n bytes in bounded chunks (payload of a refused write): never allocates n.
Status DiscardPayload(ByteStream& stream, uint64_t n);
// Memory the request holds while in flight (payload or reply data), for per-connection caps.
uint64_t RequestFootprint(const RequestHeader& request, const Verdict& verdict);

// Largest number of descriptors in one NBD_REPLY_TYPE_BLOCK_STATUS chunk; the client asks again
// for the rest (the spec allows fewer descriptors than the range needs).
inline constexpr size_t kMaxBlockStatusDescriptors = 1u << 16;

// Executes the request (or answers the verdict's error without touching the device) and returns
// the complete reply, ready to be written in one piece. NBD_CMD_DISC has no reply and must not be
// passed here.
std::vector<uint8_t> Execute(BlockDevice& device, const Session& session, const RequestHeader& request,
                             const Verdict& verdict, std::span<const uint8_t> payload);

}  // namespace ovbd::nbd
