#include "zfile/scratch.h"

namespace ovbd::zfile {

Scratch::Buffers& Scratch::ThreadBuffers() {
  thread_local Buffers buffers;
  return buffers;
}

Scratch::Scratch() {
  Buffers& tl = ThreadBuffers();
  Buffers* use = &own_;
  thread_ = nullptr;
  if (!tl.in_use) {
    tl.in_use = true;
    thread_ = &tl;
    use = &tl;
  }
  compressed_ = &use->compressed;
  block_ = &use->block;
}

Scratch::~Scratch() {
  if (thread_ != nullptr) thread_->in_use = false;
}

}  // namespace ovbd::zfile
