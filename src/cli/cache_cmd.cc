// ovbd cache status|prune: look at or shrink the local cache of registry blobs while no server
// uses it (a running server holds the directory's lock; ask it with `ovbd ctl SOCKET status`).
#include <sys/stat.h>

#include <cstdio>
#include <limits>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/lazy_layers.h"
#include "cli/options.h"
#include "ovbd/cache.h"

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

void AddDir(CLI::App* cmd, CacheArgs* a) {
  cmd->add_option("--cache-dir", a->dir, "The cache directory (serve/attach --cache-dir)")->capture_default_str();
  cmd->add_flag("--json", a->json, "Print JSON");
}

}  // namespace

void AddCacheCommand(CLI::App& parent, Commands* commands) {
  CLI::App* group = parent.add_subcommand(
      "cache", "Inspect or shrink the local cache of registry blobs (not while a server uses it)");
  group->require_subcommand(1);
  group->footer("\nExamples:\n  ovbd cache status --cache-dir /var/cache/ovbd\n"
                "  ovbd cache prune --cache-dir /var/cache/ovbd --to 1G\n"
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
}

}  // namespace ovbd::cli
