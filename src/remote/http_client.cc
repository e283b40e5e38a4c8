// libcurl plumbing. Redirects are followed here, not by curl, so that the Authorization header
// is decided per hop (CURLOPT_UNRESTRICTED_AUTH semantics are not enough with a custom header).
#include "remote/http_client.h"

#include <algorithm>

#include <curl/curl.h>

#include <thread>

namespace ovbd::remote {
namespace {

std::once_flag g_curl_init;

struct Transfer {
  Response* response = nullptr;
  uint64_t max_body = 0;
  size_t header_bytes = 0;
  bool overflow = false;
  const ReadableFile* src = nullptr;
  uint64_t offset = 0;
  uint64_t remaining = 0;
  Status read_error;
};

std::string Trim(std::string_view s) {
  while (!s.empty() && (s.back() == '\r' || s.back() == '\n' || s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  return std::string(s);
}

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string_view line(data, size * n);
  t->header_bytes += line.size();
  if (t->header_bytes > kMaxHeaderBytes) {
    t->overflow = true;
    return 0;
  }
  if (line.substr(0, 5) == "HTTP/") {
    t->response->headers.clear();  // a new response (after 100 Continue)
    return line.size();
  }
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) return line.size();
  std::string name = Trim(line.substr(0, colon));
  std::transform(name.begin(), name.end(), name.begin(),
                 [](char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); });
  t->response->headers[name] = Trim(line.substr(colon + 1));
  return line.size();
}

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t len = size * n;
  if (t->response->body.size() + len > t->max_body) {
    t->overflow = true;
    return 0;
  }
  t->response->body.insert(t->response->body.end(), data, data + len);
  return len;
}

size_t OnRead(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t len = static_cast<size_t>(std::min<uint64_t>(size * n, t->remaining));
  if (len == 0) return 0;
  Status s = t->src->ReadAt(t->offset, std::span<uint8_t>(reinterpret_cast<uint8_t*>(data), len));
  if (!s.ok()) {
    t->read_error = s;
    return CURL_READFUNC_ABORT;
  }
  t->offset += len;
  t->remaining -= len;
  return len;
}

bool IsRetryableStatus(long status) { return status >= 500 || status == 429; }
bool IsRedirect(long status) { return status == 301 || status == 302 || status == 303 || status == 307 || status == 308; }
bool NothingSent(CURLcode code) {
  return code == CURLE_COULDNT_CONNECT || code == CURLE_COULDNT_RESOLVE_HOST || code == CURLE_COULDNT_RESOLVE_PROXY;
}

void SetMethod(CURL* c, const Request& r, Transfer* t) {
  if (r.method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (r.method == "POST" && r.upload_src == nullptr) {
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t{0});
  } else if (r.method != "GET") {
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(r.upload_length));
    curl_easy_setopt(c, CURLOPT_READFUNCTION, OnRead);
    curl_easy_setopt(c, CURLOPT_READDATA, t);
    if (r.method != "PUT") curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r.method.c_str());
  }
}

}  // namespace

struct HttpClient::Handle {
  CURL* curl = curl_easy_init();
  ~Handle() { curl_easy_cleanup(curl); }
};

std::string Response::Header(const std::string& lower_name) const {
  auto it = headers.find(lower_name);
  return it == headers.end() ? "" : it->second;
}

Status CheckOptions(const RemoteOptions& o) {
  if (o.max_parallel < 1 || o.max_parallel > 64) return Status::InvalidArgument("max_parallel must be 1..64");
  if (o.retries > 16) return Status::InvalidArgument("retries must be 0..16");
  if (o.connect_timeout.count() <= 0 || o.io_timeout.count() <= 0) return Status::InvalidArgument("timeouts must be > 0");
  if (o.backoff.count() < 0 || o.backoff.count() > 60000) return Status::InvalidArgument("backoff must be 0..60000 ms");
  if (o.retry_for.count() < 0 || o.retry_for.count() > 86400000) return Status::InvalidArgument("retry_for must be 0..86400 s");
  return Status::OK();
}

Result<std::unique_ptr<HttpClient>> NewHttpClient(const Url& registry, const RemoteOptions& options) {
  OVBD_RETURN_IF_ERROR(CheckOptions(options));
  std::optional<Credentials> creds;
  if (!options.username.empty()) {
    creds = Credentials{options.username, options.password};
  } else if (!options.credentials_file.empty()) {
    OVBD_ASSIGN_OR_RETURN(creds, LoadCredentials(options.credentials_file, registry.HostPort()));
  }
  return std::make_unique<HttpClient>(registry, std::move(creds), options);
}

HttpClient::HttpClient(Url registry, std::optional<Credentials> credentials, const RemoteOptions& options)
    : registry_(std::move(registry)), credentials_(std::move(credentials)), options_(options) {
  std::call_once(g_curl_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

HttpClient::~HttpClient() = default;

std::unique_ptr<HttpClient::Handle> HttpClient::Acquire() {
  std::lock_guard lock(pool_mu_);
  if (pool_.empty()) return std::make_unique<Handle>();
  auto h = std::move(pool_.back());
  pool_.pop_back();
  return h;
}

void HttpClient::Release(std::unique_ptr<Handle> handle) {
  std::lock_guard lock(pool_mu_);
  if (pool_.size() < 64) pool_.push_back(std::move(handle));
}

Result<Response> HttpClient::Once(const Request& r, const std::string& authorization, bool* sent) {
  auto handle = Acquire();
  CURL* c = handle->curl;
  if (c == nullptr) return Status::IOError("curl_easy_init failed");
  curl_easy_reset(c);  // keeps the connection cache: reuse across requests
  Response response;
  response.url = r.url;
  Transfer t;
  t.response = &response;
  t.max_body = r.max_body;
  t.src = r.upload_src;
  t.offset = r.upload_offset;
  t.remaining = r.upload_length;
  std::string url = r.url.ToString();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.connect_timeout.count()));
  auto timeout = r.timeout.count() > 0 ? r.timeout : options_.io_timeout;
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
  if (!options_.proxy.empty()) curl_easy_setopt(c, CURLOPT_PROXY, options_.proxy.c_str());
  if (options_.insecure) {
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  SetMethod(c, r, &t);
  curl_slist* list = curl_slist_append(nullptr, "Expect:");
  for (const auto& h : r.headers) list = curl_slist_append(list, h.c_str());
  std::string auth_line = "Authorization: " + authorization;
  if (!authorization.empty()) list = curl_slist_append(list, auth_line.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
  CURLcode code = curl_easy_perform(c);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &response.status);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, nullptr);
  curl_slist_free_all(list);
  Release(std::move(handle));
  *sent = *sent || !NothingSent(code);
  std::string what = r.method + " " + url;
  if (t.overflow) return Status::IOError(what + ": response exceeds its size cap");
  if (!t.read_error.ok()) return t.read_error.WithContext(what + ": reading upload body");
  if (code != CURLE_OK) return Status::Unavailable(what + ": " + curl_easy_strerror(code));
  return response;
}

std::string HttpClient::AuthorizationFor(const Url& url) const {
  return url.Origin() == registry_.Origin() ? auth_.Header() : "";
}

Status HttpClient::Authenticate(const Response& unauthorized) {
  std::string what = "authenticating to " + registry_.Origin();
  auto challenge = ParseChallenge(unauthorized.Header("www-authenticate"));
  if (!challenge.ok()) return challenge.status().WithContext(what);
  std::string basic = credentials_ ? "Basic " + Base64Encode(credentials_->username + ":" + credentials_->password) : "";
  if (challenge->scheme == "basic") {
    if (!credentials_) return Status::IOError(what + ": registry wants Basic credentials and none are configured");
    auth_.Set(basic, std::nullopt);
    return Status::OK();
  }
  std::string token_url = challenge->params["realm"];
  for (const char* p : {"service", "scope"}) {
    if (challenge->params.count(p)) token_url = AddQuery(token_url, p, challenge->params[p]);
  }
  Request req;
  OVBD_ASSIGN_OR_RETURN(req.url, ParseUrl(token_url));
  bool sent = false;
  auto resp = Once(req, basic, &sent);
  if (!resp.ok()) return resp.status().WithContext(what);
  if (resp->status != 200) return Status::IOError(what + ": token endpoint answered HTTP " + std::to_string(resp->status));
  std::string_view body(reinterpret_cast<const char*>(resp->body.data()), resp->body.size());
  auto token = ParseTokenResponse(body);
  if (!token.ok()) return token.status().WithContext(what);
  auth_.Set("Bearer " + token->value, AuthState::Clock::now() + token->lifetime - std::chrono::seconds(5));
  return Status::OK();
}

Result<Response> HttpClient::FollowRedirects(Request request, bool* sent) {
  bool authenticated = false;
  for (int hop = 0; hop <= kMaxRedirects;) {
    OVBD_ASSIGN_OR_RETURN(Response resp, Once(request, AuthorizationFor(request.url), sent));
    if (resp.status == 401 && !authenticated && request.url.Origin() == registry_.Origin() &&
        !resp.Header("www-authenticate").empty()) {
      OVBD_RETURN_IF_ERROR(Authenticate(resp));
      authenticated = true;
      continue;
    }
    if (!IsRedirect(resp.status) || resp.Header("location").empty()) return resp;
    OVBD_ASSIGN_OR_RETURN(request.url, ResolveLocation(request.url, resp.Header("location")));
    if (resp.status == 303) {
      request.method = "GET";
      request.upload_src = nullptr;
    }
    ++hop;
  }
  return Status::IOError(request.method + " " + request.url.ToString() + ": more than " +
                         std::to_string(kMaxRedirects) + " redirects");
}

// Retries: `retries` extra attempts, and with retry_for > 0 more until that much time has passed
// since the first attempt (each attempt's timeout clamped to the time left, backoff capped at 2 s).
Result<Response> HttpClient::Send(const Request& request) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + options_.retry_for;
  const auto left = [&] { return std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()); };
  std::string cause;
  unsigned attempt = 0;
  for (;; ++attempt) {
    bool window = options_.retry_for.count() > 0;
    if (attempt > options_.retries && (!window || left().count() <= 0)) break;
    if (attempt > 0) {
      auto pause = std::min<std::chrono::milliseconds>(options_.backoff * (1u << std::min(attempt - 1, 10u)),
                                                       std::chrono::milliseconds(2000));
      if (window && attempt > options_.retries) pause = std::min(pause, std::max(left(), std::chrono::milliseconds(0)));
      std::this_thread::sleep_for(pause);
    }
    Request req = request;
    if (window) req.timeout = std::clamp(left(), std::chrono::milliseconds(1000), options_.io_timeout);
    bool sent = false;
    auto r = FollowRedirects(req, &sent);
    if (r.ok() && !IsRetryableStatus(r->status)) return r;
    if (!r.ok() && r.status().code() != Code::kUnavailable) return r;
    cause = r.ok() ? request.method + " " + request.url.ToString() + ": HTTP " + std::to_string(r->status)
                   : r.status().message();
    bool idempotent = request.method == "GET" || request.method == "HEAD" || request.method == "PUT";
    if (!idempotent && sent) { ++attempt; break; }
  }
  return Status::Unavailable(cause + " (after " + std::to_string(attempt) + " attempts)");
}

}  // namespace ovbd::remote
