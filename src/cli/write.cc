// ovbd write: copies bytes from a file or stdin into a writable layer at a 512-aligned offset.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <vector>

#include "cli/command.h"
#include "cli/options.h"
#include "ovbd/image.h"

namespace ovbd::cli {
namespace {

constexpr size_t kWriteChunk = 4 << 20;

struct WriteArgs {
  std::string data;
  std::string index;
  std::string offset;
  std::string input = "-";
};

// Fills `buf` from `fd` until full or EOF; returns the byte count.
Result<size_t> ReadFull(int fd, std::span<uint8_t> buf, const std::string& name) {
  size_t got = 0;
  while (got < buf.size()) {
    ssize_t n = ::read(fd, buf.data() + got, buf.size() - got);
    if (n == 0) break;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno(errno, name + ": read at byte " + std::to_string(got));
    got += static_cast<size_t>(n);
  }
  return got;
}

Result<int> OpenInput(const std::string& path) {
  if (path == "-") return STDIN_FILENO;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, path);
  return fd;
}

Status CopyInput(int fd, const std::string& name, lsmt::RwLayer* layer, uint64_t offset) {
  std::vector<uint8_t> buf(kWriteChunk);
  uint64_t done = 0;
  for (;;) {
    OVBD_ASSIGN_OR_RETURN(size_t n, ReadFull(fd, buf, name));
    if (n % 512 != 0) {
      return Status::InvalidArgument(name + ": input length " + std::to_string(done + n) +
                                     " is not a multiple of 512 (" + std::to_string(done) +
                                     " bytes were written before the ragged tail)");
    }
    if (n > 0) OVBD_RETURN_IF_ERROR(layer->Write(offset + done, std::span(buf.data(), n)));
    done += n;
    if (n < buf.size()) return Status::OK();
  }
}

Status CheckInputSize(const std::string& path) {
  struct stat st{};
  if (path == "-" || ::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return Status::OK();
  if (st.st_size % 512 != 0) {
    return Status::InvalidArgument(path + ": input length " + std::to_string(st.st_size) +
                                   " is not a multiple of 512");
  }
  return Status::OK();
}

Status RunWrite(const WriteArgs& a) {
  OVBD_RETURN_IF_ERROR(CheckInputSize(a.input));
  OVBD_ASSIGN_OR_RETURN(auto layer, image::OpenUpper({a.data, a.index}));
  OVBD_ASSIGN_OR_RETURN(int fd, OpenInput(a.input));
  std::string name = a.input == "-" ? "stdin" : a.input;
  Status s = CopyInput(fd, name, layer.get(), ParsedSize(a.offset));
  if (fd != STDIN_FILENO) ::close(fd);
  Status synced = layer->Sync();
  return s.ok() ? synced : s;
}

}  // namespace

void AddWriteCommand(CLI::App& parent, Commands* commands) {
  auto args = std::make_shared<WriteArgs>();
  CLI::App* cmd = parent.add_subcommand(
      "write",
      "Write bytes from FILE (or standard input) into a writable layer at --offset. The offset "
      "and the input length must be multiples of 512. The layer is synced at the end.");
  cmd->add_option("DATA", args->data, "Data file of the RW layer")->required();
  cmd->add_option("INDEX", args->index, "Index file of the RW layer")->required();
  cmd->add_option("--offset", args->offset, "Byte offset in the virtual device (multiple of 512)")
      ->required()
      ->check(SizeValidator(512, false));
  cmd->add_option("FILE", args->input, "Input file, or - for standard input")->capture_default_str();
  cmd->footer("\nExamples:\n  ovbd write layer.data layer.index --offset 1M blob.bin\n"
              "  head -c 4096 /dev/urandom | ovbd write layer.data layer.index --offset 0");
  commands->push_back({cmd, "write", [args] { return RunWrite(*args); }});
}

}  // namespace ovbd::cli
