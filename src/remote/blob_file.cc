// The remote blob as a ReadableFile: Range GETs, split into bounded parallel pieces, each
// checked exactly (status 206, Content-Range, length) before a byte reaches the caller.
#include <atomic>
#include <charconv>
#include <cstring>
#include <thread>

#include "ovbd/remote.h"
#include "remote/digest_verifier.h"
#include "remote/http_client.h"
#include "remote/registry.h"
#include "remote/url.h"

namespace ovbd::remote {
namespace {

constexpr uint64_t kRangePieceBytes = 1 << 20;  // one Range GET at most

// "bytes a-b/total" (total may be '*'): true if it states exactly [first, last] of `size`.
bool ContentRangeMatches(std::string_view v, uint64_t first, uint64_t last, uint64_t size) {
  if (v.substr(0, 6) != "bytes ") return false;
  v.remove_prefix(6);
  uint64_t a = 0, b = 0, total = 0;
  auto parse = [&v](uint64_t* out, char stop) {
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), *out);
    if (ec != std::errc() || p == v.data() + v.size() || *p != stop) return false;
    v.remove_prefix(static_cast<size_t>(p - v.data()) + 1);
    return true;
  };
  if (!parse(&a, '-') || !parse(&b, '/')) return false;
  if (v == "*") return a == first && b == last;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), total);
  return ec == std::errc() && p == v.data() + v.size() && a == first && b == last && total == size;
}

class BlobFile final : public ReadableFile {
 public:
  BlobFile(std::unique_ptr<HttpClient> client, Url url, std::string digest, uint64_t size, unsigned parallel)
      : client_(std::move(client)), url_(std::move(url)), name_(url_.ToString()), size_(size),
        parallel_(parallel), verifier_(std::move(digest), size, name_) {}

  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) const override {
    if (offset > size_ || buf.size() > size_ - offset) {
      return Status::OutOfRange(name_ + ": read at " + std::to_string(offset) + " length " +
                                std::to_string(buf.size()) + " past size " + std::to_string(size_));
    }
    if (buf.empty()) return Status::OK();
    OVBD_RETURN_IF_ERROR(ReadPieces(offset, buf));
    return verifier_.Add(offset, buf);
  }
  uint64_t Size() const override { return size_; }
  const std::string& Name() const override { return name_; }
  // A network read may return other bytes next time; hashed bytes that are to be fetched again
  // restart the in-order digest check.
  bool Invalidate(uint64_t offset, uint64_t length) const override {
    verifier_.Forget(offset, length);
    return true;
  }

 private:
  Status ReadPieces(uint64_t offset, std::span<uint8_t> buf) const;
  Status FetchRange(uint64_t offset, std::span<uint8_t> buf) const;
  Result<Response> GetRange(uint64_t offset, uint64_t length) const;
  Status CheckRange(const Response& r, uint64_t offset, std::span<uint8_t> buf) const;

  std::unique_ptr<HttpClient> client_;
  const Url url_;
  const std::string name_;
  const uint64_t size_;
  const unsigned parallel_;
  mutable DigestVerifier verifier_;
  mutable std::mutex redirect_mu_;
  mutable std::optional<Url> redirect_;  // where the registry sent the last GET (blob storage)
};

Status BlobFile::ReadPieces(uint64_t offset, std::span<uint8_t> buf) const {
  const size_t pieces = static_cast<size_t>((buf.size() + kRangePieceBytes - 1) / kRangePieceBytes);
  auto piece = [&](size_t i) {
    size_t start = i * kRangePieceBytes;
    return FetchRange(offset + start, buf.subspan(start, std::min<size_t>(kRangePieceBytes, buf.size() - start)));
  };
  if (pieces == 1) return piece(0);
  std::atomic<size_t> next{0};
  std::vector<Status> results(pieces);
  auto worker = [&] {
    for (size_t i; (i = next.fetch_add(1)) < pieces;) results[i] = piece(i);
  };
  std::vector<std::thread> threads;
  for (size_t t = 0; t < std::min<size_t>(parallel_, pieces); ++t) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  for (auto& s : results) OVBD_RETURN_IF_ERROR(s);
  return Status::OK();
}

Result<Response> BlobFile::GetRange(uint64_t offset, uint64_t length) const {
  Request req;
  {
    std::lock_guard lock(redirect_mu_);
    req.url = redirect_ ? *redirect_ : url_;
  }
  req.headers.push_back("Range: bytes=" + std::to_string(offset) + "-" + std::to_string(offset + length - 1));
  req.max_body = std::max<uint64_t>(length, kMaxSmallBody);
  OVBD_ASSIGN_OR_RETURN(Response resp, client_->Send(req));
  bool used_redirect = req.url.ToString() != url_.ToString();
  if (used_redirect && resp.status >= 400 && resp.status < 500) {  // e.g. an expired signed URL
    {
      std::lock_guard lock(redirect_mu_);
      redirect_.reset();
    }
    req.url = url_;
    OVBD_ASSIGN_OR_RETURN(resp, client_->Send(req));
  }
  if ((resp.status == 200 || resp.status == 206) && resp.url.ToString() != url_.ToString()) {
    std::lock_guard lock(redirect_mu_);
    redirect_ = resp.url;
  }
  return resp;
}

Status BlobFile::CheckRange(const Response& r, uint64_t offset, std::span<uint8_t> buf) const {
  const uint64_t last = offset + buf.size() - 1;
  if (r.status == 404) return Status::NotFound("blob not found (HTTP 404)");
  if (r.status == 206) {
    if (!ContentRangeMatches(r.Header("content-range"), offset, last, size_)) {
      return Status::IOError("Content-Range '" + r.Header("content-range").substr(0, 100) + "' does not match the request");
    }
  } else if (!(r.status == 200 && offset == 0 && buf.size() == size_)) {
    return Status::IOError("HTTP " + std::to_string(r.status) + " to a Range request");
  }
  if (r.body.size() != buf.size()) {
    return Status::IOError("got " + std::to_string(r.body.size()) + " bytes, expected " + std::to_string(buf.size()));
  }
  return Status::OK();
}

Status BlobFile::FetchRange(uint64_t offset, std::span<uint8_t> buf) const {
  std::string where = name_ + ": offset " + std::to_string(offset) + " length " + std::to_string(buf.size());
  auto resp = GetRange(offset, buf.size());
  if (!resp.ok()) return resp.status().WithContext(where);
  Status s = CheckRange(*resp, offset, buf);
  if (!s.ok()) return s.WithContext(where);
  std::memcpy(buf.data(), resp->body.data(), buf.size());
  return Status::OK();
}

Result<std::unique_ptr<ReadableFile>> Open(const RepoRef& repo, const std::string& digest,
                                           std::optional<uint64_t> size, const RemoteOptions& options) {
  OVBD_RETURN_IF_ERROR(CheckDigest(digest));
  OVBD_ASSIGN_OR_RETURN(Url url, ParseUrl(repo.BlobUrl(digest)));
  OVBD_ASSIGN_OR_RETURN(auto client, NewHttpClient(repo.origin, options));
  if (!size) {
    OVBD_ASSIGN_OR_RETURN(auto found, HeadBlob(*client, url, digest));
    if (!found) return Status::NotFound(url.ToString() + ": blob not found");
    size = *found;
  }
  return std::unique_ptr<ReadableFile>(
      std::make_unique<BlobFile>(std::move(client), std::move(url), digest, *size, options.max_parallel));
}

}  // namespace

Result<std::unique_ptr<ReadableFile>> OpenBlob(const std::string& repo_blob_url, const std::string& digest,
                                               std::optional<uint64_t> size, const RemoteOptions& options) {
  OVBD_ASSIGN_OR_RETURN(RepoRef repo, ParseRepoBlobUrl(repo_blob_url));
  return Open(repo, digest, size, options);
}

Result<std::unique_ptr<ReadableFile>> OpenOciReference(const std::string& ref, const RemoteOptions& options) {
  OVBD_ASSIGN_OR_RETURN(OciReference oci, ParseOciReference(ref));
  return Open(oci.repo, oci.digest, std::nullopt, options);
}

Result<std::string> RepoBlobUrl(const std::string& repo_url) {
  OVBD_ASSIGN_OR_RETURN(RepoRef repo, ParseRepoUrl(repo_url));
  return repo.BlobsUrl();
}

}  // namespace ovbd::remote
