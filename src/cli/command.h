// How subcommands plug into the `ovbd` binary.
//
//   main.cc ── Add<Name>Command(parent, &commands) ──> a CLI::App subcommand + a Run function
//           ── parse (CLI11 errors: exit 2) ──> Run() of the parsed subcommand
//                                               ok: exit 0, error: "ovbd <cmd>: error: <msg>", exit 1
//
// Arguments CLI11 can check (sizes, alignment, enums) are checked by validators at parse time, so
// they are usage errors (exit 2); everything found while working is a failure (exit 1).
// CLI11 exceptions never leave src/cli/.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "ovbd/status.h"

namespace ovbd::cli {

struct Command {
  CLI::App* app = nullptr;          // the subcommand
  std::string name;                 // "commit", "zfile compress"
  std::function<Status()> run;      // called after a successful parse
};
using Commands = std::vector<Command>;

void AddCreateCommand(CLI::App& parent, Commands* commands);
void AddWriteCommand(CLI::App& parent, Commands* commands);
void AddDiscardCommand(CLI::App& parent, Commands* commands);
void AddCommitCommand(CLI::App& parent, Commands* commands);
void AddSealCommand(CLI::App& parent, Commands* commands);
void AddZfileCompressCommand(CLI::App& zfile, Commands* commands);
void AddZfileDecompressCommand(CLI::App& zfile, Commands* commands);
void AddZfileVerifyCommand(CLI::App& zfile, Commands* commands);
void AddMergeCommand(CLI::App& parent, Commands* commands);
void AddImportCommand(CLI::App& parent, Commands* commands);
void AddCatCommand(CLI::App& parent, Commands* commands);
void AddInfoCommand(CLI::App& parent, Commands* commands);
void AddCheckCommand(CLI::App& parent, Commands* commands);
void AddServeCommand(CLI::App& parent, Commands* commands);
void AddCtlCommand(CLI::App& parent, Commands* commands);
void AddAttachCommand(CLI::App& parent, Commands* commands);
void AddDetachCommand(CLI::App& parent, Commands* commands);
void AddPushCommand(CLI::App& parent, Commands* commands);
void AddCacheCommand(CLI::App& parent, Commands* commands);

}  // namespace ovbd::cli
