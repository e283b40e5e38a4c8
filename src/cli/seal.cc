// ovbd seal: appends the index and a trailer to an RW data file in place (overlaybd-commit
// --seal); the data file becomes a read-only layer.
#include "cli/command.h"
#include "ovbd/image.h"

namespace ovbd::cli {
namespace {

struct SealArgs {
  std::string data;
  std::string index;
};

Status RunSeal(const SealArgs& a) {
  OVBD_ASSIGN_OR_RETURN(auto layer, image::OpenUpper({a.data, a.index}));
  return layer->Seal();
}

}  // namespace

void AddSealCommand(CLI::App& parent, Commands* commands) {
  auto args = std::make_shared<SealArgs>();
  CLI::App* cmd = parent.add_subcommand(
      "seal",
      "Seal a writable layer in place: its sorted index and a trailer are appended to DATA, which "
      "then opens as a read-only layer (like overlaybd-commit --seal). No writes are possible "
      "afterwards.");
  cmd->add_option("DATA", args->data, "Data file of the RW layer (sealed in place)")->required();
  cmd->add_option("INDEX", args->index, "Index file of the RW layer")->required();
  cmd->footer("\nExample:\n  ovbd seal layer.data layer.index && ovbd cat -o disk.img base.zfile layer.data");
  commands->push_back({cmd, "seal", [args] { return RunSeal(*args); }});
}

}  // namespace ovbd::cli
