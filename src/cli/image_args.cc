#include "cli/image_args.h"

#include <iostream>

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

Result<std::unique_ptr<volume::Volume>> OpenVolume(const ImageArgs& args) {
  volume::VolumeSpec spec;
  spec.layers = args.layers;
  if (!args.upper.empty()) spec.upper = image::UpperPaths{args.upper[0], args.upper[1]};
  spec.config = args.config;
  volume::VolumeOptions options = ToVolumeOptions(args.lazy);
  options.read_only = args.read_only;
  options.report_result = args.report_result;
  OVBD_ASSIGN_OR_RETURN(auto v, volume::Volume::Open(spec, options));
  for (const std::string& note : v->notes()) std::cerr << "ovbd: " << args.config << ": " << note << std::endl;
  return v;
}

}  // namespace ovbd::cli
