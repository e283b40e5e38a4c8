// Registry credentials from a docker-style config.json / overlaybd cred.json:
//
//   {"auths": {"registry.example:5000": {"auth": "base64(user:pass)"},
//              "https://index.docker.io/v1/": {"username": "u", "password": "p"}}}
//
// Keys may carry a scheme and a path; they are matched on "host[:port]". Caps: the file is at
// most kMaxCredentialsFileBytes, each user:pass at most kMaxCredentialBytes.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "ovbd/status.h"

namespace ovbd::remote {

inline constexpr size_t kMaxCredentialsFileBytes = 1 << 20;
inline constexpr size_t kMaxCredentialBytes = 4096;

struct Credentials {
  std::string username;
  std::string password;
};

// The entry for `host_port` ("host" or "host:port") in the JSON text, or nullopt.
// InvalidArgument for malformed JSON or a malformed entry for that host.
Result<std::optional<Credentials>> FindCredentials(std::string_view json_text, std::string_view host_port);
// Reads `path` (capped) and calls FindCredentials.
Result<std::optional<Credentials>> LoadCredentials(const std::string& path, std::string_view host_port);

}  // namespace ovbd::remote
