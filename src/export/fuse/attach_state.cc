// Runtime directory and state files of `ovbd attach` (see attach_state.h).
#include "export/fuse/attach_state.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "ovbd/io.h"

namespace ovbd::fuse {
namespace {

constexpr size_t kMaxStateBytes = 64 * 1024;  // a state file is a few hundred bytes

Result<std::string> ReadCapped(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound(path + ": cannot read");
  std::string text(kMaxStateBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > kMaxStateBytes) return Status::Corruption(path + ": larger than 64 KiB");
  return text;
}

// Not synced: the state describes a running attach, which does not outlive a reboot.
Status WriteAtomically(const std::string& path, const std::string& text) {
  AtomicFileOptions options;
  options.sync = false;
  return WriteFileAtomically(path, {reinterpret_cast<const uint8_t*>(text.data()), text.size()}, options);
}

Result<nlohmann::json> ParseJsonFile(const std::string& path) {
  OVBD_ASSIGN_OR_RETURN(std::string text, ReadCapped(path));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return Status::Corruption(path + ": not a JSON object");
  return j;
}

template <typename T>
bool Get(const nlohmann::json& j, const char* key, T* out) {
  auto it = j.find(key);
  if (it == j.end()) return false;
  if constexpr (std::is_same_v<T, std::string>) {
    if (!it->is_string()) return false;
  } else if constexpr (std::is_same_v<T, bool>) {
    if (!it->is_boolean()) return false;
  } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
    if (!it->is_array()) return false;
    for (const auto& e : *it) {
      if (!e.is_string()) return false;
    }
  } else {
    if (!it->is_number_unsigned()) return false;
  }
  *out = it->get<T>();
  return true;
}

}  // namespace

std::string RunBaseDir() {
  const char* env = std::getenv("OVBD_RUN_DIR");
  return env != nullptr && env[0] != '\0' ? std::string(env) : std::string("/run/ovbd");
}

Result<std::string> CreateRunDir() {
  const std::string base = RunBaseDir();
  if (::mkdir(base.c_str(), 0700) != 0 && errno != EEXIST) return Status::FromErrno(errno, "mkdir " + base);
  std::string tmpl = base + "/attach-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) return Status::FromErrno(errno, "mkdtemp in " + base);
  return tmpl;
}

Status WriteState(const std::string& dir, const AttachState& s) {
  nlohmann::ordered_json j = {{"pid", s.pid},
                              {"start_time", s.start_time},
                              {"file", s.file},
                              {"mountpoint", s.mountpoint},
                              {"device", s.device},
                              {"read_only", s.read_only},
                              {"layers", s.layers},
                              {"upper", s.upper}};
  return WriteAtomically(dir + "/" + kStateFile, j.dump(2) + "\n");
}

Result<AttachState> ReadState(const std::string& dir) {
  const std::string path = dir + "/" + kStateFile;
  OVBD_ASSIGN_OR_RETURN(nlohmann::json j, ParseJsonFile(path));
  AttachState s;
  uint64_t pid = 0;
  const bool ok = Get(j, "pid", &pid) && pid > 0 && pid < (1u << 30) && Get(j, "start_time", &s.start_time) &&
                  Get(j, "file", &s.file) && Get(j, "mountpoint", &s.mountpoint) && Get(j, "device", &s.device) &&
                  Get(j, "read_only", &s.read_only) && Get(j, "layers", &s.layers) && Get(j, "upper", &s.upper);
  if (!ok) return Status::Corruption(path + ": missing or mistyped field");
  s.pid = static_cast<int>(pid);
  return s;
}

Result<uint64_t> ProcessStartTime(int pid) {
  OVBD_ASSIGN_OR_RETURN(std::string stat, ReadCapped("/proc/" + std::to_string(pid) + "/stat"));
  // "PID (comm) S ppid ...": comm may hold spaces and parentheses, so count after the last ')'.
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return Status::Corruption("/proc/" + std::to_string(pid) + "/stat");
  std::istringstream fields(stat.substr(close + 1));
  std::string field;
  for (int i = 3; i <= 22 && fields >> field; ++i) {
    // A zombie (its parent, maybe a container's init, never reaps it) is as good as gone.
    if (i == 3 && (field == "Z" || field == "X")) return Status::NotFound("process " + std::to_string(pid) + " has exited");
    if (i == 22) return std::strtoull(field.c_str(), nullptr, 10);
  }
  return Status::Corruption("/proc/" + std::to_string(pid) + "/stat: too few fields");
}

bool ProcessAlive(const AttachState& state) {
  auto start = ProcessStartTime(state.pid);
  return start.ok() && *start == state.start_time;
}

Status WriteResult(const std::string& dir, const Status& stopped) {
  nlohmann::ordered_json j = {{"ok", stopped.ok()}};
  if (!stopped.ok()) j["error"] = stopped.message();
  return WriteAtomically(dir + "/" + kResultFile, j.dump() + "\n");
}

Status ReadResult(const std::string& dir) {
  OVBD_ASSIGN_OR_RETURN(nlohmann::json j, ParseJsonFile(dir + "/" + kResultFile));
  bool ok = false;
  std::string error;
  if (!Get(j, "ok", &ok)) return Status::Corruption(dir + "/" + kResultFile + ": no \"ok\"");
  if (ok) return Status::OK();
  Get(j, "error", &error);
  return Status::IOError(error.empty() ? "stopped with an unnamed error" : error);
}

Result<std::string> FindRunDirByPath(const std::string& path) {
  const std::string base = RunBaseDir();
  DIR* d = ::opendir(base.c_str());
  if (d == nullptr) return Status::NotFound(path + ": no ovbd attach is running (" + base + " is missing)");
  std::string found;
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.rfind("attach-", 0) != 0) continue;
    auto state = ReadState(base + "/" + name);
    if (state.ok() && (state->mountpoint == path || state->file == path)) {
      found = base + "/" + name;
      break;
    }
  }
  ::closedir(d);
  if (found.empty()) return Status::NotFound(path + ": not an ovbd attach mountpoint or file");
  return found;
}

void RemoveStaleRunDirs() {
  const std::string base = RunBaseDir();
  DIR* d = ::opendir(base.c_str());
  if (d == nullptr) return;
  std::vector<std::string> dirs;
  while (dirent* e = ::readdir(d)) {
    if (std::string(e->d_name).rfind("attach-", 0) == 0) dirs.push_back(base + "/" + e->d_name);
  }
  ::closedir(d);
  for (const std::string& dir : dirs) {
    auto state = ReadState(dir);
    if (!state.ok() || ProcessAlive(*state)) continue;
    ::umount2(state->mountpoint.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW);
    const bool own_mnt = state->mountpoint == dir + "/" + kMountDir;
    RemoveRunDirEntries(dir, {kStateFile, kResultFile, kDetachingFile, kControlFile, own_mnt ? kMountDir : ""});
  }
}

std::string AbsolutePath(const std::string& path) {
  std::string out = std::filesystem::absolute(path).lexically_normal().string();
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

void RemoveRunDirEntries(const std::string& dir, const std::vector<std::string>& names) {
  for (const std::string& name : names) {
    if (name.empty()) continue;
    const std::string path = dir + "/" + name;
    if (::unlink(path.c_str()) != 0 && errno == EISDIR) ::rmdir(path.c_str());
  }
  ::rmdir(dir.c_str());
}

}  // namespace ovbd::fuse
