// ovbd create: a new, empty writable layer (data + index file), like overlaybd-create but with
// any size.
#include <unistd.h>

#include "cli/command.h"
#include "cli/options.h"
#include "ovbd/lsmt.h"

namespace ovbd::cli {
namespace {

struct CreateArgs {
  std::string size;
  std::string uuid;
  std::string parent_uuid;
  std::string data;
  std::string index;
};

Result<std::unique_ptr<RandomRWFile>> CreateExclusive(const std::string& path) {
  auto file = OpenRandomRWFile(path, RWOpenOptions{.create = true, .exclusive = true});
  if (!file.ok() && file.status().code() == Code::kAlreadyExists) {
    return Status::AlreadyExists(path + ": already exists (ovbd create never overwrites)");
  }
  return file;
}

Status RunCreate(const CreateArgs& a) {
  lsmt::CreateOptions options;
  options.virtual_size = ParsedSize(a.size);
  options.uuid = a.uuid;
  options.parent_uuid = a.parent_uuid;
  OVBD_ASSIGN_OR_RETURN(auto data, CreateExclusive(a.data));
  auto index = CreateExclusive(a.index);
  if (!index.ok()) {
    ::unlink(a.data.c_str());  // we created it a moment ago
    return index.status();
  }
  auto layer = lsmt::CreateRwLayer(std::move(data), std::move(index).value(), options);
  if (!layer.ok()) {
    ::unlink(a.data.c_str());
    ::unlink(a.index.c_str());
    return layer.status();
  }
  return (*layer)->Sync();
}

}  // namespace

void AddCreateCommand(CLI::App& parent, Commands* commands) {
  auto args = std::make_shared<CreateArgs>();
  CLI::App* cmd = parent.add_subcommand(
      "create",
      "Create an empty writable (RW) layer: a data file and an index file. The virtual size is "
      "any multiple of 512 bytes. Existing files are never overwritten.");
  cmd->add_option("--size", args->size, "Virtual size (e.g. 64M, 10G, or bytes; multiple of 512)")
      ->required()
      ->check(SizeValidator(512, true));
  cmd->add_option("--uuid", args->uuid, "UUID of the layer (default: random)")->check(UuidValidator());
  cmd->add_option("--parent-uuid", args->parent_uuid, "UUID of the layer below (default: null)")
      ->check(UuidValidator());
  cmd->add_option("DATA", args->data, "Data file to create")->required();
  cmd->add_option("INDEX", args->index, "Index file to create")->required();
  cmd->footer("\nExamples:\n  ovbd create --size 64M layer.data layer.index\n"
              "  ovbd create --size 10G --parent-uuid 0A0B0C0D-1111-4222-8333-444455556666 up.data up.index");
  commands->push_back({cmd, "create", [args] { return RunCreate(*args); }});
}

}  // namespace ovbd::cli
