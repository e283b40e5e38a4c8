#include "volume/read_error_tap.h"

#include <cstdio>

namespace ovbd::volume {

Status ReadErrorTap::ReadAt(uint64_t offset, std::span<uint8_t> buf) const {
  Status s = base_->ReadAt(offset, buf);
  if (s.ok()) return s;
  const uint64_t n = ++errors_;
  std::string text = s.ToString();
  if (n <= 20 || n % 1000 == 0) {
    std::fprintf(stderr, "ovbd: read error %llu of %s at offset %llu (%zu bytes): %s\n",
                 static_cast<unsigned long long>(n), Name().c_str(), static_cast<unsigned long long>(offset),
                 buf.size(), text.c_str());
  }
  std::lock_guard lock(mu_);
  last_ = std::move(text);
  return s;
}

std::string ReadErrorTap::last_error() const {
  std::lock_guard lock(mu_);
  return last_;
}

}  // namespace ovbd::volume
