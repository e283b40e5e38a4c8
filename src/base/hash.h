// Content digests: SHA-256 (OCI blob digests, golden-vector checks) and MD5 (golden-vector checks
// against MANIFEST.md). Streaming and one-shot forms.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>

namespace ovbd {

class Sha256 {
 public:
  Sha256();
  void Update(std::span<const uint8_t> data);
  std::array<uint8_t, 32> Final();
  // Lowercase hex of Final().
  std::string HexFinal();

 private:
  void Block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
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
