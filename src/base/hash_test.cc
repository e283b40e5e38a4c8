#include "base/hash.h"

#include <gtest/gtest.h>

#include <string>
#include <type_traits>
#include <vector>

namespace ovbd {
namespace {

std::span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

TEST(Hash, KnownAnswers) {
  EXPECT_EQ(Sha256Hex(Bytes("")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex(Bytes("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex(Bytes("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(Md5Hex(Bytes("")), "d41d8cd98f00b204e9800998ecf8427e");
  EXPECT_EQ(Md5Hex(Bytes("abc")), "900150983cd24fb0d6963f7d28e17f72");
  EXPECT_EQ(Md5Hex(Bytes("The quick brown fox jumps over the lazy dog")), "9e107d9d372bb6826bd81d3542a419d6");
}

TEST(Hash, Sha256MillionAs) {
  // FIPS 180-2 appendix B.3, and the 1 MiB variant, in one Update and in pieces.
  std::string million(1000000, 'a');
  EXPECT_EQ(Sha256Hex(Bytes(million)), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  std::string mib(1 << 20, 'a');
  Sha256 s;
  for (size_t off = 0; off < mib.size(); off += 1000) s.Update(Bytes(mib.substr(off, 1000)));
  EXPECT_EQ(s.HexFinal(), Sha256Hex(Bytes(mib)));
}

TEST(Hash, Sha256FinalResetsAndMovesKeepState) {
  Sha256 s;
  s.Update(Bytes("abc"));
  EXPECT_EQ(s.HexFinal(), Sha256Hex(Bytes("abc")));
  EXPECT_EQ(s.HexFinal(), Sha256Hex(Bytes("")));  // Final resets to the empty message
  s.Update(Bytes("ab"));
  Sha256 moved(std::move(s));
  moved.Update(Bytes("c"));
  Sha256 assigned;
  assigned = std::move(moved);
  EXPECT_EQ(assigned.HexFinal(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  static_assert(!std::is_copy_constructible_v<Sha256> && !std::is_copy_assignable_v<Sha256>);
}

TEST(Hash, StreamingEqualsOneShot) {
  std::vector<uint8_t> data(100000);
  for (size_t i = 0; i < data.size(); i++) data[i] = static_cast<uint8_t>(i * 31 + 7);
  for (size_t piece : {1u, 55u, 64u, 65u, 4096u}) {
    Sha256 s;
    Md5 m;
    for (size_t off = 0; off < data.size(); off += piece) {
      auto part = std::span(data).subspan(off, std::min(piece, data.size() - off));
      s.Update(part);
      m.Update(part);
    }
    EXPECT_EQ(s.HexFinal(), Sha256Hex(data)) << piece;
    EXPECT_EQ(m.HexFinal(), Md5Hex(data)) << piece;
  }
}

}  // namespace
}  // namespace ovbd
