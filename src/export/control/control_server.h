// The control socket of a running `ovbd serve`: one JSON object per line in, one per line out.
//
//   client ──{"command":"status"}\n──> ControlServer ──Handler(request)──> {"ok":true,...}\n
//
// Requests are JSON objects with a string "command"; the handler returns the reply object
// (ControlServer adds "ok": true unless the handler set "ok"). A line that is not such an object
// gets {"ok":false,"error":"..."}; lines longer than kMaxLine close the connection. One thread
// accepts, one thread per client (at most kMaxClients) reads; the handler must be thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "ovbd/status.h"

namespace ovbd::control {

inline constexpr size_t kMaxLine = 64 * 1024;
inline constexpr size_t kMaxClients = 16;

using Handler = std::function<nlohmann::json(const nlohmann::json& request)>;

class ControlServer {
 public:
  // Listens on the Unix socket `path` (a stale socket file is replaced; mode 0600) and serves
  // in a background thread until destroyed.
  static Result<std::unique_ptr<ControlServer>> Start(const std::string& path, Handler handler);
  virtual ~ControlServer() = default;
  virtual const std::string& path() const = 0;
};

// Sends one request line to the control socket at `path` and returns the parsed reply.
Result<nlohmann::json> Call(const std::string& path, const nlohmann::json& request);

}  // namespace ovbd::control
