// ovbd cache status|prune|verify: look at, shrink or re-check the local cache of registry blobs
// while no server uses it (a running server holds the directory's lock; ask it with `ovbd ctl SOCKET status`).
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <limits>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/lazy_args.h"
#include "cli/options.h"
#include "base/hash.h"
#include "ovbd/cache.h"
#include "ovbd/cache_verify.h"
#include "ovbd/digest_table.h"

namespace ovbd::cli {
namespace {

struct CacheArgs {
  std::string dir = LazyArgs().cache_dir;
  std::string to = "0";
  bool json = false;
};

Result<std::shared_ptr<cache::CacheStore>> OpenStore(const CacheArgs& a) {
  struct stat st {};
  if (::stat(a.dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Status::NotFound(a.dir + ": no cache directory there (--cache-dir)");
  }
  cache::CacheOptions o;
  o.dir = a.dir;
  o.capacity = std::numeric_limits<uint64_t>::max() / 2;  // look, never evict on open
  o.block_size = 0;                                       // whatever the tables there use
  auto store = cache::CacheStore::Open(o);
  if (store.ok()) return store;
  if (store.status().code() == Code::kUnavailable) {
    return Status::Unavailable(a.dir + ": in use by a running ovbd serve/attach; stop it, or ask it with "
                                       "'ovbd ctl SOCKET status'");
  }
  return store.status();
}

std::string Human(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

Status RunStatus(const CacheArgs& a) {
  OVBD_ASSIGN_OR_RETURN(auto store, OpenStore(a));
  const cache::CacheStats st = store->Stats();
  const auto files = store->Files();
  if (a.json) {
    nlohmann::ordered_json blobs = nlohmann::ordered_json::array();
    for (const auto& f : files) blobs.push_back({{"key", f.key}, {"size", f.size}, {"cached_bytes", f.cached_bytes}});
    nlohmann::ordered_json j = {{"dir", a.dir}, {"block_size", st.block_size}, {"used", st.used}, {"blobs", blobs}};
    std::printf("%s\n", j.dump(2).c_str());
    return Status::OK();
  }
  std::printf("%s: %zu blobs, %s cached, block size %s\n", a.dir.c_str(), files.size(), Human(st.used).c_str(),
              Human(st.block_size).c_str());
  for (const auto& f : files) {
    const double pct = f.size == 0 ? 100.0 : 100.0 * static_cast<double>(f.cached_bytes) / static_cast<double>(f.size);
    std::printf("  %s  %10s of %10s  %5.1f%%\n", f.key.c_str(), Human(f.cached_bytes).c_str(), Human(f.size).c_str(),
                pct);
  }
  return Status::OK();
}

Status RunPrune(const CacheArgs& a) {
  OVBD_ASSIGN_OR_RETURN(auto store, OpenStore(a));
  const uint64_t before = store->Stats().used;
  OVBD_RETURN_IF_ERROR(store->Prune(ParsedSize(a.to)));
  const uint64_t after = store->Stats().used;
  if (a.json) {
    std::printf("%s\n", nlohmann::ordered_json({{"dir", a.dir}, {"before", before}, {"after", after}}).dump(2).c_str());
  } else {
    std::printf("%s: %s -> %s (freed %s)\n", a.dir.c_str(), Human(before).c_str(), Human(after).c_str(),
                Human(before - after).c_str());
  }
  return Status::OK();
}

// The digest table serving linked to `key` (CACHE_DIR/tables/KEY.table, see src/volume/lowers.cc), if
// any; a link to a missing or broken table is an error (the table is what verifies the blob).
Result<std::optional<remote::DigestTable>> LinkedTable(const std::string& dir, const cache::CachedFileInfo& f) {
  const std::string link = dir + "/tables/" + f.key + ".table";
  struct stat st {};
  if (::lstat(link.c_str(), &st) != 0) return std::optional<remote::DigestTable>();
  auto file = OpenReadableFile(link);
  if (!file.ok()) return file.status().WithContext("digest table of " + f.key);
  OVBD_ASSIGN_OR_RETURN(auto bytes, ReadAll(**file));
  OVBD_ASSIGN_OR_RETURN(auto table, remote::DecodeDigestTable(bytes, link));
  if (table.blob_size != f.size) {
    return Status::Corruption(link + ": describes " + std::to_string(table.blob_size) + " bytes, the cached blob has " +
                              std::to_string(f.size));
  }
  return std::optional(std::move(table));
}

cache::ContentCheck TableCheck(const remote::DigestTable& table) {
  return [&table](uint64_t offset, std::span<const uint8_t> bytes) {
    const uint64_t chunk = offset / table.chunk_size;
    Sha256 sha;
    sha.Update(bytes);
    const auto got = sha.Final();
    if (chunk < table.chunks.size() && got == table.chunks[chunk]) return Status::OK();
    return Status::Corruption("chunk " + std::to_string(chunk) + " does not match the digest table (sha256 " +
                              ToHex(got) + ")");
  };
}

Status RunVerify(const CacheArgs& a) {
  OVBD_ASSIGN_OR_RETURN(auto store, OpenStore(a));
  nlohmann::ordered_json keys = nlohmann::ordered_json::array();
  uint64_t checked = 0, problems = 0;
  for (const auto& f : store->Files()) {
    OVBD_ASSIGN_OR_RETURN(auto table, LinkedTable(a.dir, f));
    const uint64_t unit = table ? table->chunk_size : 0;
    OVBD_ASSIGN_OR_RETURN(cache::VerifyReport r,
                          cache::VerifyCachedKey(store, f.key, f.size, unit, table ? TableCheck(*table) : nullptr));
    checked += r.checked_bytes;
    problems += r.problems.size();
    nlohmann::ordered_json bad = nlohmann::ordered_json::array();
    for (const auto& p : r.problems) bad.push_back({{"offset", p.offset}, {"length", p.length}, {"cause", p.cause}});
    keys.push_back({{"key", f.key}, {"checked_bytes", r.checked_bytes}, {"table_checked_bytes", r.content_checked_bytes},
                    {"digest_table", table.has_value()}, {"problems", bad}});
    if (a.json) continue;
    std::printf("%s: %s read back%s, %zu bad\n", f.key.c_str(), Human(r.checked_bytes).c_str(),
                table ? (", " + Human(r.content_checked_bytes) + " against its digest table").c_str() : "",
                r.problems.size());
    for (const auto& p : r.problems) {
      std::printf("  bytes %llu+%llu dropped: %s\n", static_cast<unsigned long long>(p.offset),
                  static_cast<unsigned long long>(p.length), p.cause.c_str());
    }
  }
  if (a.json) {
    std::printf("%s\n", nlohmann::ordered_json({{"dir", a.dir}, {"checked_bytes", checked}, {"bad_blocks", problems},
                                                {"blobs", keys}}).dump(2).c_str());
  }
  if (problems == 0) return Status::OK();
  return Status::Corruption(a.dir + ": " + std::to_string(problems) +
                            " cached ranges failed verification; they were dropped and will be fetched again");
}

void AddDir(CLI::App* cmd, CacheArgs* a) {
  cmd->add_option("--cache-dir", a->dir, "The cache directory (serve/attach --cache-dir)")->capture_default_str();
  cmd->add_flag("--json", a->json, "Print JSON");
}

}  // namespace

void AddCacheCommand(CLI::App& parent, Commands* commands) {
  CLI::App* group = parent.add_subcommand(
      "cache", "Inspect, shrink or re-check the local cache of registry blobs (not while a server uses it)");
  group->require_subcommand(1);
  group->footer("\nExamples:\n  ovbd cache status --cache-dir /var/cache/ovbd\n"
                "  ovbd cache prune --cache-dir /var/cache/ovbd --to 1G\n"
                "  ovbd cache verify --cache-dir /var/cache/ovbd --json\n"
                "  ovbd ctl /run/ovbd/serve-PID.sock.ctl status   # the cache of a running server");
  auto args = std::make_shared<CacheArgs>();
  CLI::App* status = group->add_subcommand("status", "Cached blobs: key, size, bytes cached");
  AddDir(status, args.get());
  commands->push_back({status, "cache status", [args] { return RunStatus(*args); }});
  CLI::App* prune = group->add_subcommand("prune", "Evict least recently used blocks until the cache holds at most --to");
  AddDir(prune, args.get());
  prune->add_option("--to", args->to, "Target size (0 = empty the cache)")
      ->check(SizeValidator(1, false))
      ->capture_default_str();
  commands->push_back({prune, "cache prune", [args] { return RunPrune(*args); }});
  CLI::App* verify = group->add_subcommand(
      "verify",
      "Re-check every cached block: its CRC32C (bytes rotted on disk) and, for blobs served with a digest "
      "table, the sha256 of every chunk held whole. Bad blocks are dropped (the next read fetches them "
      "again); exit status 1 if any was found");
  AddDir(verify, args.get());
  commands->push_back({verify, "cache verify", [args] { return RunVerify(*args); }});
}

}  // namespace ovbd::cli
