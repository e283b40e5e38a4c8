// Where a subcommand's output goes.
//
//   OUT (moved into place by Finish) <- [tar wrapper] <- [ZFile builder] <- producer
//
// A regular output file is an AtomicFile "OUT.ovbd-tmp.<pid>", moved to OUT only when
// everything succeeded, so a failed command never leaves a half file named OUT; an existing OUT
// is refused unless `force`. "-" is standard output; an existing non-regular file (a device,
// /dev/null, a FIFO) is written in place.
//
// Durability (`sync`, the --sync flag): off by default, as for cp, qemu-img convert and the
// overlaybd tools: OUT is complete when the command returns, and on disk once the kernel has
// written it back. With sync, Finish() fdatasyncs the file, renames it and fsyncs the directory,
// so OUT survives a crash from the moment the command exits.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "ovbd/io.h"
#include "ovbd/status.h"
#include "ovbd/zfile.h"

namespace ovbd::cli {

class OutputFile {
 public:
  static Result<std::unique_ptr<OutputFile>> Create(const std::string& path, bool force, bool sync);
  ~OutputFile() = default;  // an unfinished regular output is removed (AtomicFile)

  WritableFile* file() { return atomic_ ? atomic_->file() : in_place_.get(); }
  // Syncs (if asked), closes and moves the file into place.
  Status Finish();

 private:
  OutputFile(std::unique_ptr<AtomicFile> atomic, std::unique_ptr<WritableFile> in_place, bool sync)
      : atomic_(std::move(atomic)), in_place_(std::move(in_place)), sync_(sync) {}

  std::unique_ptr<AtomicFile> atomic_;      // a regular file
  std::unique_ptr<WritableFile> in_place_;  // "-" or an existing non-regular file
  bool sync_;
};

struct ChainOptions {
  bool tar = false;
  bool sync = false;  // --sync: OUT is durable when Finish() returns
  std::optional<zfile::Options> zfile;  // compress what is written
};

// The whole chain; write to sink(), then Finish() (nothing is renamed into place on failure).
class OutputChain {
 public:
  static Result<std::unique_ptr<OutputChain>> Open(const std::string& path, bool force,
                                                   const ChainOptions& options);
  WritableFile* sink();
  // The file below the ZFile stage (for producers that compress themselves).
  WritableFile* uncompressed_target();
  Status Finish();

 private:
  std::unique_ptr<OutputFile> file_;
  std::unique_ptr<WritableFile> tar_;
  std::unique_ptr<WritableFile> zfile_;
};

// Opens the chain at `path`, runs `produce(sink)` and finishes the chain; on any failure the
// output is not moved into place.
Status WriteOutput(const std::string& path, bool force, const ChainOptions& options,
                   const std::function<Status(WritableFile*)>& produce);

// A WritableFile adapter over a zfile::Builder (Close() = Finish()). Not seekable.
std::unique_ptr<WritableFile> NewBuilderWriter(std::unique_ptr<zfile::Builder> builder, std::string name);

}  // namespace ovbd::cli
