// ovbd info: what a file is and what its headers say, as text or as a stable JSON object.
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/probe.h"
#include "ovbd/manifest.h"

namespace ovbd::cli {
namespace {

using nlohmann::ordered_json;

struct InfoArgs {
  std::string file;
  bool json = false;
};

std::string Hex(uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

ordered_json ZfileJson(const zfile::Info& z) {
  return ordered_json{{"algorithm", zfile::AlgorithmName(z.algorithm)},
                      {"block_size", z.block_size},
                      {"crc", z.crc},
                      {"header_flags", Hex(z.header_flags)},
                      {"trailer_flags", z.header_overwritten ? ordered_json(nullptr) : ordered_json(Hex(z.trailer_flags))},
                      {"header_overwritten", z.header_overwritten},
                      {"blocks", z.block_count},
                      {"index_offset", z.index_offset},
                      {"original_size", z.original_size},
                      {"compressed_size", z.file_size}};
}

ordered_json LsmtJson(const Probe& p) {
  const lsmt::HeaderTrailer& h = p.layer ? p.layer->trailer : *p.header;
  ordered_json j{{"header_flags", Hex(p.header->flags)}};
  if (p.layer) j["trailer_flags"] = Hex(p.layer->trailer.flags);
  j["virtual_size"] = h.virtual_size;
  j["uuid"] = h.uuid;
  j["parent_uuid"] = h.parent_uuid;
  j["user_tag"] = h.user_tag;
  j["version"] = std::to_string(h.version) + "." + std::to_string(h.sub_version);
  if (p.layer) {
    j["index_offset"] = h.index_offset;
    j["index_entries"] = h.index_size;
  }
  if (p.kind != "lsmt-rw-data") {
    j["segments"] = {{"data", p.counts.data}, {"zeroed", p.counts.zeroed}, {"padding", p.counts.padding}};
  }
  return j;
}

ordered_json InfoJson(const Probe& p) {
  ordered_json j{{"file", p.path}, {"format", p.kind}, {"file_size", p.file_size}, {"tar", p.unwrapped.tar}};
  j["zfile"] = p.unwrapped.zfile ? ZfileJson(*p.unwrapped.zfile) : ordered_json(nullptr);
  j["content_size"] = p.unwrapped.content->Size();
  j["lsmt"] = p.header ? LsmtJson(p) : ordered_json(nullptr);
  return j;
}

// "key: value" lines from the JSON object, nested objects indented.
void PrintText(const ordered_json& j, int indent) {
  for (const auto& [key, value] : j.items()) {
    if (value.is_null()) continue;
    if (value.is_object()) {
      std::printf("%*s%s:\n", indent, "", key.c_str());
      PrintText(value, indent + 2);
      continue;
    }
    std::string text = value.is_string() ? value.get<std::string>() : value.dump();
    if (text.empty() && key.ends_with("uuid")) text = "(null)";  // JSON keeps "" for the null UUID
    std::printf("%*s%-20s %s\n", indent, "", (key + ":").c_str(), text.c_str());
  }
}

// A config.v1.json (the first non-blank byte is '{'): its stack, as `ovbd ctl status` shows it.
bool LooksLikeJson(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return false;
  int c;
  while ((c = std::fgetc(f)) == ' ' || c == '\n' || c == '\t' || c == '\r') {
  }
  std::fclose(f);
  return c == '{';
}

void PrintManifest(const ordered_json& j) {
  std::printf("manifest:  %s\n", j["manifest"].get<std::string>().c_str());
  std::printf("layers (bottom first):\n");
  for (const auto& l : j["layers"]) {
    const std::string size = l["size"].is_null() ? "?" : std::to_string(l["size"].get<uint64_t>());
    std::string line = "  " + std::to_string(l["index"].get<size_t>()) + "  " + l["source"].get<std::string>() +
                       "  " + size + "  " + l["path"].get<std::string>();
    if (!l["checkpoint"].is_null()) line += "  checkpoint " + l["checkpoint"]["name"].get<std::string>();
    std::printf("%s\n", line.c_str());
  }
  std::printf("upper:     %s\n", j["upper"].is_null() ? "none (read-only)" : j["upper"].get<std::string>().c_str());
  if (!j["pending_snapshot"].is_null()) {
    std::printf("pending:   snapshot '%s' was interrupted; a writable open finishes it\n",
                j["pending_snapshot"]["name"].get<std::string>().c_str());
  }
  if (j["leftovers"].is_array()) {
    for (const auto& f : j["leftovers"]) std::printf("leftover:  %s\n", f.get<std::string>().c_str());
  }
}

Status RunInfo(const InfoArgs& a) {
  ordered_json j;
  if (LooksLikeJson(a.file)) {
    OVBD_ASSIGN_OR_RETURN(image::Manifest m, image::Manifest::Load(a.file));
    j = m.Describe();
    if (!a.json) {
      PrintManifest(j);
      return Status::OK();
    }
  } else {
    OVBD_ASSIGN_OR_RETURN(Probe probe, ProbeFile(a.file));
    j = InfoJson(probe);
  }
  if (a.json) {
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    PrintText(j, 0);
  }
  return Status::OK();
}

}  // namespace

void AddInfoCommand(CLI::App& parent, Commands* commands) {
  auto args = std::make_shared<InfoArgs>();
  CLI::App* cmd = parent.add_subcommand(
      "info",
      "Show what FILE is (tar, ZFile, read-only LSMT layer, RW data or index file, raw) and what "
      "its headers say: flags, sizes, ZFile block size/algorithm/CRC, UUIDs, user tag, segment "
      "counts and virtual size. For a config.v1.json: its stack as 'ovbd ctl status' shows a "
      "served one (layers with sizes and checkpoints, the upper, an interrupted snapshot, "
      "leftover files). --json prints one JSON object with stable keys.");
  cmd->add_option("FILE", args->file, "File to inspect")->required();
  cmd->add_flag("--json", args->json, "Print a JSON object");
  cmd->footer("\nExamples:\n  ovbd info layer.zfile\n  ovbd info --json layer.tar | jq .lsmt.segments\n  ovbd info /var/lib/images/app/config.v1.json");
  commands->push_back({cmd, "info", [args] { return RunInfo(*args); }});
}

}  // namespace ovbd::cli
