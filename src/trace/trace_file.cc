// Loading and atomically saving trace files (docs/format/trace.md §5).
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
  // Synced: a configuration names the trace, and the next start replays it.
  const std::string text = EncodeTrace(t);
  return WriteFileAtomically(path, {reinterpret_cast<const uint8_t*>(text.data()), text.size()});
}

}  // namespace ovbd::trace
