// Content detection of a layer blob: tar -> ZFile -> LSMT (or raw content), never by name.
#include <array>
#include <cstring>
#include <sys/stat.h>

#include "base/units.h"
#include "image/layer_context.h"
#include "ovbd/image.h"
#include "ovbd/tar.h"

namespace ovbd::image {
namespace {

constexpr std::array<uint8_t, 8> kLsmtMagic = {'L', 'S', 'M', 'T', 0, 1, 2, 0};

Result<bool> StartsWithLsmtMagic(const ReadableFile& file) {
  if (file.Size() < kLsmtMagic.size()) return false;
  std::array<uint8_t, 8> head{};
  OVBD_RETURN_IF_ERROR(file.ReadAt(0, head));
  return head == kLsmtMagic;
}

bool PathExists(const std::string& path) {
  struct stat st{};
  return ::stat(path.c_str(), &st) == 0;
}

// "PATH:LENGTH" -> (PATH, LENGTH) when PATH exists and LENGTH parses as a size.
std::optional<std::pair<std::string, uint64_t>> SplitLengthSuffix(const std::string& spec) {
  size_t colon = spec.rfind(':');
  if (colon == std::string::npos || colon == 0) return std::nullopt;
  std::string path = spec.substr(0, colon);
  auto length = ParseSize(std::string_view(spec).substr(colon + 1));
  if (!length.ok() || !PathExists(path)) return std::nullopt;
  return std::make_pair(path, *length);
}

Result<std::shared_ptr<const ReadableFile>> OpenLocal(const std::string& spec) {
  if (!PathExists(spec)) {
    if (auto split = SplitLengthSuffix(spec)) {
      OVBD_ASSIGN_OR_RETURN(std::shared_ptr<const ReadableFile> base, OpenReadableFile(split->first));
      OVBD_ASSIGN_OR_RETURN(auto slice, NewSliceFile(std::move(base), 0, split->second));
      return std::shared_ptr<const ReadableFile>(std::move(slice));
    }
  }
  OVBD_ASSIGN_OR_RETURN(auto file, OpenReadableFile(spec));
  return std::shared_ptr<const ReadableFile>(std::move(file));
}

}  // namespace

Result<std::shared_ptr<const ReadableFile>> OpenLocalBlob(const std::string& spec) {
  auto file = OpenLocal(spec);
  if (!file.ok()) return WithPath(file.status(), spec);
  return file;
}

Result<Unwrapped> Unwrap(std::shared_ptr<const ReadableFile> file) {
  Unwrapped u;
  std::shared_ptr<const ReadableFile> current = std::move(file);
  OVBD_ASSIGN_OR_RETURN(u.tar, tar::IsTar(*current));
  if (u.tar) {
    OVBD_ASSIGN_OR_RETURN(auto payload, tar::OpenPayload(current));
    current = std::move(payload);
  }
  OVBD_ASSIGN_OR_RETURN(bool is_zfile, zfile::IsZFile(*current));
  if (is_zfile) {
    OVBD_ASSIGN_OR_RETURN(auto reader, zfile::Open(current));
    u.zfile = reader->info();
    current = std::move(reader);
  }
  OVBD_ASSIGN_OR_RETURN(u.is_lsmt, StartsWithLsmtMagic(*current));
  u.content = std::move(current);
  return u;
}

Result<Unwrapped> OpenLayerPath(const std::string& path) {
  auto file = OpenLocalBlob(path);
  if (!file.ok()) return WithPath(file.status(), path);
  auto unwrapped = Unwrap(std::move(file).value());
  if (!unwrapped.ok()) return WithPath(unwrapped.status(), path);
  return unwrapped;
}

}  // namespace ovbd::image
