// The image a server command (serve, attach) exposes: layer files on the command line or an
// overlaybd config.v1.json, opened into one BlockDevice.
//
//   LAYER... [--upper DATA INDEX] [--read-only]   ─┐
//   --config config.v1.json (resultFile reported)  ─┴─> OpenImageArgs ──> ServedImage{device, image}
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/lazy_layers.h"
#include "ovbd/block_device.h"
#include "ovbd/image.h"
#include "ovbd/lsmt.h"
#include "ovbd/status.h"

namespace ovbd::cli {

struct ImageArgs {
  std::vector<std::string> layers;  // bottom first; PATH or PATH:LENGTH
  std::vector<std::string> upper;   // DATA INDEX
  std::string config;
  bool read_only = false;
  LazyArgs lazy;
  bool report_result = true;  // write the config's resultFile (not for a one-off reader like cat)
};

// Adds LAYER..., --upper DATA INDEX, --config FILE, the lazy-loading options and (if `serving`)
// --read-only and the trace options to `cmd`, with the check that something names the image.
void AddImageArgs(CLI::App* cmd, ImageArgs* args, bool serving = true);

struct ServedImage {
  std::shared_ptr<lsmt::Image> image;
  std::shared_ptr<BlockDevice> device;
  std::optional<image::ImageConfig> config;  // set when opened from --config
  std::vector<std::string> layer_paths;      // bottom first, as given (for status)
  std::string upper_data;                    // "" = no upper
  std::shared_ptr<LayerSession> lazy;        // cache, remote lowers, trace (never null)
};

// Opens the image. With --config, the config's resultFile gets "success" or "failed:<reason>".
// Call served.lazy->StartBackground() in the serving process and lazy->Finish() at the end.
Result<ServedImage> OpenImageArgs(const ImageArgs& args);

}  // namespace ovbd::cli
