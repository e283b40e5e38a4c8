// ovbd ctl: one request to the control socket of a running `ovbd serve` (status, flush).
#include <iostream>

#include "cli/command.h"
#include "export/control/control_server.h"

namespace ovbd::cli {
namespace {

struct CtlArgs {
  std::string socket;
  std::string command;
};

Status RunCtl(const CtlArgs& a) {
  OVBD_ASSIGN_OR_RETURN(nlohmann::json reply, control::Call(a.socket, {{"command", a.command}}));
  std::cout << reply.dump(2) << "\n";
  if (reply.value("ok", false)) return Status::OK();
  return Status::IOError(a.socket + ": " + reply.value("error", std::string("request failed")));
}

}  // namespace

void AddCtlCommand(CLI::App& parent, Commands* commands) {
  auto args = std::make_shared<CtlArgs>();
  CLI::App* cmd = parent.add_subcommand(
      "ctl", "Ask a running 'ovbd serve' through its control socket: 'status' (layers, size, clients, "
             "bytes read/written) or 'flush' (make every completed write durable). Prints the JSON reply.");
  cmd->add_option("SOCKET", args->socket, "The control socket (serve's --control, default SOCKET.ctl)")->required();
  cmd->add_option("COMMAND", args->command, "status | flush")
      ->required()
      ->check(CLI::IsMember({"status", "flush"}));
  cmd->footer("\nExamples:\n  ovbd ctl /tmp/img.sock.ctl status\n  ovbd ctl /tmp/img.sock.ctl flush");
  commands->push_back({cmd, "ctl", [args] { return RunCtl(*args); }});
}

}  // namespace ovbd::cli
