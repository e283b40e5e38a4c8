#include "cli/lazy_layers.h"

#include <pthread.h>
#include <signal.h>

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/options.h"
#include "ovbd/remote.h"
#include "ovbd/trace.h"

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

bool IsOciReference(const std::string& arg) {
  return arg.rfind("oci://", 0) == 0 || arg.rfind("oci+http://", 0) == 0;
}

std::string LayerRef::Name() const {
  if (!path.empty()) return path;
  if (!oci.empty()) return oci;
  return repo_blob_url + "/" + digest;
}

std::vector<LayerRef> RefsFromArgs(const std::vector<std::string>& layers) {
  std::vector<LayerRef> refs;
  for (const auto& l : layers) {
    LayerRef r;
    if (IsOciReference(l)) {
      r.oci = l;
      const auto at = l.rfind('@');
      r.digest = at == std::string::npos ? "" : l.substr(at + 1);
    } else {
      r.path = l;
    }
    refs.push_back(std::move(r));
  }
  return refs;
}

std::vector<LayerRef> RefsFromConfig(const image::ImageConfig& config) {
  std::vector<LayerRef> refs;
  for (const auto& l : config.lowers) {
    LayerRef r;
    r.path = l.file;
    if (l.file.empty()) {
      r.digest = l.digest;
      r.repo_blob_url = config.repo_blob_url;
      r.size = l.size;
    }
    refs.push_back(std::move(r));
  }
  return refs;
}

namespace {

remote::RemoteOptions ToRemoteOptions(const LazyArgs& a) {
  remote::RemoteOptions o;
  o.proxy = a.proxy;
  o.credentials_file = a.credentials;
  o.insecure = a.insecure;
  o.max_parallel = a.remote_parallel;
  o.retry_for = std::chrono::seconds(a.remote_timeout_s);
  o.io_timeout = std::min<std::chrono::milliseconds>(o.io_timeout, std::chrono::seconds(a.remote_timeout_s));
  return o;
}

bool FileExists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

LayerSession::~LayerSession() {
  // Before anything the cache's workers read through is released: a worker must never drop
  // the last reference to the store it runs in.
  if (store_) store_->StopFillWorkers();
  if (prefetcher_) prefetcher_->Cancel();
  downloader_.reset();
}

Result<std::unique_ptr<LayerSession>> LayerSession::Open(const LazyArgs& args, std::vector<LayerRef> refs,
                                                         const std::string& config_trace,
                                                         const image::DownloadConfig& config_download) {
  std::unique_ptr<LayerSession> s(new LayerSession());
  s->refs_ = std::move(refs);
  s->prefetch_parallel_ = args.prefetch_parallel;
  s->cache_dir_ = args.cache_dir;
  s->download_ = args.download || config_download.enable;
  s->download_delay_s_ = args.download ? args.download_delay_s : config_download.delay_s;
  s->download_rate_ = args.download ? ParsedSize(args.download_rate) : config_download.max_mbps * (1ull << 20);
  OVBD_RETURN_IF_ERROR(s->SetUpTrace(args, config_trace));
  OVBD_RETURN_IF_ERROR(s->OpenAll(args));
  return s;
}

Status LayerSession::SetUpTrace(const LazyArgs& args, const std::string& config_trace) {
  std::string replay = args.replay_trace;
  record_path_ = args.record_trace;
  if (replay.empty() && record_path_.empty() && !config_trace.empty()) {
    (FileExists(config_trace) ? replay : record_path_) = config_trace;
  }
  if (!record_path_.empty()) {  // only registry blobs are worth prefetching; one id per digest
    std::vector<std::string> keys;
    for (const auto& r : refs_) {
      if (!r.remote()) continue;
      auto it = std::find(keys.begin(), keys.end(), r.digest);
      trace_ids_.push_back(static_cast<uint32_t>(it - keys.begin()));
      if (it == keys.end()) keys.push_back(r.digest);
    }
    recorder_ = std::make_shared<trace::TraceRecorder>(std::move(keys));
  }
  if (!replay.empty()) {
    auto t = trace::LoadTrace(replay);
    if (!t.ok()) return t.status().WithContext("--replay-trace");
    replay_ = std::make_unique<trace::Trace>(std::move(t).value());
  }
  return Status::OK();
}

Result<std::shared_ptr<const ReadableFile>> LayerSession::OpenRemote(const LazyArgs& args, size_t index) {
  const LayerRef& ref = refs_[index];
  if (!store_) {
    cache::CacheOptions co;
    co.dir = args.cache_dir;
    co.capacity = ParsedSize(args.cache_size);
    co.block_size = static_cast<uint32_t>(ParsedSize(args.cache_block_size));
    co.refill_size = ParsedSize(args.refill_size);
    auto store = cache::CacheStore::Open(co);
    if (!store.ok()) {
      const bool busy = store.status().code() == Code::kUnavailable;
      return store.status().WithContext("--cache-dir " + args.cache_dir +
                                        (busy ? " (another ovbd process may be using it; give each its own)" : ""));
    }
    store_ = std::move(store).value();
  }
  const remote::RemoteOptions options = ToRemoteOptions(args);
  auto blob = ref.oci.empty() ? remote::OpenBlob(ref.repo_blob_url, ref.digest, ref.size, options)
                              : remote::OpenOciReference(ref.oci, options);
  if (!blob.ok()) return blob.status().WithContext("lower " + std::to_string(index));
  std::shared_ptr<const ReadableFile> source(std::move(blob).value());
  if (auto local = OpenDownloaded(args.cache_dir, ref.digest, source->Size())) {
    ++local_copies_;
    return local;  // downloaded and verified by an earlier run
  }
  auto tap = std::make_shared<FetchTap>(source);
  OVBD_ASSIGN_OR_RETURN(auto cached, cache::NewCachedFile(store_, ref.digest, tap));
  auto verifier = CompleteVerifier::Create(std::shared_ptr<const ReadableFile>(std::move(cached)), ref.digest);
  tap->Attach(verifier);
  for (const auto& [start, end] : store_->CachedRanges(ref.digest)) verifier->NoteRead(start, end - start);
  verifiers_[ref.digest] = verifier;
  std::shared_ptr<const ReadableFile> file = verifier;
  if (!download_) return file;
  auto switchable = std::make_shared<SwitchableFile>(file);
  download_jobs_.push_back({ref.digest, source, switchable});
  return std::shared_ptr<const ReadableFile>(switchable);
}

Status LayerSession::OpenAll(const LazyArgs& args) {
  OVBD_RETURN_IF_ERROR(lsmt::CheckLayerCount(refs_.size()));
  std::vector<std::shared_ptr<const ReadableFile>> blobs;
  size_t remote_index = 0;
  for (size_t i = 0; i < refs_.size(); ++i) {
    const LayerRef& ref = refs_[i];
    std::shared_ptr<const ReadableFile> blob;
    if (ref.remote()) {
      OVBD_ASSIGN_OR_RETURN(blob, OpenRemote(args, i));
      if (recorder_) blob = trace::NewRecordingFile(std::move(blob), recorder_, trace_ids_[remote_index]);
      ++remote_index;
    } else {
      OVBD_ASSIGN_OR_RETURN(blob, image::OpenLocalBlob(ref.path));
    }
    blobs.push_back(std::move(blob));
  }
  // Unwrapping reads headers, jump tables and indexes: a few dependent round trips per registry
  // layer, so the layers are opened in parallel (threads end here, before attach forks).
  std::vector<Result<lsmt::LowerLayer>> opened(blobs.size(), Status::IOError("not opened"));
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i; (i = next++) < blobs.size();) opened[i] = image::OpenLowerFile(blobs[i], refs_[i].Name());
  };
  std::vector<std::thread> threads;
  const size_t n = remote_index == 0 ? 0 : std::min<size_t>(8, blobs.size()) - 1;
  for (size_t t = 0; t < n; ++t) threads.emplace_back(worker);
  worker();
  for (auto& t : threads) t.join();
  for (auto& layer : opened) {
    if (!layer.ok()) return layer.status();
    lowers_.push_back(std::move(layer).value());
  }
  return Status::OK();
}

void LayerSession::StartBackground() {
  // Every thread started here inherits a fully blocked signal mask: the serving thread waits
  // for SIGTERM/SIGINT itself, and a background thread that got one would end the process
  // (ovbd attach starts these before it blocks its signals).
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  StartThreads();
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

void LayerSession::StartThreads() {
  if (store_) store_->StartFillWorkers();
  for (auto& [digest, verifier] : verifiers_) verifier->Enable();
  if (!download_jobs_.empty() && !downloader_) {
    downloader_ = Downloader::Start(cache_dir_, download_jobs_, download_delay_s_, download_rate_);
  }
  if (!replay_ || prefetcher_) return;
  trace::PrefetchOptions o;
  o.parallel = prefetch_parallel_;
  std::map<std::string, std::shared_ptr<const ReadableFile>> files(verifiers_.begin(), verifiers_.end());
  prefetcher_ = trace::Prefetcher::Start(*replay_, std::move(files), o);
}

Status LayerSession::Finish() {
  if (finished_) return Status::OK();
  finished_ = true;
  if (store_) store_->StopFillWorkers();
  if (prefetcher_) prefetcher_->Cancel();
  downloader_.reset();
  if (!recorder_) return Status::OK();
  Status s = trace::SaveTrace(record_path_, recorder_->Snapshot());
  return s.WithContext("--record-trace " + record_path_);
}

nlohmann::ordered_json LayerSession::StatusJson() const {
  nlohmann::ordered_json j;
  if (store_) {
    const cache::CacheStats c = store_->Stats();
    j["cache"] = {{"capacity", c.capacity},
                  {"block_size", c.block_size},
                  {"refill_size", c.refill_size},
                  {"used", c.used},
                  {"hits", c.hits},
                  {"misses", c.misses},
                  {"fetched_bytes", c.fetched_bytes},
                  {"readahead_bytes", c.readahead_bytes},
                  {"evicted_bytes", c.evicted_bytes},
                  {"corrupt_blocks", c.corrupt_blocks}};
  }
  nlohmann::ordered_json remote = nlohmann::ordered_json::array();
  for (const auto& r : refs_) {
    if (!r.remote()) continue;
    auto v = verifiers_.find(r.digest);
    const char* check = v == verifiers_.end() ? "local copy" : CompleteVerifier::StateName(v->second->state());
    remote.push_back({{"name", r.Name()}, {"digest", r.digest}, {"digest_check", check}});
  }
  j["remote_layers"] = remote;
  if (local_copies_ > 0) j["downloaded_layers_used"] = local_copies_;
  if (downloader_) {
    const DownloadStats d = downloader_->Stats();
    j["download"] = {{"layers", d.layers}, {"done", d.done},     {"failed", d.failed},
                     {"bytes", d.bytes},   {"finished", d.finished}, {"first_error", d.first_error}};
  }
  if (recorder_) j["trace"] = {{"recording", record_path_}, {"ranges", recorder_->Snapshot().ranges.size()}};
  if (prefetcher_) {
    const trace::PrefetchStats p = prefetcher_->Stats();
    j["prefetch"] = {{"ranges", p.ranges},
                     {"bytes_done", p.bytes_done},
                     {"bytes_failed", p.bytes_failed},
                     {"skipped_layers", p.skipped_layers},
                     {"finished", p.finished}};
  }
  return j;
}

}  // namespace ovbd::cli
