// ovbd attach / ovbd detach: an image as a kernel block device (/dev/loopN) through a FUSE file.
//
//   ovbd attach ── open image (errors: exit 1 here) ── fork ──┬─ parent: read the readiness pipe,
//                                                             │  print /dev/loopN (or the error), exit
//                                                             └─ child: setsid, stdio -> /dev/null,
//                                                                ServeAttached (attach_serve.h) until
//                                                                SIGTERM; "ok <json>" / "error <msg>"
//                                                                on the pipe once set up
//   ovbd attach --foreground: ServeAttached in this process, ready line on stdout.
//   ovbd detach DEV|DIR: RunDetach (detach.cc).
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/attach_serve.h"
#include "export/fuse/attach_state.h"
#include "cli/command.h"
#include "cli/image_args.h"

namespace ovbd::cli {
namespace {

struct AttachArgs {
  ImageArgs image;
  std::string fuse_only;
  std::string block_size = "512";
  bool no_direct_io = false;
  bool foreground = false;
  bool json = false;
};

struct DetachArgs {
  std::string target;
  unsigned timeout_s = 60;
};

std::string ReadyJson(const AttachReady& r) {
  nlohmann::ordered_json j = {{"device", r.device.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(r.device)},
                              {"file", r.file},
                              {"pid", r.pid},
                              {"run_dir", r.run_dir},
                              {"control", r.control}};
  if (!r.device.empty()) {
    j["block_size"] = r.block_size;
    j["direct_io"] = r.direct_io;
  }
  return j.dump();
}

void PrintReady(const AttachArgs& a, const AttachReady& r) {
  if (a.json) {
    std::cout << ReadyJson(r) << std::endl;
  } else {
    std::cout << (r.device.empty() ? r.file : r.device) << std::endl;
  }
}

bool WriteAll(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

std::string ReadAll(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

void DetachFromTerminal() {
  ::setsid();
  if (::chdir("/") != 0) {
  }
  const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null < 0) return;
  for (int fd = 0; fd <= 2; ++fd) ::dup2(null, fd);
  ::close(null);
}

// The forked attach process. Its Status ends up as its exit code (the error text already went
// through the pipe; stderr is /dev/null by then).
Status Child(volume::Volume& v, const AttachedImage& img, const AttachOptions& o, int ready_fd) {
  DetachFromTerminal();
  Status s = v.Start();  // threads: only in the process that serves
  if (s.ok()) {
    s = ServeAttached(img, o, [&ready_fd](const AttachReady& r) {
      WriteAll(ready_fd, "ok\n" + ReadyJson(r));
      ::close(std::exchange(ready_fd, -1));
    });
  }
  Status finished = v.Stop();
  if (s.ok()) s = finished;
  if (ready_fd >= 0) {
    WriteAll(ready_fd, "error\n" + s.message());
    ::close(ready_fd);
  }
  return s;
}

std::string DescribeExit(int status) {
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "status " + std::to_string(status);
}

Status Parent(const AttachArgs& a, pid_t child, int ready_fd) {
  const std::string msg = ReadAll(ready_fd);
  ::close(ready_fd);
  if (msg.rfind("ok\n", 0) == 0) {
    const auto j = nlohmann::json::parse(msg.substr(3), nullptr, false);
    if (a.json) {
      std::cout << msg.substr(3) << std::endl;
    } else if (j.is_object()) {
      const auto& dev = j["device"];
      std::cout << (dev.is_string() ? dev.get<std::string>() : j["file"].get<std::string>()) << std::endl;
    }
    return Status::OK();
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (msg.rfind("error\n", 0) == 0) return Status::IOError(msg.substr(6));
  return Status::IOError("the attach process ended before it was ready (" + DescribeExit(status) + ")");
}

Status RunAttach(const AttachArgs& a) {
  OVBD_ASSIGN_OR_RETURN(std::unique_ptr<volume::Volume> v, OpenVolume(a.image));
  // Paths become absolute now: the background process runs in "/".
  AttachedImage img{v->device(), v.get(), v->layer_names(), v->upper_data()};
  for (std::string& p : img.layers) {
    if (p.find("://") == std::string::npos) p = fuse::AbsolutePath(p);
  }
  if (!img.upper.empty()) img.upper = fuse::AbsolutePath(img.upper);
  AttachOptions o;
  if (!a.fuse_only.empty()) o.fuse_only = fuse::AbsolutePath(a.fuse_only);
  o.block_size = static_cast<uint32_t>(std::stoul(a.block_size));
  o.direct_io = !a.no_direct_io;
  if (a.foreground) {
    Status s = v->Start();
    if (s.ok()) s = ServeAttached(img, o, [&a](const AttachReady& r) { PrintReady(a, r); });
    Status finished = v->Stop();
    return s.ok() ? finished : s;
  }
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return Status::FromErrno(errno, "pipe");
  std::cout.flush();
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) return Status::FromErrno(errno, "fork");
  if (pid == 0) {
    ::close(fds[0]);
    return Child(*v, img, o, fds[1]);
  }
  ::close(fds[1]);
  return Parent(a, pid, fds[0]);
}

}  // namespace

void AddAttachCommand(CLI::App& parent, Commands* commands) {
  auto args = std::make_shared<AttachArgs>();
  CLI::App* cmd = parent.add_subcommand(
      "attach",
      "Attach an image as a kernel block device: the image is served as a single file in a FUSE "
      "mount, and that file is bound to a free loop device (/dev/loopN), whose path is printed. A "
      "background process keeps serving until 'ovbd detach'; writes go to the upper layer and are "
      "flushed on fsync and on detach. Needs root, /dev/fuse and a free loop device.");
  AddImageArgs(cmd, &args->image);
  cmd->add_option("--fuse-only", args->fuse_only,
                  "Mount the FUSE file at DIR (an existing directory) and print DIR/image; no loop device")
      ->type_name("DIR");
  cmd->add_option("--block-size", args->block_size,
                  "Logical block size of the loop device: 512 (default, right for partitioned disk images) "
                  "or 4096")
      ->check(CLI::IsMember({"512", "4096"}));
  cmd->add_flag("--no-direct-io", args->no_direct_io,
                "Let the loop device read the FUSE file through the page cache (default: direct I/O)");
  cmd->add_flag("--foreground", args->foreground,
                "Serve in this process until SIGINT/SIGTERM (then detach cleanly) instead of in the background");
  cmd->add_flag("--json", args->json, "Print {\"device\", \"file\", \"pid\", \"run_dir\", ...} as JSON");
  cmd->footer(
      "\nOnce the device is ready, prints its path (with --fuse-only: the file's path) and exits 0;\n"
      "a setup failure (image, FUSE mount, loop device) is reported with exit status 1.\n"
      "The serving process keeps its state in $OVBD_RUN_DIR (default /run/ovbd)/attach-XXXXXX/.\n"
      "\nExamples:\n"
      "  dev=$(ovbd attach base.zfile app.zfile --upper up.data up.index)\n"
      "  mount $dev /mnt/app && ... && umount /mnt/app && ovbd detach $dev\n"
      "  ovbd attach --read-only base.zfile layer1.zfile          # read-only /dev/loopN\n"
      "  ovbd attach --config /var/lib/overlaybd/dev1/config.v1.json --json\n"
      "  ovbd attach --fuse-only /tmp/img base.zfile && cmp /tmp/img/image disk.raw && ovbd detach /tmp/img\n"
      "  ovbd attach --foreground base.zfile --upper up.data up.index   # Ctrl-C detaches");
  commands->push_back({cmd, "attach", [args] { return RunAttach(*args); }});
}

void AddDetachCommand(CLI::App& parent, Commands* commands) {
  auto args = std::make_shared<DetachArgs>();
  CLI::App* cmd = parent.add_subcommand(
      "detach",
      "Detach a device made by 'ovbd attach': unbind the loop device, stop the serving process (it "
      "flushes the upper layer and unmounts its FUSE file) and wait for it. Fails, changing nothing, "
      "if the device is still mounted or held open exclusively. Exit 1 also if the final flush failed.");
  cmd->add_option("TARGET", args->target, "/dev/loopN, or the DIR (or DIR/image) given to --fuse-only")
      ->required();
  cmd->add_option("--timeout", args->timeout_s, "Seconds to wait for the process to end (0 = no limit)")
      ->capture_default_str();
  cmd->footer(
      "\nExamples:\n"
      "  umount /mnt/app && ovbd detach /dev/loop3\n"
      "  ovbd detach /tmp/img");
  commands->push_back({cmd, "detach", [args] { return RunDetach(args->target, args->timeout_s); }});
}

}  // namespace ovbd::cli
