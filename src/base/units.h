// Human sizes: "64M", "1G", "4K", "4096", "1.5G" (binary units: K = 1024).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "ovbd/status.h"

namespace ovbd {

// Parses a byte count: digits with an optional fraction and one suffix of K, M, G, T, P (also
// KiB/MiB/... or KB/MB/..., all binary) or B. InvalidArgument names the text on failure.
Result<uint64_t> ParseSize(std::string_view text);
// "64 MiB", "1.5 GiB", "512 B".
std::string FormatSize(uint64_t bytes);

}  // namespace ovbd
