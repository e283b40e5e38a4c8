// ovbd push: uploads committed layers to an OCI registry as blobs, each with its digest table
// (docs/format/digest-table.md) unless --no-digest-table, and writes the config.v1.json
// (repoBlobUrl, lowers[].digest/size/digestTable) that names them.
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/options.h"
#include "cli/progress.h"
#include "ovbd/digest_table.h"
#include "ovbd/remote.h"

namespace ovbd::cli {
namespace {

struct PushArgs {
  std::string to;
  std::string config_out;
  std::string chunk_size = "8M";
  bool monolithic = false;
  bool no_digest_table = false;
  bool json = false;
  bool quiet = false;
  std::string proxy;
  std::string credentials;
  std::vector<std::string> layers;
};

// Atomic and synced: the config names the blobs, and whoever reads it next trusts it.
Status WriteConfig(const std::string& path, const nlohmann::json& config) {
  std::string text = config.dump(2) + "\n";
  return WriteFileAtomically(path, std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

Result<remote::LayerPushResult> PushOne(const PushArgs& a, const std::string& layer, const remote::RemoteOptions& options) {
  // The layer was perhaps written without --sync: make the local copy durable before the
  // registry (and the config) name its digest, so a crash cannot leave a local file that differs
  // from the blob pushed under its name.
  OVBD_RETURN_IF_ERROR(SyncFile(layer));
  OVBD_ASSIGN_OR_RETURN(auto file, OpenReadableFile(layer));
  Progress progress("push", a.quiet || a.json);
  auto r = remote::PushLayer(a.to, *file, options, !a.monolithic, ParsedSize(a.chunk_size), !a.no_digest_table,
                             progress.Callback());
  progress.Finish();
  if (!r.ok()) return r.status().WithContext(layer);
  return r;
}

void PrintPushed(const std::string& layer, const remote::LayerPushResult& pushed) {
  const remote::PushResult& r = pushed.blob;
  std::printf("%s: %s %llu bytes %s\n", layer.c_str(), r.digest.c_str(), static_cast<unsigned long long>(r.size),
              r.existed ? "exists, skipped" : "uploaded");
  if (!pushed.table) return;
  const remote::PushResult& t = *pushed.table;
  std::printf("%s: digest table %s %llu bytes %s\n", layer.c_str(), t.digest.c_str(),
              static_cast<unsigned long long>(t.size), t.existed ? "exists, skipped" : "uploaded");
}

Status RunPush(const PushArgs& a) {
  OVBD_ASSIGN_OR_RETURN(std::string blob_url, remote::RepoBlobUrl(a.to));
  remote::RemoteOptions options;
  options.proxy = a.proxy;
  options.credentials_file = a.credentials;
  nlohmann::json lowers = nlohmann::json::array(), report = nlohmann::json::array();
  for (const auto& layer : a.layers) {
    OVBD_ASSIGN_OR_RETURN(remote::LayerPushResult pushed, PushOne(a, layer, options));
    const remote::PushResult& r = pushed.blob;
    nlohmann::json lower = {{"digest", r.digest}, {"size", r.size}};
    nlohmann::json entry = {{"file", layer}, {"digest", r.digest}, {"size", r.size}, {"existed", r.existed}};
    if (pushed.table) {
      lower["digestTable"] = {{"digest", pushed.table->digest}, {"size", pushed.table->size}};
      entry["digestTable"] = {{"digest", pushed.table->digest}, {"size", pushed.table->size},
                              {"existed", pushed.table->existed}};
    }
    lowers.push_back(std::move(lower));
    report.push_back(std::move(entry));
    if (!a.json && !a.quiet) PrintPushed(layer, pushed);
  }
  nlohmann::json config = {{"repoBlobUrl", blob_url}, {"lowers", lowers}};
  if (!a.config_out.empty()) OVBD_RETURN_IF_ERROR(WriteConfig(a.config_out, config));
  if (a.json) std::printf("%s\n", nlohmann::json({{"repoBlobUrl", blob_url}, {"layers", report}}).dump(2).c_str());
  return Status::OK();
}

}  // namespace

void AddPushCommand(CLI::App& parent, Commands* commands) {
  auto args = std::make_shared<PushArgs>();
  CLI::App* cmd = parent.add_subcommand(
      "push",
      "Upload committed layers to an OCI registry as blobs (skipping blobs the registry already "
      "has) and optionally write a config.v1.json naming them (repoBlobUrl, lowers[].digest/size), "
      "layers bottom first. Uploads are chunked (PATCH) unless --monolithic. Each layer also gets a "
      "digest table, pushed as a blob of its own and named by lowers[].digestTable: the sha256 of "
      "every 16 KiB chunk (larger chunks above 16 GiB), so that a lazy reader can verify each chunk it fetches before using it "
      "(the layer's own digest only proves a whole, in-order read). overlaybd ignores the key.");
  cmd->add_option("--to", args->to, "Repository: http[s]://HOST[:PORT]/REPO")->required();
  cmd->add_option("--config-out", args->config_out, "Write a config.v1.json for the pushed layers");
  cmd->add_option("--chunk-size", args->chunk_size, "Chunk size of chunked uploads")
      ->check(SizeValidator(4096, true))
      ->capture_default_str();
  cmd->add_flag("--monolithic", args->monolithic, "Upload each blob in one PUT");
  cmd->add_flag("--no-digest-table", args->no_digest_table,
                "Push the layers alone, without digest tables (as other tools do); a server then reads "
                "them lazily only if they check themselves (ZFile with CRCs), else it downloads them "
                "whole first (or reads them unverified with --trust-unverified)");
  cmd->add_option("--proxy", args->proxy, "HTTP proxy URL");
  cmd->add_option("--credentials", args->credentials, "docker-style config.json with \"auths\"");
  cmd->add_flag("--json", args->json, "Print the result as JSON");
  AddQuiet(cmd, &args->quiet);
  cmd->add_option("LAYER", args->layers, "Layer files, bottom first")->required()->check(CLI::ExistingFile);
  cmd->footer("\nExamples:\n  ovbd push --to http://127.0.0.1:5000/lib/app --config-out config.v1.json base.zfile app.zfile");
  commands->push_back({cmd, "push", [args] { return RunPush(*args); }});
}

}  // namespace ovbd::cli
