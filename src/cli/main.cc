// ovbd: one binary for OverlayBD images. Parses the command line with CLI11, runs the chosen
// subcommand and maps the outcome to the exit code: 0 ok, 1 failure, 2 usage error.
#include <cstdio>
#include <iostream>
#include <string>

#include "cli/command.h"

#ifndef OVBD_VERSION
#define OVBD_VERSION "unknown"
#endif

namespace ovbd::cli {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

constexpr const char* kDescription =
    "ovbd works with OverlayBD block-device images: creates and writes writable (RW) layers, "
    "commits them into read-only LSMT layers, compresses layers as ZFiles, wraps them in tar, "
    "merges, imports raw disk images, and reads, inspects and checks every variant. Layer files "
    "are recognised by content (plain LSMT, ZFile, tar-wrapped), never by name, and are "
    "byte-compatible with the overlaybd tools.";

constexpr const char* kFooter =
    "\nExamples:\n"
    "  ovbd create --size 64M layer.data layer.index\n"
    "  ovbd write layer.data layer.index --offset 1M blob.bin\n"
    "  ovbd commit --zfile -m 'base' layer.data layer.index layer.zfile\n"
    "  ovbd cat -o disk.img base.zfile layer.zfile\n"
    "  ovbd info --json layer.zfile\n"
    "\nExit status: 0 success, 1 failure, 2 usage error.";

CLI::App* AddZfileGroup(CLI::App& app, Commands* commands) {
  CLI::App* zfile = app.add_subcommand("zfile", "Compress, decompress and verify ZFiles");
  zfile->require_subcommand(1);
  zfile->footer(
      "\nA ZFile is OverlayBD's random-access compressed container (LZ4 or zstd blocks with an\n"
      "index and optional per-block CRC32C). Any file can be compressed, not only layers.\n"
      "\nExamples:\n"
      "  ovbd zfile compress --algorithm zstd --block-size 16K layer.lsmt layer.zfile\n"
      "  ovbd zfile decompress layer.zfile - | md5sum\n"
      "  ovbd zfile verify layer.zfile");
  AddZfileCompressCommand(*zfile, commands);
  AddZfileDecompressCommand(*zfile, commands);
  AddZfileVerifyCommand(*zfile, commands);
  return zfile;
}

void Register(CLI::App& app, Commands* commands) {
  AddCreateCommand(app, commands);
  AddWriteCommand(app, commands);
  AddDiscardCommand(app, commands);
  AddCommitCommand(app, commands);
  AddSealCommand(app, commands);
  AddZfileGroup(app, commands);
  AddMergeCommand(app, commands);
  AddImportCommand(app, commands);
  AddCatCommand(app, commands);
  AddInfoCommand(app, commands);
  AddCheckCommand(app, commands);
  AddServeCommand(app, commands);
  AddCtlCommand(app, commands);
  AddAttachCommand(app, commands);
  AddDetachCommand(app, commands);
  AddPushCommand(app, commands);
  AddCacheCommand(app, commands);
}

// CLI11 prints the footer without a final newline.
void EndFootersWithNewline(CLI::App* app) {
  app->footer(app->get_footer() + "\n");
  for (CLI::App* sub : app->get_subcommands({})) EndFootersWithNewline(sub);
}

// "ovbd zfile compress" for the deepest subcommand seen so far.
std::string CommandPath(const CLI::App& app) {
  std::string path = "ovbd";
  const CLI::App* current = &app;
  while (!current->get_subcommands().empty()) {
    current = current->get_subcommands().back();
    path += " " + current->get_name();
  }
  return path;
}

int HandleParseError(CLI::App& app, const CLI::ParseError& e, int argc, char** argv) {
  if (dynamic_cast<const CLI::CallForVersion*>(&e) != nullptr) {
    std::cout << e.what() << "\n";
    return kExitOk;
  }
  if (e.get_exit_code() == 0) return app.exit(e);  // --help
  std::string path = CommandPath(app);
  std::string message = e.what();
  if (path == "ovbd" && argc > 1 && argv[1][0] != '-') {
    message = std::string("unknown command '") + argv[1] + "'";
  }
  std::cerr << path << ": error: " << message << "\n"
            << "Run '" << path << " --help' for usage.\n";
  return kExitUsage;
}

int Run(const Commands& commands) {
  for (const Command& c : commands) {
    if (!c.app->parsed()) continue;
    Status s = c.run();
    if (s.ok()) return kExitOk;
    std::cerr << "ovbd " << c.name << ": error: " << s.message() << "\n";
    return kExitFailure;
  }
  return kExitUsage;  // unreachable: a subcommand is required
}

int Main(int argc, char** argv) {
  CLI::App app(kDescription, "ovbd");
  app.footer(kFooter);
  app.set_version_flag("--version", std::string("ovbd ") + OVBD_VERSION);
  app.require_subcommand(1);
  Commands commands;
  Register(app, &commands);
  EndFootersWithNewline(&app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return HandleParseError(app, e, argc, argv);
  }
  return Run(commands);
}

}  // namespace
}  // namespace ovbd::cli

int main(int argc, char** argv) { return ovbd::cli::Main(argc, argv); }
