// Per-thread scratch buffers for the ZFile read path, so a ReadAt allocates nothing in the
// steady state. A nested use on the same thread (a ZFile read whose compressed file is itself
// a ZFile reader) gets private buffers instead of clobbering the outer call's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace ovbd::zfile {

class Scratch {
 public:
  Scratch();
  ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  // Buffers of at least n bytes, valid until the next call of the same function or the end of
  // this object. Their contents are unspecified.
  uint8_t* Compressed(size_t n) { return Grow(compressed_, n); }
  uint8_t* Block(size_t n) { return Grow(block_, n); }

 private:
  struct Buffers {
    std::vector<uint8_t> compressed;
    std::vector<uint8_t> block;
    bool in_use = false;
  };
  static Buffers& ThreadBuffers();
  static uint8_t* Grow(std::vector<uint8_t>* v, size_t n) {
    if (v->size() < n) v->resize(n);
    return v->data();
  }

  Buffers* thread_;  // the thread's buffers, or nullptr when nested
  Buffers own_;      // used when nested
  std::vector<uint8_t>* compressed_;
  std::vector<uint8_t>* block_;
};

}  // namespace ovbd::zfile
