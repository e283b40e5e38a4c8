// ovbd ctl: one request to the control socket of a running `ovbd serve` or `ovbd attach`
// (status, flush, and the online operations of docs/lifecycle.md). Prints the JSON reply.
#include <sys/stat.h>

#include <iostream>

#include "cli/command.h"
#include "cli/options.h"
#include "export/control/control_server.h"
#include "export/fuse/attach_state.h"
#include "export/fuse/loop_device.h"

namespace ovbd::cli {
namespace {

struct CtlArgs {
  std::string socket;
  std::string name;        // snapshot
  std::string config;      // snapshot
  std::string from, to;    // merge
  ZfileFlags zfile;        // merge
  bool keep = false;       // merge
  bool background = false; // merge, replace
  std::string layer, file; // replace
  std::string size;        // resize
};

// SOCKET may also be what `ovbd attach` printed (/dev/loopN, or a --fuse-only DIR): its state
// names the control socket.
std::string ControlSocket(const std::string& target) {
  struct stat st {};
  if (::stat(target.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) return target;
  std::string run_dir;
  if (::stat(target.c_str(), &st) == 0 && S_ISBLK(st.st_mode)) {
    auto backing = fuse::LoopBackingFile(target);  // RUN_DIR/mnt/image
    const std::string tail = std::string("/") + fuse::kMountDir + "/image";
    if (backing.ok() && backing->size() > tail.size() && backing->ends_with(tail)) {
      run_dir = backing->substr(0, backing->size() - tail.size());
    }
  } else {
    auto found = fuse::FindRunDirByPath(fuse::AbsolutePath(target));
    if (found.ok()) run_dir = *found;
  }
  return run_dir.empty() ? target : run_dir + "/" + fuse::kControlFile;
}

Status Send(const std::string& socket, const nlohmann::json& request) {
  const std::string path = ControlSocket(socket);
  OVBD_ASSIGN_OR_RETURN(nlohmann::json reply, control::Call(path, request));
  std::cout << reply.dump(2) << "\n";
  if (reply.value("ok", false)) return Status::OK();
  return Status::IOError(path + ": " + request.value("command", std::string()) + ": " +
                         reply.value("error", std::string("request failed")));
}

CLI::App* AddSocket(CLI::App* cmd, CtlArgs*) { return cmd; }

}  // namespace

void AddCtlCommand(CLI::App& parent, Commands* commands) {
  auto a = std::make_shared<CtlArgs>();
  CLI::App* ctl = parent.add_subcommand(
      "ctl",
      "Ask a running 'ovbd serve' or 'ovbd attach' through its control socket. Prints the JSON reply; "
      "exit status 1 if the request failed (the reply says why, and a refused request changed nothing). "
      "The online operations (snapshot, merge, replace, resize) need an image served from a "
      "config.v1.json, which they rewrite (docs/lifecycle.md).");
  ctl->add_option("SOCKET", a->socket,
                  "The control socket (serve's --control, default SOCKET.ctl), or the /dev/loopN or "
                  "--fuse-only DIR of an attached image")
      ->required();
  ctl->require_subcommand(1);
  ctl->footer(
      "\nExamples:\n"
      "  ovbd ctl /tmp/img.sock.ctl status\n"
      "  ovbd ctl /tmp/img.sock.ctl snapshot --name before-upgrade\n"
      "  ovbd ctl /tmp/img.sock.ctl merge --from 0 --to before-upgrade --zfile\n"
      "  ovbd ctl /dev/loop0 resize 20G && resize2fs /dev/loop0");

  auto* status = AddSocket(ctl->add_subcommand("status", "The stack (layers with names, sizes, sources and "
                                                         "checkpoints), clients, I/O counters, cache, the running job"),
                           a.get());
  commands->push_back({status, "ctl status", [a] { return Send(a->socket, {{"command", "status"}}); }});

  auto* flush = AddSocket(ctl->add_subcommand("flush", "Make every completed write durable"), a.get());
  commands->push_back({flush, "ctl flush", [a] { return Send(a->socket, {{"command", "flush"}}); }});

  auto* snap = AddSocket(ctl->add_subcommand(
                             "snapshot",
                             "Seal the writable layer in place as the newest read-only layer (a checkpoint) and "
                             "continue on a fresh one; clients stay connected, writes pause only for the swap"),
                         a.get());
  snap->add_option("--name", a->name, "Checkpoint name (default: the UTC time, 20261207T154200Z)");
  snap->add_option("--config", a->config,
                   "overlaybd's live-snapshot form: NEW.json names the current lowers, then the current upper's "
                   "data file, and a new empty upper (ovbd create); it is the manifest from then on")
      ->check(CLI::ExistingFile)
      ->type_name("NEW.json");
  commands->push_back({snap, "ctl snapshot", [a] {
                         nlohmann::json r = {{"command", "snapshot"}};
                         if (!a->name.empty()) r["name"] = a->name;
                         if (!a->config.empty()) r["config"] = fuse::AbsolutePath(a->config);
                         return Send(a->socket, r);
                       }});

  auto* merge = AddSocket(ctl->add_subcommand(
                              "merge",
                              "Merge consecutive read-only layers FROM..TO (inclusive; index, bottom = 0, or "
                              "checkpoint name) into one new layer in the background while the image is served, "
                              "then swap it in; waits for the swap unless --background ('ctl status' shows "
                              "progress, 'ctl job --wait' waits). The merged layer keeps TO's checkpoint name"),
                          a.get());
  merge->add_option("--from", a->from, "Bottom layer of the range")->required();
  merge->add_option("--to", a->to, "Top layer of the range")->required();
  AddZfileOptions(merge, &a->zfile, /*with_switch=*/true);
  merge->add_flag("--keep", a->keep, "Keep the merged layers' files (default: removed once the swap is durable)");
  merge->add_flag("--background", a->background, "Return once the merge has started");
  commands->push_back({merge, "ctl merge", [a] {
                         nlohmann::json r = {{"command", "merge"}, {"from", a->from}, {"to", a->to},
                                             {"keep", a->keep}, {"wait", !a->background}};
                         if (a->zfile.enabled) {
                           const zfile::Options z = ToZfileOptions(a->zfile);
                           r["zfile"] = {{"algorithm", zfile::AlgorithmName(z.algorithm)},
                                         {"block_size", z.block_size},
                                         {"crc", z.crc},
                                         {"threads", z.threads}};
                         }
                         return Send(a->socket, r);
                       }});

  auto* replace = AddSocket(ctl->add_subcommand(
                                "replace",
                                "Swap read-only layer LAYER for FILE (its ZFile form, a downloaded copy), once "
                                "their content is checked identical range by range; FILE is not removed"),
                            a.get());
  replace->add_option("LAYER", a->layer, "Index (bottom = 0) or checkpoint name")->required();
  replace->add_option("FILE", a->file, "The replacement layer file")->required()->check(CLI::ExistingFile);
  replace->add_flag("--background", a->background, "Return once the check has started");
  commands->push_back({replace, "ctl replace", [a] {
                         return Send(a->socket, {{"command", "replace"}, {"layer", a->layer},
                                                 {"file", fuse::AbsolutePath(a->file)}, {"wait", !a->background}});
                       }});

  auto* job = AddSocket(ctl->add_subcommand("job", "The last merge or replace: state and progress"), a.get());
  auto wait = std::make_shared<bool>(false);
  job->add_flag("--wait", *wait, "Wait until it ends; exit 1 if it failed");
  commands->push_back({job, "ctl job", [a, wait] { return Send(a->socket, {{"command", "job"}, {"wait", *wait}}); }});

  auto* resize = AddSocket(ctl->add_subcommand(
                               "resize",
                               "Set the virtual size of the running image (the writable layer's header). Growing "
                               "always works; shrinking only if no data lies past the new end. NBD clients "
                               "connected before see the old size until they reconnect; an attached device's "
                               "loop device is resized at once"),
                           a.get());
  resize->add_option("SIZE", a->size, "New size: bytes or 10G, 512M (a multiple of 512)")
      ->required()
      ->check(SizeValidator(512, true));
  commands->push_back({resize, "ctl resize", [a] {
                         return Send(a->socket, {{"command", "resize"}, {"size", ParsedSize(a->size)}});
                       }});
}

}  // namespace ovbd::cli
