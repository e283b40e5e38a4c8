// Fuzz target: config.v1.json text from hostile bytes.
//
//   bytes -> image::ParseImageConfig -> (ok) every path is non-empty, at most 255 lowers
//
// The parser must turn every malformed document into a Status (no exception escapes, no crash).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "ovbd/image.h"
#include "ovbd/lsmt.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto config = ovbd::image::ParseImageConfig(text, "/base");
  if (!config.ok()) return 0;
  if (config->lowers.size() > ovbd::lsmt::kMaxStackLayers) {
    std::fprintf(stderr, "image_config_fuzz: %zu lowers accepted\n", config->lowers.size());
    std::abort();
  }
  return 0;
}
