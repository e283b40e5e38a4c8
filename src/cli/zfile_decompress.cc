// ovbd zfile decompress: the original bytes of a ZFile (tar-wrapped or not) to a file or stdout.
// The fast path reads 4 MiB chunks on several threads and writes them in order.
#include "cli/command.h"
#include "cli/options.h"
#include "cli/copy.h"
#include "cli/output.h"
#include "cli/progress.h"
#include "cli/zfile_input.h"

namespace ovbd::cli {

namespace {

struct DecompressArgs {
  std::string in;
  std::string out;
  bool force = false;
  bool sync = false;
  bool quiet = false;
  int threads = 0;
};

Status RunDecompress(const DecompressArgs& a) {
  OVBD_ASSIGN_OR_RETURN(auto reader, OpenZfileInput(a.in));
  Progress progress("decompress", a.quiet || a.out == "-");
  ChainOptions chain;
  chain.sync = a.sync;
  return WriteOutput(a.out, a.force, chain, [&](WritableFile* sink) {
    return ParallelCopy(*reader, sink, a.threads, progress.Callback());
  });
}

}  // namespace

void AddZfileDecompressCommand(CLI::App& zfile, Commands* commands) {
  auto args = std::make_shared<DecompressArgs>();
  CLI::App* cmd = zfile.add_subcommand(
      "decompress",
      "Decompress a ZFile (plain or tar-wrapped) to OUT, or to standard output with -. Block CRCs "
      "are checked while reading.");
  cmd->add_option("IN", args->in, "ZFile to decompress")->required();
  cmd->add_option("OUT", args->out, "Output file, or - for standard output")->required();
  cmd->add_flag("-f,--force", args->force, "Overwrite OUT if it is an existing regular file");
  cmd->add_option("--threads", args->threads, "Decompression threads (0 = one per core)")
      ->check(CLI::Range(0, 64))
      ->capture_default_str();
  AddSync(cmd, &args->sync);
  AddQuiet(cmd, &args->quiet);
  cmd->footer("\nExamples:\n  ovbd zfile decompress layer.zfile layer.lsmt\n"
              "  ovbd zfile decompress layer.zfile.tar - | md5sum");
  commands->push_back({cmd, "zfile decompress", [args] { return RunDecompress(*args); }});
}

}  // namespace ovbd::cli
