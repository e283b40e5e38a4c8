// ovbd commit: turns a writable layer (optionally flattened with --lower layers below it) into
// one read-only layer blob, optionally ZFile-compressed and tar-wrapped, like overlaybd-commit.
#include "cli/command.h"
#include "cli/options.h"
#include "cli/output.h"
#include "cli/progress.h"
#include "ovbd/image.h"

namespace ovbd::cli {
namespace {

struct CommitArgs {
  CommitFlags commit;
  ZfileFlags zfile;
  bool tar = false;
  bool force = false;
  bool quiet = false;
  std::vector<std::string> lowers;
  std::string data;
  std::string index;
  std::string out;
};

Status RunCommit(const CommitArgs& a) {
  OVBD_ASSIGN_OR_RETURN(auto image, image::OpenImage(a.lowers, image::UpperPaths{a.data, a.index}));
  ChainOptions chain;
  chain.tar = a.tar;
  if (a.zfile.enabled) {
    chain.zfile = ToZfileOptions(a.zfile);
    chain.zfile->overwrite_header = !a.tar;  // as overlaybd-commit -z (header 0x1B) without -t
  }
  Progress progress("commit", a.quiet);
  lsmt::CommitOptions options = ToCommitOptions(a.commit);
  options.progress = progress.Callback();
  return WriteOutput(a.out, a.force, chain,
                     [&](WritableFile* sink) { return lsmt::Commit(*image, sink, options); });
}

}  // namespace

void AddCommitCommand(CLI::App& parent, Commands* commands) {
  auto args = std::make_shared<CommitArgs>();
  CLI::App* cmd = parent.add_subcommand(
      "commit",
      "Commit a writable layer (DATA + INDEX) into a read-only layer blob OUT: only the live data, "
      "in logical order, with discarded ranges kept as zeroed segments. With --lower, the given "
      "layers (bottom first) are flattened together with the RW layer into one blob. --zfile "
      "compresses the blob (header overwritten as overlaybd-commit -z does), --tar wraps it in a "
      "one-member tar. OUT appears only when the commit succeeded.");
  AddCommitFlags(cmd, &args->commit, /*with_parent=*/true);
  AddZfileOptions(cmd, &args->zfile, /*with_switch=*/true);
  cmd->add_flag("--tar", args->tar, "Wrap the output in a tar (as overlaybd-commit -t)");
  cmd->add_option("--lower", args->lowers, "A layer below the RW layer (repeat, bottom first)");
  cmd->add_flag("-f,--force", args->force, "Overwrite OUT if it exists");
  AddQuiet(cmd, &args->quiet);
  cmd->add_option("DATA", args->data, "Data file of the RW layer")->required();
  cmd->add_option("INDEX", args->index, "Index file of the RW layer")->required();
  cmd->add_option("OUT", args->out, "Output layer blob")->required();
  cmd->footer("\nExamples:\n  ovbd commit -m 'app layer' --uuid 1A1B1C1D-7777-4888-9999-AAAABBBBCCCC l.data l.index l.lsmt\n"
              "  ovbd commit --zfile --algorithm zstd --block-size 64K --tar l.data l.index l.tar\n"
              "  ovbd commit --lower base.zfile l.data l.index flat.lsmt");
  commands->push_back({cmd, "commit", [args] { return RunCommit(*args); }});
}

}  // namespace ovbd::cli
