// Status and Result<T>: the one error channel of ovbd.
//
//   Status  = ok | {Code, message}
//   Result<T> = T | Status(!ok)
//
// Functions that can fail return one of these; no exceptions cross module boundaries.
// A message carries the context a user needs: file, offset and cause. Modules add context with
// WithContext() when an error crosses their boundary ("layer0.lsmt: index entry 7: ...").
#pragma once

#include <cassert>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace ovbd {

enum class Code : uint8_t {
  kOk = 0,
  kCorruption,       // the bytes on disk / wire break the format: never return them as data
  kIOError,          // the OS or a lower file failed
  kInvalidArgument,  // the caller asked for something malformed (alignment, range, option)
  kNotSupported,     // valid format feature or operation that ovbd does not implement
  kOutOfRange,       // offset or length past the end
  kUnavailable,      // a remote source is unreachable (retry may help)
  kNoSpace,          // out of disk space / a cap on output size
  kNotFound,         // file or entry does not exist
  kAlreadyExists,    // refusing to overwrite
};

std::string_view CodeName(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // ok

  static Status OK() { return Status(); }
  static Status Corruption(std::string msg) { return Status(Code::kCorruption, std::move(msg)); }
  static Status IOError(std::string msg) { return Status(Code::kIOError, std::move(msg)); }
  static Status InvalidArgument(std::string msg) { return Status(Code::kInvalidArgument, std::move(msg)); }
  static Status NotSupported(std::string msg) { return Status(Code::kNotSupported, std::move(msg)); }
  static Status OutOfRange(std::string msg) { return Status(Code::kOutOfRange, std::move(msg)); }
  static Status Unavailable(std::string msg) { return Status(Code::kUnavailable, std::move(msg)); }
  static Status NoSpace(std::string msg) { return Status(Code::kNoSpace, std::move(msg)); }
  static Status NotFound(std::string msg) { return Status(Code::kNotFound, std::move(msg)); }
  static Status AlreadyExists(std::string msg) { return Status(Code::kAlreadyExists, std::move(msg)); }
  // An IOError (or NoSpace/NotFound/...) built from an errno value: "<msg>: <strerror(err)>".
  static Status FromErrno(int err, std::string_view msg);

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  bool IsCorruption() const { return code_ == Code::kCorruption; }
  bool IsNotFound() const { return code_ == Code::kNotFound; }

  // "corruption: <message>", or "ok".
  std::string ToString() const;
  // The errno an export (NBD, FUSE) puts on the wire: EIO for corruption and I/O errors,
  // EINVAL, ENOTSUP, ENOSPC, ...
  int posix_errno() const;
  // A copy whose message is "<context>: <message>". No-op on ok.
  Status WithContext(std::string_view context) const;

 private:
  Status(Code code, std::string msg) : code_(code), message_(std::move(msg)) {}
  Code code_ = Code::kOk;
  std::string message_;
};

// Either a value or a non-ok Status. Accessing value() of an error is a programming error.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT: implicit by design
    assert(!std::get<Status>(v_).ok() && "Result constructed from an ok Status");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOkStatus;
    return ok() ? kOkStatus : std::get<Status>(v_);
  }
  T& value() & { assert(ok()); return std::get<T>(v_); }
  const T& value() const& { assert(ok()); return std::get<T>(v_); }
  T&& value() && { assert(ok()); return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace ovbd

#define OVBD_CONCAT_INNER_(a, b) a##b
#define OVBD_CONCAT_(a, b) OVBD_CONCAT_INNER_(a, b)

// Returns the Status from the enclosing function if `expr` (a Status) is not ok.
#define OVBD_RETURN_IF_ERROR(expr)                 \
  do {                                             \
    ::ovbd::Status ovbd_status_ = (expr);          \
    if (!ovbd_status_.ok()) return ovbd_status_;   \
  } while (0)

// `lhs = value of expr` (a Result<T>), or return its Status from the enclosing function.
#define OVBD_ASSIGN_OR_RETURN(lhs, expr) \
  OVBD_ASSIGN_OR_RETURN_IMPL_(OVBD_CONCAT_(ovbd_result_, __LINE__), lhs, expr)
#define OVBD_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return tmp.status();               \
  lhs = std::move(tmp).value()
