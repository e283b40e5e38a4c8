// Remote blobs: OCI registry blobs read lazily over HTTP(S) Range GETs, and blob upload.
//
//   OpenBlob(repoBlobUrl, digest) ──> BlobFile : ReadableFile
//        ReadAt(off, buf) ── split into <= kMaxRangeBytes pieces, <= max_parallel at once
//                         ── HttpClient: pooled curl handles, retries with backoff, timeouts,
//                            proxy, 401 -> Bearer/Basic auth, redirects followed by hand
//                         ── exact Content-Range / length check, sha256 verified on an
//                            in-order complete read
//   PushBlob(repoUrl, file) ── HEAD blob (skip if present) ── POST uploads/ ── PUT ?digest=
//                                                       or ── PATCH chunks ── PUT ?digest=
//
// Everything a registry sends is hostile: header lengths, redirect counts, token sizes and body
// sizes are capped (see docs/remote.md). Wrong data is never returned: a short or misplaced
// range is IOError/Corruption, a registry that cannot be reached after the retries is
// Unavailable. Messages name the URL, the offset and the cause.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "ovbd/io.h"
#include "ovbd/status.h"

namespace ovbd::remote {

struct RemoteOptions {
  std::string proxy;             // e.g. "http://127.0.0.1:3128" (P2P agent); empty: none
  std::string credentials_file;  // docker-style config.json ("auths") or cred.json; empty: none
  std::string username;          // explicit Basic credentials; win over credentials_file
  std::string password;
  unsigned max_parallel = 4;     // range requests in flight per ReadAt (1..64)
  unsigned retries = 4;          // extra attempts on 5xx/429/connection errors (0..16)
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds io_timeout{30000};  // whole-request timeout
  std::chrono::milliseconds backoff{100};       // first retry delay; doubles each retry (<= 2 s)
  // Keep retrying an unreachable/failing registry until this much time has passed since a
  // request's first attempt (then Unavailable: the reader sees EIO). 0 = `retries` only.
  std::chrono::milliseconds retry_for{0};
  bool insecure = false;         // skip TLS certificate verification
};

// A blob of `repo_blob_url` ("http[s]://host[:port]/v2/<repo>/blobs") with `digest`
// ("sha256:<64 hex>"). `size`: the known size (config.v1.json lowers[].size); without it a HEAD
// request asks the registry. The returned file is thread-safe; it keeps a pool of connections.
// Errors: InvalidArgument (malformed URL/digest), NotFound (no such blob), Unavailable
// (unreachable), Corruption (the registry's size disagrees with `size`).
Result<std::unique_ptr<ReadableFile>> OpenBlob(const std::string& repo_blob_url,
                                               const std::string& digest,
                                               std::optional<uint64_t> size,
                                               const RemoteOptions& options);

// "oci://host[:port]/repo@sha256:<hex>" (https) or "oci+http://..." (plain HTTP).
Result<std::unique_ptr<ReadableFile>> OpenOciReference(const std::string& ref,
                                                       const RemoteOptions& options);

struct PushResult {
  std::string digest;  // "sha256:<hex>"
  uint64_t size = 0;
  bool existed = false;  // the registry already had it; nothing was uploaded
};

// Uploads `blob` to `repo_url` ("http[s]://host[:port]/<repo>"). Computes the digest first (one
// read pass), skips the upload when HEAD finds the blob, else uploads monolithically (POST +
// PUT ?digest=) or in `chunk_size`-byte PATCHes when `chunked`. The digest the registry answers
// with (Docker-Content-Digest) must match. `progress(done, total)` counts uploaded bytes.
Result<PushResult> PushBlob(const std::string& repo_url, const ReadableFile& blob,
                            const RemoteOptions& options, bool chunked, uint64_t chunk_size,
                            const ProgressFn& progress = nullptr);

// "http[s]://host[:port]/v2/<repo>/blobs" for a repository URL "http[s]://host[:port]/<repo>",
// the repoBlobUrl of a config.v1.json. InvalidArgument for a malformed URL.
Result<std::string> RepoBlobUrl(const std::string& repo_url);

}  // namespace ovbd::remote
