// ovbd zfile compress: any file into a ZFile (optionally tar-wrapped), like overlaybd-zfile.
// Unlike the other commands that can compress (--threads 1 by default), --threads defaults to
// one per core here: compressing is all this command does, and the output bytes do not depend
// on the thread count.
#include <algorithm>
#include <thread>

#include "cli/command.h"
#include "cli/options.h"
#include "cli/output.h"
#include "cli/progress.h"
#include "io/write_behind.h"
#include "image/layer_context.h"

namespace ovbd::cli {
namespace {

struct CompressArgs {
  ZfileFlags zfile;
  bool tar = false;
  bool force = false;
  bool sync = false;
  bool quiet = false;
  std::string in;
  std::string out;
};

Status RunCompress(const CompressArgs& a) {
  auto in = OpenReadableFile(a.in);
  if (!in.ok()) return image::WithPath(in.status(), a.in);
  ChainOptions chain;
  chain.tar = a.tar;
  chain.sync = a.sync;
  Progress progress("compress", a.quiet);
  zfile::Options options = ToZfileOptions(a.zfile);  // header not overwritten, as overlaybd-zfile
  return WriteOutput(a.out, a.force, chain, [&](WritableFile* sink) {
    // Written on another thread, overlapping with the compression; with --sync also synced
    // every 16 MiB there, so the disk writeback overlaps too instead of all of it waiting for
    // the final fdatasync.
    auto behind = NewWriteBehindFile(sink, a.sync ? kWriteBehindSyncBytes : 0);
    auto info = zfile::Compress(**in, behind.get(), options, progress.Callback());
    Status closed = behind->Close();
    return info.ok() ? closed : info.status();
  });
}

// One thread per core, at most 8 (as `zfile decompress` does).
int DefaultThreads() {
  const unsigned cores = std::thread::hardware_concurrency();
  return static_cast<int>(std::clamp(cores, 1u, 8u));
}

}  // namespace

void AddZfileCompressCommand(CLI::App& zfile, Commands* commands) {
  auto args = std::make_shared<CompressArgs>();
  args->zfile.threads = DefaultThreads();
  CLI::App* cmd = zfile.add_subcommand(
      "compress",
      "Compress IN into the ZFile OUT (as overlaybd-zfile does: the metadata is in the trailer). "
      "--tar wraps the ZFile in a one-member tar. --threads defaults to the number of cores "
      "(at most 8); the output is the same for any thread count.");
  AddZfileOptions(cmd, &args->zfile, /*with_switch=*/false);
  cmd->add_flag("--tar", args->tar, "Wrap the output in a tar");
  cmd->add_flag("-f,--force", args->force, "Overwrite OUT if it exists");
  AddSync(cmd, &args->sync);
  AddQuiet(cmd, &args->quiet);
  cmd->add_option("IN", args->in, "File to compress")->required();
  cmd->add_option("OUT", args->out, "ZFile to write")->required();
  cmd->footer("\nExamples:\n  ovbd zfile compress layer.lsmt layer.zfile\n"
              "  ovbd zfile compress --algorithm zstd --block-size 64K --threads 2 --tar layer.lsmt layer.tar");
  commands->push_back({cmd, "zfile compress", [args] { return RunCompress(*args); }});
}

}  // namespace ovbd::cli
