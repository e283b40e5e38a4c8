// Opening a ZFile input: tar wrapping is removed first, then the ZFile header is required.
#include "cli/zfile_input.h"

#include "image/layer_context.h"
#include "ovbd/tar.h"

namespace ovbd::cli {

Result<std::unique_ptr<zfile::Reader>> OpenZfileInput(const std::string& path) {
  auto opened = OpenReadableFile(path);
  if (!opened.ok()) return image::WithPath(opened.status(), path);
  std::shared_ptr<const ReadableFile> file = std::move(opened).value();
  OVBD_ASSIGN_OR_RETURN(bool is_tar, tar::IsTar(*file));
  if (is_tar) {
    OVBD_ASSIGN_OR_RETURN(file, tar::OpenPayload(file));
  }
  OVBD_ASSIGN_OR_RETURN(bool is_zfile, zfile::IsZFile(*file));
  if (!is_zfile) return Status::InvalidArgument(path + ": not a ZFile (no ZFile header)");
  auto reader = zfile::Open(file);
  if (!reader.ok()) return image::WithPath(reader.status(), path);
  return std::move(reader).value();
}

}  // namespace ovbd::cli
