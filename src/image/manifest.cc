// The manifest (config.v1.json) as a document ovbd rewrites: the text is kept whole so keys ovbd
// does not know survive, and every rewrite is parsed again before it may be saved.
#include "ovbd/manifest.h"

#include <dirent.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <random>

#include <nlohmann/json.hpp>

#include "ovbd/io.h"
#include "ovbd/lsmt.h"

namespace ovbd::image {
namespace {

using nlohmann::ordered_json;

constexpr const char* kTempSuffix = ".ovbd-tmp";

std::string DirOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

Result<ordered_json> ParseDocument(const std::string& text, const std::string& path) {
  try {
    return ordered_json::parse(text);
  } catch (const ordered_json::exception& e) {  // nlohmann reports by exception; it stays here
    return Status::InvalidArgument(path + ": invalid JSON: " + e.what());
  }
}

ordered_json CheckpointJson(const Checkpoint& c) {
  ordered_json j = {{"name", c.name}};
  if (!c.created.empty()) j["created"] = c.created;
  return j;
}

// A path in `dir` is written relative to it (the manifest's own relative paths resolve against
// its directory), so an image directory can be moved whole.
std::string InDir(const std::string& path, const std::string& dir) {
  const std::string prefix = dir + "/";
  if (path.size() > prefix.size() && path.compare(0, prefix.size(), prefix) == 0 &&
      path.find('/', prefix.size()) == std::string::npos) {
    return path.substr(prefix.size());
  }
  return path;
}

}  // namespace

Result<Manifest> Manifest::Load(const std::string& path) {
  auto file = OpenReadableFile(path);
  if (!file.ok()) return file.status().WithContext(path);
  auto bytes = ReadAll(**file);
  if (!bytes.ok()) return bytes.status().WithContext(path);
  Manifest m;
  m.path_ = path;
  m.dir_ = DirOf(path);
  m.text_.assign(bytes->begin(), bytes->end());
  OVBD_ASSIGN_OR_RETURN(m.config_, LoadImageConfig(path));
  return m;
}

Result<Manifest> Manifest::WithStack(const std::vector<StackEntry>& lowers,
                                     const std::optional<UpperPaths>& upper) const {
  OVBD_RETURN_IF_ERROR(lsmt::CheckLayerCount(lowers.size()).WithContext(path_));
  OVBD_ASSIGN_OR_RETURN(ordered_json root, ParseDocument(text_, path_));
  const ordered_json old_lowers = root.contains("lowers") ? root["lowers"] : ordered_json::array();
  ordered_json out = ordered_json::array();
  for (size_t i = 0; i < lowers.size(); i++) {
    const StackEntry& e = lowers[i];
    if (e.existing) {
      if (*e.existing >= old_lowers.size()) {
        return Status::InvalidArgument(path_ + ": new lowers[" + std::to_string(i) + "] names lower " +
                                       std::to_string(*e.existing) + " of " + std::to_string(old_lowers.size()));
      }
      out.push_back(old_lowers[*e.existing]);
      continue;
    }
    if (e.file.empty()) return Status::InvalidArgument(path_ + ": new lowers[" + std::to_string(i) + "] has no file");
    ordered_json lower = {{"file", InDir(e.file, dir_)}};
    if (e.checkpoint) lower["checkpoint"] = CheckpointJson(*e.checkpoint);
    out.push_back(std::move(lower));
  }
  root["lowers"] = std::move(out);
  if (upper) {
    ordered_json u = root.contains("upper") && root["upper"].is_object() ? root["upper"] : ordered_json::object();
    u["data"] = InDir(upper->data, dir_);
    u["index"] = InDir(upper->index, dir_);
    root["upper"] = std::move(u);
  } else {
    root.erase("upper");
  }
  root.erase("ovbdPendingSnapshot");
  return WithRoot(root);
}

Result<Manifest> Manifest::WithPendingSnapshot(const std::optional<PendingSnapshot>& pending) const {
  OVBD_ASSIGN_OR_RETURN(ordered_json root, ParseDocument(text_, path_));
  if (pending) {
    root["ovbdPendingSnapshot"] = {{"checkpoint", CheckpointJson(pending->checkpoint)},
                                   {"upper", {{"data", InDir(pending->upper.data, dir_)}, {"index", InDir(pending->upper.index, dir_)}}}};
  } else {
    root.erase("ovbdPendingSnapshot");
  }
  return WithRoot(root);
}

Result<Manifest> Manifest::WithRoot(const ordered_json& root) const {
  Manifest next;
  next.path_ = path_;
  next.dir_ = dir_;
  next.text_ = root.dump(2) + "\n";
  auto config = ParseImageConfig(next.text_, dir_);  // the rules of every manifest, checked before a save
  if (!config.ok()) return config.status().WithContext(path_ + " (rewritten)");
  next.config_ = std::move(*config);
  return next;
}

std::string Manifest::Text() const { return text_; }

ordered_json Manifest::Describe() const {
  ordered_json layers = ordered_json::array();
  for (size_t i = 0; i < config_.lowers.size(); i++) {
    const LowerSpec& l = config_.lowers[i];
    ordered_json j = {{"index", i}, {"path", l.file.empty() ? l.digest : l.file},
                      {"source", l.file.empty() ? "registry" : "local"}};
    std::error_code ec;
    const uint64_t size = l.file.empty() ? 0 : std::filesystem::file_size(l.file, ec);
    j["size"] = l.file.empty() ? (l.size ? ordered_json(*l.size) : ordered_json(nullptr))
                               : (ec ? ordered_json(nullptr) : ordered_json(size));
    j["checkpoint"] = l.checkpoint ? CheckpointJson(*l.checkpoint) : ordered_json(nullptr);
    layers.push_back(std::move(j));
  }
  ordered_json j = {{"manifest", path_}, {"layers", layers}};
  j["upper"] = config_.upper ? ordered_json(config_.upper->data) : ordered_json(nullptr);
  j["upper_index"] = config_.upper ? ordered_json(config_.upper->index) : ordered_json(nullptr);
  j["pending_snapshot"] = config_.pending_snapshot ? CheckpointJson(config_.pending_snapshot->checkpoint)
                                                   : ordered_json(nullptr);
  auto leftovers = Leftovers();
  j["leftovers"] = leftovers.ok() ? ordered_json(*leftovers) : ordered_json(nullptr);
  return j;
}

Status Manifest::Save() const {
  AtomicFileOptions options;
  options.sync = true;  // the file, then the rename (directory): what a reopen reads
  options.temp_suffix = kTempSuffix;
  return WriteFileAtomically(path_, std::span(reinterpret_cast<const uint8_t*>(text_.data()), text_.size()),
                             options)
      .WithContext("manifest " + path_);
}

Result<std::vector<std::string>> Manifest::Leftovers() const {
  std::vector<std::string> named;
  for (const auto& l : config_.lowers) {
    if (!l.file.empty()) named.push_back(CanonicalPath(l.file));
  }
  for (const auto* u : {config_.upper ? &*config_.upper : nullptr,
                        config_.pending_snapshot ? &config_.pending_snapshot->upper : nullptr}) {
    if (u == nullptr) continue;
    named.push_back(CanonicalPath(u->data));
    named.push_back(CanonicalPath(u->index));
  }
  DIR* d = opendir(dir_.c_str());
  if (d == nullptr) return Status::FromErrno(errno, "manifest directory " + dir_);
  std::vector<std::string> found;
  while (dirent* entry = readdir(d)) {
    const std::string name = entry->d_name;
    const std::string full = dir_ + "/" + name;
    // The manifest's own temporary file, and those of files ovbd writes (a merged layer).
    const bool temp = full == path_ + kTempSuffix ||
                      (name.size() > std::strlen(kTempSuffix) && name.ends_with(kTempSuffix) &&
                       IsOvbdLayerName(name.substr(0, name.size() - std::strlen(kTempSuffix))));
    if (!temp && !IsOvbdLayerName(name)) continue;
    if (std::find(named.begin(), named.end(), CanonicalPath(full)) == named.end()) found.push_back(full);
  }
  closedir(d);
  std::sort(found.begin(), found.end());
  return found;
}

std::string NewLayerName(const std::string& kind, const std::string& ext) {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char rand[16];
  std::snprintf(rand, sizeof(rand), "%08x", static_cast<unsigned>(rng()));
  return "ovbd-" + kind + "-" + stamp + "-" + rand + "." + ext;
}

// "ovbd-" KIND "-" 16-char stamp "-" 8 hex "." EXT, KIND and EXT lowercase letters.
bool IsOvbdLayerName(const std::string& name) {
  auto lower = [](char c) { return c >= 'a' && c <= 'z'; };
  auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); };
  if (name.rfind("ovbd-", 0) != 0) return false;
  size_t pos = 5;
  const size_t kind_end = name.find('-', pos);
  if (kind_end == std::string::npos || kind_end == pos) return false;
  if (!std::all_of(name.begin() + pos, name.begin() + kind_end, lower)) return false;
  pos = kind_end + 1;
  if (name.size() < pos + 16 + 1 + 8 + 2) return false;
  const std::string stamp = name.substr(pos, 16);  // 20261207T154200Z
  for (size_t i = 0; i < 16; i++) {
    const char c = stamp[i];
    const bool ok = i == 8 ? c == 'T' : i == 15 ? c == 'Z' : (c >= '0' && c <= '9');
    if (!ok) return false;
  }
  pos += 16;
  if (name[pos] != '-') return false;
  pos++;
  if (!std::all_of(name.begin() + pos, name.begin() + pos + 8, hex)) return false;
  pos += 8;
  if (name[pos] != '.' || pos + 1 == name.size()) return false;
  return std::all_of(name.begin() + pos + 1, name.end(), lower);
}

}  // namespace ovbd::image
