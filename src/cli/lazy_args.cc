#include "cli/lazy_args.h"

#include "cli/options.h"

namespace ovbd::cli {

void AddLazyArgs(CLI::App* cmd, LazyArgs* a, bool with_trace) {
  const char* group = "Remote layers (lazy loading)";
  cmd->add_option("--cache-dir", a->cache_dir,
                  "Local cache of registry blobs, kept across restarts (one serving process per directory)")
      ->group(group)
      ->capture_default_str();
  cmd->add_option("--cache-size", a->cache_size, "Hard cap of the cache; least recently used blocks are evicted")
      ->check(SizeValidator(1, true))
      ->group(group)
      ->capture_default_str();
  cmd->add_option("--cache-block-size", a->cache_block_size,
                  "Unit the cache fetches, checks and evicts (power of two, 4K..16M); a scattered miss "
                  "fetches only its own blocks. A cache directory made with another size is emptied")
      ->check(SizeValidator(4096, true))
      ->group(group)
      ->capture_default_str();
  cmd->add_option("--refill-size", a->refill_size,
                  "Refill granularity of sequential reads: a miss that continues a stream of at least this "
                  "many bytes also fetches this much ahead (0 = no read-ahead; at most 64M)")
      ->check(SizeValidator(1, false))
      ->group(group)
      ->capture_default_str();
  cmd->add_option("--proxy", a->proxy, "HTTP proxy for registry requests (e.g. a P2P agent such as dfdaemon)")
      ->group(group);
  cmd->add_option("--credentials", a->credentials, "docker-style config.json (\"auths\") or cred.json")->group(group);
  cmd->add_flag("--insecure", a->insecure, "Do not verify the registry's TLS certificate")->group(group);
  cmd->add_option("--remote-timeout", a->remote_timeout_s,
                  "Seconds a read keeps retrying an unreachable registry before it fails with EIO")
      ->check(CLI::Range(1u, 86400u))
      ->group(group)
      ->capture_default_str();
  cmd->add_option("--remote-parallel", a->remote_parallel, "Range requests in flight per read")
      ->check(CLI::Range(1u, 64u))
      ->group(group)
      ->capture_default_str();
  cmd->add_flag("--trust-unverified", a->trust_unverified,
                "Read registry layers that nothing verifies piece by piece (no digest table from ovbd push, "
                "not a ZFile with CRCs) lazily anyway. By default such a layer is downloaded whole to "
                "CACHE_DIR/layers and its sha256 checked before its first read is answered")
      ->group(group);
  if (!with_trace) return;
  auto* record = cmd->add_option("--record-trace", a->record_trace,
                                 "Record the ranges of registry blobs read while serving; written at exit")
                     ->group(group);
  cmd->add_option("--replay-trace", a->replay_trace,
                  "Prefetch the ranges of a recorded trace into the cache in the background at start")
      ->excludes(record)
      ->group(group);
  cmd->add_option("--prefetch-parallel", a->prefetch_parallel, "Concurrent reads of the trace replay")
      ->check(CLI::Range(1u, 64u))
      ->group(group)
      ->capture_default_str();
  cmd->add_flag("--download", a->download,
                "Also download whole registry layers in the background to CACHE_DIR/layers; reads switch to "
                "a layer's local copy once its sha256 checks")
      ->group(group);
  cmd->add_option("--download-rate", a->download_rate, "Download rate limit in bytes per second (0 = none)")
      ->check(SizeValidator(1, false))
      ->group(group)
      ->capture_default_str();
  cmd->add_option("--download-delay", a->download_delay_s, "Seconds to wait after start before downloading")
      ->group(group)
      ->capture_default_str();
}

volume::VolumeOptions ToVolumeOptions(const LazyArgs& a) {
  volume::VolumeOptions o;
  o.cache_dir = a.cache_dir;
  o.cache_size = ParsedSize(a.cache_size);
  o.cache_block_size = static_cast<uint32_t>(ParsedSize(a.cache_block_size));
  o.refill_size = ParsedSize(a.refill_size);
  o.proxy = a.proxy;
  o.credentials = a.credentials;
  o.insecure = a.insecure;
  o.remote_timeout = std::chrono::seconds(a.remote_timeout_s);
  o.remote_parallel = a.remote_parallel;
  o.record_trace = a.record_trace;
  o.replay_trace = a.replay_trace;
  o.prefetch_parallel = a.prefetch_parallel;
  o.download = a.download;
  o.download_rate = ParsedSize(a.download_rate);
  o.download_delay = std::chrono::seconds(a.download_delay_s);
  o.trust_unverified = a.trust_unverified;
  return o;
}

}  // namespace ovbd::cli
