// Challenge and token parsing. The challenge grammar (RFC 7235 auth-param) is parsed by hand:
// token / quoted-string values with backslash escapes, comma separated.
#include "remote/auth.h"

#include <algorithm>
#include <cctype>

#include <nlohmann/json.hpp>

namespace ovbd::remote {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); });
  return out;
}

bool IsTokenChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

void SkipSpace(std::string_view s, size_t* i) {
  while (*i < s.size() && (s[*i] == ' ' || s[*i] == '\t')) ++*i;
}

Status BadChallenge(std::string_view why) { return Status::InvalidArgument("WWW-Authenticate: " + std::string(why)); }

Result<std::string> ParseValue(std::string_view s, size_t* i) {
  std::string value;
  if (*i < s.size() && s[*i] == '"') {
    for (++*i; *i < s.size() && s[*i] != '"'; ++*i) {
      if (s[*i] == '\\' && *i + 1 < s.size()) ++*i;
      value += s[*i];
    }
    if (*i >= s.size()) return BadChallenge("unterminated quoted string");
    ++*i;
    return value;
  }
  while (*i < s.size() && IsTokenChar(s[*i])) value += s[(*i)++];
  if (value.empty()) return BadChallenge("empty parameter value");
  return value;
}

Status ParseParams(std::string_view s, size_t i, Challenge* c) {
  while (true) {
    SkipSpace(s, &i);
    if (i >= s.size()) return Status::OK();
    size_t start = i;
    while (i < s.size() && IsTokenChar(s[i])) ++i;
    if (i == start) return BadChallenge("expected a parameter name");
    std::string name = Lower(s.substr(start, i - start));
    SkipSpace(s, &i);
    if (i >= s.size() || s[i] != '=') {
      return Status::OK();  // the start of a second challenge ("Bearer ..., Basic realm=x"): ignored
    }
    ++i;
    SkipSpace(s, &i);
    OVBD_ASSIGN_OR_RETURN(std::string value, ParseValue(s, &i));
    if (c->params.size() >= kMaxChallengeParams) return BadChallenge("too many parameters");
    c->params[name] = std::move(value);
    SkipSpace(s, &i);
    if (i < s.size() && s[i] != ',') return BadChallenge("expected ',' between parameters");
    ++i;
  }
}

int Base64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

}  // namespace

Result<Challenge> ParseChallenge(std::string_view header) {
  if (header.size() > kMaxChallengeBytes) return BadChallenge("longer than " + std::to_string(kMaxChallengeBytes) + " bytes");
  size_t i = 0;
  SkipSpace(header, &i);
  size_t start = i;
  while (i < header.size() && IsTokenChar(header[i])) ++i;
  Challenge c;
  c.scheme = Lower(header.substr(start, i - start));
  if (c.scheme.empty()) return BadChallenge("missing scheme");
  if (c.scheme != "bearer" && c.scheme != "basic") {
    return Status::NotSupported("WWW-Authenticate: scheme '" + c.scheme + "' is not supported");
  }
  OVBD_RETURN_IF_ERROR(ParseParams(header, i, &c));
  if (c.scheme == "bearer" && c.params.count("realm") == 0) return BadChallenge("Bearer without realm");
  return c;
}

std::string Base64Encode(std::string_view data) {
  static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < data.size(); i += 3) {
    uint32_t v = (uint8_t(data[i]) << 16) | (uint8_t(data[i + 1]) << 8) | uint8_t(data[i + 2]);
    for (int k = 18; k >= 0; k -= 6) out += kAlphabet[(v >> k) & 63];
  }
  if (size_t rest = data.size() - i; rest > 0) {
    uint32_t v = uint8_t(data[i]) << 16;
    if (rest == 2) v |= uint8_t(data[i + 1]) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

Result<std::string> Base64Decode(std::string_view text) {
  while (!text.empty() && text.back() == '=') text.remove_suffix(1);
  if (text.size() % 4 == 1) return Status::InvalidArgument("base64: truncated input");
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    int v = Base64Value(c);
    if (v < 0) return Status::InvalidArgument("base64: invalid character");
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

Result<Token> ParseTokenResponse(std::string_view body) {
  if (body.size() > kMaxTokenBytes * 2) return Status::InvalidArgument("token response too large");
  nlohmann::json j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return Status::InvalidArgument("token response is not a JSON object");
  Token t;
  for (const char* key : {"token", "access_token"}) {
    auto it = j.find(key);
    if (it != j.end() && it->is_string() && !it->get<std::string>().empty()) t.value = it->get<std::string>();
  }
  if (t.value.empty()) return Status::InvalidArgument("token response has no token");
  if (t.value.size() > kMaxTokenBytes) return Status::InvalidArgument("token longer than " + std::to_string(kMaxTokenBytes) + " bytes");
  for (char c : t.value) {
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f) return Status::InvalidArgument("token contains invalid bytes");
  }
  t.lifetime = kDefaultTokenLifetime;
  auto exp = j.find("expires_in");
  if (exp != j.end() && exp->is_number()) {
    double secs = exp->get<double>();
    t.lifetime = std::chrono::seconds(static_cast<int64_t>(std::clamp<double>(
        secs, double(kMinTokenLifetime.count()), double(kMaxTokenLifetime.count()))));
  }
  return t;
}

std::string AuthState::Header(Clock::time_point now) const {
  std::lock_guard lock(mu_);
  if (expires_ && now >= *expires_) return "";
  return header_;
}

void AuthState::Set(std::string header, std::optional<Clock::time_point> expires) {
  std::lock_guard lock(mu_);
  header_ = std::move(header);
  expires_ = expires;
}

void AuthState::Clear() { Set("", std::nullopt); }

}  // namespace ovbd::remote
