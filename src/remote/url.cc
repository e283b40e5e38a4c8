// URL parsing for registry addresses. Deliberately strict: a registry URL comes from a config
// file or the command line, a Location header from the network; both are hostile.
#include "remote/url.h"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace ovbd::remote {
namespace {

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool IsHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

Status Bad(std::string_view text, std::string_view why) {
  std::string shown(text.substr(0, 200));
  return Status::InvalidArgument("URL '" + shown + "': " + std::string(why));
}

Status CheckChars(std::string_view text) {
  if (text.size() > kMaxUrlBytes) return Bad(text, "longer than " + std::to_string(kMaxUrlBytes) + " bytes");
  for (char c : text) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) return Bad(text, "contains whitespace, control or non-ASCII bytes");
  }
  if (text.find('#') != std::string_view::npos) return Bad(text, "fragments are not allowed");
  return Status::OK();
}

Status CheckHost(std::string_view all, std::string_view host) {
  if (host.empty() || host.size() > 253) return Bad(all, "missing or too long host");
  if (host.front() == '[') {
    if (host.back() != ']' || host.size() < 4) return Bad(all, "malformed [IPv6] host");
    for (char c : host.substr(1, host.size() - 2)) {
      if (!std::isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.') return Bad(all, "malformed [IPv6] host");
    }
    return Status::OK();
  }
  for (char c : host) {
    if (!IsLowerAlnum(c) && c != '.' && c != '-') return Bad(all, "invalid character in host");
  }
  return Status::OK();
}

Result<uint16_t> ParsePort(std::string_view all, std::string_view text) {
  unsigned value = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || text.size() > 5 || ec != std::errc() || p != text.data() + text.size() ||
      value == 0 || value > 65535) {
    return Bad(all, "invalid port");
  }
  return static_cast<uint16_t>(value);
}

// Splits "host[:port]" (host possibly "[v6]").
Status ParseAuthority(std::string_view all, std::string_view auth, Url* url) {
  if (auth.find('@') != std::string_view::npos) return Bad(all, "user info in URLs is not allowed (use credentials)");
  size_t colon = auth.rfind(':');
  if (colon != std::string_view::npos && auth.find(']', colon) == std::string_view::npos) {
    OVBD_ASSIGN_OR_RETURN(url->port, ParsePort(all, auth.substr(colon + 1)));
    auth = auth.substr(0, colon);
  } else {
    url->port = url->scheme == "https" ? 443 : 80;
  }
  url->host.assign(auth);
  std::transform(url->host.begin(), url->host.end(), url->host.begin(),
                 [](char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); });
  return CheckHost(all, url->host);
}

std::string_view TrimSlash(std::string_view s) {
  while (!s.empty() && s.back() == '/') s.remove_suffix(1);
  return s;
}

}  // namespace

std::string Url::Origin() const { return scheme + "://" + HostPort(); }

std::string Url::HostPort() const {
  bool default_port = (scheme == "https" && port == 443) || (scheme == "http" && port == 80);
  return default_port ? host : host + ":" + std::to_string(port);
}

Result<Url> ParseUrl(std::string_view text) {
  OVBD_RETURN_IF_ERROR(CheckChars(text));
  Url url;
  size_t sep = text.find("://");
  if (sep == std::string_view::npos) return Bad(text, "expected http:// or https://");
  url.scheme.assign(text.substr(0, sep));
  if (url.scheme != "http" && url.scheme != "https") return Bad(text, "scheme must be http or https");
  std::string_view rest = text.substr(sep + 3);
  size_t slash = rest.find_first_of("/?");
  OVBD_RETURN_IF_ERROR(ParseAuthority(text, rest.substr(0, slash), &url));
  url.target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (url.target[0] == '?') url.target.insert(url.target.begin(), '/');
  return url;
}

Status CheckRepoName(std::string_view repo) {
  if (repo.empty() || repo.size() > kMaxRepoBytes) {
    return Status::InvalidArgument("repository name must be 1.." + std::to_string(kMaxRepoBytes) + " bytes");
  }
  char prev = '/';
  for (char c : repo) {
    bool sep = c == '/' || c == '.' || c == '_' || c == '-';
    if (!sep && !IsLowerAlnum(c)) return Status::InvalidArgument("repository name '" + std::string(repo) + "': invalid character");
    if (sep && !IsLowerAlnum(prev) && !(c == '_' && prev == '_')) {
      return Status::InvalidArgument("repository name '" + std::string(repo) + "': separator misplaced");
    }
    prev = c;
  }
  if (!IsLowerAlnum(prev)) return Status::InvalidArgument("repository name '" + std::string(repo) + "': must end with [a-z0-9]");
  return Status::OK();
}

Status CheckDigest(std::string_view digest) {
  constexpr std::string_view kPrefix = "sha256:";
  if (digest.substr(0, kPrefix.size()) != kPrefix) {
    if (digest.find(':') != std::string_view::npos && digest.size() < 200) {
      return Status::NotSupported("digest '" + std::string(digest) + "': only sha256 is supported");
    }
    return Status::InvalidArgument("digest must be sha256:<64 hex>");
  }
  std::string_view hex = digest.substr(kPrefix.size());
  if (hex.size() != 64 || !std::all_of(hex.begin(), hex.end(), IsHex)) {
    return Status::InvalidArgument("digest must be sha256:<64 lowercase hex>");
  }
  return Status::OK();
}

std::string RepoRef::BlobsUrl() const { return origin.Origin() + "/v2/" + repo + "/blobs"; }

Result<RepoRef> ParseRepoUrl(std::string_view text) {
  OVBD_ASSIGN_OR_RETURN(Url url, ParseUrl(text));
  if (url.target.find('?') != std::string::npos) return Bad(text, "a repository URL has no query");
  std::string_view repo = TrimSlash(std::string_view(url.target).substr(1));
  OVBD_RETURN_IF_ERROR(CheckRepoName(repo));
  RepoRef ref{url, std::string(repo)};
  ref.origin.target = "/";
  return ref;
}

Result<RepoRef> ParseRepoBlobUrl(std::string_view text) {
  OVBD_ASSIGN_OR_RETURN(Url url, ParseUrl(text));
  std::string_view path = TrimSlash(url.target);
  constexpr std::string_view kHead = "/v2/", kTail = "/blobs";
  if (path.size() <= kHead.size() + kTail.size() || path.substr(0, kHead.size()) != kHead ||
      path.substr(path.size() - kTail.size()) != kTail) {
    return Bad(text, "expected http[s]://host[:port]/v2/<repo>/blobs");
  }
  std::string_view repo = path.substr(kHead.size(), path.size() - kHead.size() - kTail.size());
  OVBD_RETURN_IF_ERROR(CheckRepoName(repo));
  RepoRef ref{url, std::string(repo)};
  ref.origin.target = "/";
  return ref;
}

Result<OciReference> ParseOciReference(std::string_view text) {
  std::string scheme;
  if (text.substr(0, 6) == "oci://") scheme = "https";
  if (text.substr(0, 11) == "oci+http://") scheme = "http";
  if (scheme.empty()) return Bad(text, "expected oci://host/repo@sha256:<hex>");
  size_t at = text.rfind('@');
  if (at == std::string_view::npos) return Bad(text, "missing @sha256:<hex>");
  OciReference ref;
  ref.digest.assign(text.substr(at + 1));
  OVBD_RETURN_IF_ERROR(CheckDigest(ref.digest));
  std::string http = scheme + std::string(text.substr(text.find("://"), at - text.find("://")));
  OVBD_ASSIGN_OR_RETURN(ref.repo, ParseRepoUrl(http));
  return ref;
}

Result<Url> ResolveLocation(const Url& base, std::string_view location) {
  if (location.empty()) return Status::IOError("empty Location header");
  if (location.find("://") != std::string_view::npos) return ParseUrl(location);
  OVBD_RETURN_IF_ERROR(CheckChars(location));
  if (location.substr(0, 2) == "//") return ParseUrl(base.scheme + ":" + std::string(location));
  Url url = base;
  if (location[0] == '/') {
    url.target.assign(location);
  } else {
    std::string dir = base.target.substr(0, base.target.find('?'));
    url.target = dir.substr(0, dir.rfind('/') + 1) + std::string(location);
  }
  if (url.target.size() > kMaxUrlBytes) return Bad(location, "resolved URL too long");
  return url;
}

std::string PercentEncode(std::string_view text) {
  static const char kHexDigits[] = "0123456789ABCDEF";
  std::string out;
  for (char c : text) {
    auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += c;
    } else {
      out += '%';
      out += kHexDigits[u >> 4];
      out += kHexDigits[u & 15];
    }
  }
  return out;
}

std::string AddQuery(const std::string& url, std::string_view name, std::string_view value) {
  char sep = url.find('?') == std::string::npos ? '?' : '&';
  return url + sep + std::string(name) + "=" + PercentEncode(value);
}

}  // namespace ovbd::remote
