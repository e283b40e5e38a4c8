// SHA-256 through OpenSSL's EVP interface; MD5 (RFC 1321) written from the specification.
#include "base/hash.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace ovbd {
namespace {

inline uint32_t Rotl(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

// Shared block buffering of the two Merkle–Damgård hashes.
template <typename BlockFn>
void Feed(uint8_t* buf, size_t& buf_len, uint64_t& total, std::span<const uint8_t> data, BlockFn block) {
  total += data.size();
  const uint8_t* p = data.data();
  size_t n = data.size();
  if (buf_len > 0) {
    size_t take = std::min(n, 64 - buf_len);
    std::memcpy(buf + buf_len, p, take);
    buf_len += take;
    p += take;
    n -= take;
    if (buf_len == 64) {
      block(buf);
      buf_len = 0;
    }
  }
  while (n >= 64) {
    block(p);
    p += 64;
    n -= 64;
  }
  if (n > 0) {
    std::memcpy(buf, p, n);
    buf_len = n;
  }
}

}  // namespace

std::string ToHex(std::span<const uint8_t> data) {
  static const char* kDigits = "0123456789abcdef";
  std::string s;
  s.reserve(data.size() * 2);
  for (uint8_t b : data) {
    s += kDigits[b >> 4];
    s += kDigits[b & 15];
  }
  return s;
}

namespace {
// The EVP calls fail only when OpenSSL cannot allocate (or is misconfigured so that it has no
// sha256 at all); neither can be reported through Update's void return, and a hash that
// silently skipped bytes would be worse than stopping.
void CheckEvp(int ok, const char* what) {
  if (ok == 1) return;
  std::fprintf(stderr, "ovbd: OpenSSL %s failed\n", what);
  std::abort();
}

// OpenSSL 3 looks EVP_sha256() up in its provider table at every EVP_DigestInit_ex; fetching
// the implementation once saves that lookup per chunk (a digest table hashes one per 16 KiB).
// The fetched object lives as long as the process.
const EVP_MD* Sha256Md() {
  static const EVP_MD* md = [] {
    const EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    return fetched != nullptr ? fetched : EVP_sha256();
  }();
  return md;
}
}  // namespace

void Sha256::CtxDeleter::operator()(evp_md_ctx_st* ctx) const { EVP_MD_CTX_free(ctx); }

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (!ctx_) CheckEvp(0, "EVP_MD_CTX_new");
  CheckEvp(EVP_DigestInit_ex(ctx_.get(), Sha256Md(), nullptr), "EVP_DigestInit_ex(sha256)");
}

Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::Update(std::span<const uint8_t> data) {
  if (data.empty()) return;
  CheckEvp(EVP_DigestUpdate(ctx_.get(), data.data(), data.size()), "EVP_DigestUpdate");
}

std::array<uint8_t, 32> Sha256::Final() {
  std::array<uint8_t, 32> out{};
  unsigned int len = 0;
  CheckEvp(EVP_DigestFinal_ex(ctx_.get(), out.data(), &len), "EVP_DigestFinal_ex");
  if (len != out.size()) CheckEvp(0, "EVP_DigestFinal_ex (digest length)");
  CheckEvp(EVP_DigestInit_ex(ctx_.get(), Sha256Md(), nullptr), "EVP_DigestInit_ex(sha256)");
  return out;
}

std::string Sha256::HexFinal() {
  auto d = Final();
  return ToHex(d);
}

namespace {
constexpr int kMd5Shift[64] = {7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
                               5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20,
                               4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
                               6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21};
// floor(abs(sin(i + 1)) * 2^32)
constexpr uint32_t kMd5K[64] = {
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391};
}  // namespace

Md5::Md5() : h_{0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476} {}

void Md5::Block(const uint8_t* p) {
  uint32_t m[16];
  for (int i = 0; i < 16; i++) {
    m[i] = p[4 * i] | (uint32_t{p[4 * i + 1]} << 8) | (uint32_t{p[4 * i + 2]} << 16) | (uint32_t{p[4 * i + 3]} << 24);
  }
  uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3];
  for (int i = 0; i < 64; i++) {
    uint32_t f;
    int g;
    if (i < 16) {
      f = (b & c) | (~b & d);
      g = i;
    } else if (i < 32) {
      f = (d & b) | (~d & c);
      g = (5 * i + 1) % 16;
    } else if (i < 48) {
      f = b ^ c ^ d;
      g = (3 * i + 5) % 16;
    } else {
      f = c ^ (b | ~d);
      g = (7 * i) % 16;
    }
    f = f + a + kMd5K[i] + m[g];
    a = d;
    d = c;
    c = b;
    b = b + Rotl(f, kMd5Shift[i]);
  }
  h_[0] += a; h_[1] += b; h_[2] += c; h_[3] += d;
}

void Md5::Update(std::span<const uint8_t> data) {
  Feed(buf_, buf_len_, total_, data, [this](const uint8_t* p) { Block(p); });
}

std::array<uint8_t, 16> Md5::Final() {
  uint64_t bits = total_ * 8;
  uint8_t pad[72] = {0x80};
  size_t pad_len = (buf_len_ < 56) ? 56 - buf_len_ : 120 - buf_len_;
  for (int i = 0; i < 8; i++) pad[pad_len + i] = static_cast<uint8_t>(bits >> (8 * i));
  Update(std::span<const uint8_t>(pad, pad_len + 8));
  std::array<uint8_t, 16> out{};
  for (int i = 0; i < 4; i++) {
    for (int j = 0; j < 4; j++) out[4 * i + j] = static_cast<uint8_t>(h_[i] >> (8 * j));
  }
  return out;
}

std::string Md5::HexFinal() {
  auto d = Final();
  return ToHex(d);
}

std::string Sha256Hex(std::span<const uint8_t> data) {
  Sha256 h;
  h.Update(data);
  return h.HexFinal();
}

std::string Md5Hex(std::span<const uint8_t> data) {
  Md5 h;
  h.Update(data);
  return h.HexFinal();
}

}  // namespace ovbd
