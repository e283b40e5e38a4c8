#include "cli/image_args.h"

namespace ovbd::cli {

void AddImageArgs(CLI::App* cmd, ImageArgs* args) {
  cmd->add_option("--upper", args->upper, "Writable layer on top: DATA INDEX (without it the device is read-only)")
      ->expected(2)
      ->allow_extra_args(false);
  auto* config = cmd->add_option("--config", args->config,
                                 "An overlaybd config.v1.json naming lowers, upper and resultFile");
  cmd->add_option("LAYER", args->layers,
                  "Read-only layers, bottom first: LSMT, ZFile or tar (by content); PATH:LENGTH takes "
                  "the first LENGTH bytes of PATH; a ZFile of a raw disk image serves its content")
      ->excludes(config);
  cmd->get_option("--upper")->excludes(config);
  cmd->add_flag("--read-only", args->read_only, "Serve read-only even if there is a writable layer");
  cmd->parse_complete_callback([args] {
    if (args->config.empty() && args->layers.empty() && args->upper.empty()) {
      throw CLI::ValidationError("LAYER", "give LAYER..., --upper DATA INDEX, or --config FILE");
    }
  });
}

namespace {

Result<ServedImage> OpenFromPaths(const std::vector<std::string>& lowers,
                                  const std::optional<image::UpperPaths>& upper, bool read_only) {
  OVBD_ASSIGN_OR_RETURN(auto img, image::OpenImage(lowers, upper));
  ServedImage served;
  served.image = std::move(img);
  served.device = NewImageDevice(served.image, ImageDeviceOptions{read_only});
  served.layer_paths = lowers;
  if (upper) served.upper_data = upper->data;
  return served;
}

}  // namespace

Result<ServedImage> OpenImageArgs(const ImageArgs& args) {
  if (args.config.empty()) {
    std::optional<image::UpperPaths> upper;
    if (!args.upper.empty()) upper = image::UpperPaths{args.upper[0], args.upper[1]};
    return OpenFromPaths(args.layers, upper, args.read_only);
  }
  OVBD_ASSIGN_OR_RETURN(image::ImageConfig config, image::LoadImageConfig(args.config));
  auto served = OpenFromPaths(config.lowers, config.upper, args.read_only);
  Status reported = image::WriteResult(config, served.status());
  if (!served.ok()) return served.status().WithContext(args.config);
  OVBD_RETURN_IF_ERROR(reported);
  served->config = std::move(config);
  return served;
}

}  // namespace ovbd::cli
