#include "volume/lowers.h"

#include <pthread.h>
#include <signal.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>
#include <iostream>

#include <nlohmann/json.hpp>

#include "ovbd/remote.h"
#include "ovbd/trace.h"

namespace ovbd::volume {

namespace {

remote::RemoteOptions ToRemoteOptions(const VolumeOptions& a) {
  remote::RemoteOptions o;
  o.proxy = a.proxy;
  o.credentials_file = a.credentials;
  o.insecure = a.insecure;
  o.max_parallel = a.remote_parallel;
  o.retry_for = a.remote_timeout;
  o.io_timeout = std::min<std::chrono::milliseconds>(o.io_timeout, a.remote_timeout);
  return o;
}

// How a remote lower's bytes are proven (ctl status "verification").
constexpr const char* kCheckDigestTable = "digest table";
constexpr const char* kCheckZFileCrc = "zfile crc";
constexpr const char* kCheckDownloaded = "downloaded whole, sha256";
constexpr const char* kCheckLocalCopy = "local copy, sha256";
constexpr const char* kCheckNone = "none (--trust-unverified)";

// CACHE_DIR/tables/<blob digest>.table -> <table digest>: which table checks which cached blob
// (ovbd cache verify). Best effort: serving does not need the link.
void LinkTable(const std::string& cache_dir, const std::string& blob_digest, const std::string& table_digest) {
  const std::string link = cache_dir + "/tables/" + blob_digest + ".table";
  char target[256];
  const ssize_t n = ::readlink(link.c_str(), target, sizeof(target));
  if (n > 0 && std::string(target, static_cast<size_t>(n)) == table_digest) return;
  ::unlink(link.c_str());
  (void)::symlink(table_digest.c_str(), link.c_str());
}

bool HasTableLink(const std::string& cache_dir, const std::string& blob_digest) {
  struct stat st {};
  return ::lstat((cache_dir + "/tables/" + blob_digest + ".table").c_str(), &st) == 0;
}

bool FileExists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

Lowers::~Lowers() {
  // Before anything the cache's workers read through is released: a worker must never drop
  // the last reference to the store it runs in.
  if (store_) store_->StopFillWorkers();
  if (prefetcher_) prefetcher_->Cancel();
  downloader_.reset();
}

Result<std::unique_ptr<Lowers>> Lowers::Open(const VolumeOptions& opts, std::vector<LayerRef> refs,
                                             const std::string& config_trace,
                                             const image::DownloadConfig& config_download) {
  std::unique_ptr<Lowers> s(new Lowers());
  s->refs_ = std::move(refs);
  s->prefetch_parallel_ = opts.prefetch_parallel;
  s->cache_dir_ = opts.cache_dir;
  s->download_ = opts.download || config_download.enable;
  s->download_delay_ = opts.download ? opts.download_delay : std::chrono::seconds(config_download.delay_s);
  s->download_rate_ = opts.download ? opts.download_rate : config_download.max_mbps * (1ull << 20);
  s->trust_unverified_ = opts.trust_unverified;
  s->checks_.assign(s->refs_.size(), "");
  s->raw_sources_.assign(s->refs_.size(), nullptr);
  s->needs_download_.assign(s->refs_.size(), false);
  s->verify_stats_ = std::make_shared<remote::VerifyStats>();
  OVBD_RETURN_IF_ERROR(s->SetUpTrace(opts, config_trace));
  OVBD_RETURN_IF_ERROR(s->OpenAll(opts));
  return s;
}

Status Lowers::SetUpTrace(const VolumeOptions& opts, const std::string& config_trace) {
  std::string replay = opts.replay_trace;
  record_path_ = opts.record_trace;
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

Result<std::shared_ptr<const ReadableFile>> Lowers::OpenRemote(const VolumeOptions& opts, size_t index) {
  const LayerRef& ref = refs_[index];
  if (!store_) {
    cache::CacheOptions co;
    co.dir = opts.cache_dir;
    co.capacity = opts.cache_size;
    co.block_size = opts.cache_block_size;
    co.refill_size = opts.refill_size;
    auto store = cache::CacheStore::Open(co);
    if (!store.ok()) {
      const bool busy = store.status().code() == Code::kUnavailable;
      return store.status().WithContext("--cache-dir " + opts.cache_dir +
                                        (busy ? " (another ovbd process may be using it; give each its own)" : ""));
    }
    store_ = std::move(store).value();
  }
  const remote::RemoteOptions options = ToRemoteOptions(opts);
  auto blob = ref.oci.empty() ? remote::OpenBlob(ref.repo_blob_url, ref.digest, ref.size, options)
                              : remote::OpenOciReference(ref.oci, options);
  if (!blob.ok()) return blob.status().WithContext("lower " + std::to_string(index));
  std::shared_ptr<const ReadableFile> source(std::move(blob).value());
  raw_sources_[index] = source;
  if (auto local = OpenDownloaded(opts.cache_dir, ref.digest, source->Size())) {
    ++local_copies_;
    checks_[index] = kCheckLocalCopy;
    return local;  // downloaded and verified by an earlier run
  }
  std::shared_ptr<const ReadableFile> fetched = source;
  if (ref.digest_table) {  // every fetched chunk is checked before the cache or a reader sees it
    OVBD_ASSIGN_OR_RETURN(auto table, LoadDigestTable(opts, index, options));
    auto verified = remote::NewVerifiedFile(source, table, ref.Name(), {}, verify_stats_);
    if (!verified.ok()) return verified.status().WithContext("lower " + std::to_string(index));
    fetched = std::move(verified).value();
    checks_[index] = kCheckDigestTable;
  }
  // Blobs read lazily without verification (--trust-unverified) are cached under a key of their
  // own, so that their bytes are never taken for verified ones by a later run.
  const std::string key = ref.digest + (checks_[index].empty() && trust_unverified_ ? ".unverified" : "");
  auto tap = std::make_shared<FetchTap>(fetched);
  OVBD_ASSIGN_OR_RETURN(auto cached, cache::NewCachedFile(store_, key, tap));
  if (ref.digest_table) {
    // The link says every block cached under this key came through a digest table. Without it,
    // what is cached came from an earlier run that had no table (an older ovbd): dropped.
    if (!HasTableLink(opts.cache_dir, ref.digest) && !store_->CachedRanges(key).empty()) {
      cached->Invalidate(0, cached->Size());
    }
    LinkTable(opts.cache_dir, ref.digest, ref.digest_table->digest);
  }
  auto verifier = CompleteVerifier::Create(std::shared_ptr<const ReadableFile>(std::move(cached)), ref.digest);
  tap->Attach(verifier);
  for (const auto& [start, end] : store_->CachedRanges(key)) verifier->NoteRead(start, end - start);
  verifiers_[ref.digest] = verifier;
  std::shared_ptr<const ReadableFile> file = verifier;
  if (!download_) return file;
  auto switchable = std::make_shared<SwitchableFile>(file);
  download_jobs_.push_back({ref.digest, source, switchable});
  return std::shared_ptr<const ReadableFile>(switchable);
}

// Fetches the digest tables not yet in CACHE_DIR/tables, in parallel (one request each, and a
// cold start waits for them), so that LoadDigestTable then finds them locally. Errors are left
// to LoadDigestTable, which reports them for its lower.
void Lowers::PrefetchTables(const VolumeOptions& opts) {
  std::vector<const LayerRef*> todo;
  for (const LayerRef& r : refs_) {
    if (!r.remote() || !r.digest_table || r.repo_blob_url.empty()) continue;
    const bool dup = std::any_of(todo.begin(), todo.end(),
                                 [&](const LayerRef* t) { return t->digest_table->digest == r.digest_table->digest; });
    if (!dup && !FileExists(opts.cache_dir + "/tables/" + r.digest_table->digest)) todo.push_back(&r);
  }
  if (todo.size() < 2) return;  // nothing to overlap
  const remote::RemoteOptions options = ToRemoteOptions(opts);
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i; (i = next++) < todo.size();) {
      const image::BlobRef& t = *todo[i]->digest_table;
      auto blob = remote::OpenBlob(todo[i]->repo_blob_url, t.digest, t.size, options);
      if (blob.ok()) (void)FetchVerifiedCopy(**blob, t.digest, opts.cache_dir + "/tables", 1);
    }
  };
  std::vector<std::thread> threads;
  for (size_t n = std::min<size_t>(8, todo.size()); n > 0; --n) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
}

Status Lowers::OpenAll(const VolumeOptions& opts) {
  OVBD_RETURN_IF_ERROR(lsmt::CheckLayerCount(refs_.size()));
  PrefetchTables(opts);
  std::vector<std::shared_ptr<const ReadableFile>> blobs;
  size_t remote_index = 0;
  for (size_t i = 0; i < refs_.size(); ++i) {
    const LayerRef& ref = refs_[i];
    std::shared_ptr<const ReadableFile> blob;
    if (ref.remote()) {
      OVBD_ASSIGN_OR_RETURN(blob, OpenRemote(opts, i));
      if (recorder_) blob = trace::NewRecordingFile(std::move(blob), recorder_, trace_ids_[remote_index]);
      ++remote_index;
    } else {
      OVBD_ASSIGN_OR_RETURN(blob, image::OpenLocalBlob(ref.path));
    }
    blobs.push_back(std::move(blob));
  }
  // Unwrapping reads headers, jump tables and indexes: a few dependent round trips per registry
  // layer, so the layers are opened in parallel (threads end here, before attach forks).
  std::vector<Result<std::optional<lsmt::LowerLayer>>> opened(blobs.size(), Status::IOError("not opened"));
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i; (i = next++) < blobs.size();) opened[i] = OpenLazily(i, blobs[i]);
  };
  std::vector<std::thread> threads;
  const size_t n = remote_index == 0 ? 0 : std::min<size_t>(8, blobs.size()) - 1;
  for (size_t t = 0; t < n; ++t) threads.emplace_back(worker);
  worker();
  for (auto& t : threads) t.join();
  std::vector<std::optional<lsmt::LowerLayer>> layers;
  for (auto& layer : opened) {
    if (!layer.ok()) return layer.status();
    layers.push_back(std::move(layer).value());
  }
  OVBD_RETURN_IF_ERROR(DownloadUnverifiable(&layers));
  error_taps_.assign(refs_.size(), nullptr);
  for (size_t i = 0; i < layers.size(); ++i) {
    lsmt::LowerLayer& layer = *layers[i];
    if (refs_[i].remote()) {
      error_taps_[i] = std::make_shared<ReadErrorTap>(std::move(layer.file));
      layer.file = error_taps_[i];
    }
    lowers_.push_back(std::move(layer));
  }
  return Status::OK();
}

namespace {
// ZFile with per-block CRCs and CALC_DIGEST: every data block, the header, the trailer and the
// jump table carry a check, so a wrong byte from the registry is caught before it is returned.
bool SelfChecking(const image::Unwrapped& u) { return u.zfile && u.zfile->crc && u.zfile->has_digest; }
}  // namespace

Result<std::optional<lsmt::LowerLayer>> Lowers::OpenLazily(size_t i, const std::shared_ptr<const ReadableFile>& blob) {
  const LayerRef& ref = refs_[i];
  if (ref.remote() && checks_[i].empty()) {
    auto unwrapped = image::Unwrap(blob);
    if (!unwrapped.ok()) return unwrapped.status().WithContext(ref.Name());
    if (SelfChecking(*unwrapped)) {
      checks_[i] = kCheckZFileCrc;
    } else if (trust_unverified_) {
      checks_[i] = kCheckNone;
    } else {
      // What Unwrap read went into the cache unchecked: drop it; the layer is read from a whole,
      // sha256-checked copy instead (DownloadUnverifiable).
      blob->Invalidate(0, blob->Size());
      needs_download_[i] = true;
      return std::optional<lsmt::LowerLayer>();
    }
  }
  auto layer = image::OpenLowerFile(blob, ref.Name());
  if (!layer.ok()) return layer.status();
  return std::optional(std::move(layer).value());
}

// One download per digest, before anything is served: the first read of such a layer is answered
// from verified bytes only. A transport failure is bounded by --remote-timeout (the blob's
// retries); a digest mismatch is retried a few times, then the open fails naming the layer.
Status Lowers::DownloadUnverifiable(std::vector<std::optional<lsmt::LowerLayer>>* layers) {
  std::map<std::string, std::shared_ptr<const ReadableFile>> copies;
  for (size_t i = 0; i < refs_.size(); ++i) {
    if (!needs_download_[i]) continue;
    const LayerRef& ref = refs_[i];
    auto& copy = copies[ref.digest];
    if (!copy) {
      std::fprintf(stderr, "ovbd: %s has no digest table and no per-block checks: downloading it whole (%llu bytes) "
                   "before serving (--trust-unverified reads it lazily)\n",
                   ref.Name().c_str(), static_cast<unsigned long long>(raw_sources_[i]->Size()));
      auto got = FetchVerifiedCopy(*raw_sources_[i], ref.digest, cache_dir_ + "/layers");
      if (!got.ok()) return got.status().WithContext("lower " + std::to_string(i) + " " + ref.Name());
      copy = std::move(got).value();
    }
    auto layer = image::OpenLowerFile(copy, ref.Name());
    if (!layer.ok()) return layer.status();
    (*layers)[i] = std::move(layer).value();
    checks_[i] = kCheckDownloaded;
    verifiers_.erase(ref.digest);  // the cached copy behind it is not read any more
    std::erase_if(download_jobs_, [&](const DownloadJob& j) { return j.digest == ref.digest; });
  }
  return Status::OK();
}

Result<std::shared_ptr<const remote::DigestTable>> Lowers::LoadDigestTable(const VolumeOptions& opts, size_t index,
                                                                           const remote::RemoteOptions& options) {
  const LayerRef& ref = refs_[index];
  const image::BlobRef& t = *ref.digest_table;
  const std::string what = "lower " + std::to_string(index) + " digest table " + t.digest;
  auto blob = remote::OpenBlob(ref.repo_blob_url, t.digest, t.size, options);
  if (!blob.ok()) return blob.status().WithContext(what);
  // Kept in CACHE_DIR/tables under its own digest: a restart reads it without the registry.
  auto copy = FetchVerifiedCopy(**blob, t.digest, opts.cache_dir + "/tables");
  if (!copy.ok()) return copy.status().WithContext(what);
  auto bytes = ReadAll(**copy);
  if (!bytes.ok()) return bytes.status().WithContext(what);
  auto table = remote::DecodeDigestTable(*bytes, (*copy)->Name());
  if (!table.ok()) return table.status().WithContext(what);
  if (table->blob_size != raw_sources_[index]->Size()) {
    return Status::Corruption(what + ": describes a blob of " + std::to_string(table->blob_size) + " bytes, " +
                              ref.digest + " has " + std::to_string(raw_sources_[index]->Size()));
  }
  return std::make_shared<const remote::DigestTable>(std::move(table).value());
}

void Lowers::StartBackground() {
  // Every thread started here inherits a fully blocked signal mask: the serving thread waits
  // for SIGTERM/SIGINT itself, and a background thread that got one would end the process
  // (ovbd attach starts these before it blocks its signals).
  if (finished_) return;
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  StartThreads();
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

void Lowers::StartThreads() {
  if (store_) store_->StartFillWorkers();
  for (auto& [digest, verifier] : verifiers_) verifier->Enable();
  if (!download_jobs_.empty() && !downloader_) {
    const auto delay_s = static_cast<unsigned>(download_delay_.count());
    downloader_ = Downloader::Start(cache_dir_, download_jobs_, delay_s, download_rate_);
  }
  if (!replay_ || prefetcher_) return;
  trace::PrefetchOptions o;
  o.parallel = prefetch_parallel_;
  std::map<std::string, std::shared_ptr<const ReadableFile>> files(verifiers_.begin(), verifiers_.end());
  prefetcher_ = trace::Prefetcher::Start(*replay_, std::move(files), o);
}

Status Lowers::Finish() {
  if (finished_) return Status::OK();
  finished_ = true;
  if (store_) store_->StopFillWorkers();
  if (prefetcher_) prefetcher_->Cancel();
  downloader_.reset();
  if (!recorder_) return Status::OK();
  Status s = trace::SaveTrace(record_path_, recorder_->Snapshot());
  return s.WithContext("--record-trace " + record_path_);
}

nlohmann::ordered_json Lowers::StatusJson() const {
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
                  {"corrupt_blocks", c.corrupt_blocks},
                  {"invalidated_blocks", c.invalidated_blocks}};
  }
  nlohmann::ordered_json remote = nlohmann::ordered_json::array();
  for (size_t i = 0; i < refs_.size(); ++i) {
    const LayerRef& r = refs_[i];
    if (!r.remote()) continue;
    auto v = verifiers_.find(r.digest);
    const char* check = v == verifiers_.end() ? "local copy" : CompleteVerifier::StateName(v->second->state());
    nlohmann::ordered_json layer = {{"name", r.Name()}, {"digest", r.digest}, {"verification", checks_[i]},
                                    {"digest_check", check}};
    if (v != verifiers_.end()) layer["digest_mismatches"] = v->second->mismatches();
    if (i < error_taps_.size() && error_taps_[i]) {
      layer["read_errors"] = error_taps_[i]->errors();
      layer["last_error"] = error_taps_[i]->last_error();
    }
    remote.push_back(std::move(layer));
  }
  j["remote_layers"] = remote;
  j["digest_tables"] = {{"verified_chunks", verify_stats_->verified_chunks.load()},
                        {"mismatches", verify_stats_->mismatches.load()},
                        {"refetches", verify_stats_->refetches.load()}};
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

}  // namespace ovbd::volume
