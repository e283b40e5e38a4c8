// ovbd import: a read-only layer from a raw disk image (all-zero 4 KiB blocks become holes).
#include "cli/command.h"
#include "cli/options.h"
#include "image/layer_context.h"

namespace ovbd::cli {
namespace {

struct ImportArgs {
  LayerOutputFlags output;
  std::string raw;
  std::string out;
};

Status RunImport(const ImportArgs& a) {
  auto raw = OpenReadableFile(a.raw);
  if (!raw.ok()) return image::WithPath(raw.status(), a.raw);
  return WriteLayerOutput(a.out, a.output, "import", false, [&](WritableFile* sink, const lsmt::CommitOptions& o) {
    return lsmt::ImportRaw(**raw, sink, o);
  });
}

}  // namespace

void AddImportCommand(CLI::App& parent, Commands* commands) {
  auto args = std::make_shared<ImportArgs>();
  CLI::App* cmd = parent.add_subcommand(
      "import",
      "Import a raw disk image RAW as a read-only layer: every 4 KiB block of zeros becomes a hole, "
      "everything else data. The virtual size is the raw size rounded up to 512 bytes.");
  cmd->add_option("RAW", args->raw, "Raw disk image (file or block device)")->required();
  cmd->add_option("-o,--output", args->out, "Output layer blob")->required();
  AddLayerOutputFlags(cmd, &args->output, "Wrap the output in a tar");
  cmd->footer("\nExample:\n  ovbd import disk.img -o base.zfile --zfile -m 'base image'");
  commands->push_back({cmd, "import", [args] { return RunImport(*args); }});
}

}  // namespace ovbd::cli
