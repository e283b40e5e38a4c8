// config.v1.json (overlaybd's ImageConfigNS::ImageConfig): the subset ovbd uses. Every value is
// type-checked before use; unknown keys are ignored as overlaybd ignores them.
#include <algorithm>

#include <nlohmann/json.hpp>

#include "image/layer_context.h"
#include "ovbd/digest_table.h"  // the table size cap only (a constant: no link dependency)
#include "ovbd/lsmt.h"
#include "ovbd/image.h"

namespace ovbd::image {
namespace {

using nlohmann::json;

constexpr uint64_t kMaxConfigBytes = 16 << 20;

std::string Resolve(const std::string& path, const std::string& base_dir) {
  if (path.empty() || path[0] == '/' || base_dir.empty()) return path;
  return base_dir + "/" + path;
}

// The string at obj[key], "" if absent; InvalidArgument naming `where` if not a string.
Result<std::string> OptionalString(const json& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::string();
  if (!it->is_string()) return Status::InvalidArgument(where + ": expected a string");
  return it->get<std::string>();
}

bool IsSha256Digest(const std::string& d) {
  if (d.size() != 71 || d.compare(0, 7, "sha256:") != 0) return false;
  return std::all_of(d.begin() + 7, d.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

Result<std::optional<uint64_t>> OptionalSize(const json& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::optional<uint64_t>();
  if (!it->is_number_unsigned()) return Status::InvalidArgument(where + ": expected a non-negative integer");
  return std::optional<uint64_t>(it->get<uint64_t>());
}

// lowers[i].digestTable = {"digest": "sha256:<hex>", "size": N} (docs/format/digest-table.md §5).
Result<std::optional<BlobRef>> ParseDigestTable(const json& lower, const std::string& where) {
  auto it = lower.find("digestTable");
  if (it == lower.end() || it->is_null()) return std::optional<BlobRef>();
  if (!it->is_object()) return Status::InvalidArgument(where + ": expected an object");
  BlobRef ref;
  OVBD_ASSIGN_OR_RETURN(ref.digest, OptionalString(*it, "digest", where + ".digest"));
  if (!IsSha256Digest(ref.digest)) {
    return Status::InvalidArgument(where + ".digest: expected \"sha256:\" and 64 lowercase hex digits");
  }
  constexpr uint64_t kMaxTableBytes = remote::DigestTableBytes(remote::kMaxDigestChunks);
  auto size = it->find("size");
  if (size == it->end() || !size->is_number_unsigned() || size->get<uint64_t>() == 0 ||
      size->get<uint64_t>() > kMaxTableBytes) {
    return Status::InvalidArgument(where + ".size: expected an integer in 1.." + std::to_string(kMaxTableBytes));
  }
  ref.size = size->get<uint64_t>();
  return std::optional<BlobRef>(std::move(ref));
}


// lowers[i].checkpoint = {"name": "c1", "created": "2026-12-07T15:42:00Z"} (docs/lifecycle.md).
Result<std::optional<Checkpoint>> ParseCheckpoint(const json& lower, const std::string& where) {
  auto it = lower.find("checkpoint");
  if (it == lower.end() || it->is_null()) return std::optional<Checkpoint>();
  if (!it->is_object()) return Status::InvalidArgument(where + ": expected an object");
  Checkpoint c;
  OVBD_ASSIGN_OR_RETURN(c.name, OptionalString(*it, "name", where + ".name"));
  if (!IsCheckpointName(c.name)) {
    return Status::InvalidArgument(where + ".name: expected 1..255 bytes without '/' or control characters");
  }
  OVBD_ASSIGN_OR_RETURN(c.created, OptionalString(*it, "created", where + ".created"));
  return std::optional<Checkpoint>(std::move(c));
}

Result<LowerSpec> ParseLower(const json& lower, size_t i, const std::string& base_dir) {
  std::string where = "lowers[" + std::to_string(i) + "]";
  if (!lower.is_object()) return Status::InvalidArgument(where + ": expected an object");
  LowerSpec spec;
  OVBD_ASSIGN_OR_RETURN(spec.file, OptionalString(lower, "file", where + ".file"));
  OVBD_ASSIGN_OR_RETURN(spec.digest, OptionalString(lower, "digest", where + ".digest"));
  OVBD_ASSIGN_OR_RETURN(spec.size, OptionalSize(lower, "size", where + ".size"));
  OVBD_ASSIGN_OR_RETURN(spec.digest_table, ParseDigestTable(lower, where + ".digestTable"));
  OVBD_ASSIGN_OR_RETURN(spec.checkpoint, ParseCheckpoint(lower, where + ".checkpoint"));
  if (!spec.file.empty()) {
    spec.file = Resolve(spec.file, base_dir);
    return spec;  // a local file wins; digest and size are informational
  }
  if (spec.digest.empty()) return Status::InvalidArgument(where + ": needs a \"file\" or a \"digest\"");
  if (!IsSha256Digest(spec.digest)) {
    return Status::InvalidArgument(where + ".digest: expected \"sha256:\" and 64 lowercase hex digits");
  }
  return spec;
}

Result<std::vector<LowerSpec>> ParseLowers(const json& root, const std::string& base_dir) {
  std::vector<LowerSpec> lowers;
  auto it = root.find("lowers");
  if (it == root.end() || it->is_null()) return lowers;
  if (!it->is_array()) return Status::InvalidArgument("lowers: expected an array");
  OVBD_RETURN_IF_ERROR(lsmt::CheckLayerCount(it->size()).WithContext("lowers"));
  for (size_t i = 0; i < it->size(); i++) {
    OVBD_ASSIGN_OR_RETURN(LowerSpec spec, ParseLower((*it)[i], i, base_dir));
    for (size_t j = 0; j < lowers.size() && spec.checkpoint; j++) {
      if (lowers[j].checkpoint && lowers[j].checkpoint->name == spec.checkpoint->name) {
        return Status::InvalidArgument("lowers[" + std::to_string(i) + "].checkpoint.name: '" +
                                       spec.checkpoint->name + "' is also lowers[" + std::to_string(j) + "]'s");
      }
    }
    lowers.push_back(std::move(spec));
  }
  return lowers;
}

Result<std::optional<UpperPaths>> ParseUpper(const json& root, const std::string& base_dir) {
  auto it = root.find("upper");
  if (it == root.end() || it->is_null()) return std::optional<UpperPaths>();
  if (!it->is_object()) return Status::InvalidArgument("upper: expected an object");
  UpperPaths upper;
  OVBD_ASSIGN_OR_RETURN(upper.data, OptionalString(*it, "data", "upper.data"));
  OVBD_ASSIGN_OR_RETURN(upper.index, OptionalString(*it, "index", "upper.index"));
  if (upper.data.empty() && upper.index.empty()) return std::optional<UpperPaths>();
  if (upper.data.empty() || upper.index.empty()) {
    return Status::InvalidArgument("upper: needs both \"data\" and \"index\"");
  }
  upper.data = Resolve(upper.data, base_dir);
  upper.index = Resolve(upper.index, base_dir);
  return std::optional<UpperPaths>(std::move(upper));
}

// ovbdPendingSnapshot = {"checkpoint": {...}, "upper": {"data", "index"}}: a snapshot that had
// begun when the manifest was saved (docs/lifecycle.md); the next open finishes it.
Result<std::optional<PendingSnapshot>> ParsePendingSnapshot(const json& root, const std::string& base_dir) {
  auto it = root.find("ovbdPendingSnapshot");
  if (it == root.end() || it->is_null()) return std::optional<PendingSnapshot>();
  if (!it->is_object()) return Status::InvalidArgument("ovbdPendingSnapshot: expected an object");
  PendingSnapshot p;
  OVBD_ASSIGN_OR_RETURN(auto checkpoint, ParseCheckpoint(*it, "ovbdPendingSnapshot.checkpoint"));
  if (!checkpoint) return Status::InvalidArgument("ovbdPendingSnapshot.checkpoint: required");
  p.checkpoint = std::move(*checkpoint);
  OVBD_ASSIGN_OR_RETURN(auto upper, ParseUpper(*it, base_dir));
  if (!upper) return Status::InvalidArgument("ovbdPendingSnapshot.upper: required");
  p.upper = std::move(*upper);
  return std::optional<PendingSnapshot>(std::move(p));
}

Result<json> ParseJson(std::string_view text) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {  // nlohmann reports by exception; it stays in this file
    return Status::InvalidArgument(std::string("invalid JSON: ") + e.what());
  }
}

std::string DirName(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

Result<DownloadConfig> ParseDownload(const json& root) {
  DownloadConfig d;
  auto it = root.find("download");
  if (it == root.end() || it->is_null()) return d;
  if (!it->is_object()) return Status::InvalidArgument("download: expected an object");
  if (auto e = it->find("enable"); e != it->end()) {
    if (!e->is_boolean()) return Status::InvalidArgument("download.enable: expected true or false");
    d.enable = e->get<bool>();
  }
  for (auto [key, out] : {std::pair<const char*, unsigned*>{"delay", &d.delay_s}, {"maxMBps", &d.max_mbps}}) {
    auto v = it->find(key);
    if (v == it->end()) continue;
    if (!v->is_number_unsigned() || v->get<uint64_t>() > 1000000) {
      return Status::InvalidArgument(std::string("download.") + key + ": expected an integer in 0..1000000");
    }
    *out = static_cast<unsigned>(v->get<uint64_t>());
  }
  return d;
}

}  // namespace

bool IsCheckpointName(const std::string& name) {
  if (name.empty() || name.size() > 255) return false;
  return std::none_of(name.begin(), name.end(),
                      [](char c) { return c == '/' || static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

bool ImageConfig::HasRemoteLowers() const {
  return std::any_of(lowers.begin(), lowers.end(), [](const LowerSpec& l) { return l.file.empty(); });
}

Result<ImageConfig> ParseImageConfig(std::string_view text, const std::string& base_dir) {
  OVBD_ASSIGN_OR_RETURN(json root, ParseJson(text));
  if (!root.is_object()) return Status::InvalidArgument("config: expected a JSON object at the top level");
  ImageConfig config;
  OVBD_ASSIGN_OR_RETURN(config.lowers, ParseLowers(root, base_dir));
  OVBD_ASSIGN_OR_RETURN(config.upper, ParseUpper(root, base_dir));
  OVBD_ASSIGN_OR_RETURN(std::string result, OptionalString(root, "resultFile", "resultFile"));
  config.result_file = Resolve(result, base_dir);
  OVBD_ASSIGN_OR_RETURN(config.repo_blob_url, OptionalString(root, "repoBlobUrl", "repoBlobUrl"));
  OVBD_ASSIGN_OR_RETURN(std::string trace, OptionalString(root, "recordTracePath", "recordTracePath"));
  config.record_trace_path = Resolve(trace, base_dir);
  OVBD_ASSIGN_OR_RETURN(config.download, ParseDownload(root));
  OVBD_ASSIGN_OR_RETURN(config.pending_snapshot, ParsePendingSnapshot(root, base_dir));
  if (config.pending_snapshot) {
    if (!config.upper) return Status::InvalidArgument("ovbdPendingSnapshot: the config has no upper to snapshot");
    for (size_t i = 0; i < config.lowers.size(); i++) {
      const auto& c = config.lowers[i].checkpoint;
      if (c && c->name == config.pending_snapshot->checkpoint.name) {
        return Status::InvalidArgument("ovbdPendingSnapshot.checkpoint.name: '" + c->name + "' is also lowers[" +
                                       std::to_string(i) + "]'s");
      }
    }
  }
  if (config.HasRemoteLowers() && config.repo_blob_url.empty()) {
    return Status::InvalidArgument("repoBlobUrl: required when a lower has a \"digest\" and no \"file\"");
  }
  return config;
}

Result<ImageConfig> LoadImageConfig(const std::string& path) {
  auto file = OpenReadableFile(path);
  if (!file.ok()) return WithPath(file.status(), path);
  if ((*file)->Size() > kMaxConfigBytes) {
    return Status::InvalidArgument(path + ": config of " + std::to_string((*file)->Size()) +
                                   " bytes is larger than the limit of 16 MiB");
  }
  auto bytes = ReadAll(**file);
  if (!bytes.ok()) return WithPath(bytes.status(), path);
  std::string_view text(reinterpret_cast<const char*>(bytes->data()), bytes->size());
  auto config = ParseImageConfig(text, DirName(path));
  if (!config.ok()) return config.status().WithContext(path);
  return config;
}

Status WriteResult(const ImageConfig& config, const Status& outcome) {
  if (config.result_file.empty()) return Status::OK();
  std::string text = outcome.ok() ? "success" : "failed:" + outcome.message();
  auto out = CreateWritableFile(config.result_file, /*overwrite=*/true);
  if (!out.ok()) return WithPath(out.status(), config.result_file);
  OVBD_RETURN_IF_ERROR((*out)->Append(std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size())));
  return (*out)->Close();
}

}  // namespace ovbd::image
