// ovbd cat: the merged virtual device of a layer stack (or of a config.v1.json) to a file or
// stdout. A single ZFile/tar whose content is not LSMT is printed decompressed.
#include "cli/command.h"
#include "cli/options.h"
#include "cli/copy.h"
#include "cli/output.h"
#include "cli/image_args.h"
#include "cli/progress.h"
#include "ovbd/image.h"

namespace ovbd::cli {
namespace {

struct CatArgs {
  std::string out = "-";
  ImageArgs image;
  bool force = false;
  bool sync = false;
  bool quiet = false;
};

// A lone non-LSMT ZFile/tar: its unwrapped content; otherwise nullptr (stack it as a layer).
Result<std::shared_ptr<const ReadableFile>> LoneRawContent(const ImageArgs& a) {
  if (a.layers.size() != 1 || !a.upper.empty() || volume::IsOciReference(a.layers[0])) {
    return std::shared_ptr<const ReadableFile>();
  }
  OVBD_ASSIGN_OR_RETURN(image::Unwrapped u, image::OpenLayerPath(a.layers[0]));
  if (u.is_lsmt || (!u.tar && !u.zfile)) return std::shared_ptr<const ReadableFile>();
  return u.content;
}

// The device to print, and what keeps it alive (the volume: the cache of remote lowers). The
// volume is not started: a one-off reader needs no background work.
struct Source {
  std::shared_ptr<const ReadableFile> file;
  std::shared_ptr<volume::Volume> owner;
};

Result<Source> OpenSource(const CatArgs& a) {
  if (a.image.config.empty()) {
    OVBD_ASSIGN_OR_RETURN(auto raw, LoneRawContent(a.image));
    if (raw) return Source{raw, nullptr};
  }
  OVBD_ASSIGN_OR_RETURN(std::shared_ptr<volume::Volume> v, OpenVolume(a.image));
  return Source{v->image(), v};
}

Status RunCat(const CatArgs& a) {
  OVBD_ASSIGN_OR_RETURN(Source source, OpenSource(a));
  Progress progress("cat", a.quiet || a.out == "-");
  ChainOptions chain;
  chain.sync = a.sync;
  return WriteOutput(a.out, a.force, chain, [&](WritableFile* sink) {
    return ParallelCopy(*source.file, sink, 0, progress.Callback());
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
  args->image.report_result = false;
  AddImageArgs(cmd, &args->image, /*serving=*/false);
  cmd->add_flag("-f,--force", args->force, "Overwrite OUT if it is an existing regular file");
  AddSync(cmd, &args->sync);
  AddQuiet(cmd, &args->quiet);
  cmd->footer("\nExamples:\n  ovbd cat -o disk.img layer0.zfile layer1.zfile.tar\n"
              "  ovbd cat --upper up.data up.index layer0.zfile | md5sum\n"
              "  ovbd cat --config /var/lib/overlaybd/dev/config.v1.json -o disk.img\n"
              "  ovbd cat plain.zfile > plain.bin");
  commands->push_back({cmd, "cat", [args] { return RunCat(*args); }});
}

}  // namespace ovbd::cli
