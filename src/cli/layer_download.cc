#include "cli/layer_download.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>

#include "base/hash.h"

namespace ovbd::cli {

SwitchableFile::SwitchableFile(std::shared_ptr<const ReadableFile> initial)
    : current_(std::move(initial)), size_(current_->Size()), name_(current_->Name()) {}

std::shared_ptr<const ReadableFile> SwitchableFile::Current() const {
  std::lock_guard lock(mu_);
  return current_;
}

Status SwitchableFile::ReadAt(uint64_t offset, std::span<uint8_t> buf) const {
  return Current()->ReadAt(offset, buf);
}

void SwitchableFile::Prefetch(uint64_t offset, uint64_t length) const { Current()->Prefetch(offset, length); }
bool SwitchableFile::Invalidate(uint64_t offset, uint64_t length) const {
  return Current()->Invalidate(offset, length);
}

Status SwitchableFile::Switch(std::shared_ptr<const ReadableFile> file) {
  if (file->Size() != size_) {
    return Status::InvalidArgument(file->Name() + ": " + std::to_string(file->Size()) + " bytes, expected " +
                                   std::to_string(size_));
  }
  {
    std::lock_guard lock(mu_);
    current_ = std::move(file);
  }
  switched_ = true;
  return Status::OK();
}

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

Status Downloader::DownloadOne(const DownloadJob& job) {
  ::mkdir((dir_ + "/layers").c_str(), 0755);
  const std::string path = DownloadPath(dir_, job.digest);
  // Synced: the file is named by its digest, and the next start trusts a file of that name.
  OVBD_ASSIGN_OR_RETURN(auto atomic, AtomicFile::Create(path, AtomicFileOptions{}));
  WritableFile* out = atomic->file();
  Sha256 sha;
  std::vector<uint8_t> buf(4u << 20);
  const auto start = std::chrono::steady_clock::now();
  const uint64_t size = job.source->Size();
  for (uint64_t off = 0; off < size;) {
    const auto n = static_cast<size_t>(std::min<uint64_t>(buf.size(), size - off));
    std::span<uint8_t> chunk(buf.data(), n);
    OVBD_RETURN_IF_ERROR(job.source->ReadAt(off, chunk));
    sha.Update(chunk);
    OVBD_RETURN_IF_ERROR(out->Append(chunk));
    off += n;
    {
      std::lock_guard lock(mu_);
      stats_.bytes += n;
    }
    if (rate_ > 0) {  // stay under `rate` bytes/s on average since the start of this blob
      const auto due = start + std::chrono::milliseconds(off * 1000 / rate_);
      const auto now = std::chrono::steady_clock::now();
      if (due > now && !Sleep(std::chrono::duration_cast<std::chrono::milliseconds>(due - now))) {
        return Status::Unavailable("download cancelled");
      }
    }
    std::lock_guard lock(mu_);
    if (cancel_) return Status::Unavailable("download cancelled");
  }
  const std::string got = "sha256:" + sha.HexFinal();
  if (got != job.digest) {  // the temporary file goes with `atomic`
    return Status::Corruption(job.source->Name() + ": downloaded blob has digest " + got);
  }
  OVBD_RETURN_IF_ERROR(atomic->Commit());
  auto local = OpenReadableFile(path);
  if (!local.ok()) return local.status();
  return job.target->Switch(std::shared_ptr<const ReadableFile>(std::move(local).value()));
}

}  // namespace ovbd::cli
