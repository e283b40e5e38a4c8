#include "remote/registry.h"

#include <charconv>

#include "base/hash.h"
#include "ovbd/remote.h"

namespace ovbd::remote {
namespace {

inline constexpr uint64_t kMinChunkBytes = 4096;
inline constexpr uint64_t kMaxChunkBytes = 1ull << 32;

Status Unexpected(const Request& req, const Response& r) {
  std::string body(r.body.begin(), r.body.begin() + static_cast<long>(std::min<size_t>(r.body.size(), 200)));
  return Status::IOError(req.method + " " + req.url.ToString() + ": HTTP " + std::to_string(r.status) +
                         (body.empty() ? "" : ": " + body));
}

// POST uploads/ -> the session URL.
Result<Url> StartUpload(HttpClient& client, const RepoRef& repo) {
  Request req;
  req.method = "POST";
  OVBD_ASSIGN_OR_RETURN(req.url, ParseUrl(repo.UploadsUrl()));
  OVBD_ASSIGN_OR_RETURN(Response r, client.Send(req));
  if (r.status != 202) return Unexpected(req, r);
  return ResolveLocation(r.url, r.Header("location"));
}

Result<Response> SendChecked(HttpClient& client, const Request& req, long expected) {
  OVBD_ASSIGN_OR_RETURN(Response r, client.Send(req));
  if (r.status != expected) return Unexpected(req, r);
  return r;
}

// PUT <session>?digest= with [offset, offset+length) of blob as body.
Status FinishUpload(HttpClient& client, const Url& session, const std::string& digest,
                    const ReadableFile& blob, uint64_t offset, uint64_t length) {
  Request req;
  req.method = "PUT";
  OVBD_ASSIGN_OR_RETURN(req.url, ParseUrl(AddQuery(session.ToString(), "digest", digest)));
  req.headers = {"Content-Type: application/octet-stream"};
  req.upload_src = &blob;
  req.upload_offset = offset;
  req.upload_length = length;
  OVBD_ASSIGN_OR_RETURN(Response r, SendChecked(client, req, 201));
  std::string dcd = r.Header("docker-content-digest");
  if (!dcd.empty() && dcd != digest) {
    return Status::Corruption(req.url.ToString() + ": registry stored digest " + dcd.substr(0, 100) + ", expected " + digest);
  }
  return Status::OK();
}

Result<Url> PatchChunk(HttpClient& client, const Url& session, const ReadableFile& blob, uint64_t offset, uint64_t length) {
  Request req;
  req.method = "PATCH";
  req.url = session;
  req.headers = {"Content-Type: application/octet-stream",
                 "Content-Range: " + std::to_string(offset) + "-" + std::to_string(offset + length - 1)};
  req.upload_src = &blob;
  req.upload_offset = offset;
  req.upload_length = length;
  OVBD_ASSIGN_OR_RETURN(Response r, SendChecked(client, req, 202));
  return ResolveLocation(r.url, r.Header("location"));
}

Result<std::string> DigestOf(const ReadableFile& blob) {
  Sha256 hasher;
  std::vector<uint8_t> buf(1 << 20);
  for (uint64_t off = 0; off < blob.Size();) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), blob.Size() - off));
    OVBD_RETURN_IF_ERROR(blob.ReadAt(off, std::span(buf.data(), n)));
    hasher.Update(std::span(buf.data(), n));
    off += n;
  }
  return "sha256:" + hasher.HexFinal();
}

}  // namespace

Result<std::optional<uint64_t>> HeadBlob(HttpClient& client, const Url& blob_url, const std::string& digest) {
  Request req;
  req.method = "HEAD";
  req.url = blob_url;
  OVBD_ASSIGN_OR_RETURN(Response r, client.Send(req));
  std::string where = "HEAD " + blob_url.ToString();
  if (r.status == 404) return std::optional<uint64_t>();
  if (r.status != 200) return Status::IOError(where + ": HTTP " + std::to_string(r.status));
  std::string dcd = r.Header("docker-content-digest");
  if (!dcd.empty() && dcd != digest) return Status::Corruption(where + ": registry reports digest " + dcd.substr(0, 100));
  std::string len = r.Header("content-length");
  uint64_t size = 0;
  auto [p, ec] = std::from_chars(len.data(), len.data() + len.size(), size);
  if (len.empty() || ec != std::errc() || p != len.data() + len.size()) return Status::IOError(where + ": no valid Content-Length");
  return std::optional<uint64_t>(size);
}

Status UploadBlob(HttpClient& client, const RepoRef& repo, const std::string& digest,
                  const ReadableFile& blob, uint64_t chunk_size, const ProgressFn& progress) {
  OVBD_ASSIGN_OR_RETURN(Url session, StartUpload(client, repo));
  const uint64_t size = blob.Size();
  if (chunk_size == 0) {
    OVBD_RETURN_IF_ERROR(FinishUpload(client, session, digest, blob, 0, size));
    if (progress) progress(size, size);
    return Status::OK();
  }
  for (uint64_t off = 0; off < size;) {
    uint64_t n = std::min(chunk_size, size - off);
    OVBD_ASSIGN_OR_RETURN(session, PatchChunk(client, session, blob, off, n));
    off += n;
    if (progress) progress(off, size);
  }
  return FinishUpload(client, session, digest, blob, size, 0);
}

Result<PushResult> PushBlob(const std::string& repo_url, const ReadableFile& blob, const RemoteOptions& options,
                            bool chunked, uint64_t chunk_size, const ProgressFn& progress) {
  if (chunked && (chunk_size < kMinChunkBytes || chunk_size > kMaxChunkBytes)) {
    return Status::InvalidArgument("chunk size must be 4 KiB .. 4 GiB");
  }
  OVBD_ASSIGN_OR_RETURN(RepoRef repo, ParseRepoUrl(repo_url));
  OVBD_ASSIGN_OR_RETURN(auto client, NewHttpClient(repo.origin, options));
  PushResult result;
  result.size = blob.Size();
  OVBD_ASSIGN_OR_RETURN(result.digest, DigestOf(blob));
  OVBD_ASSIGN_OR_RETURN(Url blob_url, ParseUrl(repo.BlobUrl(result.digest)));
  OVBD_ASSIGN_OR_RETURN(auto existing, HeadBlob(*client, blob_url, result.digest));
  if (existing) {
    if (*existing != result.size) {
      return Status::Corruption(blob_url.ToString() + ": registry has size " + std::to_string(*existing) +
                                ", local blob " + std::to_string(result.size));
    }
    result.existed = true;
    return result;
  }
  Status s = UploadBlob(*client, repo, result.digest, blob, chunked ? chunk_size : 0, progress);
  if (!s.ok()) return s.WithContext(blob.Name());
  return result;
}

}  // namespace ovbd::remote
