// Adding a layer's path to an error message once (the modules below usually name the file
// already; a message that does not is prefixed with the path).
#pragma once

#include <string>

#include "ovbd/status.h"

namespace ovbd::image {

inline Status WithPath(const Status& status, const std::string& path) {
  if (status.ok() || status.message().find(path) != std::string::npos) return status;
  return status.WithContext(path);
}

}  // namespace ovbd::image
