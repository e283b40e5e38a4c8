// The options of remote lowers, the cache and trace prefetch (serve, attach, cat), as the
// command line spells them, and their typed form for the volume (include/ovbd/volume.h).
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "ovbd/volume.h"

namespace ovbd::cli {

struct LazyArgs {
  std::string cache_dir = "/var/cache/ovbd";
  std::string cache_size = "4G";
  std::string cache_block_size = "16K";
  std::string refill_size = "256K";
  std::string proxy;
  std::string credentials;
  bool insecure = false;
  unsigned remote_timeout_s = 60;
  unsigned remote_parallel = 4;
  std::string record_trace;
  std::string replay_trace;
  unsigned prefetch_parallel = 16;
  bool download = false;               // or the config's "download": {"enable": true}
  std::string download_rate = "0";     // bytes per second, 0 = unlimited
  unsigned download_delay_s = 0;
  bool trust_unverified = false;
};
// `with_trace`: also --record-trace/--replay-trace/--prefetch-parallel and --download*.
void AddLazyArgs(CLI::App* cmd, LazyArgs* args, bool with_trace);
// The parsed options (sizes already checked by their validators) as the volume takes them.
volume::VolumeOptions ToVolumeOptions(const LazyArgs& args);

}  // namespace ovbd::cli
