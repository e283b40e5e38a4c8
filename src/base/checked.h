// Overflow-checked arithmetic for sizes and offsets that come from untrusted input.
#pragma once

#include <cstdint>

namespace ovbd {

// *out = a + b; false on overflow.
[[nodiscard]] inline bool CheckedAdd(uint64_t a, uint64_t b, uint64_t* out) {
  return !__builtin_add_overflow(a, b, out);
}
// *out = a * b; false on overflow.
[[nodiscard]] inline bool CheckedMul(uint64_t a, uint64_t b, uint64_t* out) {
  return !__builtin_mul_overflow(a, b, out);
}
// True when [offset, offset+length) lies inside [0, size).
inline bool RangeWithin(uint64_t offset, uint64_t length, uint64_t size) {
  return offset <= size && length <= size - offset;
}
inline constexpr uint64_t RoundUp(uint64_t v, uint64_t align) { return (v + align - 1) / align * align; }
inline constexpr bool IsAligned(uint64_t v, uint64_t align) { return v % align == 0; }

}  // namespace ovbd
