// The manifest of an image whose stack changes while it is served: its config.v1.json, rewritten
// after every online operation (snapshot, merge, replace, resize) so that a crash at any instant
// leaves the old stack or the new one, both openable (docs/lifecycle.md).
//
//   Manifest::Load(path) ──> config() (parsed, as ParseImageConfig)   the JSON text is kept, so
//        │                                                            keys ovbd does not know
//        └─ WithStack(entries, upper) ──> Save()                      survive every rewrite
//                                          temp file, fsync, rename, fsync of the directory
//
// Layer files ovbd creates for a manifest live in its directory and carry NewLayerName()'s
// pattern. Leftovers() lists those that the manifest does not name (a crash between creating a
// file and naming it): they are never used, and the owner removes them at open.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "ovbd/image.h"
#include "ovbd/status.h"

namespace ovbd::image {

// A new lower of a rewritten stack: an existing lower (kept exactly as the manifest has it, its
// unknown keys included), or a file with an optional checkpoint name.
struct StackEntry {
  std::optional<size_t> existing;  // index of a lower of the current manifest
  std::string file;                // else: a local layer file (absolute, or relative to the directory)
  std::optional<Checkpoint> checkpoint;  // for a new file; an existing lower keeps its own
};

class Manifest {
 public:
  // Reads and parses path (errors as LoadImageConfig).
  static Result<Manifest> Load(const std::string& path);

  const ImageConfig& config() const { return config_; }
  const std::string& path() const { return path_; }
  const std::string& dir() const { return dir_; }

  // The manifest with its lowers replaced by `lowers` (bottom first) and its upper by `upper`
  // (nullopt: read-only image). Every other key is kept as it was. InvalidArgument for an
  // existing index out of range, a new entry without a file, more than 255 lowers, or two lowers
  // with the same checkpoint name.
  // A completed operation: any ovbdPendingSnapshot is dropped.
  Result<Manifest> WithStack(const std::vector<StackEntry>& lowers, const std::optional<UpperPaths>& upper) const;
  // The manifest with ovbdPendingSnapshot set (or removed: nullopt), the stack unchanged.
  Result<Manifest> WithPendingSnapshot(const std::optional<PendingSnapshot>& pending) const;
  // Writes the manifest durably: a crash leaves the previous text or this one at path(), never a
  // mix, and a reader opening path() after Save returned sees this one.
  Status Save() const;
  std::string Text() const;  // the JSON text Save writes

  // The stack as `ovbd ctl status` shows a served one: {"manifest", "layers": [{index, path,
  // source: local|registry, size, checkpoint}], "upper", "upper_index", "pending_snapshot",
  // "leftovers"} (`ovbd info CONFIG`). Sizes of local files are stat'ed (null if missing).
  nlohmann::ordered_json Describe() const;

  // Files in dir() named like NewLayerName() and not named by this manifest (lowers, upper, a
  // pending snapshot's upper), and a stale temporary manifest.
  Result<std::vector<std::string>> Leftovers() const;

 private:
  Manifest() = default;
  // The manifest whose JSON document is `root` (checked by the parser's rules).
  Result<Manifest> WithRoot(const nlohmann::ordered_json& root) const;
  std::string path_;
  std::string dir_;
  std::string text_;  // the JSON document as it will be written
  ImageConfig config_;
};

// A fresh file name for a layer file ovbd creates beside a manifest: "ovbd-KIND-TIME-RAND.EXT"
// (TIME as 20261207T154200Z, RAND 8 hex digits), unique in practice, recognised by Leftovers().
std::string NewLayerName(const std::string& kind, const std::string& ext);
bool IsOvbdLayerName(const std::string& file_name);

}  // namespace ovbd::image
