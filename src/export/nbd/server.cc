// NBD server: listeners, the accept loop, connection threads, the worker pool, shutdown.
#include "export/nbd/server.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <list>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#include "export/nbd/connection.h"
#include "export/nbd/handshake.h"
#include "export/nbd/protocol.h"
#include "export/nbd/socket_stream.h"
#include "export/nbd/worker_pool.h"

namespace ovbd::nbd {
namespace {

// Payloads above this are not accepted even if the device allows them: one request's buffer.
constexpr uint32_t kMaxPayloadCeiling = 64u << 20;

struct Listener {
  int fd = -1;
  std::string unix_path;  // removed when the server stops
};

// One accepted connection. Its fields are guarded by Impl::mu, except that the connection's own
// thread uses *stream without the lock until it ends (the stream object stays put until then).
struct ConnectionSlot {
  std::thread thread;
  std::unique_ptr<SocketStream> stream;  // reset (socket closed) when the thread ends
  bool transmitting = false;             // admitted at GO; else still negotiating
  bool evicted = false;                  // shut down to make room for a newer handshake
  bool done = false;                     // the thread has ended: the acceptor joins it
};

Result<ExportInfo> MakeExportInfo(const BlockDevice& device, const ServerOptions& options) {
  const BlockDeviceCaps caps = device.Capabilities();
  ExportInfo info;
  info.name = options.export_name;
  info.description = options.description;
  info.size = device.Size();
  info.flags = TransmissionFlags(caps, options.read_only);
  // Minimum 1: every BlockDevice accepts any alignment (read-modify-write at unaligned edges), and
  // a larger minimum makes clients that honour it (libnbd, nbdfuse) refuse or split unaligned
  // requests themselves. The preferred size is what keeps well-behaved clients aligned.
  info.min_block = 1;
  info.preferred_block = caps.preferred_block;
  info.max_payload = std::min(caps.max_request, kMaxPayloadCeiling);
  OVBD_RETURN_IF_ERROR(CheckBlockSizes(info.min_block, info.preferred_block, info.max_payload)
                           .WithContext(device.Name()));
  if (info.name.size() > kMaxNameLength || info.description.size() > kMaxNameLength) {
    return Status::InvalidArgument("nbd: export name or description longer than 4096 bytes");
  }
  return info;
}

// A socket file nobody listens on (a server that died) may be replaced; a live one may not.
Status RemoveStaleSocket(const std::string& path, const sockaddr_un& addr) {
  struct stat st{};
  if (lstat(path.c_str(), &st) != 0) return Status::OK();
  if (!S_ISSOCK(st.st_mode)) return Status::AlreadyExists("nbd: " + path + " exists and is not a socket");
  const int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe < 0) return Status::FromErrno(errno, "nbd: socket");
  const bool live = connect(probe, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0;
  close(probe);
  if (live) return Status::AlreadyExists("nbd: a server is already listening on " + path);
  if (unlink(path.c_str()) != 0) return Status::FromErrno(errno, "nbd: remove stale socket " + path);
  return Status::OK();
}

// "10 s", "0.5 s": the timeout as a user gave it.
std::string Seconds(std::chrono::milliseconds ms) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g s", static_cast<double>(ms.count()) / 1000.0);
  return text;
}

Status CheckLimits(const ServerOptions& options) {
  if (options.max_connections == 0 || options.max_handshakes == 0) {
    return Status::InvalidArgument("nbd: max_connections and max_handshakes must be at least 1");
  }
  if (options.handshake_timeout.count() < 0) return Status::InvalidArgument("nbd: negative handshake timeout");
  return Status::OK();
}

Status ListenOn(int fd, const sockaddr* addr, socklen_t len, const std::string& what) {
  if (bind(fd, addr, len) != 0) return Status::FromErrno(errno, "nbd: bind " + what);
  return Status::OK();
}

}  // namespace

struct Server::Impl {
  std::shared_ptr<BlockDevice> device;
  ServerOptions options;
  ExportInfo info;
  int wake_fd = -1;
  int reap_fd = -1;  // eventfd: a connection thread ended, the acceptor should join it
  std::atomic<bool> stopping{false};
  std::atomic<bool> ran{false};
  std::vector<Listener> listeners;
  std::atomic<uint16_t> tcp_port{0};
  EdgeCounters edge;            // updated by the connections without the lock
  std::string timeout_message;  // the handshake deadline's error

  mutable std::mutex mu;
  std::condition_variable cv;  // a connection finished
  std::list<ConnectionSlot> connections;  // in accept order: the oldest handshake comes first
  ServerStats stats;                      // guarded by mu

  ~Impl();
  Status AddListener(int fd, std::string unix_path);
  void AcceptLoop(WorkerPool& pool);
  void AcceptFrom(int listen_fd, WorkerPool& pool);
  void Backoff();
  void StartConnection(int fd, WorkerPool& pool);
  bool SpawnLocked(std::unique_ptr<SocketStream> stream, WorkerPool& pool);
  void EvictOldestHandshakeLocked();
  void ServeConnection(WorkerPool& pool, ConnectionSlot* slot);
  TlsNegotiation MakeTls(SocketStream& socket, std::unique_ptr<ByteStream>* tls_stream);
  bool Admit(ConnectionSlot* slot);
  void FinishConnection(ConnectionSlot* slot);
  void ReapFinished();
  void JoinAll();
  void CloseListeners();
};

Server::Impl::~Impl() {
  CloseListeners();
  if (wake_fd >= 0) close(wake_fd);
  if (reap_fd >= 0) close(reap_fd);
}

Status Server::Impl::AddListener(int fd, std::string unix_path) {
  if (listen(fd, SOMAXCONN) != 0) {
    const int err = errno;
    close(fd);
    return Status::FromErrno(err, "nbd: listen");
  }
  listeners.push_back(Listener{fd, std::move(unix_path)});
  return Status::OK();
}

void Server::Impl::CloseListeners() {
  for (auto& l : listeners) {
    close(l.fd);
    if (!l.unix_path.empty()) unlink(l.unix_path.c_str());
  }
  listeners.clear();
}

// Ended connections are joined as soon as they end (reap_fd), not at the next accept: after a
// burst of handshakes timed out, nothing else may arrive for a long time.
void Server::Impl::AcceptLoop(WorkerPool& pool) {
  std::vector<pollfd> fds;
  for (const auto& l : listeners) fds.push_back({l.fd, POLLIN, 0});
  const size_t listener_count = fds.size();
  fds.push_back({reap_fd, POLLIN, 0});
  fds.push_back({wake_fd, POLLIN, 0});
  while (!stopping.load(std::memory_order_acquire)) {
    if (poll(fds.data(), fds.size(), -1) < 0) {
      if (errno != EINTR) Backoff();  // keep serving: connections end only through Shutdown()
      continue;
    }
    if (fds.back().revents & POLLIN) break;
    for (size_t i = 0; i < listener_count; i++) {
      if (fds[i].revents & POLLIN) AcceptFrom(fds[i].fd, pool);
    }
    uint64_t ended = 0;
    if (fds[listener_count].revents & POLLIN) (void)!read(reap_fd, &ended, sizeof(ended));
    ReapFinished();
  }
}

// Waits up to 100 ms, or until Shutdown(): used when the accept loop cannot make progress.
void Server::Impl::Backoff() {
  pollfd wake{wake_fd, POLLIN, 0};
  (void)poll(&wake, 1, 100);
}

void Server::Impl::AcceptFrom(int listen_fd, WorkerPool& pool) {
  const int fd = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (fd < 0) {
    // Out of descriptors or memory: back off briefly (waking for shutdown) instead of spinning.
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) Backoff();
    return;
  }
  const int one = 1;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));  // fails harmlessly on Unix sockets
  StartConnection(fd, pool);
}

// Transmission full: closed at once, before any byte is sent (a client in the handshake could not
// be admitted anyway). Handshakes full: the newcomer is served and the oldest handshake goes.
void Server::Impl::StartConnection(int fd, WorkerPool& pool) {
  auto stream = std::make_unique<SocketStream>(fd, wake_fd);
  if (options.handshake_timeout.count() > 0) {
    stream->SetDeadline(SocketStream::Clock::now() + options.handshake_timeout, timeout_message);
  }
  std::lock_guard lock(mu);
  if (stats.transmitting >= options.max_connections || !SpawnLocked(std::move(stream), pool)) {
    stats.refused++;
    return;  // the stream, if still here, closes the socket
  }
  stats.connections_total++;
  stats.clients++;
  if (++stats.negotiating > options.max_handshakes) EvictOldestHandshakeLocked();
}

bool Server::Impl::SpawnLocked(std::unique_ptr<SocketStream> stream, WorkerPool& pool) {
  ConnectionSlot& slot = connections.emplace_back();
  slot.stream = std::move(stream);
  try {
    slot.thread = std::thread([this, &pool, s = &slot] { ServeConnection(pool, s); });
  } catch (const std::system_error&) {  // no thread to be had: refuse this client, keep serving
    connections.pop_back();
    return false;
  }
  return true;
}

// The newcomer is last in the list, so the first negotiating slot is never it. Shutting the socket
// down makes the connection's blocked read (or write) fail; its thread then ends as usual.
void Server::Impl::EvictOldestHandshakeLocked() {
  for (ConnectionSlot& slot : connections) {
    if (slot.transmitting || slot.evicted || slot.done) continue;
    slot.evicted = true;
    slot.stream->Shutdown();
    stats.negotiating--;
    stats.evicted++;
    return;
  }
}

// How this connection may upgrade to TLS; the TLS stream lands in *tls_stream (it must outlive
// the Connection and die before the socket: it sends close_notify through it). The TLS handshake
// runs on the socket's reads and writes, so the handshake deadline bounds it too.
TlsNegotiation Server::Impl::MakeTls(SocketStream& socket, std::unique_ptr<ByteStream>* tls_stream) {
  TlsNegotiation tls;
  if (options.tls == nullptr) return tls;
  tls.mode = options.tls->mode();
  tls.start = [this, &socket, tls_stream]() -> Result<ByteStream*> {
    auto stream = options.tls->Handshake(socket);
    std::lock_guard lock(mu);
    if (!stream.ok()) {
      stats.tls_handshake_failures++;
      stats.tls_last_failure = stream.status().message();
      return stream.status();
    }
    stats.tls_sessions++;
    *tls_stream = std::move(*stream);
    return tls_stream->get();
  };
  return tls;
}

void Server::Impl::ServeConnection(WorkerPool& pool, ConnectionSlot* slot) {
  {
    SocketStream& socket = *slot->stream;
    std::unique_ptr<ByteStream> tls_stream;
    // The size as of this connection: an online resize (docs/lifecycle.md) shows to connections
    // made after it (NBD has no message to tell a connected client).
    ExportInfo current = info;
    current.size = device->Size();
    Connection connection(socket, *device, current, pool, &stopping, ConnectionLimits{}, MakeTls(socket, &tls_stream),
                          &edge);
    // Every way a connection ends is normal for the server.
    (void)connection.Serve([this, slot] { return Admit(slot); });
  }  // the connection ends, then TLS (close_notify); the socket closes in FinishConnection
  FinishConnection(slot);
}

// On the connection's thread, at GO or EXPORT_NAME: moves it from the negotiating count to the
// transmission count if there is room, and ends its handshake deadline.
bool Server::Impl::Admit(ConnectionSlot* slot) {
  std::lock_guard lock(mu);
  if (slot->evicted) return false;  // its socket is shut down: the reply would not arrive
  if (stats.transmitting >= options.max_connections) {
    stats.go_refused++;
    return false;
  }
  slot->transmitting = true;
  stats.negotiating--;
  stats.transmitting++;
  slot->stream->ClearDeadline();
  return true;
}

void Server::Impl::FinishConnection(ConnectionSlot* slot) {
  std::lock_guard lock(mu);
  if (slot->transmitting) {
    stats.transmitting--;
  } else if (!slot->evicted) {
    stats.negotiating--;
    if (slot->stream->deadline_passed()) stats.handshake_timeouts++;
  }
  slot->stream.reset();  // the socket closes here
  stats.clients--;
  slot->done = true;
  cv.notify_all();
  const uint64_t one = 1;
  (void)!write(reap_fd, &one, sizeof(one));
}

void Server::Impl::ReapFinished() {
  std::lock_guard lock(mu);
  for (auto it = connections.begin(); it != connections.end();) {
    if (!it->done) {
      ++it;
      continue;
    }
    it->thread.join();
    it = connections.erase(it);
  }
}

void Server::Impl::JoinAll() {
  std::unique_lock lock(mu);
  cv.wait(lock, [this] {
    return std::all_of(connections.begin(), connections.end(), [](const auto& c) { return c.done; });
  });
  lock.unlock();
  ReapFinished();
}

// ---- Server -----------------------------------------------------------------------------------

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Server::~Server() = default;

Result<std::unique_ptr<Server>> Server::Create(std::shared_ptr<BlockDevice> device, ServerOptions options) {
  if (device == nullptr) return Status::InvalidArgument("nbd: no device");
  auto impl = std::make_unique<Impl>();
  OVBD_ASSIGN_OR_RETURN(impl->info, MakeExportInfo(*device, options));
  OVBD_RETURN_IF_ERROR(CheckLimits(options));
  impl->timeout_message = "nbd: handshake not finished within " + Seconds(options.handshake_timeout);
  impl->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (impl->wake_fd < 0) return Status::FromErrno(errno, "nbd: eventfd");
  impl->reap_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (impl->reap_fd < 0) return Status::FromErrno(errno, "nbd: eventfd");
  impl->device = std::move(device);
  impl->options = std::move(options);
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Status Server::ListenUnix(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return Status::InvalidArgument("nbd: unix socket path is empty or too long: " + path);
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  OVBD_RETURN_IF_ERROR(RemoveStaleSocket(path, addr));
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::FromErrno(errno, "nbd: socket");
  Status status = ListenOn(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr), path);
  // No client can connect before listen(): setting the mode in between leaves no window.
  if (status.ok() && chmod(path.c_str(), 0600) != 0) status = Status::FromErrno(errno, "nbd: chmod " + path);
  if (!status.ok()) {
    close(fd);
    return status;
  }
  return impl_->AddListener(fd, path);
}

Status Server::ListenTcp(const std::string& host, uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  const int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &found);
  if (rc != 0) return Status::InvalidArgument("nbd: resolve " + host + ": " + gai_strerror(rc));
  Status status = Status::IOError("nbd: no address for " + host);
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    const int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    status = ListenOn(fd, a->ai_addr, a->ai_addrlen, host + ":" + service);
    sockaddr_storage bound{};
    socklen_t len = sizeof(bound);
    if (status.ok() && getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len) != 0) {
      status = Status::FromErrno(errno, "nbd: getsockname");
    }
    if (status.ok()) {
      const auto* sin = reinterpret_cast<const sockaddr_in*>(&bound);  // port sits alike in v4 and v6
      impl_->tcp_port = ntohs(sin->sin_port);
      status = impl_->AddListener(fd, "");
      break;
    }
    close(fd);
  }
  freeaddrinfo(found);
  return status;
}

uint16_t Server::tcp_port() const { return impl_->tcp_port.load(); }

Status Server::Run() {
  if (impl_->listeners.empty()) return Status::InvalidArgument("nbd: Run() without a listener");
  if (impl_->ran.exchange(true)) return Status::InvalidArgument("nbd: Run() called twice");
  {
    const unsigned hw = std::thread::hardware_concurrency();
    WorkerPool pool(impl_->options.workers != 0 ? impl_->options.workers : std::max(2u, hw));
    impl_->AcceptLoop(pool);
    impl_->CloseListeners();
    impl_->JoinAll();
  }  // the pool drains and joins here
  return Status::OK();
}

void Server::Shutdown() {
  impl_->stopping.store(true, std::memory_order_release);
  const uint64_t one = 1;
  (void)!write(impl_->wake_fd, &one, sizeof(one));
}

ServerStats Server::Stats() const {
  std::unique_lock lock(impl_->mu);
  ServerStats stats = impl_->stats;
  lock.unlock();
  stats.requests_refused = impl_->edge.requests_refused.load();
  stats.unaligned_requests = impl_->edge.unaligned_requests.load();
  return stats;
}

}  // namespace ovbd::nbd
