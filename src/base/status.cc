#include "ovbd/status.h"

#include <cerrno>
#include <cstring>

namespace ovbd {

std::string_view CodeName(Code code) {
  switch (code) {
    case Code::kOk: return "ok";
    case Code::kCorruption: return "corruption";
    case Code::kIOError: return "I/O error";
    case Code::kInvalidArgument: return "invalid argument";
    case Code::kNotSupported: return "not supported";
    case Code::kOutOfRange: return "out of range";
    case Code::kUnavailable: return "unavailable";
    case Code::kNoSpace: return "no space";
    case Code::kNotFound: return "not found";
    case Code::kAlreadyExists: return "already exists";
  }
  return "unknown";
}

Status Status::FromErrno(int err, std::string_view msg) {
  std::string text(msg);
  text += ": ";
  text += std::strerror(err);
  switch (err) {
    case ENOENT: return NotFound(std::move(text));
    case EEXIST: return AlreadyExists(std::move(text));
    case ENOSPC:
    case EDQUOT:
    case EFBIG: return NoSpace(std::move(text));
    case EINVAL: return InvalidArgument(std::move(text));
    case EOPNOTSUPP: return NotSupported(std::move(text));
    default: return IOError(std::move(text));
  }
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  std::string s(CodeName(code_));
  s += ": ";
  s += message_;
  return s;
}

int Status::posix_errno() const {
  switch (code_) {
    case Code::kOk: return 0;
    case Code::kInvalidArgument: return EINVAL;
    case Code::kNotSupported: return EOPNOTSUPP;
    case Code::kOutOfRange: return EINVAL;
    case Code::kNoSpace: return ENOSPC;
    case Code::kNotFound: return ENOENT;
    case Code::kAlreadyExists: return EEXIST;
    case Code::kCorruption:
    case Code::kIOError:
    case Code::kUnavailable: return EIO;
  }
  return EIO;
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return *this;
  std::string msg(context);
  msg += ": ";
  msg += message_;
  return Status(code_, std::move(msg));
}

}  // namespace ovbd
