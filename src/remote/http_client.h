// HTTP client of one registry (one origin), over pooled libcurl easy handles.
//
//   Send(request)
//     for attempt in 0..retries:       (GET/HEAD/PUT; POST/PATCH only if nothing was sent)
//       hop loop (<= kMaxRedirects):   3xx + Location -> resolve, follow by hand
//         Authorization only to the registry's origin, never to a redirect target elsewhere
//         401 from the registry -> challenge -> Bearer token / Basic -> once more
//       5xx / 429 / connection error / timeout -> sleep backoff * 2^attempt, retry
//     all attempts failed -> Unavailable("<method> <url>: <cause> after N attempts")
//
// Handles are reset (not closed) between requests, so connections are reused. Response header
// bytes are capped (kMaxHeaderBytes) and the body at Request::max_body (over: IOError).
// Thread-safe: concurrent Send calls use different handles.
#pragma once

#include <cstdint>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ovbd/io.h"
#include "ovbd/remote.h"
#include "ovbd/status.h"
#include "remote/auth.h"
#include "remote/credentials.h"
#include "remote/url.h"

namespace ovbd::remote {

inline constexpr size_t kMaxHeaderBytes = 64 * 1024;
inline constexpr int kMaxRedirects = 5;
inline constexpr uint64_t kMaxSmallBody = 64 * 1024;  // error pages, token answers

struct Request {
  std::string method = "GET";  // GET, HEAD, POST, PUT, PATCH
  Url url;
  std::vector<std::string> headers;  // "Name: value"
  uint64_t max_body = kMaxSmallBody;
  // Upload body: [upload_offset, upload_offset + upload_length) of upload_src (may be null).
  const ReadableFile* upload_src = nullptr;
  uint64_t upload_offset = 0;
  uint64_t upload_length = 0;
  // Whole-request timeout of one attempt; 0 = RemoteOptions::io_timeout.
  std::chrono::milliseconds timeout{0};
};

struct Response {
  long status = 0;
  std::map<std::string, std::string> headers;  // lowercase names; last value wins
  std::vector<uint8_t> body;
  Url url;  // the URL that answered (after redirects)
  std::string Header(const std::string& lower_name) const;
};

class HttpClient {
 public:
  // `registry`: the origin credentials belong to. `credentials`: Basic credentials, if any.
  HttpClient(Url registry, std::optional<Credentials> credentials, const RemoteOptions& options);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Performs `request` as described above. Any HTTP status is a successful Result (the caller
  // judges it) except 5xx/429 after the retries (Unavailable).
  Result<Response> Send(const Request& request);

 private:
  struct Handle;
  Result<Response> Once(const Request& request, const std::string& authorization, bool* sent);
  Result<Response> FollowRedirects(Request request, bool* sent);
  Status Authenticate(const Response& unauthorized);
  std::string AuthorizationFor(const Url& url) const;
  std::unique_ptr<Handle> Acquire();
  void Release(std::unique_ptr<Handle> handle);

  Url registry_;
  std::optional<Credentials> credentials_;
  RemoteOptions options_;
  AuthState auth_;
  std::mutex pool_mu_;
  std::vector<std::unique_ptr<Handle>> pool_;
};

// Builds the client for `registry`: credentials from options (explicit, else credentials_file).
Result<std::unique_ptr<HttpClient>> NewHttpClient(const Url& registry, const RemoteOptions& options);
// Checks option ranges (max_parallel 1..64, retries 0..16, timeouts > 0).
Status CheckOptions(const RemoteOptions& options);

}  // namespace ovbd::remote
