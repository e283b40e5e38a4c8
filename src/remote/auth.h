// Registry authentication pieces: the WWW-Authenticate challenge, Base64, the token endpoint's
// answer, and a thread-safe cache of the current Authorization header.
//
//   401 + WWW-Authenticate: Bearer realm="https://auth/token",service="reg",scope="repository:r:pull"
//     -> GET realm?service=reg&scope=repository:r:pull  (Basic credentials if any)
//     -> {"token": "...", "expires_in": 300} -> "Authorization: Bearer ..." cached until expiry
//   401 + WWW-Authenticate: Basic realm="..." -> "Authorization: Basic base64(user:pass)"
//
// Caps: kMaxChallengeBytes, kMaxChallengeParams, kMaxTokenBytes; expires_in is clamped to
// [kMinTokenLifetime, kMaxTokenLifetime]. Only the first challenge of a header is used.
#pragma once

#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "ovbd/status.h"

namespace ovbd::remote {

inline constexpr size_t kMaxChallengeBytes = 4096;
inline constexpr size_t kMaxChallengeParams = 16;
inline constexpr size_t kMaxTokenBytes = 16384;
inline constexpr std::chrono::seconds kMinTokenLifetime{10};
inline constexpr std::chrono::seconds kDefaultTokenLifetime{60};
inline constexpr std::chrono::seconds kMaxTokenLifetime{24 * 3600};

struct Challenge {
  std::string scheme;                         // lowercase: "bearer" or "basic"
  std::map<std::string, std::string> params;  // lowercase names: realm, service, scope, ...
};

// Parses a WWW-Authenticate value. InvalidArgument for malformed or over-cap input,
// NotSupported for schemes other than Bearer and Basic.
Result<Challenge> ParseChallenge(std::string_view header);

std::string Base64Encode(std::string_view data);
// Standard alphabet, padding optional; InvalidArgument on any other byte.
Result<std::string> Base64Decode(std::string_view text);

struct Token {
  std::string value;
  std::chrono::seconds lifetime{0};
};
// The JSON body of a token endpoint: "token" (or "access_token"), optional "expires_in".
Result<Token> ParseTokenResponse(std::string_view body);

// The current Authorization header of one registry, valid until its expiry. Thread-safe.
class AuthState {
 public:
  using Clock = std::chrono::steady_clock;
  // "" when there is none or it expired.
  std::string Header(Clock::time_point now = Clock::now()) const;
  void Set(std::string header, std::optional<Clock::time_point> expires);
  void Clear();

 private:
  mutable std::mutex mu_;
  std::string header_;
  std::optional<Clock::time_point> expires_;
};

}  // namespace ovbd::remote
