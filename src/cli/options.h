// Option groups and validators shared by several subcommands.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "ovbd/io.h"
#include "ovbd/lsmt.h"
#include "ovbd/status.h"
#include "ovbd/zfile.h"

namespace ovbd::cli {

// A size ("64M", "1G", "4096") that is a multiple of `align` (and > 0 if `positive`).
CLI::Validator SizeValidator(uint64_t align, bool positive);
// A UUID in any case ("0a0b0c0d-1111-4222-8333-444455556666").
CLI::Validator UuidValidator();
// ParseSize of text already checked by SizeValidator.
uint64_t ParsedSize(const std::string& text);

// --zfile (when `with_switch`), --algorithm, --block-size, --no-crc, --threads.
struct ZfileFlags {
  bool enabled = false;
  std::string algorithm = "lz4";
  std::string block_size = "4K";
  bool no_crc = false;
  int threads = 1;
};
void AddZfileOptions(CLI::App* cmd, ZfileFlags* flags, bool with_switch);
zfile::Options ToZfileOptions(const ZfileFlags& flags);

// -m, --uuid, and (if `with_parent`) --parent-uuid.
struct CommitFlags {
  std::string message;
  std::string uuid;
  std::string parent_uuid;
};
void AddCommitFlags(CLI::App* cmd, CommitFlags* flags, bool with_parent);
lsmt::CommitOptions ToCommitOptions(const CommitFlags& flags);

// -q/--quiet.
void AddQuiet(CLI::App* cmd, bool* quiet);
// --sync: the output is fdatasynced (and its directory fsynced) before the command exits.
void AddSync(CLI::App* cmd, bool* sync);

// What every command that writes a layer blob (commit, merge, import) takes: -m/--uuid/
// --parent-uuid, --zfile and its options, --tar, -f/--force, --sync, -q.
struct LayerOutputFlags {
  CommitFlags commit;
  ZfileFlags zfile;
  bool tar = false;
  bool force = false;
  bool sync = false;
  bool quiet = false;
};
void AddLayerOutputFlags(CLI::App* cmd, LayerOutputFlags* flags, const std::string& tar_help);
// Writes the blob `produce` makes to `out` through the output chain the flags ask for, with a
// progress display named `what`. overwrite_zfile_header: the ZFile header is rewritten at the end
// (overlaybd-commit -z without -t).
Status WriteLayerOutput(const std::string& out, const LayerOutputFlags& flags, const char* what,
                        bool overwrite_zfile_header,
                        const std::function<Status(WritableFile*, const lsmt::CommitOptions&)>& produce);

}  // namespace ovbd::cli
