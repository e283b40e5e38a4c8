// The volume: lowers + upper -> lsmt::Image -> BlockDevice, its lifecycle and its control
// operations (include/ovbd/volume.h).
#include "ovbd/volume.h"

#include <nlohmann/json.hpp>

#include "volume/lowers.h"

namespace ovbd::volume {

Volume::Volume() = default;

// Background work stops before the image and the cache it reads through are released; a
// recorded trace is only saved by an explicit Stop.
Volume::~Volume() { lowers_.reset(); }

Result<std::unique_ptr<Volume>> Volume::Open(const VolumeSpec& spec, const VolumeOptions& options) {
  std::unique_ptr<Volume> v(new Volume());
  std::vector<LayerRef> refs;
  std::string config_trace;
  image::DownloadConfig download;
  std::optional<image::UpperPaths> upper = spec.upper;
  if (spec.config.empty()) {
    refs = RefsFromArgs(spec.layers);
  } else {
    OVBD_ASSIGN_OR_RETURN(image::ImageConfig config, image::LoadImageConfig(spec.config));
    refs = RefsFromConfig(config);
    config_trace = config.record_trace_path;
    download = config.download;
    upper = config.upper;
    v->config_ = std::move(config);
  }
  Status opened = v->OpenStack(std::move(refs), config_trace, download, upper, options);
  if (!v->config_) {
    OVBD_RETURN_IF_ERROR(opened);
    return v;
  }
  Status reported = options.report_result ? image::WriteResult(*v->config_, opened) : Status::OK();
  if (!opened.ok()) return opened.WithContext(spec.config);
  OVBD_RETURN_IF_ERROR(reported);
  return v;
}

Status Volume::OpenStack(std::vector<LayerRef> refs, const std::string& config_trace,
                         const image::DownloadConfig& download, const std::optional<image::UpperPaths>& upper,
                         const VolumeOptions& options) {
  OVBD_ASSIGN_OR_RETURN(lowers_, Lowers::Open(options, std::move(refs), config_trace, download));
  OVBD_ASSIGN_OR_RETURN(auto img, image::OpenImage(lowers_->TakeLowers(), upper));
  image_ = std::move(img);
  device_ = NewImageDevice(image_, ImageDeviceOptions{options.read_only});
  if (upper) upper_data_ = upper->data;
  return Status::OK();
}

Status Volume::Start() {
  lowers_->StartBackground();
  return Status::OK();
}

Status Volume::Stop() { return lowers_->Finish(); }

bool Volume::writable() const { return device_->Capabilities().writable; }

Status Volume::Flush() { return writable() ? device_->Flush() : Status::OK(); }

std::vector<std::string> Volume::layer_names() const {
  std::vector<std::string> names;
  for (const LayerRef& r : lowers_->refs()) names.push_back(r.Name());
  return names;
}

nlohmann::ordered_json Volume::StatusJson() const {
  nlohmann::ordered_json j;
  j["device"] = {{"name", device_->Name()}, {"size", device_->Size()}, {"writable", writable()}};
  nlohmann::ordered_json layers = nlohmann::ordered_json::array();
  for (const auto& name : layer_names()) layers.push_back({{"path", name}});
  j["layers"] = layers;
  j["upper"] = upper_data_.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(upper_data_);
  const DeviceStats ds = device_->Stats();
  j["io"] = {{"bytes_read", ds.bytes_read}, {"bytes_written", ds.bytes_written}, {"reads", ds.reads},
             {"writes", ds.writes},         {"trims", ds.trims},                 {"flushes", ds.flushes},
             {"errors", ds.errors}};
  const nlohmann::ordered_json lazy = lowers_->StatusJson();
  for (const auto& [key, value] : lazy.items()) j[key] = value;
  return j;
}

Result<nlohmann::json> Volume::Control(const nlohmann::json& request) {
  const auto command = request.find("command");
  const std::string name = command != request.end() && command->is_string() ? command->get<std::string>() : "";
  std::lock_guard lock(control_mu_);
  if (name == "status") return nlohmann::json(StatusJson());
  if (name == "flush") {
    if (!writable()) return nlohmann::json{{"flushed", false}};
    OVBD_RETURN_IF_ERROR(device_->Flush());
    return nlohmann::json{{"flushed", true}};
  }
  return Status::InvalidArgument("unknown command '" + name + "' (known: status, flush)");
}

}  // namespace ovbd::volume
