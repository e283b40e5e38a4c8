// Shared options: validators run inside CLI11's parse so bad values are usage errors (exit 2).
#include "cli/options.h"

#include "base/units.h"
#include "cli/output.h"
#include "cli/progress.h"

namespace ovbd::cli {

CLI::Validator SizeValidator(uint64_t align, bool positive) {
  return CLI::Validator(
      [align, positive](std::string& text) -> std::string {
        auto size = ParseSize(text);
        if (!size.ok()) return size.status().message();
        if (positive && *size == 0) return "must be greater than 0";
        if (*size % align != 0) return text + " is not a multiple of " + std::to_string(align);
        return "";
      },
      "SIZE");
}

CLI::Validator UuidValidator() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        auto uuid = lsmt::NormalizeUuid(text);
        return uuid.ok() ? "" : uuid.status().message();
      },
      "UUID");
}

uint64_t ParsedSize(const std::string& text) {
  auto size = ParseSize(text);
  return size.ok() ? *size : 0;
}

void AddZfileOptions(CLI::App* cmd, ZfileFlags* flags, bool with_switch) {
  if (with_switch) cmd->add_flag("--zfile", flags->enabled, "Write the output as a ZFile (compressed)");
  cmd->add_option("--algorithm", flags->algorithm, "ZFile compression: lz4 or zstd")
      ->check(CLI::IsMember({"lz4", "zstd"}))
      ->capture_default_str();
  cmd->add_option("--block-size", flags->block_size, "ZFile block size: 4K, 8K, 16K, 32K or 64K")
      ->check(CLI::IsMember({"4K", "8K", "16K", "32K", "64K", "4096", "8192", "16384", "32768", "65536"},
                            CLI::ignore_case))
      ->capture_default_str();
  cmd->add_flag("--no-crc", flags->no_crc, "Do not store per-block CRC32C checksums");
  cmd->add_option("--threads", flags->threads, "Compression threads (output does not depend on it)")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
}

zfile::Options ToZfileOptions(const ZfileFlags& flags) {
  zfile::Options options;
  auto algorithm = zfile::ParseAlgorithm(flags.algorithm);
  if (algorithm.ok()) options.algorithm = *algorithm;
  options.block_size = static_cast<uint32_t>(ParsedSize(flags.block_size));
  options.crc = !flags.no_crc;
  options.threads = flags.threads;
  return options;
}

void AddCommitFlags(CLI::App* cmd, CommitFlags* flags, bool with_parent) {
  cmd->add_option("-m,--message", flags->message, "Commit message stored as the layer's user tag (<= 256 bytes)")
      ->check(CLI::Validator(
          [](std::string& text) -> std::string {
            return text.size() <= lsmt::kMaxUserTag ? "" : "longer than 256 bytes";
          },
          ""));
  cmd->add_option("--uuid", flags->uuid, "UUID of the new layer (default: null)")->check(UuidValidator());
  if (with_parent) {
    cmd->add_option("--parent-uuid", flags->parent_uuid, "Parent UUID (default: from the source layer)")
        ->check(UuidValidator());
  }
}

lsmt::CommitOptions ToCommitOptions(const CommitFlags& flags) {
  lsmt::CommitOptions options;
  options.user_tag = flags.message;
  if (!flags.uuid.empty()) options.uuid = flags.uuid;
  if (!flags.parent_uuid.empty()) options.parent_uuid = flags.parent_uuid;
  return options;
}

void AddQuiet(CLI::App* cmd, bool* quiet) {
  cmd->add_flag("-q,--quiet", *quiet, "No progress display (it is shown only when stderr is a terminal)");
}

void AddSync(CLI::App* cmd, bool* sync) {
  cmd->add_flag("--sync", *sync,
                "Make the output durable before exiting (fdatasync, rename, fsync of the directory). "
                "Default: written through the page cache like cp; an error never leaves a partial "
                "output, but a power cut soon after may");
}

void AddLayerOutputFlags(CLI::App* cmd, LayerOutputFlags* flags, const std::string& tar_help) {
  AddCommitFlags(cmd, &flags->commit, /*with_parent=*/true);
  AddZfileOptions(cmd, &flags->zfile, /*with_switch=*/true);
  cmd->add_flag("--tar", flags->tar, tar_help);
  cmd->add_flag("-f,--force", flags->force, "Overwrite the output if it exists");
  AddSync(cmd, &flags->sync);
  AddQuiet(cmd, &flags->quiet);
}

Status WriteLayerOutput(const std::string& out, const LayerOutputFlags& flags, const char* what,
                        bool overwrite_zfile_header,
                        const std::function<Status(WritableFile*, const lsmt::CommitOptions&)>& produce) {
  ChainOptions chain;
  chain.tar = flags.tar;
  chain.sync = flags.sync;
  if (flags.zfile.enabled) {
    chain.zfile = ToZfileOptions(flags.zfile);
    chain.zfile->overwrite_header = overwrite_zfile_header;
  }
  Progress progress(what, flags.quiet);
  lsmt::CommitOptions options = ToCommitOptions(flags.commit);
  options.progress = progress.Callback();
  return WriteOutput(out, flags.force, chain, [&](WritableFile* sink) { return produce(sink, options); });
}

}  // namespace ovbd::cli
