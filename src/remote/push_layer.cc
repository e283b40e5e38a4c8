// PushLayer: a layer blob and, beside it, the digest table that lets lazy readers verify every
// chunk they fetch (docs/format/digest-table.md, "Push").
#include "ovbd/digest_table.h"

namespace ovbd::remote {

Result<LayerPushResult> PushLayer(const std::string& repo_url, const ReadableFile& blob, const RemoteOptions& options,
                                  bool chunked, uint64_t chunk_size, bool with_table, const ProgressFn& progress) {
  LayerPushResult result;
  OVBD_ASSIGN_OR_RETURN(result.blob, PushBlob(repo_url, blob, options, chunked, chunk_size, progress));
  if (!with_table) return result;
  OVBD_ASSIGN_OR_RETURN(DigestTable table, BuildDigestTable(blob, ChooseDigestChunkSize(blob.Size())));
  auto encoded = NewMemReadableFile(blob.Name() + " (digest table)", EncodeDigestTable(table));
  OVBD_ASSIGN_OR_RETURN(result.table, PushBlob(repo_url, *encoded, options, chunked, chunk_size));
  return result;
}

}  // namespace ovbd::remote
