// Helpers shared by the tests: scratch directories, golden-vector paths, digests, deterministic
// random data.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ovbd/io.h"

namespace ovbd::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with its content on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Join(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Absolute path of a golden vector (a file in tests/golden, made by the reference tools).
std::string VectorPath(const std::string& name);

std::vector<uint8_t> ReadFileBytes(const std::string& path);  // aborts the test on error
void WriteFileBytes(const std::string& path, const std::vector<uint8_t>& bytes);

// Digests of the whole content of a ReadableFile, read in 1 MiB chunks.
std::string Md5OfFile(const ReadableFile& file);
std::string Sha256OfFile(const ReadableFile& file);

// Deterministic data. kind: "random" (incompressible), "text" (compressible), "zero".
std::vector<uint8_t> MakeData(uint64_t seed, size_t n, const std::string& kind = "random");

// Runs a shell command, returns its exit code and captured stdout (stderr goes to stdout if
// merge_stderr).
struct CommandResult {
  int exit_code = -1;
  std::string output;
};
CommandResult RunCommand(const std::string& command, bool merge_stderr = true);

}  // namespace ovbd::testing
