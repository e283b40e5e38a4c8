#include "remote/credentials.h"

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "remote/auth.h"

namespace ovbd::remote {
namespace {

// "https://host:port/v1/" -> "host:port".
std::string NormalizeKey(std::string_view key) {
  if (size_t s = key.find("://"); s != std::string_view::npos) key = key.substr(s + 3);
  key = key.substr(0, key.find('/'));
  return std::string(key);
}

Result<Credentials> EntryCredentials(const nlohmann::json& entry, std::string_view host) {
  auto bad = [&](const std::string& why) {
    return Status::InvalidArgument("credentials for " + std::string(host) + ": " + why);
  };
  if (!entry.is_object()) return bad("entry is not an object");
  Credentials c;
  auto auth = entry.find("auth");
  if (auth != entry.end()) {
    if (!auth->is_string() || auth->get<std::string>().size() > kMaxCredentialBytes * 2) return bad("\"auth\" must be a short string");
    OVBD_ASSIGN_OR_RETURN(std::string plain, Base64Decode(auth->get<std::string>()));
    size_t colon = plain.find(':');
    if (colon == std::string::npos) return bad("\"auth\" is not base64 of user:password");
    c.username = plain.substr(0, colon);
    c.password = plain.substr(colon + 1);
  } else {
    auto u = entry.find("username"), p = entry.find("password");
    if (u == entry.end() || p == entry.end() || !u->is_string() || !p->is_string()) {
      return bad("needs \"auth\" or string \"username\" and \"password\"");
    }
    c.username = u->get<std::string>();
    c.password = p->get<std::string>();
  }
  if (c.username.empty() || c.username.size() + c.password.size() > kMaxCredentialBytes) return bad("empty or too long");
  return c;
}

}  // namespace

Result<std::optional<Credentials>> FindCredentials(std::string_view json_text, std::string_view host_port) {
  if (json_text.size() > kMaxCredentialsFileBytes) return Status::InvalidArgument("credentials file too large");
  nlohmann::json j = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return Status::InvalidArgument("credentials: not a JSON object");
  auto auths = j.find("auths");
  if (auths == j.end()) return std::optional<Credentials>();
  if (!auths->is_object()) return Status::InvalidArgument("credentials: \"auths\" must be an object");
  for (const auto& [key, entry] : auths->items()) {
    if (NormalizeKey(key) != host_port) continue;
    OVBD_ASSIGN_OR_RETURN(Credentials c, EntryCredentials(entry, host_port));
    return std::optional<Credentials>(std::move(c));
  }
  return std::optional<Credentials>();
}

Result<std::optional<Credentials>> LoadCredentials(const std::string& path, std::string_view host_port) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound(path + ": cannot open credentials file");
  std::string text(kMaxCredentialsFileBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  auto r = FindCredentials(text, host_port);
  if (!r.ok()) return r.status().WithContext(path);
  return r;
}

}  // namespace ovbd::remote
