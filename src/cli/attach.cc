// ovbd attach / detach: registered here once the FUSE export lands (next commit).
#include "cli/command.h"

namespace ovbd::cli {
void AddAttachCommand(CLI::App&, Commands*) {}
void AddDetachCommand(CLI::App&, Commands*) {}
}  // namespace ovbd::cli
