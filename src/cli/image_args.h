// The image a server command (serve, attach, cat) exposes: layer files on the command line or an
// overlaybd config.v1.json, opened as a volume (include/ovbd/volume.h).
//
//   LAYER... [--upper DATA INDEX] [--read-only]   ─┐
//   --config config.v1.json (resultFile reported)  ─┴─> OpenVolume ──> volume::Volume
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/lazy_args.h"
#include "ovbd/status.h"
#include "ovbd/volume.h"

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

// Opens the volume the arguments name. With --config, the config's resultFile gets "success" or
// "failed:<reason>". Call Start() in the serving process and Stop() at the end.
Result<std::unique_ptr<volume::Volume>> OpenVolume(const ImageArgs& args);

}  // namespace ovbd::cli
