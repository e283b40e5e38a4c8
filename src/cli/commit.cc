// ovbd commit: turns a writable layer (optionally flattened with --lower layers below it) into
// one read-only layer blob, optionally ZFile-compressed and tar-wrapped, like overlaybd-commit.
#include "cli/command.h"
#include "cli/options.h"
#include "ovbd/image.h"

namespace ovbd::cli {
namespace {

struct CommitArgs {
  LayerOutputFlags output;
  std::vector<std::string> lowers;
  std::string data;
  std::string index;
  std::string out;
};

Status RunCommit(const CommitArgs& a) {
  OVBD_ASSIGN_OR_RETURN(auto image, image::OpenImage(a.lowers, image::UpperPaths{a.data, a.index}));
  // As overlaybd-commit -z, with or without -t: the ZFile header is overwritten (flags 0x1B), so
  // the same layer gets the same digest from both tools (golden layer1.lz4-4k-crc.zfile.tar).
  return WriteLayerOutput(a.out, a.output, "commit", /*overwrite_zfile_header=*/true,
                          [&](WritableFile* sink, const lsmt::CommitOptions& o) { return lsmt::Commit(*image, sink, o); });
}

}  // namespace

void AddCommitCommand(CLI::App& parent, Commands* commands) {
  auto args = std::make_shared<CommitArgs>();
  CLI::App* cmd = parent.add_subcommand(
      "commit",
      "Commit a writable layer (DATA + INDEX) into a read-only layer blob OUT: only the live data, "
      "in logical order, with discarded ranges kept as zeroed segments. With --lower, the given "
      "layers (bottom first) are flattened together with the RW layer into one blob. --zfile "
      "compresses the blob (header overwritten as overlaybd-commit -z does, also under --tar), "
      "--tar wraps it in a one-member tar. OUT appears only when the commit succeeded.");
  AddLayerOutputFlags(cmd, &args->output, "Wrap the output in a tar (as overlaybd-commit -t)");
  cmd->add_option("--lower", args->lowers, "A layer below the RW layer (repeat, bottom first)");
  cmd->add_option("DATA", args->data, "Data file of the RW layer")->required();
  cmd->add_option("INDEX", args->index, "Index file of the RW layer")->required();
  cmd->add_option("OUT", args->out, "Output layer blob")->required();
  cmd->footer("\nExamples:\n  ovbd commit -m 'app layer' --uuid 1A1B1C1D-7777-4888-9999-AAAABBBBCCCC l.data l.index l.lsmt\n"
              "  ovbd commit --zfile --algorithm zstd --block-size 64K --tar l.data l.index l.tar\n"
              "  ovbd commit --lower base.zfile l.data l.index flat.lsmt");
  commands->push_back({cmd, "commit", [args] { return RunCommit(*args); }});
}

}  // namespace ovbd::cli
