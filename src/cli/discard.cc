// ovbd discard: hides a range of a writable layer as zeros (a zeroed segment that also hides
// the layers below).
#include "cli/command.h"
#include "cli/options.h"
#include "ovbd/image.h"

namespace ovbd::cli {
namespace {

struct DiscardArgs {
  std::string data;
  std::string index;
  std::string offset;
  std::string length;
};

Status RunDiscard(const DiscardArgs& a) {
  OVBD_ASSIGN_OR_RETURN(auto layer, image::OpenUpper({a.data, a.index}));
  OVBD_RETURN_IF_ERROR(layer->Discard(ParsedSize(a.offset), ParsedSize(a.length)));
  return layer->Sync();
}

}  // namespace

void AddDiscardCommand(CLI::App& parent, Commands* commands) {
  auto args = std::make_shared<DiscardArgs>();
  CLI::App* cmd = parent.add_subcommand(
      "discard",
      "Discard [--offset, --offset + --length) of a writable layer: the range reads as zeros and "
      "hides the layers below it. Both must be multiples of 512.");
  cmd->add_option("DATA", args->data, "Data file of the RW layer")->required();
  cmd->add_option("INDEX", args->index, "Index file of the RW layer")->required();
  cmd->add_option("--offset", args->offset, "Byte offset (multiple of 512)")
      ->required()
      ->check(SizeValidator(512, false));
  cmd->add_option("--length", args->length, "Byte length (multiple of 512)")
      ->required()
      ->check(SizeValidator(512, true));
  cmd->footer("\nExample:\n  ovbd discard layer.data layer.index --offset 1M --length 10M");
  commands->push_back({cmd, "discard", [args] { return RunDiscard(*args); }});
}

}  // namespace ovbd::cli
