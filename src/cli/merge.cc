// ovbd merge: flattens read-only layers (bottom first) into one blob, like overlaybd-merge.
#include "cli/command.h"
#include "cli/options.h"
#include "cli/output.h"
#include "cli/progress.h"
#include "ovbd/image.h"

namespace ovbd::cli {
namespace {

struct MergeArgs {
  CommitFlags commit;
  ZfileFlags zfile;
  bool tar = false;
  bool force = false;
  bool quiet = false;
  std::string out;
  std::vector<std::string> layers;
};

Status RunMerge(const MergeArgs& a) {
  OVBD_ASSIGN_OR_RETURN(auto image, image::OpenImage(a.layers, std::nullopt));
  ChainOptions chain;
  chain.tar = a.tar;
  if (a.zfile.enabled) chain.zfile = ToZfileOptions(a.zfile);  // header not overwritten, as overlaybd-merge
  Progress progress("merge", a.quiet);
  lsmt::CommitOptions options = ToCommitOptions(a.commit);
  options.progress = progress.Callback();
  return WriteOutput(a.out, a.force, chain,
                     [&](WritableFile* sink) { return lsmt::Commit(*image, sink, options); });
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
  AddCommitFlags(cmd, &args->commit, /*with_parent=*/true);
  AddZfileOptions(cmd, &args->zfile, /*with_switch=*/true);
  cmd->add_flag("--tar", args->tar, "Wrap the output in a tar");
  cmd->add_flag("-f,--force", args->force, "Overwrite the output if it exists");
  AddQuiet(cmd, &args->quiet);
  cmd->add_option("LAYER", args->layers, "Layers, bottom first")->required();
  cmd->footer("\nExample:\n  ovbd merge -o merged.zfile --zfile layer0.zfile layer1.zfile.tar layer2.lsmt");
  commands->push_back({cmd, "merge", [args] { return RunMerge(*args); }});
}

}  // namespace ovbd::cli
