// Control socket: a poll-based accept thread and a thread per client, all stopped through a
// self-pipe when the server is destroyed.
#include "export/control/control_server.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <list>
#include <mutex>
#include <thread>

namespace ovbd::control {
namespace {

Status Errno(const std::string& what) { return Status::FromErrno(errno, what); }

Result<sockaddr_un> UnixAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return Status::InvalidArgument(path + ": a Unix socket path must have 1.." +
                                   std::to_string(sizeof(addr.sun_path) - 1) + " bytes");
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

// Writes all of `text`; false if the peer went away.
bool SendAll(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = send(fd, text.data() + done, text.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

nlohmann::json Answer(const Handler& handler, const std::string& line) {
  nlohmann::json request = nlohmann::json::parse(line, nullptr, false);
  if (request.is_discarded() || !request.is_object()) {
    return {{"ok", false}, {"error", "a request is one JSON object per line"}};
  }
  if (!request.contains("command") || !request["command"].is_string()) {
    return {{"ok", false}, {"error", "the request needs a string \"command\""}};
  }
  nlohmann::json reply = handler(request);
  if (!reply.is_object()) reply = {{"result", reply}};
  if (!reply.contains("ok")) reply["ok"] = true;
  return reply;
}

class Server final : public ControlServer {
 public:
  Server(std::string path, Handler handler, int listen_fd, int wake[2])
      : path_(std::move(path)), handler_(std::move(handler)), listen_fd_(listen_fd), wake_{wake[0], wake[1]} {
    accept_thread_ = std::thread([this] { AcceptLoop(); });
  }
  ~Server() override {
    stopping_ = true;
    char c = 1;
    (void)!write(wake_[1], &c, 1);
    accept_thread_.join();
    for (auto& t : clients_) t.join();
    close(listen_fd_);
    close(wake_[0]);
    close(wake_[1]);
    unlink(path_.c_str());
  }
  const std::string& path() const override { return path_; }

 private:
  // Waits for `fd` to be readable; false when the server is stopping.
  bool WaitReadable(int fd) {
    pollfd fds[2] = {{fd, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    while (!stopping_) {
      int n = poll(fds, 2, -1);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 || (fds[1].revents & POLLIN)) return false;
      if (fds[0].revents) return true;
    }
    return false;
  }
  void AcceptLoop() {
    while (WaitReadable(listen_fd_)) {
      int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      if (active_.load() >= kMaxClients) {
        SendAll(fd, R"({"ok":false,"error":"too many control clients"})" "\n");
        close(fd);
        continue;
      }
      active_++;
      clients_.emplace_back([this, fd] { ServeClient(fd); });
    }
  }
  void ServeClient(int fd) {
    std::string buffer;
    char chunk[4096];
    while (WaitReadable(fd)) {
      ssize_t n = read(fd, chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      buffer.append(chunk, static_cast<size_t>(n));
      if (!AnswerLines(fd, &buffer)) break;
    }
    close(fd);
    active_--;
  }
  // Answers every complete line in *buffer; false to close the connection.
  bool AnswerLines(int fd, std::string* buffer) {
    size_t newline;
    while ((newline = buffer->find('\n')) != std::string::npos) {
      std::string line = buffer->substr(0, newline);
      buffer->erase(0, newline + 1);
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      if (!SendAll(fd, Answer(handler_, line).dump() + "\n")) return false;
    }
    if (buffer->size() <= kMaxLine) return true;
    SendAll(fd, R"({"ok":false,"error":"request line too long"})" "\n");
    return false;
  }

  const std::string path_;
  const Handler handler_;
  const int listen_fd_;
  const int wake_[2];
  std::atomic<bool> stopping_{false};
  std::atomic<size_t> active_{0};
  std::thread accept_thread_;
  std::list<std::thread> clients_;  // touched by the accept thread only, joined at destruction
};

}  // namespace

Result<std::unique_ptr<ControlServer>> ControlServer::Start(const std::string& path, Handler handler) {
  OVBD_ASSIGN_OR_RETURN(sockaddr_un addr, UnixAddress(path));
  struct stat st{};
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return Status::AlreadyExists(path + ": exists and is not a socket");
    unlink(path.c_str());
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Errno(path + ": socket");
  const mode_t old_mask = umask(0077);
  const int bound = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  umask(old_mask);
  if (bound < 0 || listen(fd, 16) < 0) {
    Status s = Errno(path + ": bind/listen");
    close(fd);
    return s;
  }
  int wake[2];
  if (pipe2(wake, O_CLOEXEC) < 0) {
    Status s = Errno("pipe");
    close(fd);
    return s;
  }
  return std::unique_ptr<ControlServer>(new Server(path, std::move(handler), fd, wake));
}

Result<nlohmann::json> Call(const std::string& path, const nlohmann::json& request) {
  OVBD_ASSIGN_OR_RETURN(sockaddr_un addr, UnixAddress(path));
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Errno(path + ": socket");
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
    Status s = Errno(path + ": connect");
    close(fd);
    return s;
  }
  std::string reply;
  bool sent = SendAll(fd, request.dump() + "\n");
  char chunk[4096];
  while (sent && reply.find('\n') == std::string::npos && reply.size() <= kMaxLine) {
    ssize_t n = read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    reply.append(chunk, static_cast<size_t>(n));
  }
  close(fd);
  auto newline = reply.find('\n');
  if (newline == std::string::npos) return Status::IOError(path + ": no reply from the control socket");
  nlohmann::json parsed = nlohmann::json::parse(reply.substr(0, newline), nullptr, false);
  if (parsed.is_discarded()) return Status::Corruption(path + ": the reply is not JSON");
  return parsed;
}

}  // namespace ovbd::control
