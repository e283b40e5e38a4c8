// ovbd cat: the merged virtual device of a layer stack (or of a config.v1.json) to a file or
// stdout. A single ZFile/tar whose content is not LSMT is printed decompressed.
#include "cli/command.h"
#include "cli/options.h"
#include "cli/copy.h"
#include "cli/output.h"
#include "cli/progress.h"
#include "ovbd/image.h"

namespace ovbd::cli {
namespace {

struct CatArgs {
  std::string out = "-";
  std::vector<std::string> upper;  // DATA INDEX
  std::string config;
  std::vector<std::string> layers;
  bool force = false;
  bool quiet = false;
};

// A lone non-LSMT ZFile/tar: its unwrapped content; otherwise nullptr (stack it as a layer).
Result<std::shared_ptr<const ReadableFile>> LoneRawContent(const CatArgs& a) {
  if (a.layers.size() != 1 || !a.upper.empty()) return std::shared_ptr<const ReadableFile>();
  OVBD_ASSIGN_OR_RETURN(image::Unwrapped u, image::OpenLayerPath(a.layers[0]));
  if (u.is_lsmt || (!u.tar && !u.zfile)) return std::shared_ptr<const ReadableFile>();
  return u.content;
}

Result<std::shared_ptr<const ReadableFile>> OpenSource(const CatArgs& a) {
  if (!a.config.empty()) {
    OVBD_ASSIGN_OR_RETURN(image::ImageConfig config, image::LoadImageConfig(a.config));
    OVBD_ASSIGN_OR_RETURN(auto img, image::OpenImage(config.lowers, config.upper));
    return std::shared_ptr<const ReadableFile>(std::move(img));
  }
  OVBD_ASSIGN_OR_RETURN(auto raw, LoneRawContent(a));
  if (raw) return raw;
  std::optional<image::UpperPaths> upper;
  if (!a.upper.empty()) upper = image::UpperPaths{a.upper[0], a.upper[1]};
  OVBD_ASSIGN_OR_RETURN(auto img, image::OpenImage(a.layers, upper));
  return std::shared_ptr<const ReadableFile>(std::move(img));
}

Status RunCat(const CatArgs& a) {
  OVBD_ASSIGN_OR_RETURN(auto source, OpenSource(a));
  Progress progress("cat", a.quiet || a.out == "-");
  return WriteOutput(a.out, a.force, ChainOptions{}, [&](WritableFile* sink) {
    return ParallelCopy(*source, sink, 0, progress.Callback());
  });
}

}  // namespace

void AddCatCommand(CLI::App& parent, Commands* commands) {
  auto args = std::make_shared<CatArgs>();
  CLI::App* cmd = parent.add_subcommand(
      "cat",
      "Write the merged virtual block device of a layer stack to OUT or standard output: layers "
      "bottom first, plus an optional writable upper layer, or the lowers/upper of an overlaybd "
      "config.v1.json. Each LAYER may be plain LSMT, ZFile or tar-wrapped (detected by content). "
      "Handy extra: a single LAYER that is a ZFile or tar whose content is not LSMT is printed "
      "decompressed.");
  cmd->add_option("-o,--output", args->out, "Output file (default: - = standard output)")->capture_default_str();
  cmd->add_option("--upper", args->upper, "Writable layer on top: DATA INDEX")
      ->expected(2)
      ->allow_extra_args(false);
  auto* config = cmd->add_option("--config", args->config, "An overlaybd config.v1.json naming the layers");
  cmd->add_option("LAYER", args->layers, "Layers, bottom first")->excludes(config);
  cmd->get_option("--upper")->excludes(config);
  cmd->parse_complete_callback([args] {
    if (args->config.empty() && args->layers.empty() && args->upper.empty()) {
      throw CLI::ValidationError("LAYER", "give LAYER..., --upper DATA INDEX, or --config FILE");
    }
  });
  cmd->add_flag("-f,--force", args->force, "Overwrite OUT if it is an existing regular file");
  AddQuiet(cmd, &args->quiet);
  cmd->footer("\nExamples:\n  ovbd cat -o disk.img layer0.zfile layer1.zfile.tar\n"
              "  ovbd cat --upper up.data up.index layer0.zfile | md5sum\n"
              "  ovbd cat --config /var/lib/overlaybd/dev/config.v1.json -o disk.img\n"
              "  ovbd cat plain.zfile > plain.bin");
  commands->push_back({cmd, "cat", [args] { return RunCat(*args); }});
}

}  // namespace ovbd::cli
