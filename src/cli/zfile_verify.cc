// ovbd zfile verify: checks every block of a ZFile (CRC and decompression).
#include <cstdio>

#include "cli/command.h"
#include "cli/options.h"
#include "cli/progress.h"
#include "cli/zfile_input.h"

namespace ovbd::cli {
namespace {

struct VerifyArgs {
  std::string in;
  bool quiet = false;
};

Status RunVerify(const VerifyArgs& a) {
  OVBD_ASSIGN_OR_RETURN(auto reader, OpenZfileInput(a.in));
  Progress progress("verify", a.quiet, /*bytes=*/false);
  OVBD_RETURN_IF_ERROR(reader->VerifyAll(progress.Callback()));
  progress.Finish();
  std::printf("%s: OK (%llu blocks)\n", a.in.c_str(),
              static_cast<unsigned long long>(reader->info().block_count));
  return Status::OK();
}

}  // namespace

void AddZfileVerifyCommand(CLI::App& zfile, Commands* commands) {
  auto args = std::make_shared<VerifyArgs>();
  CLI::App* cmd = zfile.add_subcommand(
      "verify",
      "Verify every block of a ZFile (plain or tar-wrapped): its CRC32C if present and that it "
      "decompresses to the right length. Prints OK, or the first error and exits with 1.");
  cmd->add_option("IN", args->in, "ZFile to verify")->required();
  AddQuiet(cmd, &args->quiet);
  cmd->footer("\nExample:\n  ovbd zfile verify layer.zfile");
  commands->push_back({cmd, "zfile verify", [args] { return RunVerify(*args); }});
}

}  // namespace ovbd::cli
