#include "cli/image_args.h"

namespace ovbd::cli {

void AddImageArgs(CLI::App* cmd, ImageArgs* args, bool serving) {
  cmd->add_option("--upper", args->upper, "Writable layer on top: DATA INDEX (without it the device is read-only)")
      ->expected(2)
      ->allow_extra_args(false);
  auto* config = cmd->add_option("--config", args->config,
                                 "An overlaybd config.v1.json naming lowers, upper and resultFile");
  cmd->add_option("LAYER", args->layers,
                  "Read-only layers, bottom first: LSMT, ZFile or tar (by content); PATH:LENGTH takes "
                  "the first LENGTH bytes of PATH; a ZFile of a raw disk image serves its content; "
                  "oci://HOST[:PORT]/REPO@sha256:HEX (oci+http:// without TLS) is a registry blob")
      ->excludes(config);
  cmd->get_option("--upper")->excludes(config);
  if (serving) cmd->add_flag("--read-only", args->read_only, "Serve read-only even if there is a writable layer");
  AddLazyArgs(cmd, &args->lazy, serving);
  cmd->parse_complete_callback([args] {
    if (args->config.empty() && args->layers.empty() && args->upper.empty()) {
      throw CLI::ValidationError("LAYER", "give LAYER..., --upper DATA INDEX, or --config FILE");
    }
  });
}

namespace {

Result<ServedImage> Open(const LazyArgs& lazy, std::vector<LayerRef> refs, const std::string& config_trace,
                         const image::DownloadConfig& download, const std::optional<image::UpperPaths>& upper,
                         bool read_only) {
  OVBD_ASSIGN_OR_RETURN(auto session, LayerSession::Open(lazy, std::move(refs), config_trace, download));
  OVBD_ASSIGN_OR_RETURN(auto img, image::OpenImage(session->TakeLowers(), upper));
  ServedImage served;
  served.image = std::move(img);
  served.device = NewImageDevice(served.image, ImageDeviceOptions{read_only});
  for (const auto& r : session->refs()) served.layer_paths.push_back(r.Name());
  if (upper) served.upper_data = upper->data;
  served.lazy = std::move(session);
  return served;
}

}  // namespace

Result<ServedImage> OpenImageArgs(const ImageArgs& args) {
  if (args.config.empty()) {
    std::optional<image::UpperPaths> upper;
    if (!args.upper.empty()) upper = image::UpperPaths{args.upper[0], args.upper[1]};
    return Open(args.lazy, RefsFromArgs(args.layers), "", {}, upper, args.read_only);
  }
  OVBD_ASSIGN_OR_RETURN(image::ImageConfig config, image::LoadImageConfig(args.config));
  auto served = Open(args.lazy, RefsFromConfig(config), config.record_trace_path, config.download, config.upper,
                     args.read_only);
  Status reported = args.report_result ? image::WriteResult(config, served.status()) : Status::OK();
  if (!served.ok()) return served.status().WithContext(args.config);
  OVBD_RETURN_IF_ERROR(reported);
  served->config = std::move(config);
  return served;
}

}  // namespace ovbd::cli
