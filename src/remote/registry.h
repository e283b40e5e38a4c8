// The registry's blob endpoints (OCI distribution spec), on top of HttpClient:
//
//   HEAD /v2/<repo>/blobs/<digest>            200 + Content-Length: exists | 404: absent
//   POST /v2/<repo>/blobs/uploads/            202 + Location: an upload session
//   PUT  <location>?digest=<digest>  (body)   201: monolithic upload
//   PATCH <location> Content-Range: a-b       202 + Location: one chunk (then PUT, empty body)
//
// Location may be absolute or relative; it is resolved against the request URL.
#pragma once

#include <optional>

#include "ovbd/io.h"
#include "remote/http_client.h"
#include "remote/url.h"

namespace ovbd::remote {

// The size of the blob at `blob_url`, or nullopt if the registry answers 404. Corruption when
// Docker-Content-Digest names another digest.
Result<std::optional<uint64_t>> HeadBlob(HttpClient& client, const Url& blob_url, const std::string& digest);

// Uploads [0, blob.Size()) of `blob` as `digest` (already computed by the caller).
// chunk_size > 0: PATCH chunks of that size; 0: one monolithic PUT.
Status UploadBlob(HttpClient& client, const RepoRef& repo, const std::string& digest,
                  const ReadableFile& blob, uint64_t chunk_size, const ProgressFn& progress);

}  // namespace ovbd::remote
