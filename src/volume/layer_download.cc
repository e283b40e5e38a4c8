#include "volume/layer_download.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "base/hash.h"

namespace ovbd::volume {

std::string DownloadPath(const std::string& cache_dir, const std::string& digest) {
  return cache_dir + "/layers/" + digest;
}

std::shared_ptr<const ReadableFile> OpenDownloaded(const std::string& cache_dir, const std::string& digest,
                                                   uint64_t size) {
  auto file = OpenReadableFile(DownloadPath(cache_dir, digest));
  if (!file.ok() || (*file)->Size() != size) return nullptr;
  return std::shared_ptr<const ReadableFile>(std::move(file).value());
}

std::unique_ptr<Downloader> Downloader::Start(std::string cache_dir, std::vector<DownloadJob> jobs,
                                              unsigned delay_s, uint64_t rate) {
  std::unique_ptr<Downloader> d(new Downloader());
  d->dir_ = std::move(cache_dir);
  d->jobs_ = std::move(jobs);
  d->rate_ = rate;
  d->stats_.layers = d->jobs_.size();
  d->thread_ = std::thread([p = d.get(), delay_s] { p->Run(delay_s); });
  return d;
}

Downloader::~Downloader() {
  {
    std::lock_guard lock(mu_);
    cancel_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

DownloadStats Downloader::Stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

bool Downloader::Sleep(std::chrono::milliseconds d) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, d, [this] { return cancel_; });
  return !cancel_;
}

void Downloader::Run(unsigned delay_s) {
  bool go = Sleep(std::chrono::seconds(delay_s));
  for (const DownloadJob& job : jobs_) {
    if (!go) break;
    Status s = job.target->switched() ? Status::OK() : DownloadOne(job);
    std::lock_guard lock(mu_);
    if (cancel_) break;
    if (s.ok()) {
      ++stats_.done;
    } else {
      ++stats_.failed;
      if (stats_.first_error.empty()) stats_.first_error = s.ToString();
    }
  }
  std::lock_guard lock(mu_);
  stats_.finished = true;
}

Status DownloadBlob(const ReadableFile& source, const std::string& digest, const std::string& path,
                    const PaceFn& pace) {
  const std::string dir = path.substr(0, path.rfind('/'));
  if (!dir.empty() && ::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return Status::IOError(dir + ": cannot create directory: " + std::strerror(errno));
  }
  // Synced: the file is named by its digest, and the next start trusts a file of that name.
  OVBD_ASSIGN_OR_RETURN(auto atomic, AtomicFile::Create(path, AtomicFileOptions{}));
  WritableFile* out = atomic->file();
  Sha256 sha;
  std::vector<uint8_t> buf(4u << 20);
  const uint64_t size = source.Size();
  for (uint64_t off = 0; off < size;) {
    const auto n = static_cast<size_t>(std::min<uint64_t>(buf.size(), size - off));
    std::span<uint8_t> chunk(buf.data(), n);
    OVBD_RETURN_IF_ERROR(source.ReadAt(off, chunk));
    sha.Update(chunk);
    OVBD_RETURN_IF_ERROR(out->Append(chunk));
    off += n;
    if (pace && !pace(off)) return Status::Unavailable("download cancelled");
  }
  const std::string got = "sha256:" + sha.HexFinal();
  if (got != digest) {  // the temporary file goes with `atomic`
    return Status::Corruption(source.Name() + ": downloaded " + std::to_string(size) + " bytes have digest " + got +
                              ", expected " + digest);
  }
  return atomic->Commit();
}

Result<std::shared_ptr<const ReadableFile>> FetchVerifiedCopy(const ReadableFile& source, const std::string& digest,
                                                              const std::string& dir, unsigned attempts) {
  const std::string path = dir + "/" + digest;
  Status last = Status::OK();
  unsigned tries = 0;
  for (unsigned i = 0; i < std::max(attempts, 1u); ++i) {
    auto existing = OpenReadableFile(path);
    if (existing.ok() && (*existing)->Size() == source.Size()) {
      return std::shared_ptr<const ReadableFile>(std::move(existing).value());
    }
    if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(100u << std::min(i - 1, 4u)));
    ++tries;
    last = DownloadBlob(source, digest, path);
    // Only a wrong digest is worth another try here: the source retries transport errors itself.
    if (!last.ok() && last.code() != Code::kCorruption) break;
  }
  auto copy = OpenReadableFile(path);
  if (last.ok() && copy.ok()) return std::shared_ptr<const ReadableFile>(std::move(copy).value());
  if (last.ok()) last = copy.status();
  return last.WithContext("download of " + digest + " (" + std::to_string(tries) + (tries == 1 ? " attempt)" : " attempts)"));
}

Status Downloader::DownloadOne(const DownloadJob& job) {
  const std::string path = DownloadPath(dir_, job.digest);
  const auto start = std::chrono::steady_clock::now();
  uint64_t counted = 0;
  auto pace = [&](uint64_t done) {
    {
      std::lock_guard lock(mu_);
      stats_.bytes += done - counted;
      counted = done;
      if (cancel_) return false;
    }
    if (rate_ == 0) return true;  // stay under `rate` bytes/s on average since the start of this blob
    const auto due = start + std::chrono::milliseconds(done * 1000 / rate_);
    const auto now = std::chrono::steady_clock::now();
    return due <= now || Sleep(std::chrono::duration_cast<std::chrono::milliseconds>(due - now));
  };
  OVBD_RETURN_IF_ERROR(DownloadBlob(*job.source, job.digest, path, pace));
  auto local = OpenReadableFile(path);
  if (!local.ok()) return local.status();
  return job.target->Switch(std::shared_ptr<const ReadableFile>(std::move(local).value()));
}

}  // namespace ovbd::volume
