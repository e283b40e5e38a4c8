// Content digests: SHA-256 (OCI blob digests, digest tables, golden-vector checks) and MD5
// (golden-vector checks against MANIFEST.md). Streaming and one-shot forms.
//
// Sha256 runs on OpenSSL's libcrypto (EVP_sha256), which uses the CPU's SHA extensions where
// there are any (SHA-NI: ~1.5-2 GB/s against ~250 MB/s for portable code): every lazily read
// registry chunk is hashed, so this is on the read path. Md5 is portable code (tests only).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

struct evp_md_ctx_st;  // OpenSSL's EVP_MD_CTX, kept out of this header

namespace ovbd {

// Streaming SHA-256 (FIPS 180-4). Final() returns the digest and resets the object to the empty
// message, so one object may hash several messages in turn. Movable, not copyable (the state is
// an OpenSSL context); a moved-from object may only be destroyed or assigned to. Not
// thread-safe: one object per thread. An allocation failure inside OpenSSL aborts the process
// (as std::bad_alloc would end it: the library has no exceptions).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(std::span<const uint8_t> data);
  std::array<uint8_t, 32> Final();
  // Lowercase hex of Final().
  std::string HexFinal();

 private:
  struct CtxDeleter {
    void operator()(evp_md_ctx_st* ctx) const;
  };
  std::unique_ptr<evp_md_ctx_st, CtxDeleter> ctx_;
};

class Md5 {
 public:
  Md5();
  void Update(std::span<const uint8_t> data);
  std::array<uint8_t, 16> Final();
  std::string HexFinal();

 private:
  void Block(const uint8_t* p);
  uint32_t h_[4];
  uint8_t buf_[64];
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
};

std::string Sha256Hex(std::span<const uint8_t> data);
std::string Md5Hex(std::span<const uint8_t> data);
std::string ToHex(std::span<const uint8_t> data);

}  // namespace ovbd
