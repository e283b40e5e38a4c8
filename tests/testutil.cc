#include "testutil.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include "base/hash.h"

namespace ovbd::testing {

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/ovbd-test-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp failed for " << tmpl;
  }
  path_ = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string VectorPath(const std::string& name) { return std::string(OVBD_VECTORS_DIR) + "/" + name; }

std::vector<uint8_t> ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

void WriteFileBytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  EXPECT_TRUE(out.good()) << "cannot write " << path;
}

namespace {
template <typename Hasher>
std::string DigestOfFile(const ReadableFile& file) {
  Hasher h;
  std::vector<uint8_t> buf(1 << 20);
  for (uint64_t off = 0; off < file.Size();) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), file.Size() - off));
    Status s = file.ReadAt(off, std::span(buf.data(), n));
    if (!s.ok()) {
      ADD_FAILURE() << "reading " << file.Name() << ": " << s.ToString();
      return "read-error";
    }
    h.Update(std::span(buf.data(), n));
    off += n;
  }
  return h.HexFinal();
}
}  // namespace

std::string Md5OfFile(const ReadableFile& file) { return DigestOfFile<Md5>(file); }
std::string Sha256OfFile(const ReadableFile& file) { return DigestOfFile<Sha256>(file); }

std::vector<uint8_t> MakeData(uint64_t seed, size_t n, const std::string& kind) {
  std::vector<uint8_t> out(n);
  std::mt19937_64 rng(seed);
  if (kind == "zero") return out;
  if (kind == "text") {
    static const char* kWords[] = {"overlay ", "block ", "device ", "layer ", "zfile ", "lsmt ",
                                   "segment\n", "0123456789 ", "sector ", "index "};
    size_t i = 0;
    while (i < n) {
      const char* w = kWords[rng() % 10];
      for (const char* p = w; *p && i < n; p++) out[i++] = static_cast<uint8_t>(*p);
    }
    return out;
  }
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = rng();
    for (size_t j = 0; j < 8 && i + j < n; j++) out[i + j] = static_cast<uint8_t>(v >> (8 * j));
  }
  return out;
}

CommandResult RunCommand(const std::string& command, bool merge_stderr) {
  CommandResult r;
  std::string cmd = command + (merge_stderr ? " 2>&1" : "");
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace ovbd::testing
