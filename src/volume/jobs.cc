// Background jobs that replace lowers of the running stack: merge (lowers i..j flattened into
// one new layer) and replace (a lower swapped for a file with the same content).
//
//   job thread: build the new layer file (merge: commit of the sub-stack, synced, renamed)
//               or check the given file (replace: content compared range by range)
//   then, under op_mu_: rebuilt stack over the same upper ─> manifest saved ─> Switch (writes
//   paused for the pointer swap only; the content is the same) ─> old files removed (merge)
//
// Reads are right throughout: the old stack serves until the swap, the new one after it, and
// both hold the same bytes because the upper they share is the same object.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "ovbd/volume.h"
#include "volume/volume_internal.h"

namespace ovbd::volume {

std::function<void(const std::string& op)> g_job_before_swap;

namespace {

// A WritableFile decorator that counts bytes and stops the producer when a job is cancelled.
class JobSink final : public WritableFile {
 public:
  JobSink(WritableFile* inner, const std::atomic<bool>& cancel) : inner_(inner), cancel_(cancel) {}
  Status Append(std::span<const uint8_t> data) override {
    if (cancel_.load(std::memory_order_relaxed)) return Status::Unavailable(inner_->Name() + ": cancelled");
    return inner_->Append(data);
  }
  uint64_t Position() const override { return inner_->Position(); }
  bool Seekable() const override { return inner_->Seekable(); }
  Status Rewrite(uint64_t offset, std::span<const uint8_t> data) override { return inner_->Rewrite(offset, data); }
  Status Sync() override { return inner_->Sync(); }
  Status Close() override { return inner_->Close(); }
  const std::string& Name() const override { return inner_->Name(); }

 private:
  WritableFile* inner_;
  const std::atomic<bool>& cancel_;
};

bool IsRegularFile(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// One layer alone as an image: what its own mappings serve.
Result<std::unique_ptr<lsmt::Image>> Alone(const lsmt::LowerLayer& layer) {
  return lsmt::OpenStack(std::vector<lsmt::LowerLayer>{layer}, std::unique_ptr<lsmt::RwLayer>());
}

// The mappings of an image as runs of (data | zeroed), adjacent runs of one kind joined: the
// shape two layers with the same content share, whatever their files look like.
struct Run {
  uint64_t offset, end;
  bool zeroed;
  bool operator==(const Run&) const = default;
};
std::vector<Run> Runs(const lsmt::Image& image) {
  std::vector<Run> runs;
  for (const lsmt::Segment& s : image.Segments()) {
    if (!runs.empty() && runs.back().end == s.offset && runs.back().zeroed == s.zeroed) {
      runs.back().end = s.end();
    } else {
      runs.push_back(Run{s.offset, s.end(), s.zeroed});
    }
  }
  return runs;
}

// InvalidArgument naming the first difference, or OK if both layers serve the same bytes with the
// same data/zero mappings.
Status CompareLayers(const lsmt::LowerLayer& a, const lsmt::LowerLayer& b, const std::string& what,
                     std::atomic<uint64_t>* done, std::atomic<uint64_t>* total, const std::atomic<bool>& cancel) {
  OVBD_ASSIGN_OR_RETURN(auto ia, Alone(a));
  OVBD_ASSIGN_OR_RETURN(auto ib, Alone(b));
  if (ia->Size() != ib->Size()) {
    return Status::InvalidArgument(what + ": virtual size " + std::to_string(ib->Size()) + " differs from " +
                                   std::to_string(ia->Size()));
  }
  const std::vector<Run> ra = Runs(*ia), rb = Runs(*ib);
  for (size_t i = 0; i < std::min(ra.size(), rb.size()); i++) {
    if (!(ra[i] == rb[i])) {
      const uint64_t at = std::min(ra[i].offset, rb[i].offset) * lsmt::kSectorSize;
      return Status::InvalidArgument(what + ": the mappings differ at byte " + std::to_string(at));
    }
  }
  if (ra.size() != rb.size()) return Status::InvalidArgument(what + ": the mappings differ (number of runs)");
  uint64_t bytes = 0;
  for (const Run& r : ra) bytes += r.zeroed ? 0 : (r.end - r.offset) * lsmt::kSectorSize;
  total->store(bytes);
  constexpr uint64_t kChunk = 1 << 20;
  std::vector<uint8_t> x(kChunk), y(kChunk);
  for (const Run& r : ra) {
    if (r.zeroed) continue;
    for (uint64_t at = r.offset * lsmt::kSectorSize; at < r.end * lsmt::kSectorSize;) {
      if (cancel.load(std::memory_order_relaxed)) return Status::Unavailable(what + ": cancelled");
      const uint64_t n = std::min(kChunk, r.end * lsmt::kSectorSize - at);
      OVBD_RETURN_IF_ERROR(ia->ReadAt(at, std::span(x).first(n)));
      OVBD_RETURN_IF_ERROR(ib->ReadAt(at, std::span(y).first(n)));
      if (!std::equal(x.begin(), x.begin() + static_cast<ptrdiff_t>(n), y.begin())) {
        auto mismatch = std::mismatch(x.begin(), x.begin() + static_cast<ptrdiff_t>(n), y.begin());
        return Status::InvalidArgument(what + ": the content differs at byte " +
                                       std::to_string(at + static_cast<uint64_t>(mismatch.first - x.begin())));
      }
      at += n;
      done->fetch_add(n);
    }
  }
  return Status::OK();
}

}  // namespace

nlohmann::ordered_json Volume::JobJson() const {
  std::shared_ptr<Job> job;
  {
    std::lock_guard lock(state_mu_);
    job = job_;
  }
  if (!job) return nullptr;
  std::lock_guard lock(job->mu);
  nlohmann::ordered_json j = {{"id", job->id},
                              {"op", job->op},
                              {"from", job->from},
                              {"to", job->to},
                              {"state", job->state},
                              {"bytes_done", job->done.load()},
                              {"bytes_total", job->total.load()},
                              {"seconds", std::chrono::duration<double>(
                                              (job->state == "running" ? std::chrono::steady_clock::now() : job->ended) -
                                              job->started)
                                              .count()}};
  if (job->state == "failed") j["error"] = job->status.message();
  if (job->state == "done") j["result"] = job->result;
  return j;
}

void Volume::CancelJob() {
  std::shared_ptr<Job> job;
  {
    std::lock_guard lock(state_mu_);
    job = job_;
  }
  if (job) job->cancel.store(true);
  if (job_thread_.joinable()) job_thread_.join();
}

Result<nlohmann::ordered_json> Volume::WaitJob() {
  std::shared_ptr<Job> job;
  {
    std::lock_guard lock(state_mu_);
    job = job_;
  }
  if (!job) return Status::InvalidArgument("no job has run");
  std::unique_lock lock(job->mu);
  job->cv.wait(lock, [&] { return job->state != "running"; });
  if (!job->status.ok()) return job->status;
  return job->result;
}

Result<nlohmann::ordered_json> Volume::StartJob(const std::string& op, size_t from, size_t to,
                                                std::function<Result<nlohmann::ordered_json>(Job&)> work) {
  // Called with op_mu_ held.
  {
    std::lock_guard lock(state_mu_);
    if (job_) {
      std::lock_guard jl(job_->mu);
      if (job_->state == "running") {
        return Status::Unavailable(op + ": a " + job_->op + " of layers " + std::to_string(job_->from) + ".." +
                                   std::to_string(job_->to) + " is running (see status); one job at a time");
      }
    }
  }
  if (job_thread_.joinable()) job_thread_.join();
  auto job = std::make_shared<Job>();
  job->op = op;
  job->from = from;
  job->to = to;
  for (size_t i = from; i <= to; i++) job->sources.push_back(stack_[i].layer.file.get());
  {
    std::lock_guard lock(state_mu_);
    job->id = job_ ? job_->id + 1 : 1;
    job_ = job;
  }
  job_thread_ = std::thread([job, work = std::move(work)] {
    Result<nlohmann::ordered_json> r = work(*job);
    std::lock_guard lock(job->mu);
    job->state = r.ok() ? "done" : "failed";
    job->ended = std::chrono::steady_clock::now();
    job->status = r.status();
    if (r.ok()) job->result = std::move(r).value();
    job->cv.notify_all();
  });
  return JobJson();
}

Result<nlohmann::ordered_json> Volume::StartMerge(const MergeRequest& request) {
  std::lock_guard op(op_mu_);
  OVBD_RETURN_IF_ERROR(CheckStackOp("merge"));
  OVBD_ASSIGN_OR_RETURN(size_t from, LayerIndex(request.from));
  OVBD_ASSIGN_OR_RETURN(size_t to, LayerIndex(request.to));
  if (from >= to) {
    return Status::InvalidArgument("merge: --from " + std::to_string(from) + " must be below --to " +
                                   std::to_string(to) + " (at least two consecutive lowers, bottom = 0)");
  }
  return StartJob("merge", from, to, [this, request](Job& job) { return RunMerge(job, request); });
}

Result<nlohmann::ordered_json> Volume::StartReplace(const std::string& layer, const std::string& file) {
  std::lock_guard op(op_mu_);
  OVBD_RETURN_IF_ERROR(CheckStackOp("replace"));
  OVBD_ASSIGN_OR_RETURN(size_t index, LayerIndex(layer));
  if (file.empty() || file[0] != '/') return Status::InvalidArgument("replace: the file must be an absolute path");
  return StartJob("replace", index, index, [this, file](Job& job) { return RunReplace(job, file); });
}

Result<nlohmann::ordered_json> Volume::RunMerge(Job& job, const MergeRequest& request) {
  std::vector<lsmt::LowerLayer> parts;
  std::optional<image::Checkpoint> checkpoint;
  std::vector<std::string> files, dropped;
  std::string dir;
  {
    std::lock_guard lock(state_mu_);
    for (size_t i = job.from; i <= job.to; i++) {
      parts.push_back(stack_[i].layer);
      files.push_back(stack_[i].file);
      if (stack_[i].checkpoint && i < job.to) dropped.push_back(stack_[i].checkpoint->name);
    }
    checkpoint = stack_[job.to].checkpoint;
    dir = manifest_->dir();
  }
  OVBD_ASSIGN_OR_RETURN(auto sub, lsmt::OpenStack(std::move(parts), std::unique_ptr<lsmt::RwLayer>()));
  const std::string path = dir + "/" + image::NewLayerName("merged", request.zfile ? "zfile" : "lsmt");
  AtomicFileOptions atomic;
  atomic.sync = true;  // the manifest will name it: complete and durable first
  atomic.replace = false;
  atomic.temp_suffix = ".ovbd-tmp";
  OVBD_ASSIGN_OR_RETURN(auto out, AtomicFile::Create(path, atomic));
  JobSink sink(out->file(), job.cancel);
  std::unique_ptr<WritableFile> compressing;
  WritableFile* target = &sink;
  if (request.zfile) {
    OVBD_ASSIGN_OR_RETURN(compressing, zfile::NewCompressingWriter(&sink, *request.zfile));
    target = compressing.get();
  }
  lsmt::CommitOptions options;
  options.progress = [&job](uint64_t done, uint64_t total) {
    job.done.store(done);
    job.total.store(total);
  };
  OVBD_RETURN_IF_ERROR(lsmt::Commit(*sub, target, options).WithContext("merge into " + path));
  if (compressing) OVBD_RETURN_IF_ERROR(compressing->Close());
  OVBD_RETURN_IF_ERROR(out->Commit().WithContext("merge into " + path));
  auto lower = OpenLocalLower(path);
  if (!lower.ok()) {
    ::unlink(path.c_str());
    return lower.status();
  }
  if (g_job_before_swap) g_job_before_swap(job.op);
  Status swapped = SwapLowers(job, StackLayer{path, path, *lower, checkpoint});
  if (!swapped.ok()) {
    ::unlink(path.c_str());
    return swapped;
  }
  nlohmann::ordered_json removed = nlohmann::ordered_json::array();
  if (!request.keep) {
    for (const std::string& f : files) {
      if (!f.empty() && IsRegularFile(f) && ::unlink(f.c_str()) == 0) removed.push_back(f);
    }
  }
  nlohmann::ordered_json reply = {{"merged", {{"from", job.from}, {"to", job.to}}},
                                  {"layer", {{"index", job.from}, {"path", path}}},
                                  {"checkpoint", checkpoint ? nlohmann::ordered_json(checkpoint->name) : nullptr},
                                  {"dropped_checkpoints", dropped},
                                  {"removed", removed},
                                  {"bytes", job.total.load()},
                                  {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - job.started).count()}};
  return reply;
}

Result<nlohmann::ordered_json> Volume::RunReplace(Job& job, const std::string& file) {
  lsmt::LowerLayer current;
  std::optional<image::Checkpoint> checkpoint;
  std::string name, old_file;
  {
    std::lock_guard lock(state_mu_);
    current = stack_[job.from].layer;
    old_file = stack_[job.from].file;
    checkpoint = stack_[job.from].checkpoint;
    name = stack_[job.from].name;
  }
  OVBD_ASSIGN_OR_RETURN(lsmt::LowerLayer next, OpenLocalLower(file));
  OVBD_RETURN_IF_ERROR(CompareLayers(current, next, file + " vs lowers[" + std::to_string(job.from) + "] " + name,
                                     &job.done, &job.total, job.cancel));
  OVBD_RETURN_IF_ERROR(SyncFile(file).WithContext(file));  // the manifest will name it
  if (g_job_before_swap) g_job_before_swap(job.op);
  OVBD_RETURN_IF_ERROR(SwapLowers(job, StackLayer{file, file, next, checkpoint}));
  // A file ovbd made (a sealed upper, a merged layer) is removed, as a leftover would be at the
  // next open; a file the user named stays.
  nlohmann::ordered_json removed = nlohmann::ordered_json::array();
  const size_t slash = old_file.rfind('/');
  if (!old_file.empty() && image::IsOvbdLayerName(old_file.substr(slash + 1)) && ::unlink(old_file.c_str()) == 0) {
    removed.push_back(old_file);
  }
  return nlohmann::ordered_json{{"replaced", job.from},   {"old", name},
                                {"path", file},           {"bytes_compared", job.done.load()},
                                {"removed", removed}};
}

Status Volume::SwapLowers(const Job& job, StackLayer replacement) {
  std::lock_guard op(op_mu_);
  OVBD_RETURN_IF_ERROR(CheckStackOp(job.op.c_str()));
  if (job.cancel.load()) return Status::Unavailable("cancelled");
  // Snapshots add layers on top only, and one job runs at a time, so the positions hold; check.
  for (size_t i = job.from; i <= job.to; i++) {
    if (i >= stack_.size() || stack_[i].layer.file.get() != job.sources[i - job.from]) {
      return Status::InvalidArgument("the stack changed while the job ran; nothing was swapped");
    }
  }
  std::vector<StackLayer> next_stack;
  std::vector<image::StackEntry> entries;
  for (size_t i = 0; i < stack_.size(); i++) {
    if (i == job.from) {
      entries.push_back(image::StackEntry{std::nullopt, replacement.file, replacement.checkpoint});
      next_stack.push_back(replacement);
    }
    if (i >= job.from && i <= job.to) continue;
    entries.push_back(image::StackEntry{i, "", std::nullopt});
    next_stack.push_back(stack_[i]);
  }
  std::vector<lsmt::LowerLayer> layers;
  for (const StackLayer& l : next_stack) layers.push_back(l.layer);
  OVBD_ASSIGN_OR_RETURN(auto rebuilt, lsmt::OpenStack(std::move(layers), image_->upper()));
  std::shared_ptr<lsmt::Image> image = std::move(rebuilt);
  OVBD_ASSIGN_OR_RETURN(image::Manifest manifest, manifest_->WithStack(entries, upper_));
  OVBD_RETURN_IF_ERROR(manifest.Save());
  auto device = std::shared_ptr<BlockDevice>(NewImageDevice(image, device_options_));
  OVBD_RETURN_IF_ERROR(switch_->Switch([&](BlockDevice&) -> Result<std::shared_ptr<BlockDevice>> { return device; }));
  std::lock_guard lock(state_mu_);
  image_ = std::move(image);
  stack_ = std::move(next_stack);
  manifest_ = std::move(manifest);
  return Status::OK();
}

}  // namespace ovbd::volume
