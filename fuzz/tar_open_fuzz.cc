// Fuzz target: a tar-wrapped blob from hostile bytes.
//
//   bytes -> NewMemReadableFile -> tar::IsTar -> (tar) tar::OpenPayload -> read the payload
//
// Besides "no crash / no UB", it checks OpenPayload's promise: the payload lies inside the file.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include "ovbd/io.h"
#include "ovbd/tar.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::shared_ptr<const ovbd::ReadableFile> file =
      ovbd::NewMemReadableFile("fuzz.tar", std::vector<uint8_t>(data, data + size));
  auto is_tar = ovbd::tar::IsTar(*file);
  if (!is_tar.ok() || !*is_tar) return 0;
  auto payload = ovbd::tar::OpenPayload(file);
  if (!payload.ok()) return 0;
  if ((*payload)->Size() > size) {
    std::fprintf(stderr, "tar_open_fuzz: payload of %llu bytes in a %zu-byte file\n",
                 static_cast<unsigned long long>((*payload)->Size()), size);
    std::abort();
  }
  std::vector<uint8_t> buf((*payload)->Size());
  if (!(*payload)->ReadAt(0, buf).ok()) std::abort();  // a slice inside the file must read
  return 0;
}
