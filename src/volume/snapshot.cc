// Online snapshot and resize, and what a writable open of a manifest repairs first
// (docs/lifecycle.md has the crash table of each step).
//
//   snapshot:  new upper U2 (created, synced) ─> manifest + ovbdPendingSnapshot {name, U2}
//              ─> Switch: old stack under U2, O(1) (writes paused only for this)
//              ─> seal U1 in place ─> manifest: U1 = newest lower (checkpoint), upper U2
//              ─> rebuilt stack (U1 read as a lower, one merged index) ─> Switch
//   open:      ovbdPendingSnapshot? seal U1 if it is not, stack it, save ─> remove leftovers
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>

#include "ovbd/volume.h"
#include "volume/volume_internal.h"

namespace ovbd::volume {
namespace {

std::string FormatUtc(const char* format) {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char text[40];
  std::strftime(text, sizeof(text), format, &tm);
  return text;
}

Result<std::unique_ptr<RandomRWFile>> OpenExisting(const std::string& path) {
  auto file = OpenRandomRWFile(path, RWOpenOptions{});
  if (!file.ok()) return file.status().WithContext(path);
  return std::move(file).value();
}

// Whether the upper's data file was sealed from it (lsmt::IsSealedFrom).
Result<bool> UpperIsSealed(const image::UpperPaths& upper) {
  OVBD_ASSIGN_OR_RETURN(auto data, OpenExisting(upper.data));
  OVBD_ASSIGN_OR_RETURN(auto index, OpenExisting(upper.index));
  auto sealed = lsmt::IsSealedFrom(*data, *index);
  if (!sealed.ok()) return sealed.status().WithContext(upper.data);
  return sealed;
}

// A fresh writable layer in `dir`, both files synced and named in the directory durably.
Result<std::shared_ptr<lsmt::RwLayer>> CreateUpper(const image::UpperPaths& paths, uint64_t size,
                                                   const std::string& parent_uuid) {
  RWOpenOptions create;
  create.create = create.exclusive = true;
  auto data = OpenRandomRWFile(paths.data, create);
  if (!data.ok()) return data.status().WithContext(paths.data);
  auto index = OpenRandomRWFile(paths.index, create);
  if (!index.ok()) {
    ::unlink(paths.data.c_str());
    return index.status().WithContext(paths.index);
  }
  lsmt::CreateOptions options;
  options.virtual_size = size;
  options.parent_uuid = parent_uuid;
  auto layer = lsmt::CreateRwLayer(std::move(*data), std::move(*index), options);
  Status s = layer.ok() ? SyncParentDirectory(paths.data) : layer.status();
  if (!s.ok()) {
    ::unlink(paths.data.c_str());
    ::unlink(paths.index.c_str());
    return s.WithContext("new upper " + paths.data);
  }
  return std::shared_ptr<lsmt::RwLayer>(std::move(layer).value());
}

void RemoveUpperFiles(const image::UpperPaths& paths) {
  ::unlink(paths.data.c_str());
  ::unlink(paths.index.c_str());
}

std::vector<image::StackEntry> KeepAll(size_t n) {
  std::vector<image::StackEntry> entries;
  for (size_t i = 0; i < n; i++) entries.push_back(image::StackEntry{i, "", std::nullopt});
  return entries;
}

// Lowers the calling thread's CPU priority for its lifetime (Linux: nice is per thread).
class BackgroundPriority {
 public:
  BackgroundPriority() : tid_(static_cast<id_t>(::gettid())) {
    errno = 0;
    old_ = ::getpriority(PRIO_PROCESS, tid_);
    lowered_ = errno == 0 && ::setpriority(PRIO_PROCESS, tid_, std::max(old_, 10)) == 0;
  }
  ~BackgroundPriority() {
    if (lowered_) (void)::setpriority(PRIO_PROCESS, tid_, old_);  // root may raise it back
  }
  BackgroundPriority(const BackgroundPriority&) = delete;
  BackgroundPriority& operator=(const BackgroundPriority&) = delete;

 private:
  id_t tid_;
  int old_ = 0;
  bool lowered_ = false;
};

// When each step of an operation ended, for its reply: a client's latency log (fio's
// --log_unix_epoch) can then be lined up with the steps. Times in ms since the start; Done()
// returns how long the step took (since the previous Done()).
class StepClock {
 public:
  StepClock()
      : start_(std::chrono::steady_clock::now()),
        start_unix_ms_(std::chrono::duration<double, std::milli>(
                           std::chrono::system_clock::now().time_since_epoch()).count()) {}
  double Done(const char* step) {
    const double end_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start_).count();
    steps_.push_back({{"step", step}, {"end_ms", end_ms}});
    const double took = end_ms - last_end_ms_;
    last_end_ms_ = end_ms;
    return took;
  }
  nlohmann::ordered_json Json() const { return {{"start_unix_ms", start_unix_ms_}, {"steps", steps_}}; }

 private:
  std::chrono::steady_clock::time_point start_;
  double start_unix_ms_;
  double last_end_ms_ = 0;
  nlohmann::ordered_json steps_ = nlohmann::ordered_json::array();
};

std::string BaseName(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

std::string UtcNow() { return FormatUtc("%Y-%m-%dT%H:%M:%SZ"); }
std::string UtcStamp() { return FormatUtc("%Y%m%dT%H%M%SZ"); }

Result<lsmt::LowerLayer> OpenLocalLower(const std::string& path) {
  OVBD_ASSIGN_OR_RETURN(auto blob, image::OpenLocalBlob(path));
  return image::OpenLowerFile(std::move(blob), path);
}

Result<image::Manifest> FinishPendingSnapshot(const image::Manifest& manifest) {
  const image::ImageConfig& config = manifest.config();
  const image::PendingSnapshot& pending = *config.pending_snapshot;
  const image::UpperPaths& old = *config.upper;
  // The new upper was created and synced before the intent was saved: it must open.
  OVBD_RETURN_IF_ERROR(image::OpenUpper(pending.upper).status().WithContext("ovbdPendingSnapshot.upper"));
  OVBD_ASSIGN_OR_RETURN(bool sealed, UpperIsSealed(old));
  if (!sealed) {
    OVBD_ASSIGN_OR_RETURN(auto rw, image::OpenUpper(old));
    OVBD_RETURN_IF_ERROR(rw->Seal().WithContext("sealing " + old.data));
  }
  std::vector<image::StackEntry> entries = KeepAll(config.lowers.size());
  entries.push_back(image::StackEntry{std::nullopt, old.data, pending.checkpoint});
  OVBD_ASSIGN_OR_RETURN(image::Manifest next, manifest.WithStack(entries, pending.upper));
  OVBD_RETURN_IF_ERROR(next.Save());
  return next;
}

Status Volume::PrepareManifest(const std::string& given, const VolumeOptions& options) {
  // Absolute: a frontend may change its directory after the open (attach's serving process
  // runs in "/"), and every rewrite must reach this file.
  std::error_code ec;
  const std::filesystem::path absolute = std::filesystem::absolute(given, ec);
  const std::string path = ec ? given : absolute.lexically_normal().string();
  OVBD_ASSIGN_OR_RETURN(image::Manifest m, image::Manifest::Load(path));
  // Only the process that writes the image repairs it: a reader must not race its owner.
  const bool owner = !options.read_only && m.config().upper.has_value();
  if (m.config().pending_snapshot) {
    const std::string name = m.config().pending_snapshot->checkpoint.name;
    if (!owner) {
      return Status::InvalidArgument("snapshot '" + name + "' was interrupted (ovbdPendingSnapshot): open the "
                                     "image writable once (serve or attach, without --read-only) to finish it");
    }
    const std::string sealed = m.config().upper->data;
    OVBD_ASSIGN_OR_RETURN(m, FinishPendingSnapshot(m));
    notes_.push_back("finished the interrupted snapshot '" + name + "': " + sealed + " is now lowers[" +
                     std::to_string(m.config().lowers.size() - 1) + "]");
  }
  if (owner) {
    OVBD_ASSIGN_OR_RETURN(std::vector<std::string> leftovers, m.Leftovers());
    for (const std::string& f : leftovers) {
      if (::unlink(f.c_str()) == 0) {
        notes_.push_back("removed " + f + ", left by an interrupted operation");
      } else {
        notes_.push_back("could not remove " + f + " (left by an interrupted operation): " + std::strerror(errno));
      }
    }
  }
  manifest_ = std::move(m);
  return Status::OK();
}

Status Volume::CheckStackOp(const char* op) const {
  if (!manifest_) {
    return Status::InvalidArgument(std::string(op) + " changes the image's stack and needs a manifest: serve or "
                                   "attach the image with --config config.v1.json (layers given on the command "
                                   "line cannot be rewritten)");
  }
  if (!unfinished_.empty()) return Status::InvalidArgument(std::string(op) + ": " + unfinished_);
  return Status::OK();
}

Result<size_t> Volume::LayerIndex(const std::string& selector) const {
  for (size_t i = 0; i < stack_.size(); i++) {
    if (stack_[i].checkpoint && stack_[i].checkpoint->name == selector) return i;
  }
  char* end = nullptr;
  const unsigned long long n = std::strtoull(selector.c_str(), &end, 10);
  if (!selector.empty() && *end == '\0' && selector[0] != '-' && n < stack_.size()) return static_cast<size_t>(n);
  return Status::InvalidArgument("no layer '" + selector + "': give an index 0.." +
                                 std::to_string(stack_.empty() ? 0 : stack_.size() - 1) +
                                 " (bottom = 0) or a checkpoint name");
}

// overlaybd's live-snapshot form: NEW names the current lowers, the current upper as its last
// lower, and a fresh upper. Everything is checked before anything changes.
Result<image::Manifest> Volume::CheckSnapshotConfig(const std::string& path) const {
  OVBD_ASSIGN_OR_RETURN(image::Manifest m, image::Manifest::Load(path));
  const image::ImageConfig& c = m.config();
  const std::string where = "snapshot --config " + path + ": ";
  if (c.pending_snapshot) return Status::InvalidArgument(where + "it has an ovbdPendingSnapshot");
  if (!c.upper) return Status::InvalidArgument(where + "it has no upper (the new writable layer)");
  if (c.lowers.size() != stack_.size() + 1) {
    return Status::InvalidArgument(where + "expected " + std::to_string(stack_.size() + 1) +
                                   " lowers (the current ones, then the current upper), found " +
                                   std::to_string(c.lowers.size()));
  }
  for (size_t i = 0; i < stack_.size(); i++) {
    const bool same = stack_[i].file.empty() ? c.lowers[i].file.empty() && c.lowers[i].digest == manifest_->config().lowers[i].digest
                                             : CanonicalPath(c.lowers[i].file) == CanonicalPath(stack_[i].file);
    if (!same) return Status::InvalidArgument(where + "lowers[" + std::to_string(i) + "] is not the current lowers[" +
                                              std::to_string(i) + "] (" + stack_[i].name + ")");
  }
  if (CanonicalPath(c.lowers.back().file) != CanonicalPath(upper_->data)) {
    return Status::InvalidArgument(where + "its last lower must be the current upper's data file " + upper_->data);
  }
  if (CanonicalPath(c.upper->data) == CanonicalPath(upper_->data) || CanonicalPath(c.upper->index) == CanonicalPath(upper_->index)) {
    return Status::InvalidArgument(where + "its upper must be a new writable layer, not the current one");
  }
  return m;
}

Result<nlohmann::ordered_json> Volume::Snapshot(const std::string& requested, const std::string& new_config) {
  std::lock_guard op(op_mu_);
  StepClock clock;
  OVBD_RETURN_IF_ERROR(CheckStackOp("snapshot"));
  if (!writable()) return Status::InvalidArgument("snapshot: the image is served read-only (no writable layer)");
  OVBD_RETURN_IF_ERROR(lsmt::CheckLayerCount(stack_.size() + 1).WithContext("snapshot"));
  std::optional<image::Manifest> adopted;
  if (!new_config.empty()) {
    OVBD_ASSIGN_OR_RETURN(adopted, CheckSnapshotConfig(new_config));
  }
  std::string name = requested;
  if (name.empty() && adopted && adopted->config().lowers.back().checkpoint) {
    name = adopted->config().lowers.back().checkpoint->name;
  }
  image::Checkpoint checkpoint{name.empty() ? UtcStamp() : name, UtcNow()};
  if (!image::IsCheckpointName(checkpoint.name)) {
    return Status::InvalidArgument("snapshot: '" + checkpoint.name +
                                   "' is not a checkpoint name (1..255 bytes, no '/' or control characters)");
  }
  for (const StackLayer& l : stack_) {
    if (l.checkpoint && l.checkpoint->name == checkpoint.name) {
      return Status::AlreadyExists("snapshot: checkpoint '" + checkpoint.name + "' exists");
    }
  }
  const image::UpperPaths old = *upper_;
  image::UpperPaths next;
  std::shared_ptr<lsmt::RwLayer> rw;
  if (adopted) {
    // The caller's new upper: it must open, and be empty (nothing of it may be lost or hidden).
    next = *adopted->config().upper;
    OVBD_ASSIGN_OR_RETURN(auto opened, image::OpenUpper(next));
    if (!opened->Segments().empty()) {
      return Status::InvalidArgument("snapshot --config " + new_config + ": its upper " + next.data +
                                     " already holds data; give a new empty one (ovbd create)");
    }
    rw = std::move(opened);
  } else {
    const std::string stem = image::NewLayerName("upper", "data");
    next = {manifest_->dir() + "/" + stem, manifest_->dir() + "/" + stem.substr(0, stem.size() - 4) + "index"};
    OVBD_ASSIGN_OR_RETURN(rw, CreateUpper(next, image_->Size(), image_->top_meta().uuid));
  }
  clock.Done("new_upper");
  const auto forget_next = [&] {
    if (!adopted) RemoveUpperFiles(next);
  };
  // 0. Sync the upper first (writers go on meanwhile), so that the seal below has little left to
  // write while the disk is also busy with the new upper's writes.
  OVBD_RETURN_IF_ERROR(image_->Flush().WithContext("snapshot: syncing the writable layer"));
  clock.Done("sync");
  // 1. The next upper and the intent, durable before anything changes.
  auto intent = manifest_->WithPendingSnapshot(image::PendingSnapshot{checkpoint, next});
  Status saved = intent.ok() ? intent->Save() : intent.status();
  if (!saved.ok()) {
    forget_next();
    return saved.WithContext("snapshot '" + checkpoint.name + "'");
  }
  // 2. The old stack under the new upper: writes pause only while in-flight ones finish.
  std::shared_ptr<lsmt::Image> previous = image_;
  std::shared_ptr<lsmt::Image> stacked;
  clock.Done("intent");
  Status switched = switch_->Switch([&](BlockDevice&) -> Result<std::shared_ptr<BlockDevice>> {
    OVBD_ASSIGN_OR_RETURN(auto img, previous->StackedUnder(rw));
    stacked = std::move(img);
    return std::shared_ptr<BlockDevice>(NewImageDevice(stacked, device_options_));
  });
  const double pause_ms = clock.Done("switch");
  if (!switched.ok()) {
    Status undone = manifest_->Save();  // the manifest without the intent
    if (undone.ok()) forget_next();
    return switched.WithContext("snapshot '" + checkpoint.name + "'");
  }
  {
    std::lock_guard lock(state_mu_);
    image_ = stacked;
    upper_ = next;
    last_pause_ms_ = pause_ms;
  }
  // 3. Seal the old upper, name it in the manifest, and read it as a lower.
  auto half_done = [&](const Status& s) {
    std::lock_guard lock(state_mu_);
    unfinished_ = "snapshot '" + checkpoint.name + "' stopped half-way (" + s.message() +
                  "); the image goes on serving, and its next open finishes the snapshot";
    return s.WithContext("snapshot '" + checkpoint.name + "' stopped half-way; the image goes on serving, and "
                         "its next open finishes the snapshot");
  };
  // Sealing and rebuilding the index are background work: the serving threads come first.
  const BackgroundPriority background;
  Status sealed = previous->SealUpper();
  if (!sealed.ok()) return half_done(sealed);
  clock.Done("seal");
  std::vector<image::StackEntry> entries = KeepAll(stack_.size());
  entries.push_back(image::StackEntry{std::nullopt, old.data, checkpoint});
  auto final_manifest = intent->WithStack(entries, next);
  Status named = final_manifest.ok() ? final_manifest->Save() : final_manifest.status();
  if (!named.ok()) return half_done(named);
  if (adopted) {
    // From now on the caller's config is the manifest; its last lower gets the checkpoint.
    final_manifest = adopted->WithStack(entries, next);
    named = final_manifest.ok() ? final_manifest->Save() : final_manifest.status();
    if (!named.ok()) return half_done(named);
  }
  clock.Done("manifest");
  auto lower = OpenLocalLower(old.data);
  if (!lower.ok()) return half_done(lower.status());
  std::vector<lsmt::LowerLayer> layers;
  for (const StackLayer& l : stack_) layers.push_back(l.layer);
  layers.push_back(*lower);
  auto rebuilt = lsmt::OpenStack(std::move(layers), rw);
  if (!rebuilt.ok()) return half_done(rebuilt.status());
  std::shared_ptr<lsmt::Image> rebuilt_image = std::move(rebuilt).value();
  auto device = std::shared_ptr<BlockDevice>(NewImageDevice(rebuilt_image, device_options_));
  clock.Done("rebuild");
  Status swapped = switch_->Switch([&](BlockDevice&) -> Result<std::shared_ptr<BlockDevice>> { return device; });
  const double rebuild_pause_ms = clock.Done("switch_rebuilt");
  if (!swapped.ok()) return half_done(swapped);
  {
    std::lock_guard lock(state_mu_);
    image_ = rebuilt_image;
    stack_.push_back(StackLayer{old.data, old.data, *lower, checkpoint});
    manifest_ = std::move(*final_manifest);
    snapshots_++;
    last_pause_ms_ = std::max(pause_ms, rebuild_pause_ms);
  }
  // The old index file is not needed any more: the sealed data file holds the index.
  if (image::IsOvbdLayerName(BaseName(old.index))) ::unlink(old.index.c_str());
  clock.Done("cleanup");
  nlohmann::ordered_json reply = {{"checkpoint", {{"name", checkpoint.name}, {"created", checkpoint.created}}},
                                  {"layer", {{"index", stack_.size() - 1}, {"path", old.data}}},
                                  {"upper", {{"data", next.data}, {"index", next.index}}},
                                  {"write_pause_ms", std::max(pause_ms, rebuild_pause_ms)},
                                  {"pauses_ms", {pause_ms, rebuild_pause_ms}},
                                  {"timeline", clock.Json()}};
  return reply;
}

Result<nlohmann::ordered_json> Volume::Resize(uint64_t size) {
  std::lock_guard op(op_mu_);
  OVBD_RETURN_IF_ERROR(CheckStackOp("resize"));
  if (!writable()) return Status::InvalidArgument("resize: the image is served read-only (no writable layer)");
  if (size == 0 || size % lsmt::kSectorSize != 0 || size / lsmt::kSectorSize > lsmt::kMaxOffset) {
    return Status::InvalidArgument("resize: " + std::to_string(size) +
                                   " bytes is not a positive multiple of 512 below 2^59");
  }
  const uint64_t old_size = image_->Size();
  if (size < old_size) {
    for (const lsmt::Segment& s : image_->SegmentsIn(size / lsmt::kSectorSize, lsmt::kMaxOffset)) {
      if (s.zeroed) continue;
      return Status::InvalidArgument("resize: cannot shrink to " + std::to_string(size) + " bytes: data lies at " +
                                     std::to_string(s.offset * lsmt::kSectorSize) + ".." +
                                     std::to_string(s.end() * lsmt::kSectorSize) + " (layer tag " +
                                     std::to_string(s.tag) + ", 0 = upper); discard it first");
    }
  }
  std::shared_ptr<lsmt::Image> resized;
  Status switched = switch_->Switch([&](BlockDevice&) -> Result<std::shared_ptr<BlockDevice>> {
    OVBD_RETURN_IF_ERROR(image_->upper()->Resize(size));
    resized = image_->Reopened();
    return std::shared_ptr<BlockDevice>(NewImageDevice(resized, device_options_));
  });
  OVBD_RETURN_IF_ERROR(switched.WithContext("resize"));
  std::vector<std::function<void(uint64_t)>> listeners;
  {
    std::lock_guard lock(state_mu_);
    image_ = resized;
    listeners = resize_listeners_;
  }
  for (const auto& listener : listeners) listener(size);
  return nlohmann::ordered_json{{"old_size", old_size}, {"size", size}};
}

}  // namespace ovbd::volume
