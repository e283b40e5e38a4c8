// Opening a stack of local layers (bottom first) and an optional writable upper as one Image.
#include "image/layer_context.h"
#include "ovbd/image.h"

namespace ovbd::image {
namespace {

Result<std::shared_ptr<const ReadableFile>> OpenLsmtLower(const std::string& path) {
  OVBD_ASSIGN_OR_RETURN(Unwrapped u, OpenLayerPath(path));
  if (!u.is_lsmt) {
    return Status::InvalidArgument(path + ": not an LSMT layer (after removing " +
                                   (u.tar ? std::string("tar ") : std::string()) +
                                   (u.zfile ? "ZFile " : "") + "wrapping, no LSMT header)");
  }
  return u.content;
}

Result<std::unique_ptr<RandomRWFile>> OpenRw(const std::string& path) {
  auto file = OpenRandomRWFile(path, RWOpenOptions{});
  if (!file.ok()) return WithPath(file.status(), path);
  return std::move(file).value();
}

}  // namespace

Result<std::unique_ptr<lsmt::RwLayer>> OpenUpper(const UpperPaths& paths) {
  OVBD_ASSIGN_OR_RETURN(auto data, OpenRw(paths.data));
  OVBD_ASSIGN_OR_RETURN(auto index, OpenRw(paths.index));
  auto layer = lsmt::OpenRwLayer(std::move(data), std::move(index));
  if (!layer.ok()) return WithPath(layer.status(), paths.data);
  return std::move(layer).value();
}

Result<std::unique_ptr<lsmt::Image>> OpenImage(const std::vector<std::string>& lowers,
                                               const std::optional<UpperPaths>& upper) {
  if (lowers.size() + (upper ? 1 : 0) > lsmt::kMaxStackLayers) {
    return Status::InvalidArgument(std::to_string(lowers.size()) + " layers exceed the limit of " +
                                   std::to_string(lsmt::kMaxStackLayers));
  }
  std::vector<std::shared_ptr<const ReadableFile>> files;
  for (const auto& path : lowers) {
    OVBD_ASSIGN_OR_RETURN(auto file, OpenLsmtLower(path));
    files.push_back(std::move(file));
  }
  std::unique_ptr<lsmt::RwLayer> rw;
  if (upper) {
    OVBD_ASSIGN_OR_RETURN(rw, OpenUpper(*upper));
  }
  return lsmt::OpenImage(std::move(files), std::move(rw));
}

}  // namespace ovbd::image
