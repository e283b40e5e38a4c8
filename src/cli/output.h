// Where a subcommand's output goes.
//
//   OUT (renamed into place by Finish) <- [tar wrapper] <- [ZFile builder] <- producer
//
// A regular output file is written as "OUT.ovbd-tmp.<pid>" and only renamed to OUT when
// everything succeeded, so a failed command never leaves a half file named OUT; an existing OUT
// is refused unless `force`. "-" is standard output; an existing non-regular file (a device,
// /dev/null, a FIFO) is written in place.
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
  static Result<std::unique_ptr<OutputFile>> Create(const std::string& path, bool force);
  ~OutputFile();  // removes the temporary file unless Finish() succeeded

  WritableFile* file() { return file_.get(); }
  // Syncs and closes the file and moves it into place.
  Status Finish();

 private:
  OutputFile(std::string path, std::string temp, bool force, std::unique_ptr<WritableFile> file)
      : path_(std::move(path)), temp_(std::move(temp)), force_(force), file_(std::move(file)) {}
  Status MoveIntoPlace();

  std::string path_;
  std::string temp_;  // "" when written in place
  bool force_;
  std::unique_ptr<WritableFile> file_;
  bool finished_ = false;
};

struct ChainOptions {
  bool tar = false;
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
