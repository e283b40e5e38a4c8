// Opening the input of `ovbd zfile decompress|verify`: a ZFile, possibly tar-wrapped.
#pragma once

#include <memory>
#include <string>

#include "ovbd/zfile.h"

namespace ovbd::cli {

Result<std::unique_ptr<zfile::Reader>> OpenZfileInput(const std::string& path);

}  // namespace ovbd::cli
