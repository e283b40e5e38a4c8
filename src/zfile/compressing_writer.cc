// A WritableFile adapter around Builder: what is appended is the uncompressed content, Close()
// finishes the ZFile. Position() counts uncompressed bytes. Not seekable.
#include "ovbd/zfile.h"

namespace ovbd::zfile {
namespace {

class CompressingWriter final : public WritableFile {
 public:
  CompressingWriter(WritableFile* out, std::unique_ptr<Builder> builder)
      : out_(out), builder_(std::move(builder)), name_(out->Name()) {}

  Status Append(std::span<const uint8_t> data) override {
    if (closed_) return Status::InvalidArgument(name_ + ": Append after Close");
    return builder_->Append(data);
  }
  uint64_t Position() const override { return builder_->InputBytes(); }
  bool Seekable() const override { return false; }
  Status Rewrite(uint64_t offset, std::span<const uint8_t>) override {
    return Status::NotSupported(name_ + ": cannot rewrite offset " + std::to_string(offset) +
                                " of a compressed stream");
  }
  // Only what has been compressed so far reaches `out`; the ZFile is complete after Close().
  Status Sync() override { return out_->Sync(); }
  Status Close() override {
    if (closed_) return close_status_;
    closed_ = true;
    Result<Info> info = builder_->Finish();
    close_status_ = info.status();
    return close_status_;
  }
  const std::string& Name() const override { return name_; }

 private:
  WritableFile* out_;
  std::unique_ptr<Builder> builder_;
  std::string name_;
  bool closed_ = false;
  Status close_status_;
};

}  // namespace

Result<std::unique_ptr<WritableFile>> NewCompressingWriter(WritableFile* out, const Options& options) {
  OVBD_ASSIGN_OR_RETURN(std::unique_ptr<Builder> builder, NewBuilder(out, options));
  return std::unique_ptr<WritableFile>(std::make_unique<CompressingWriter>(out, std::move(builder)));
}

}  // namespace ovbd::zfile
