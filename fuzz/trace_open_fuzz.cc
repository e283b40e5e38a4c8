// Fuzz target: a prefetch trace file (docs/format/trace.md) from hostile bytes.
//
//   bytes -> trace::DecodeTrace -> (ok) ValidateTrace ok
//                                       EncodeTrace == bytes        (one encoding per trace)
//                                       DecodeTrace(EncodeTrace) == the trace
//
// The decoder must turn every malformed file into a Status (no crash, no UB, no huge allocation).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "ovbd/trace.h"

namespace {

void Fail(const char* what) {
  std::fprintf(stderr, "trace_open_fuzz: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto trace = ovbd::trace::DecodeTrace(bytes);
  if (!trace.ok()) {
    if (trace.status().message().empty()) Fail("error without a message");
    return 0;
  }
  if (!ovbd::trace::ValidateTrace(*trace).ok()) Fail("decoded trace fails ValidateTrace");
  const std::string encoded = ovbd::trace::EncodeTrace(*trace);
  if (encoded != bytes) Fail("decoded trace re-encodes to different bytes");
  auto again = ovbd::trace::DecodeTrace(encoded);
  if (!again.ok() || !(*again == *trace)) Fail("round trip changed the trace");
  return 0;
}
