// The volume: lowers + upper -> lsmt::Image -> ImageDevice -> SwitchableDevice, its lifecycle,
// its status and its control requests (include/ovbd/volume.h). The online operations are in
// snapshot.cc (snapshot, resize, the recovery at open) and jobs.cc (merge, replace).
#include "ovbd/volume.h"

#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "volume/lowers.h"
#include "volume/volume_internal.h"

namespace ovbd::volume {

Volume::Volume() = default;

// Background work stops before the image and the cache it reads through are released; a
// recorded trace is only saved by an explicit Stop.
Volume::~Volume() {
  CancelJob();
  lowers_.reset();
}

Result<std::unique_ptr<Volume>> Volume::Open(const VolumeSpec& spec, const VolumeOptions& options) {
  std::unique_ptr<Volume> v(new Volume());
  std::vector<LayerRef> refs;
  std::string config_trace;
  image::DownloadConfig download;
  std::optional<image::UpperPaths> upper = spec.upper;
  std::optional<image::ImageConfig> config;
  Status opened;
  if (!spec.config.empty()) {
    opened = v->PrepareManifest(spec.config, options);
    if (opened.ok()) {
      config = v->manifest_->config();
      refs = RefsFromConfig(*config);
      config_trace = config->record_trace_path;
      download = config->download;
      upper = config->upper;
    } else {
      // The result file is reported from the config as it could be read.
      auto plain = image::LoadImageConfig(spec.config);
      if (plain.ok()) config = std::move(*plain);
    }
  } else {
    refs = RefsFromArgs(spec.layers);
  }
  if (opened.ok()) opened = v->OpenStack(std::move(refs), config_trace, download, upper, options);
  if (spec.config.empty()) {
    OVBD_RETURN_IF_ERROR(opened);
    return v;
  }
  Status reported = options.report_result && config ? image::WriteResult(*config, opened) : Status::OK();
  if (!opened.ok()) return opened.WithContext(spec.config);
  OVBD_RETURN_IF_ERROR(reported);
  return v;
}

Status Volume::OpenStack(std::vector<LayerRef> refs, const std::string& config_trace,
                         const image::DownloadConfig& download, const std::optional<image::UpperPaths>& upper,
                         const VolumeOptions& options) {
  OVBD_ASSIGN_OR_RETURN(lowers_, Lowers::Open(options, std::move(refs), config_trace, download));
  std::vector<lsmt::LowerLayer> layers = lowers_->TakeLowers();
  const std::vector<LayerRef>& named = lowers_->refs();
  for (size_t i = 0; i < layers.size(); i++) {
    StackLayer l;
    l.name = named[i].Name();
    l.file = named[i].path;
    l.layer = layers[i];
    if (manifest_ && i < manifest_->config().lowers.size()) l.checkpoint = manifest_->config().lowers[i].checkpoint;
    stack_.push_back(std::move(l));
  }
  std::shared_ptr<lsmt::RwLayer> rw;
  if (upper) {
    OVBD_ASSIGN_OR_RETURN(auto opened, image::OpenUpper(*upper));
    rw = std::move(opened);
  }
  OVBD_ASSIGN_OR_RETURN(auto img, lsmt::OpenStack(std::move(layers), rw));
  image_ = std::move(img);
  upper_ = upper;
  device_options_ = ImageDeviceOptions{options.read_only};
  switch_ = std::make_shared<SwitchableDevice>(NewImageDevice(image_, device_options_));
  device_ = switch_;
  return Status::OK();
}

Status Volume::Start() {
  lowers_->StartBackground();
  return Status::OK();
}

Status Volume::Stop() {
  CancelJob();
  return lowers_->Finish();
}

std::shared_ptr<const ReadableFile> Volume::image() const {
  std::lock_guard lock(state_mu_);
  return image_;
}

bool Volume::writable() const { return device_->Capabilities().writable; }

Status Volume::Flush() { return writable() ? device_->Flush() : Status::OK(); }

std::vector<std::string> Volume::layer_names() const {
  std::lock_guard lock(state_mu_);
  std::vector<std::string> names;
  for (const StackLayer& l : stack_) names.push_back(l.name);
  return names;
}

std::string Volume::upper_data() const {
  std::lock_guard lock(state_mu_);
  return upper_ ? upper_->data : std::string();
}

std::optional<image::ImageConfig> Volume::config() const {
  std::lock_guard lock(state_mu_);
  if (!manifest_) return std::nullopt;
  return manifest_->config();
}

void Volume::OnResize(std::function<void(uint64_t)> listener) {
  std::lock_guard lock(state_mu_);
  resize_listeners_.push_back(std::move(listener));
}

nlohmann::ordered_json Volume::StackJson() const {
  nlohmann::ordered_json layers = nlohmann::ordered_json::array();
  for (size_t i = 0; i < stack_.size(); i++) {
    const StackLayer& l = stack_[i];
    nlohmann::ordered_json j = {{"index", i},
                                {"path", l.name},
                                {"source", l.file.empty() ? "registry" : "local"},
                                {"size", l.layer.file->Size()}};
    j["checkpoint"] = l.checkpoint ? nlohmann::ordered_json{{"name", l.checkpoint->name}, {"created", l.checkpoint->created}}
                                   : nlohmann::ordered_json(nullptr);
    layers.push_back(std::move(j));
  }
  return layers;
}

nlohmann::ordered_json Volume::StatusJson() const {
  nlohmann::ordered_json j;
  j["device"] = {{"name", device_->Name()}, {"size", device_->Size()}, {"writable", writable()}};
  {
    std::lock_guard lock(state_mu_);
    j["layers"] = StackJson();
    j["upper"] = upper_ ? nlohmann::ordered_json(upper_->data) : nlohmann::ordered_json(nullptr);
    j["upper_index"] = upper_ ? nlohmann::ordered_json(upper_->index) : nlohmann::ordered_json(nullptr);
    j["manifest"] = manifest_ ? nlohmann::ordered_json(manifest_->path()) : nlohmann::ordered_json(nullptr);
    j["lifecycle"] = {{"snapshots", snapshots_},
                      {"switches", switch_->switches()},
                      {"last_snapshot_pause_ms", last_pause_ms_},
                      {"unfinished", unfinished_.empty() ? nlohmann::ordered_json(nullptr)
                                                         : nlohmann::ordered_json(unfinished_)}};
  }
  j["job"] = JobJson();
  const DeviceStats ds = device_->Stats();
  j["io"] = {{"bytes_read", ds.bytes_read}, {"bytes_written", ds.bytes_written}, {"reads", ds.reads},
             {"writes", ds.writes},         {"trims", ds.trims},                 {"flushes", ds.flushes},
             {"errors", ds.errors}};
  const nlohmann::ordered_json lazy = lowers_->StatusJson();
  for (const auto& [key, value] : lazy.items()) j[key] = value;
  return j;
}

namespace {

Result<std::string> StringField(const nlohmann::json& request, const char* key, bool required) {
  const auto it = request.find(key);
  if (it == request.end() || it->is_null()) {
    if (required) return Status::InvalidArgument(std::string("missing \"") + key + "\"");
    return std::string();
  }
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number_integer() && it->get<int64_t>() >= 0) return std::to_string(it->get<int64_t>());
  return Status::InvalidArgument(std::string("\"") + key + "\": expected a string or an index");
}

bool BoolField(const nlohmann::json& request, const char* key, bool fallback) {
  const auto it = request.find(key);
  return it != request.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

// {"algorithm": "lz4"|"zstd", "block_size": BYTES, "crc": bool, "threads": N} or true (the defaults).
Result<std::optional<zfile::Options>> ZfileField(const nlohmann::json& request) {
  const auto it = request.find("zfile");
  if (it == request.end() || it->is_null() || (it->is_boolean() && !it->get<bool>())) {
    return std::optional<zfile::Options>();
  }
  zfile::Options o;
  if (it->is_boolean()) return std::optional<zfile::Options>(o);
  if (!it->is_object()) return Status::InvalidArgument("\"zfile\": expected true or an object");
  if (auto a = it->find("algorithm"); a != it->end()) {
    if (!a->is_string()) return Status::InvalidArgument("\"zfile.algorithm\": expected a string");
    OVBD_ASSIGN_OR_RETURN(o.algorithm, zfile::ParseAlgorithm(a->get<std::string>()));
  }
  if (auto b = it->find("block_size"); b != it->end()) {
    if (!b->is_number_integer() || b->get<int64_t>() <= 0) return Status::InvalidArgument("\"zfile.block_size\": expected bytes");
    o.block_size = b->get<uint32_t>();
  }
  if (auto c = it->find("crc"); c != it->end() && c->is_boolean()) o.crc = c->get<bool>();
  if (auto t = it->find("threads"); t != it->end()) {
    if (!t->is_number_integer() || t->get<int64_t>() < 1 || t->get<int64_t>() > 64) {
      return Status::InvalidArgument("\"zfile.threads\": expected 1..64");
    }
    o.threads = t->get<int>();
  }
  return std::optional<zfile::Options>(o);
}

}  // namespace

Result<nlohmann::json> Volume::Control(const nlohmann::json& request) {
  const auto command = request.find("command");
  const std::string name = command != request.end() && command->is_string() ? command->get<std::string>() : "";
  auto reply = [](Result<nlohmann::ordered_json> r) -> Result<nlohmann::json> {
    if (!r.ok()) return r.status();
    return nlohmann::json(std::move(r).value());
  };
  if (name == "status") return nlohmann::json(StatusJson());
  if (name == "flush") {
    if (!writable()) return nlohmann::json{{"flushed", false}};
    OVBD_RETURN_IF_ERROR(device_->Flush());
    return nlohmann::json{{"flushed", true}};
  }
  if (name == "snapshot") {
    OVBD_ASSIGN_OR_RETURN(std::string snap, StringField(request, "name", false));
    OVBD_ASSIGN_OR_RETURN(std::string config, StringField(request, "config", false));
    if (!config.empty() && config[0] != '/') return Status::InvalidArgument("\"config\": expected an absolute path");
    return reply(Snapshot(snap, config));
  }
  if (name == "merge") {
    MergeRequest m;
    OVBD_ASSIGN_OR_RETURN(m.from, StringField(request, "from", true));
    OVBD_ASSIGN_OR_RETURN(m.to, StringField(request, "to", true));
    OVBD_ASSIGN_OR_RETURN(m.zfile, ZfileField(request));
    m.keep = BoolField(request, "keep", false);
    OVBD_ASSIGN_OR_RETURN(auto started, StartMerge(m));
    if (!BoolField(request, "wait", true)) return nlohmann::json(started);
    return reply(WaitJob());
  }
  if (name == "replace") {
    OVBD_ASSIGN_OR_RETURN(std::string layer, StringField(request, "layer", true));
    OVBD_ASSIGN_OR_RETURN(std::string file, StringField(request, "file", true));
    OVBD_ASSIGN_OR_RETURN(auto started, StartReplace(layer, file));
    if (!BoolField(request, "wait", true)) return nlohmann::json(started);
    return reply(WaitJob());
  }
  if (name == "job") {
    if (!BoolField(request, "wait", false)) return nlohmann::json(JobJson());
    return reply(WaitJob());
  }
  if (name == "resize") {
    const auto it = request.find("size");
    if (it == request.end() || !it->is_number_integer() || it->get<int64_t>() < 0) {
      return Status::InvalidArgument("\"size\": expected bytes");
    }
    return reply(Resize(it->get<uint64_t>()));
  }
  return Status::InvalidArgument("unknown command '" + name +
                                 "' (known: status, flush, snapshot, merge, replace, job, resize)");
}

}  // namespace ovbd::volume
