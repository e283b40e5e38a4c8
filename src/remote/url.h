// URLs and references of the remote module, parsed as hostile input.
//
//   "http[s]://host[:port]/path?query"         -> Url
//   "http[s]://host[:port]/<repo>"              -> RepoRef (push target)
//   "http[s]://host[:port]/v2/<repo>/blobs"     -> RepoRef (repoBlobUrl of config.v1.json)
//   "oci[+http]://host[:port]/<repo>@sha256:hex" -> RepoRef + digest
//   Location header (absolute, "/abs/path", "relative") resolved against a Url
//
// Caps: kMaxUrlBytes per URL, kMaxRepoBytes per repository name. No user info ("user@host"), no
// whitespace or control bytes, no fragment; host is a DNS name, IPv4 or [IPv6].
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "ovbd/status.h"

namespace ovbd::remote {

inline constexpr size_t kMaxUrlBytes = 8192;
inline constexpr size_t kMaxRepoBytes = 255;

struct Url {
  std::string scheme;  // "http" or "https"
  std::string host;    // lowercase; IPv6 with brackets
  uint16_t port = 0;   // explicit or the scheme's default
  std::string target;  // path + optional "?query"; starts with '/'
  // "scheme://host:port" (the origin: credentials are sent only to the registry's origin).
  std::string Origin() const;
  // "host:port" (or "host" on the default port): the docker config "auths" key.
  std::string HostPort() const;
  std::string ToString() const { return Origin() + target; }
};

// An absolute http(s) URL.
Result<Url> ParseUrl(std::string_view text);

struct RepoRef {
  Url origin;        // target "/"
  std::string repo;  // "library/app"
  std::string BlobsUrl() const;          // origin + "/v2/<repo>/blobs"
  std::string BlobUrl(const std::string& digest) const { return BlobsUrl() + "/" + digest; }
  std::string UploadsUrl() const { return BlobsUrl() + "/uploads/"; }
};

// "http[s]://host[:port]/<repo>" (trailing '/' allowed).
Result<RepoRef> ParseRepoUrl(std::string_view text);
// "http[s]://host[:port]/v2/<repo>/blobs" (trailing '/' allowed).
Result<RepoRef> ParseRepoBlobUrl(std::string_view text);

struct OciReference {
  RepoRef repo;
  std::string digest;
};
// "oci://host[:port]/<repo>@sha256:<hex>" (https) or "oci+http://..." (plain http).
Result<OciReference> ParseOciReference(std::string_view text);

// "sha256:<64 lowercase hex>"; other algorithms are NotSupported.
Status CheckDigest(std::string_view digest);
// OCI repository name: components [a-z0-9]+([._-][a-z0-9]+)* joined by '/'.
Status CheckRepoName(std::string_view repo);

// Resolves a Location header against the URL it came from (absolute, absolute-path, relative).
Result<Url> ResolveLocation(const Url& base, std::string_view location);
// `url` with "name=value" appended to its query (value percent-encoded).
std::string AddQuery(const std::string& url, std::string_view name, std::string_view value);
// Percent-encoding of everything but unreserved characters (RFC 3986).
std::string PercentEncode(std::string_view text);

}  // namespace ovbd::remote
