// How lowers are named: local paths, oci:// references, digests of a config (include/ovbd/volume.h).
#include "ovbd/volume.h"

namespace ovbd::volume {

bool IsOciReference(const std::string& arg) {
  return arg.rfind("oci://", 0) == 0 || arg.rfind("oci+http://", 0) == 0;
}

std::string LayerRef::Name() const {
  if (!path.empty()) return path;
  if (!oci.empty()) return oci;
  return repo_blob_url + "/" + digest;
}

std::vector<LayerRef> RefsFromArgs(const std::vector<std::string>& layers) {
  std::vector<LayerRef> refs;
  for (const auto& l : layers) {
    LayerRef r;
    if (IsOciReference(l)) {
      r.oci = l;
      const auto at = l.rfind('@');
      r.digest = at == std::string::npos ? "" : l.substr(at + 1);
    } else {
      r.path = l;
    }
    refs.push_back(std::move(r));
  }
  return refs;
}

std::vector<LayerRef> RefsFromConfig(const image::ImageConfig& config) {
  std::vector<LayerRef> refs;
  for (const auto& l : config.lowers) {
    LayerRef r;
    r.path = l.file;
    if (l.file.empty()) {
      r.digest = l.digest;
      r.repo_blob_url = config.repo_blob_url;
      r.size = l.size;
      r.digest_table = l.digest_table;
    }
    refs.push_back(std::move(r));
  }
  return refs;
}

}  // namespace ovbd::volume
