// Opening a stack of local layers (bottom first) and an optional writable upper as one Image.
#include "image/layer_context.h"
#include "ovbd/image.h"

namespace ovbd::image {
namespace {

Result<std::unique_ptr<RandomRWFile>> OpenRw(const std::string& path) {
  auto file = OpenRandomRWFile(path, RWOpenOptions{});
  if (!file.ok()) return WithPath(file.status(), path);
  return std::move(file).value();
}

}  // namespace

// An LSMT layer, or the content of a ZFile that is not LSMT (a compressed raw disk image, served
// as a raw lower). Plain files must be LSMT: a stray file is more likely a mistake than a disk.
Result<lsmt::LowerLayer> OpenLowerFile(std::shared_ptr<const ReadableFile> blob, const std::string& name) {
  auto unwrapped = Unwrap(std::move(blob));
  if (!unwrapped.ok()) return WithPath(unwrapped.status(), name);
  const Unwrapped& u = *unwrapped;
  if (u.is_lsmt) return lsmt::LowerLayer{u.content, false};
  if (u.zfile) return lsmt::LowerLayer{u.content, true};
  return Status::InvalidArgument(name + ": not an LSMT layer (after removing " +
                                 (u.tar ? std::string("tar ") : std::string()) +
                                 "wrapping, no LSMT header; only a ZFile may hold a raw disk image)");
}

Result<std::unique_ptr<lsmt::RwLayer>> OpenUpper(const UpperPaths& paths) {
  OVBD_ASSIGN_OR_RETURN(auto data, OpenRw(paths.data));
  OVBD_ASSIGN_OR_RETURN(auto index, OpenRw(paths.index));
  auto layer = lsmt::OpenRwLayer(std::move(data), std::move(index));
  if (!layer.ok()) return WithPath(layer.status(), paths.data);
  return std::move(layer).value();
}

Result<std::unique_ptr<lsmt::Image>> OpenImage(const std::vector<std::string>& lowers,
                                               const std::optional<UpperPaths>& upper) {
  OVBD_RETURN_IF_ERROR(lsmt::CheckLayerCount(lowers.size()));
  std::vector<lsmt::LowerLayer> files;
  for (const auto& path : lowers) {
    OVBD_ASSIGN_OR_RETURN(auto blob, OpenLocalBlob(path));
    OVBD_ASSIGN_OR_RETURN(auto layer, OpenLowerFile(std::move(blob), path));
    files.push_back(std::move(layer));
  }
  return OpenImage(std::move(files), upper);
}

Result<std::unique_ptr<lsmt::Image>> OpenImage(std::vector<lsmt::LowerLayer> lowers,
                                               const std::optional<UpperPaths>& upper) {
  OVBD_RETURN_IF_ERROR(lsmt::CheckLayerCount(lowers.size()));
  std::unique_ptr<lsmt::RwLayer> rw;
  if (upper) {
    OVBD_ASSIGN_OR_RETURN(rw, OpenUpper(*upper));
  }
  return lsmt::OpenStack(std::move(lowers), std::move(rw));
}

}  // namespace ovbd::image
