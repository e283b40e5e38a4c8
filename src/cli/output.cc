// Output files: temporary name + rename, and the tar/ZFile chain on top.
#include "cli/output.h"

#include <sys/stat.h>
#include <unistd.h>


#include "ovbd/tar.h"

namespace ovbd::cli {
namespace {

class BuilderWriter : public WritableFile {
 public:
  BuilderWriter(std::unique_ptr<zfile::Builder> builder, std::string name)
      : builder_(std::move(builder)), name_(std::move(name)) {}
  Status Append(std::span<const uint8_t> data) override { return builder_->Append(data); }
  uint64_t Position() const override { return builder_->InputBytes(); }
  bool Seekable() const override { return false; }
  Status Rewrite(uint64_t, std::span<const uint8_t>) override {
    return Status::NotSupported(name_ + ": a ZFile being compressed cannot be rewritten");
  }
  Status Sync() override { return Status::OK(); }
  Status Close() override {
    if (closed_) return Status::OK();
    closed_ = true;
    auto info = builder_->Finish();
    return info.ok() ? Status::OK() : info.status();
  }
  const std::string& Name() const override { return name_; }

 private:
  std::unique_ptr<zfile::Builder> builder_;
  std::string name_;
  bool closed_ = false;
};

}  // namespace

std::unique_ptr<WritableFile> NewBuilderWriter(std::unique_ptr<zfile::Builder> builder, std::string name) {
  return std::make_unique<BuilderWriter>(std::move(builder), std::move(name));
}

Result<std::unique_ptr<OutputFile>> OutputFile::Create(const std::string& path, bool force, bool sync) {
  struct stat st{};
  bool exists = path != "-" && ::stat(path.c_str(), &st) == 0;
  if (path == "-" || (exists && !S_ISREG(st.st_mode))) {
    OVBD_ASSIGN_OR_RETURN(auto file, CreateWritableFile(path, /*overwrite=*/true));
    return std::unique_ptr<OutputFile>(new OutputFile(nullptr, std::move(file), sync));
  }
  if (exists && !force) return Status::AlreadyExists(path + ": already exists (use -f to overwrite)");
  AtomicFileOptions options;
  options.sync = sync;
  options.replace = force;
  options.temp_suffix = ".ovbd-tmp." + std::to_string(::getpid());
  OVBD_ASSIGN_OR_RETURN(auto file, AtomicFile::Create(path, options));
  return std::unique_ptr<OutputFile>(new OutputFile(std::move(file), nullptr, sync));
}

Status OutputFile::Finish() {
  if (!atomic_) {
    if (sync_) OVBD_RETURN_IF_ERROR(in_place_->Sync());
    return in_place_->Close();
  }
  Status s = atomic_->Commit();
  if (s.code() == Code::kAlreadyExists) return Status::AlreadyExists(s.message() + " (use -f to overwrite)");
  return s;
}

Result<std::unique_ptr<OutputChain>> OutputChain::Open(const std::string& path, bool force,
                                                       const ChainOptions& options) {
  auto chain = std::make_unique<OutputChain>();
  OVBD_ASSIGN_OR_RETURN(chain->file_, OutputFile::Create(path, force, options.sync));
  if (options.tar) {
    OVBD_ASSIGN_OR_RETURN(chain->tar_, tar::NewWrappingWriter(chain->file_->file()));
  }
  if (options.zfile) {
    zfile::Options z = *options.zfile;
    WritableFile* target = chain->uncompressed_target();
    z.overwrite_header = z.overwrite_header && target->Seekable();
    OVBD_ASSIGN_OR_RETURN(auto builder, zfile::NewBuilder(target, z));
    chain->zfile_ = NewBuilderWriter(std::move(builder), target->Name());
  }
  return chain;
}

WritableFile* OutputChain::uncompressed_target() {
  return tar_ ? tar_.get() : file_->file();
}

WritableFile* OutputChain::sink() { return zfile_ ? zfile_.get() : uncompressed_target(); }

Status OutputChain::Finish() {
  if (zfile_) OVBD_RETURN_IF_ERROR(zfile_->Close());
  if (tar_) OVBD_RETURN_IF_ERROR(tar_->Close());
  return file_->Finish();
}

Status WriteOutput(const std::string& path, bool force, const ChainOptions& options,
                   const std::function<Status(WritableFile*)>& produce) {
  OVBD_ASSIGN_OR_RETURN(auto chain, OutputChain::Open(path, force, options));
  OVBD_RETURN_IF_ERROR(produce(chain->sink()));
  return chain->Finish();
}

}  // namespace ovbd::cli
