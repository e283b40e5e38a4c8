// Image assembly: turning blobs (local files, or remote ones the caller opened) into an lsmt::Image.
//
//   path ──open──> file ──tar?──> payload ──ZFile?──> decompressed ──LSMT?──> layer
//                                                                     └─ not LSMT: raw content
//
// Every blob is detected by content, never by name: tar-wrapped, ZFile-compressed and plain LSMT
// layers stack freely. config.v1.json (overlaybd-compatible, docs/format/image-config.md)
// names the lowers and the upper.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ovbd/io.h"
#include "ovbd/lsmt.h"
#include "ovbd/status.h"
#include "ovbd/zfile.h"

namespace ovbd::image {

// What wrapping a blob had, outermost first.
struct Unwrapped {
  std::shared_ptr<const ReadableFile> content;  // the innermost bytes (LSMT blob or raw data)
  bool tar = false;
  std::optional<zfile::Info> zfile;             // set if ZFile-compressed
  bool is_lsmt = false;                         // content starts with an LSMT header
};

// Detects and strips tar and ZFile wrapping.
Result<Unwrapped> Unwrap(std::shared_ptr<const ReadableFile> file);
// Opens a local path and unwraps it. "PATH:LENGTH" means the first LENGTH bytes of PATH (a layer
// at the start of a larger file or device); the suffix is only taken as a length when the whole
// string is not an existing path and LENGTH parses as a size ("64M", "4096").
Result<Unwrapped> OpenLayerPath(const std::string& path);
// The local file behind a layer path (PATH or PATH:LENGTH as above), not unwrapped.
Result<std::shared_ptr<const ReadableFile>> OpenLocalBlob(const std::string& path);
// Unwraps an opened blob and checks that it can be stacked: an LSMT layer, or a ZFile whose
// content is not LSMT (a raw lower). Errors name `name`.
Result<lsmt::LowerLayer> OpenLowerFile(std::shared_ptr<const ReadableFile> blob, const std::string& name);

struct UpperPaths {
  std::string data;
  std::string index;
};

// One lower of a config: a local `file`, or a registry blob (`digest` under the config's
// repoBlobUrl) when `file` is empty.
// A registry blob named by digest and size (both checked when the config is parsed).
struct BlobRef {
  std::string digest;  // "sha256:<64 lowercase hex>"
  uint64_t size = 0;
};

// lowers[i].checkpoint: a name given to the layer by an online snapshot (docs/lifecycle.md), what
// change tracking counts from. Names are unique within one manifest.
struct Checkpoint {
  std::string name;     // 1..255 bytes, no '/' and no control characters
  std::string created;  // UTC, "2026-12-07T15:42:00Z"; "" if unknown
  bool operator==(const Checkpoint&) const = default;
};

// 1..255 bytes, no '/' and no control characters.
bool IsCheckpointName(const std::string& name);

struct LowerSpec {
  std::string file;             // resolved path; "" = remote
  std::string digest;           // "sha256:<64 hex>" or ""
  std::optional<uint64_t> size; // blob size, if the config gives it
  // lowers[i].digestTable: the blob's per-chunk digest table (docs/format/digest-table.md),
  // size 1 ..= 64 + 32 * remote::kMaxDigestChunks. Parsed (and checked) for local lowers too.
  std::optional<BlobRef> digest_table;
  std::optional<Checkpoint> checkpoint;
};

// overlaybd's "download" object: background download of whole registry layers.
struct DownloadConfig {
  bool enable = false;
  unsigned delay_s = 0;   // "delay": seconds after start
  unsigned max_mbps = 0;  // "maxMBps": MiB/s, 0 = unlimited
};

// ovbdPendingSnapshot: an online snapshot that had begun when the manifest was saved (its new
// upper created, the old one perhaps sealed). Opening the manifest finishes it
// (docs/lifecycle.md): the old upper, sealed, becomes the newest lower with `checkpoint`, and
// `upper` the writable layer.
struct PendingSnapshot {
  Checkpoint checkpoint;
  UpperPaths upper;
};

struct ImageConfig {
  std::vector<LowerSpec> lowers;    // bottom first
  std::optional<UpperPaths> upper;
  std::optional<PendingSnapshot> pending_snapshot;
  std::string result_file;          // "" = none
  std::string repo_blob_url;        // "http[s]://host/v2/<repo>/blobs" or ""
  std::string record_trace_path;    // recordTracePath (resolved) or ""
  DownloadConfig download;
  bool HasRemoteLowers() const;
};

// Parses config.v1.json text. Unknown keys are ignored; wrong types are InvalidArgument naming the
// key. Relative paths are resolved against `base_dir`.
Result<ImageConfig> ParseImageConfig(std::string_view json, const std::string& base_dir);
Result<ImageConfig> LoadImageConfig(const std::string& path);
// Writes "success" or "failed:<reason>" to config.result_file (if set).
Status WriteResult(const ImageConfig& config, const Status& outcome);

// Opens an existing writable layer (data + index files, read-write). Errors name the path.
Result<std::unique_ptr<lsmt::RwLayer>> OpenUpper(const UpperPaths& paths);

// Opens lowers (bottom first) and an optional upper into an Image. Every lower must be an LSMT
// layer after unwrapping, or a ZFile whose content is not LSMT (a compressed raw disk image,
// stacked as a raw lower: lsmt::LowerLayer).
Result<std::unique_ptr<lsmt::Image>> OpenImage(const std::vector<std::string>& lowers,
                                               const std::optional<UpperPaths>& upper);
// The same with lowers already opened (e.g. remote blobs behind a cache; OpenLowerFile).
Result<std::unique_ptr<lsmt::Image>> OpenImage(std::vector<lsmt::LowerLayer> lowers,
                                               const std::optional<UpperPaths>& upper);

}  // namespace ovbd::image
