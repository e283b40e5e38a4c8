// Loading and atomically saving trace files (docs/format/trace.md §5).
#include <cerrno>
#include <cstdio>

#include "ovbd/trace.h"

namespace ovbd::trace {
namespace {

Result<std::string> ReadCapped(const std::string& path) {
  OVBD_ASSIGN_OR_RETURN(std::unique_ptr<ReadableFile> file, OpenReadableFile(path));
  const uint64_t size = file->Size();
  if (size > kMaxTraceFileSize) {
    return Status::Corruption(path + ": trace file is " + std::to_string(size) +
                              " bytes, more than any valid trace (cap " +
                              std::to_string(kMaxTraceFileSize) + ")");
  }
  std::string bytes(size, '\0');
  OVBD_RETURN_IF_ERROR(file->ReadAt(0, {reinterpret_cast<uint8_t*>(bytes.data()), bytes.size()}));
  return bytes;
}

Status WriteSynced(const std::string& path, const std::string& bytes) {
  OVBD_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> out, CreateWritableFile(path, /*overwrite=*/true));
  OVBD_RETURN_IF_ERROR(out->Append({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}));
  OVBD_RETURN_IF_ERROR(out->Sync());
  return out->Close();
}

}  // namespace

Result<Trace> LoadTrace(const std::string& path) {
  OVBD_ASSIGN_OR_RETURN(std::string bytes, ReadCapped(path));
  Result<Trace> trace = DecodeTrace(bytes);
  if (!trace.ok()) return trace.status().WithContext(path);
  return trace;
}

Status SaveTrace(const std::string& path, const Trace& t) {
  Status valid = ValidateTrace(t);
  if (!valid.ok()) return valid.WithContext(path);
  const std::string temp = path + ".tmp";
  Status s = WriteSynced(temp, EncodeTrace(t));
  if (s.ok() && std::rename(temp.c_str(), path.c_str()) != 0) {
    s = Status::FromErrno(errno, "rename " + temp + " -> " + path);
  }
  if (!s.ok()) std::remove(temp.c_str());
  return s;
}

}  // namespace ovbd::trace
