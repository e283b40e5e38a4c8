// ovbd merge: flattens read-only layers (bottom first) into one blob, like overlaybd-merge.
#include "cli/command.h"
#include "cli/options.h"
#include "ovbd/image.h"

namespace ovbd::cli {
namespace {

struct MergeArgs {
  LayerOutputFlags output;
  std::string out;
  std::vector<std::string> layers;
};

Status RunMerge(const MergeArgs& a) {
  OVBD_ASSIGN_OR_RETURN(auto image, image::OpenImage(a.layers, std::nullopt));
  // A ZFile header is not overwritten, as overlaybd-merge.
  return WriteLayerOutput(a.out, a.output, "merge", false, [&](WritableFile* sink, const lsmt::CommitOptions& o) {
    return lsmt::Commit(*image, sink, o);
  });
}

}  // namespace

void AddMergeCommand(CLI::App& parent, Commands* commands) {
  auto args = std::make_shared<MergeArgs>();
  CLI::App* cmd = parent.add_subcommand(
      "merge",
      "Merge (flatten) read-only layers, given bottom first, into one layer blob whose content "
      "equals the whole stack. Each LAYER may be plain LSMT, ZFile or tar-wrapped. The parent "
      "UUID comes from the bottom layer.");
  cmd->add_option("-o,--output", args->out, "Output layer blob")->required();
  AddLayerOutputFlags(cmd, &args->output, "Wrap the output in a tar");
  cmd->add_option("LAYER", args->layers, "Layers, bottom first")->required();
  cmd->footer("\nExample:\n  ovbd merge -o merged.zfile --zfile layer0.zfile layer1.zfile.tar layer2.lsmt");
  commands->push_back({cmd, "merge", [args] { return RunMerge(*args); }});
}

}  // namespace ovbd::cli
