// ovbd serve: an image as an NBD export on a Unix socket (or TCP when asked), with a control
// socket for status and flush.
//
//   main thread: open image ─> Server::Listen ─> ControlServer ─> [pid file] ─> print "ready"
//                ─> Server::Run
//   signal thread: sigwait(SIGINT/SIGTERM/SIGHUP) ─> Server::Shutdown (in-flight requests finish)
//   after Run: flush the upper layer, remove the pid file; exit 0 (1 if the final flush failed)
#include <cmath>
#include <csignal>
#include <chrono>
#include <fstream>
#include <iostream>
#include <pthread.h>
#include <thread>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "base/units.h"
#include "cli/command.h"
#include "cli/image_args.h"
#include "cli/options.h"
#include "export/control/control_server.h"
#include "export/nbd/server.h"
#include "ovbd/io.h"

namespace ovbd::cli {
namespace {

struct ServeArgs {
  ImageArgs image;
  std::string socket;
  std::string listen;  // HOST:PORT
  std::string control;
  std::string export_name;
  std::string description;
  std::string pid_file;
  unsigned threads = 0;
  double handshake_timeout_s = 10;
  size_t max_connections = nbd::ServerOptions{}.max_connections;
  size_t max_handshakes = nbd::ServerOptions{}.max_handshakes;
  bool json = false;
  bool quiet = false;
  std::string tls;  // off | on | require; "" = require when credentials are given, else off
  std::string tls_certificates;
  std::string tls_psk;
  bool tls_verify_peer = false;
};

std::string DefaultSocket() { return "/run/ovbd/serve-" + std::to_string(getpid()) + ".sock"; }

Result<std::pair<std::string, uint16_t>> ParseHostPort(const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon + 1 == text.size()) {
    return Status::InvalidArgument("--listen " + text + ": expected HOST:PORT");
  }
  std::string host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  char* end = nullptr;
  const unsigned long port = std::strtoul(text.c_str() + colon + 1, &end, 10);
  if (*end != '\0' || port > 65535) return Status::InvalidArgument("--listen " + text + ": bad port");
  return std::make_pair(host, static_cast<uint16_t>(port));
}

nlohmann::ordered_json TlsJson(const nbd::ServerOptions& options, const nbd::ServerStats& ss);

// docs/nbd.md, "Handshake limits", says what each counter means.
nlohmann::ordered_json ConnectionsJson(const nbd::ServerStats& ss) {
  return {{"open", ss.clients},
          {"negotiating", ss.negotiating},
          {"transmitting", ss.transmitting},
          {"total", ss.connections_total},
          {"refused", ss.refused},
          {"go_refused", ss.go_refused},
          {"handshake_timeouts", ss.handshake_timeouts},
          {"evicted", ss.evicted}};
}

// The volume's status (device, layers, io, cache, ...) with the server's beside it.
nlohmann::ordered_json StatusJson(const volume::Volume& v, const nbd::Server& server,
                                  const nbd::ServerOptions& options, std::chrono::steady_clock::time_point started) {
  nlohmann::ordered_json j = v.StatusJson();
  const nbd::ServerStats ss = server.Stats();
  j["clients"] = ss.clients;  // = connections.open, kept for older readers
  j["connections_total"] = ss.connections_total;
  // Requests the NBD edge check refused (never reached the device; not in io.errors) and served
  // requests off 512-byte boundaries (each a read-modify-write in the device).
  j["requests_refused"] = ss.requests_refused;
  j["unaligned_requests"] = ss.unaligned_requests;
  j["connections"] = ConnectionsJson(ss);
  j["tls"] = TlsJson(options, ss);
  j["uptime_s"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return j;
}

nlohmann::ordered_json TlsJson(const nbd::ServerOptions& options, const nbd::ServerStats& ss) {
  if (options.tls == nullptr) return {{"mode", "off"}};
  const nbd::TlsOptions& t = options.tls->options();
  return {{"mode", nbd::TlsModeName(t.mode)},
          {"credentials", t.psk_file.empty() ? "x509" : "psk"},
          {"verify_peer", t.verify_peer},
          {"sessions", ss.tls_sessions},
          {"handshake_failures", ss.tls_handshake_failures},
          {"last_failure", ss.tls_last_failure}};
}

// "status" adds the server's part; every other command is the volume's.
nlohmann::json HandleControl(const nlohmann::json& request, volume::Volume& v, const nbd::Server& server,
                             const nbd::ServerOptions& options, std::chrono::steady_clock::time_point started) {
  if (request["command"] == "status") return nlohmann::json(StatusJson(v, server, options, started));
  Result<nlohmann::json> reply = v.Control(request);
  if (!reply.ok()) return {{"ok", false}, {"error", reply.status().message()}};
  nlohmann::json j = std::move(reply).value();
  j["ok"] = true;
  return j;
}

// What `nbdinfo --list` and NBD_INFO_DESCRIPTION show when --description is not given: enough
// to tell two ovbd exports apart at a glance.
std::string DefaultDescription(const volume::Volume& v) {
  const size_t n = v.layer_names().size();
  std::string text = "ovbd: " + std::to_string(n) + (n == 1 ? " layer" : " layers");
  if (!v.upper_data().empty()) text += " + upper";
  text += " (" + FormatSize(v.device()->Size()) + "), ";
  text += v.writable() ? "read-write" : "read-only";
  return text;
}

sigset_t StopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  return set;
}

// Waits for a stop signal (blocked in every thread since the start of RunServe) in a helper
// thread that shuts the server down.
std::thread StartSignalThread(nbd::Server* server) {
  const sigset_t set = StopSignals();
  return std::thread([server, set] {
    int sig = 0;
    sigwait(&set, &sig);
    if (sig != 0) server->Shutdown();
  });
}

// The ready line is how a script learns that the export accepts clients, so -q (which silences
// progress elsewhere) does not hide it.
void PrintReady(const ServeArgs& a, const std::string& uri, const std::string& control, const volume::Volume& v) {
  if (a.json) {
    nlohmann::ordered_json j = {{"uri", uri}, {"control", control}, {"size", v.device()->Size()},
                                {"writable", v.writable()}, {"pid", getpid()}};
    std::cout << j.dump() << std::endl;
  } else {
    std::cout << "serving " << uri << " (" << v.device()->Size() << " bytes, "
              << (v.writable() ? "read-write" : "read-only") << "), control " << control
              << std::endl;
  }
}

// --pid-file: written whole (temporary file, rename) once the server listens, so a script that
// sees the file may connect; removed when serve exits, after the final flush, unless another
// process has replaced it meanwhile.
class PidFile {
 public:
  static Result<std::unique_ptr<PidFile>> Write(const std::string& path) {
    const std::string text = std::to_string(getpid()) + "\n";
    AtomicFileOptions options;
    options.sync = false;  // a pid outlives no crash
    OVBD_RETURN_IF_ERROR(WriteFileAtomically(
        path, std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()), options)
                             .WithContext("--pid-file " + path));
    return std::unique_ptr<PidFile>(new PidFile(path));
  }
  ~PidFile() {
    std::ifstream in(path_);
    long pid = 0;
    if (in >> pid && pid == getpid()) ::unlink(path_.c_str());
  }
  PidFile(const PidFile&) = delete;
  PidFile& operator=(const PidFile&) = delete;

 private:
  explicit PidFile(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// The TLS mode and credentials of the options, loaded (null when TLS is off). Without --tls,
// credentials mean require: a server given keys is not meant to serve in the clear as well.
Result<std::shared_ptr<const nbd::TlsContext>> LoadTls(const ServeArgs& a) {
  nbd::TlsOptions t;
  const bool credentials = !a.tls_certificates.empty() || !a.tls_psk.empty();
  if (a.tls.empty()) {
    t.mode = credentials ? nbd::TlsMode::kRequire : nbd::TlsMode::kOff;
  } else {
    OVBD_ASSIGN_OR_RETURN(t.mode, nbd::ParseTlsMode(a.tls));
  }
  if (t.mode == nbd::TlsMode::kOff) {
    if (credentials || a.tls_verify_peer) {
      return Status::InvalidArgument("--tls off contradicts --tls-certificates/--tls-psk/--tls-verify-peer");
    }
    return std::shared_ptr<const nbd::TlsContext>();
  }
  if (!credentials) {
    return Status::InvalidArgument(std::string("--tls ") + a.tls + " needs --tls-certificates DIR or --tls-psk FILE");
  }
  t.certificates_dir = a.tls_certificates;
  t.psk_file = a.tls_psk;
  t.verify_peer = a.tls_verify_peer;
  OVBD_ASSIGN_OR_RETURN(auto context, nbd::TlsContext::Load(t));
  return std::shared_ptr<const nbd::TlsContext>(std::move(context));
}

Status Listen(const ServeArgs& a, nbd::Server* server, bool tls_required, std::string* uri) {
  const std::string scheme = tls_required ? "nbds" : "nbd";
  if (!a.listen.empty()) {
    OVBD_ASSIGN_OR_RETURN(auto hp, ParseHostPort(a.listen));
    OVBD_RETURN_IF_ERROR(server->ListenTcp(hp.first, hp.second));
    const bool v6 = hp.first.find(':') != std::string::npos;
    *uri = scheme + "://" + (v6 ? "[" + hp.first + "]" : hp.first) + ":" + std::to_string(server->tcp_port()) +
           "/" + a.export_name;
  }
  if (!a.socket.empty() || a.listen.empty()) {
    const std::string path = a.socket.empty() ? DefaultSocket() : a.socket;
    if (a.socket.empty()) ::mkdir("/run/ovbd", 0700);
    OVBD_RETURN_IF_ERROR(server->ListenUnix(path));
    *uri = scheme + "+unix:///" + a.export_name + "?socket=" + path;
  }
  return Status::OK();
}

std::string ControlPath(const ServeArgs& a) {
  if (!a.control.empty()) return a.control;
  if (!a.socket.empty()) return a.socket + ".ctl";
  if (!a.listen.empty()) return "/run/ovbd/serve-" + std::to_string(getpid()) + ".ctl";
  return DefaultSocket() + ".ctl";
}

// Every connection holds a descriptor: let the caps, not the soft limit (often 1024), decide how
// many clients there are. Failing to raise it is not fatal; accept() then backs off on EMFILE.
void RaiseFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= limit.rlim_max) return;
  limit.rlim_cur = limit.rlim_max;
  (void)setrlimit(RLIMIT_NOFILE, &limit);
}

nbd::ServerOptions ToServerOptions(const ServeArgs& a) {
  nbd::ServerOptions options;
  options.export_name = a.export_name;
  options.description = a.description;
  options.workers = a.threads;
  options.max_connections = a.max_connections;
  options.max_handshakes = a.max_handshakes;
  options.handshake_timeout = std::chrono::milliseconds(std::llround(a.handshake_timeout_s * 1000));
  return options;
}

Status RunServe(const ServeArgs& a) {
  // Before any thread exists (image readers, server, control socket), so every thread inherits
  // the mask and a stop signal can only be taken by sigwait.
  const sigset_t stop = StopSignals();
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  OVBD_ASSIGN_OR_RETURN(auto tls, LoadTls(a));  // before the image: a wrong key path costs nothing
  RaiseFileLimit();
  OVBD_ASSIGN_OR_RETURN(std::unique_ptr<volume::Volume> v, OpenVolume(a.image));
  nbd::ServerOptions options = ToServerOptions(a);
  options.tls = std::move(tls);
  if (a.description.empty()) options.description = DefaultDescription(*v);
  if (!a.listen.empty() && options.tls == nullptr) {
    std::cerr << "ovbd serve: warning: --listen " << a.listen
              << " without TLS: whoever reaches it can read" << (v->writable() ? " and write" : "")
              << " the image; see --tls-certificates / --tls-psk" << std::endl;
  }
  OVBD_ASSIGN_OR_RETURN(auto server, nbd::Server::Create(v->device(), options));
  std::string uri;
  const bool tls_required = options.tls != nullptr && options.tls->mode() == nbd::TlsMode::kRequire;
  OVBD_RETURN_IF_ERROR(Listen(a, server.get(), tls_required, &uri));
  const auto started = std::chrono::steady_clock::now();
  const std::string control_path = ControlPath(a);
  if (!a.listen.empty() && a.control.empty()) ::mkdir("/run/ovbd", 0700);
  OVBD_ASSIGN_OR_RETURN(auto control, control::ControlServer::Start(control_path, [&](const nlohmann::json& r) {
                          return HandleControl(r, *v, *server, options, started);
                        }));
  std::unique_ptr<PidFile> pid_file;
  if (!a.pid_file.empty()) {
    OVBD_ASSIGN_OR_RETURN(pid_file, PidFile::Write(a.pid_file));
  }
  std::thread signals = StartSignalThread(server.get());
  PrintReady(a, uri, control_path, *v);
  OVBD_RETURN_IF_ERROR(v->Start());
  Status run = server->Run();
  pthread_kill(signals.native_handle(), SIGTERM);  // wake sigwait if the server stopped on its own
  signals.join();
  v->CancelJob();  // a merge waited for by a control client ends first
  control.reset();
  Status flushed = v->Flush();
  Status finished = v->Stop();
  OVBD_RETURN_IF_ERROR(run);
  OVBD_RETURN_IF_ERROR(flushed.WithContext("final flush of the writable layer"));
  return finished;
}

}  // namespace

void AddServeCommand(CLI::App& parent, Commands* commands) {
  auto args = std::make_shared<ServeArgs>();
  CLI::App* cmd = parent.add_subcommand(
      "serve",
      "Serve an image as a Network Block Device (NBD) export until SIGINT/SIGTERM: read-only layers "
      "bottom first plus an optional writable upper layer, or an overlaybd config.v1.json. Any NBD "
      "client works: qemu-img/qemu-io, nbdinfo/nbdcopy/nbdsh (libnbd), fio's nbd engine, the kernel's "
      "nbd-client. Stopping finishes in-flight requests and flushes the writable layer.");
  AddImageArgs(cmd, &args->image);
  auto* sock = cmd->add_option("--socket", args->socket,
                               "Unix socket to listen on (default: /run/ovbd/serve-PID.sock)");
  cmd->add_option("--listen", args->listen,
                  "Listen on TCP HOST:PORT instead (port 0 = any). Without TLS anyone who reaches it has the "
                  "image: a warning says so")
      ->excludes(sock);
  cmd->add_option("--tls", args->tls,
                  "TLS (NBD_OPT_STARTTLS): off, on (offered, plaintext allowed) or require (nothing about the "
                  "export before TLS). Default: require when credentials are given, else off")
      ->check(CLI::IsMember({"off", "on", "require"}));
  auto* certs = cmd->add_option("--tls-certificates", args->tls_certificates,
                                "X.509 directory as nbdkit and qemu lay it out: server-cert.pem, server-key.pem, "
                                "ca-cert.pem (to verify clients), optional ca-crl.pem");
  cmd->add_option("--tls-psk", args->tls_psk, "Pre-shared keys file, USERNAME:HEXKEY lines (psktool -u NAME -p FILE)")
      ->excludes(certs);
  cmd->add_flag("--tls-verify-peer", args->tls_verify_peer,
                "Require a client certificate signed by ca-cert.pem (X.509 only)")
      ->needs(certs);
  cmd->add_option("--control", args->control,
                  "Control socket (JSON lines: status, flush; default: SOCKET.ctl); see 'ovbd ctl'");
  cmd->add_option("--export-name", args->export_name, "Export name (the default export \"\" always works)");
  cmd->add_option("--description", args->description,
                  "Export description shown to clients (nbdinfo --list; default: 'ovbd: N layers (SIZE), "
                  "read-write' or 'read-only')");
  cmd->add_option("--threads", args->threads, "Request-serving threads (default: one per core, at least 2)")
      ->check(CLI::Range(0u, 256u));
  cmd->add_option("--handshake-timeout", args->handshake_timeout_s,
                  "Seconds a client may take from connecting to entering transmission (NBD_OPT_GO), in "
                  "total: a client that is silent or sends a byte at a time is closed then. 0 = no limit; "
                  "fractions allowed")
      ->check(CLI::Range(0.0, 86400.0))
      ->capture_default_str();
  cmd->add_option("--max-connections", args->max_connections,
                  "Clients in transmission at once; while that many are, new connections are closed at "
                  "once and NBD_OPT_GO is refused (NBD_REP_ERR_POLICY)")
      ->check(CLI::Range(size_t{1}, size_t{100000}))
      ->capture_default_str();
  cmd->add_option("--max-handshakes", args->max_handshakes,
                  "Connections still negotiating, counted apart from --max-connections; when full, a new "
                  "connection evicts the oldest negotiating one, so idle sockets cannot lock clients out")
      ->check(CLI::Range(size_t{1}, size_t{100000}))
      ->capture_default_str();
  cmd->add_flag("--json", args->json, "Print the ready line as JSON {uri, control, size, writable, pid}");
  cmd->add_option("--pid-file", args->pid_file,
                  "Write the process id to FILE once the export and the control socket accept "
                  "connections; FILE is removed at exit, after the final flush");
  cmd->add_flag("-q,--quiet", args->quiet,
                "Accepted as by the other commands; serve shows no progress, and still prints the ready line");
  cmd->footer(
      "\nReady: once the export and the control socket accept connections, serve prints one line on\n"
      "standard output, with or without -q: 'serving URI (SIZE bytes, MODE), control PATH', or with\n"
      "--json one JSON object {uri, control, size, writable, pid}. A script waits for that line\n"
      "(read it from a pipe, or poll the redirected output), or gives --pid-file FILE and waits for\n"
      "FILE to appear. Warnings and errors go to standard error.\n"
      "Each connection is a thread and a file descriptor; serve raises its soft RLIMIT_NOFILE to the hard\n"
      "limit at start. 'ovbd ctl SOCKET.ctl status' counts connections: open, negotiating, refused,\n"
      "handshake_timeouts, evicted.\n"
      "\nExamples:\n"
      "  ovbd serve --socket /tmp/img.sock base.zfile app.zfile.tar\n"
      "  ovbd serve -q --socket /tmp/img.sock --pid-file /tmp/img.pid base.zfile > /dev/null &\n"
      "  until [ -s /tmp/img.pid ]; do kill -0 $! || exit 1; sleep 0.1; done    # ready\n"
      "  nbdinfo 'nbd+unix:///?socket=/tmp/img.sock'\n"
      "  ovbd serve --socket /tmp/rw.sock base.zfile --upper up.data up.index\n"
      "  qemu-io -f raw 'nbd+unix:///?socket=/tmp/rw.sock' -c 'write -P 0xab 0 1M'\n"
      "  ovbd serve --config /var/lib/overlaybd/dev1/config.v1.json --listen 127.0.0.1:10809\n"
      "  ovbd serve --listen 0.0.0.0:10809 --tls-certificates /etc/pki/ovbd base.zfile   # TLS required\n"
      "  nbdinfo 'nbds://host:10809/?tls-certificates=/etc/pki/ovbd-client'\n"
      "  ovbd serve --socket /tmp/img.sock --tls-psk keys.psk base.zfile\n"
      "  nbdinfo 'nbds+unix://alice@/?socket=/tmp/img.sock&tls-psk-file=keys.psk'   # user alice\n"
      "  ovbd serve --config app.json --cache-dir /var/cache/ovbd --record-trace app.trace   # registry lowers\n"
              "  ovbd serve --socket /tmp/b.sock oci+http://127.0.0.1:5000/lib/app@sha256:<hex>\n"
              "  ovbd ctl /tmp/img.sock.ctl status");
  commands->push_back({cmd, "serve", [args] { return RunServe(*args); }});
}

}  // namespace ovbd::cli
