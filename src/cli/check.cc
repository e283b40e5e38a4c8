// ovbd check: a full structural check of each FILE (ZFile blocks, tar payload, LSMT header,
// trailer, index and every data segment's bytes).
#include <algorithm>
#include <cstdio>
#include <vector>

#include "cli/command.h"
#include "cli/probe.h"
#include "ovbd/zfile.h"

namespace ovbd::cli {
namespace {

constexpr uint64_t kReadChunk = 4 << 20;

struct CheckArgs {
  std::vector<std::string> files;
};

// Reads every data segment of a read-only layer, so a ZFile underneath decompresses (and
// CRC-checks) exactly the bytes the layer uses, and every range is inside the blob.
Status ReadAllSegments(const Probe& p) {
  const ReadableFile& content = *p.unwrapped.content;
  std::vector<uint8_t> buf;
  for (const lsmt::Segment& s : p.layer->segments) {
    if (s.zeroed) continue;
    uint64_t offset = s.moffset * lsmt::kSectorSize;
    uint64_t length = uint64_t{s.length} * lsmt::kSectorSize;
    for (uint64_t done = 0; done < length;) {
      uint64_t n = std::min(kReadChunk, length - done);
      buf.resize(n);
      Status st = content.ReadAt(offset + done, buf);
      if (!st.ok()) {
        return st.WithContext("segment at sector " + std::to_string(s.offset) + " (moffset " +
                              std::to_string(s.moffset) + ")");
      }
      done += n;
    }
  }
  return Status::OK();
}

Result<std::string> CheckOne(const std::string& path) {
  OVBD_ASSIGN_OR_RETURN(Probe p, ProbeFile(path));
  if (p.unwrapped.zfile) {
    auto* reader = dynamic_cast<const zfile::Reader*>(p.unwrapped.content.get());
    if (reader) OVBD_RETURN_IF_ERROR(reader->VerifyAll());
  }
  if (p.layer) OVBD_RETURN_IF_ERROR(ReadAllSegments(p));
  std::string detail = DescribeKind(p);
  if (p.kind == "lsmt-ro" || p.kind == "lsmt-rw-index") {
    detail += ", " + std::to_string(p.counts.data) + " data + " + std::to_string(p.counts.zeroed) +
              " zeroed segments";
  }
  if (p.unwrapped.zfile) detail += ", " + std::to_string(p.unwrapped.zfile->block_count) + " blocks verified";
  return detail;
}

Status RunCheck(const CheckArgs& a) {
  size_t failed = 0;
  for (const std::string& path : a.files) {
    auto result = CheckOne(path);
    if (result.ok()) {
      std::printf("%s: OK (%s)\n", path.c_str(), result->c_str());
    } else {
      failed++;
      std::string message = result.status().message();
      if (message.rfind(path + ": ", 0) == 0) message.erase(0, path.size() + 2);
      std::printf("%s: %s\n", path.c_str(), message.c_str());
    }
  }
  std::fflush(stdout);
  if (failed == 0) return Status::OK();
  return Status::Corruption(std::to_string(failed) + " of " + std::to_string(a.files.size()) +
                            " files failed the check");
}

}  // namespace

void AddCheckCommand(CLI::App& parent, Commands* commands) {
  auto args = std::make_shared<CheckArgs>();
  CLI::App* cmd = parent.add_subcommand(
      "check",
      "Check the structure of each FILE: tar payload bounds, every ZFile block (CRC, "
      "decompression), the LSMT header, trailer and index (caps, order, ranges) and the bytes of "
      "every data segment. Prints 'FILE: OK (...)' or 'FILE: <error>' per file; exits with 1 if "
      "any failed.");
  cmd->add_option("FILE", args->files, "Files to check")->required();
  cmd->footer("\nExample:\n  ovbd check layer0.zfile layer1.tar layer2.lsmt");
  commands->push_back({cmd, "check", [args] { return RunCheck(*args); }});
}

}  // namespace ovbd::cli
