// Trace file format (docs/format/trace.md): round trips, one test per rule of the spec, every
// truncation and byte flip, golden files, atomic save and capped load.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "ovbd/trace.h"
#include "testutil.h"

namespace ovbd::trace {
namespace {

using ovbd::testing::TempDir;

std::string Hex8(uint32_t v) {
  char buf[9];
  std::snprintf(buf, sizeof(buf), "%08x", v);
  return buf;
}

// `body` followed by its correct checksum line.
std::string Seal(const std::string& body) {
  return body + "crc32c " + Hex8(TraceChecksum(body)) + "\n";
}

// A header with one layer "base" and the given range lines.
std::string OneLayer(const std::string& range_lines, int count = 1) {
  return "ovbd-trace 1\nlayers 1\nlayer 0 base\nranges " + std::to_string(count) + "\n" + range_lines;
}

Trace Sample() {
  Trace t;
  t.layers = {"sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "app.lsmt"};
  t.ranges = {{0, 0, 4096}, {1, 1048576, 131072}, {0, 65536, 8192}, {1, 0, 512}};
  return t;
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void ExpectError(const std::string& bytes, Code code, const std::string& substring) {
  auto r = DecodeTrace(bytes);
  ASSERT_FALSE(r.ok()) << "accepted: " << bytes;
  EXPECT_EQ(r.status().code(), code) << r.status().ToString();
  EXPECT_NE(r.status().message().find(substring), std::string::npos)
      << "message: " << r.status().message() << "\nexpected to contain: " << substring;
}

TEST(TraceFormat, ChecksumIsStandardCrc32c) {
  EXPECT_EQ(TraceChecksum("123456789"), 0xe3069283u);
}

TEST(TraceFormat, EncodesTheDocumentedText) {
  EXPECT_EQ(EncodeTrace(Sample()),
            "ovbd-trace 1\n"
            "layers 2\n"
            "layer 0 sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n"
            "layer 1 app.lsmt\n"
            "ranges 4\n"
            "r 0 0 4096\n"
            "r 1 1048576 131072\n"
            "r 0 65536 8192\n"
            "r 1 0 512\n"
            "crc32c a7d8044c\n");
}

TEST(TraceFormat, RoundTrip) {
  auto r = DecodeTrace(EncodeTrace(Sample()));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, Sample());
}

TEST(TraceFormat, RoundTripEmpty) {
  auto r = DecodeTrace(EncodeTrace(Trace{}));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, Trace{});
}

TEST(TraceFormat, RoundTripAtTheCaps) {
  Trace t;
  for (size_t i = 0; i < kMaxLayers; i++) {
    t.layers.push_back(std::string(kMaxKeyLength - 4, '!' + static_cast<char>(i % 90)) +
                       Hex8(static_cast<uint32_t>(i)).substr(4));
  }
  t.ranges = {{254, UINT64_MAX - 1, 1}, {0, 0, UINT64_MAX}, {7, 1, UINT64_MAX - 1}};
  ASSERT_TRUE(ValidateTrace(t).ok()) << ValidateTrace(t).ToString();
  auto r = DecodeTrace(EncodeTrace(t));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, t);
}

TEST(TraceFormat, RoundTripMaxRanges) {
  Trace t;
  t.layers = {"a"};
  for (size_t i = 0; i < kMaxRanges; i++) t.ranges.push_back({0, UINT64_MAX / 2 + i, UINT64_MAX / 3});
  const std::string bytes = EncodeTrace(t);
  EXPECT_LE(bytes.size(), kMaxTraceFileSize);
  auto r = DecodeTrace(bytes);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->ranges.size(), kMaxRanges);
}

TEST(TraceFormat, RejectBadMagic) {
  ExpectError("", Code::kInvalidArgument, "not an ovbd trace file");
  ExpectError(Seal("ovbd-trac 1\nlayers 0\nranges 0\n"), Code::kInvalidArgument, "not an ovbd trace");
  ExpectError(Seal("OVBD-TRACE 1\nlayers 0\nranges 0\n"), Code::kInvalidArgument, "not an ovbd trace");
  ExpectError("{\"lowers\": []}\n", Code::kInvalidArgument, "not an ovbd trace file");
}

TEST(TraceFormat, RejectVersion) {
  ExpectError(Seal("ovbd-trace 2\nlayers 0\nranges 0\n"), Code::kNotSupported, "version 2");
  ExpectError(Seal("ovbd-trace 0\nlayers 0\nranges 0\n"), Code::kNotSupported, "version 0");
  ExpectError(Seal("ovbd-trace 01\nlayers 0\nranges 0\n"), Code::kCorruption, "bad version");
  ExpectError(Seal("ovbd-trace v1\nlayers 0\nranges 0\n"), Code::kCorruption, "bad version");
  ExpectError(Seal("ovbd-trace 1 \nlayers 0\nranges 0\n"), Code::kCorruption, "bad version");
  ExpectError("ovbd-trace 1", Code::kCorruption, "no newline");
}

TEST(TraceFormat, RejectLayerCountMismatch) {
  ExpectError(Seal("ovbd-trace 1\nlayers 2\nlayer 0 a\nranges 0\n"), Code::kCorruption,
              "\"layers 2\" but only 1 \"layer\" lines");
  ExpectError(Seal("ovbd-trace 1\nlayers 1\nlayer 0 a\nlayer 1 b\nranges 0\n"), Code::kCorruption,
              "more \"layer\" lines than declared");
  ExpectError(Seal("ovbd-trace 1\nranges 0\n"), Code::kCorruption, "expected \"layers N\"");
}

TEST(TraceFormat, RejectRangeCountMismatch) {
  ExpectError(Seal(OneLayer("r 0 0 1\n", 2)), Code::kCorruption, "\"ranges 2\" but only 1 \"r\" lines");
  ExpectError(Seal(OneLayer("r 0 0 1\nr 0 5 1\n", 1)), Code::kCorruption,
              "more \"r\" lines than declared");
  ExpectError(Seal("ovbd-trace 1\nlayers 0\n"), Code::kCorruption, "expected \"ranges N\"");
}

TEST(TraceFormat, RejectBadNumbers) {
  for (const char* bad : {"+1", "-1", "01", "00", "1a", "0x10", "1.0", "1e3", "\t1", "18446744073709551616",
                          "99999999999999999999", "000000000000000000001", "١"}) {
    SCOPED_TRACE(bad);
    ExpectError(Seal(OneLayer(std::string("r 0 ") + bad + " 1\n")), Code::kCorruption, "bad offset");
    ExpectError(Seal(OneLayer(std::string("r 0 1 ") + bad + "\n")), Code::kCorruption, "bad length");
    ExpectError(Seal(OneLayer(std::string("r ") + bad + " 0 1\n")), Code::kCorruption, "bad layer id");
  }
  ExpectError(Seal("ovbd-trace 1\nlayers -0\nranges 0\n"), Code::kCorruption, "bad layers count");
  ExpectError(Seal("ovbd-trace 1\nlayers 0\nranges +0\n"), Code::kCorruption, "bad ranges count");
}

TEST(TraceFormat, ErrorsNameLineAndOffset) {
  const std::string body = OneLayer("r 0 0 1\nr 0 x 1\n", 2);
  const size_t offset = body.size() - std::string("r 0 x 1\n").size();
  ExpectError(Seal(body), Code::kCorruption, "line 6 (offset " + std::to_string(offset) + "): bad offset \"x\"");
}

TEST(TraceFormat, RejectBadSpacing) {
  ExpectError(Seal(OneLayer("r 0  0 1\n")), Code::kCorruption, "expected \"r LAYER OFFSET LENGTH\"");
  ExpectError(Seal(OneLayer("r 0 0 1 \n")), Code::kCorruption, "expected \"r LAYER OFFSET LENGTH\"");
  ExpectError(Seal(OneLayer("r 0 0 1 2\n")), Code::kCorruption, "expected \"r LAYER OFFSET LENGTH\"");
  ExpectError(Seal(OneLayer("R 0 0 1\n")), Code::kCorruption, "expected \"r LAYER OFFSET LENGTH\"");
  ExpectError(Seal("ovbd-trace 1\r\nlayers 0\r\nranges 0\r\n"), Code::kCorruption, "bad version");
  ExpectError(Seal("ovbd-trace 1\nlayers 0\nranges 0\r\n"), Code::kCorruption, "bad ranges count");
}

TEST(TraceFormat, RejectOverflow) {
  ExpectError(Seal(OneLayer("r 0 18446744073709551615 1\n")), Code::kCorruption, "overflows");
  ExpectError(Seal(OneLayer("r 0 1 18446744073709551615\n")), Code::kCorruption, "overflows");
  EXPECT_TRUE(DecodeTrace(Seal(OneLayer("r 0 18446744073709551614 1\n"))).ok());
}

TEST(TraceFormat, RejectLayerOutOfRange) {
  ExpectError(Seal(OneLayer("r 1 0 1\n")), Code::kCorruption, "layer id 1 out of range (1 layers)");
  ExpectError(Seal(OneLayer("r 4294967296 0 1\n")), Code::kCorruption, "out of range");
  ExpectError(Seal("ovbd-trace 1\nlayers 0\nranges 1\nr 0 0 1\n"), Code::kCorruption, "out of range");
}

TEST(TraceFormat, RejectZeroLength) {
  ExpectError(Seal(OneLayer("r 0 0 0\n")), Code::kCorruption, "length is 0");
}

TEST(TraceFormat, RejectBadLayerLines) {
  const auto layer = [](const std::string& line) {
    return Seal("ovbd-trace 1\nlayers 1\n" + line + "ranges 0\n");
  };
  ExpectError(layer("layer 1 a\n"), Code::kCorruption, "is not 0");
  ExpectError(layer("layer 00 a\n"), Code::kCorruption, "is not 0");
  ExpectError(layer("layer 0 a\x7f\n"), Code::kCorruption, "printable");
  ExpectError(layer("layer 0 a\xc3\xa9\n"), Code::kCorruption, "printable");
  ExpectError(layer("layer 0 a\tb\n"), Code::kCorruption, "printable");
  ExpectError(layer("layer 0 " + std::string(kMaxKeyLength + 1, 'k') + "\n"), Code::kCorruption, "printable");
  EXPECT_TRUE(DecodeTrace(layer("layer 0 " + std::string(kMaxKeyLength, 'k') + "\n")).ok());
  ExpectError(layer("layer 0 a b\n"), Code::kCorruption, "expected \"layer ID KEY\"");
  ExpectError(layer("layer 0  a\n"), Code::kCorruption, "expected \"layer ID KEY\"");
  ExpectError(layer("layer 0\n"), Code::kCorruption, "expected \"layer ID KEY\"");
  ExpectError(Seal("ovbd-trace 1\nlayers 2\nlayer 0 a\nlayer 1 a\nranges 0\n"), Code::kCorruption,
              "duplicate layer key \"a\"");
}

TEST(TraceFormat, RejectCaps) {
  ExpectError(Seal("ovbd-trace 1\nlayers 256\nranges 0\n"), Code::kCorruption, "exceeds the cap of 255");
  ExpectError(Seal("ovbd-trace 1\nlayers 0\nranges 1048577\n"), Code::kCorruption,
              "exceeds the cap of 1048576");
  // A huge declared count in a tiny file fails on the missing lines, without a huge allocation.
  ExpectError(Seal(OneLayer("", 1048576)), Code::kCorruption, "\"ranges 1048576\" but only 0");
  ExpectError(std::string(kMaxTraceFileSize + 1, 'x'), Code::kCorruption, "more than any valid trace");
}

TEST(TraceFormat, RejectChecksumMismatch) {
  std::string bytes = EncodeTrace(Sample());
  const size_t pos = bytes.find("65536");
  bytes[pos] = '7';  // a different but well-formed trace: only the checksum can tell
  const uint32_t actual = TraceChecksum(std::string_view(bytes).substr(0, bytes.size() - 16));
  ExpectError(bytes, Code::kCorruption, "checksum mismatch: file says crc32c a7d8044c, content has " + Hex8(actual));
}

TEST(TraceFormat, RejectBadChecksumLine) {
  const std::string body = OneLayer("r 0 0 1\n");
  ExpectError(body + "crc32c ABCDEF01\n", Code::kCorruption, "lowercase hex");
  ExpectError(body + "crc32c " + Hex8(TraceChecksum(body)).substr(1) + "\n", Code::kCorruption, "lowercase hex");
  ExpectError(body + "crc32 " + Hex8(TraceChecksum(body)) + "\n", Code::kCorruption, "expected \"crc32c XXXXXXXX\"");
  ExpectError(body, Code::kCorruption, "truncated");
}

TEST(TraceFormat, RejectTrailingBytes) {
  const std::string bytes = EncodeTrace(Sample());
  ExpectError(bytes + "\n", Code::kCorruption, "1 trailing bytes after the checksum line");
  ExpectError(bytes + "r 0 0 1\n", Code::kCorruption, "trailing bytes");
  ExpectError(bytes + bytes, Code::kCorruption, "trailing bytes");
  ExpectError(bytes + std::string(1, '\0'), Code::kCorruption, "trailing bytes");
}

TEST(TraceFormat, RejectEveryTruncation) {
  const std::string bytes = EncodeTrace(Sample());
  for (size_t n = 0; n < bytes.size(); n++) {
    auto r = DecodeTrace(std::string_view(bytes).substr(0, n));
    EXPECT_FALSE(r.ok()) << "prefix of " << n << " bytes accepted";
  }
}

TEST(TraceFormat, RejectEveryFlippedByte) {
  const std::string bytes = EncodeTrace(Sample());
  for (size_t i = 0; i < bytes.size(); i++) {
    for (uint8_t mask : {0x01, 0x02, 0x10, 0x20, 0x80, 0xff}) {
      std::string bad = bytes;
      bad[i] = static_cast<char>(bad[i] ^ mask);
      EXPECT_FALSE(DecodeTrace(bad).ok()) << "byte " << i << " ^ " << int{mask} << " accepted";
    }
  }
}

TEST(TraceFormat, ValidateRejects) {
  const auto invalid = [](Trace t) { return ValidateTrace(t).code() == Code::kInvalidArgument; };
  Trace t = Sample();
  EXPECT_TRUE(ValidateTrace(t).ok());
  t.layers[1] = "a b";
  EXPECT_TRUE(invalid(t));
  t.layers[1] = "";
  EXPECT_TRUE(invalid(t));
  t.layers[1] = t.layers[0];
  EXPECT_TRUE(invalid(t));
  t = Sample();
  t.ranges[0].layer = 2;
  EXPECT_TRUE(invalid(t));
  t = Sample();
  t.ranges[0].length = 0;
  EXPECT_TRUE(invalid(t));
  t = Sample();
  t.ranges[0] = {0, UINT64_MAX, 1};
  EXPECT_TRUE(invalid(t));
  t = Sample();
  t.layers.resize(kMaxLayers + 1);
  EXPECT_TRUE(invalid(t));
}

// Files in fuzz/corpus/trace: valid_* decode (and re-encode to the same bytes), invalid_* fail.
TEST(TraceFormat, GoldenFiles) {
  const std::filesystem::path dir = std::filesystem::path(OVBD_SOURCE_DIR) / "fuzz/corpus/trace";
  size_t valid = 0, invalid = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    const std::string bytes = ReadText(entry.path().string());
    auto r = DecodeTrace(bytes);
    if (name.starts_with("valid_")) {
      EXPECT_TRUE(r.ok()) << name << ": " << r.status().ToString();
      if (r.ok()) {
        EXPECT_EQ(EncodeTrace(*r), bytes) << name;
      }
      valid++;
    } else {
      EXPECT_FALSE(r.ok()) << name << " accepted";
      invalid++;
    }
  }
  EXPECT_GE(valid, 3u);
  EXPECT_GE(invalid, 5u);
}

// The example in the spec is the golden file, byte for byte.
TEST(TraceFormat, SpecExampleIsGolden) {
  const std::string doc = ReadText(std::string(OVBD_SOURCE_DIR) + "/docs/format/trace.md");
  const std::string example = ReadText(std::string(OVBD_SOURCE_DIR) + "/fuzz/corpus/trace/valid_example.trace");
  ASSERT_FALSE(example.empty());
  EXPECT_NE(doc.find("```\n" + example + "```\n"), std::string::npos);
  EXPECT_EQ(example, EncodeTrace(Sample()));
}

TEST(TraceFile, SaveLoadRoundTrip) {
  TempDir dir;
  const std::string path = dir.Join("start.trace");
  ASSERT_TRUE(SaveTrace(path, Sample()).ok());
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  EXPECT_EQ(ReadText(path), EncodeTrace(Sample()));
  auto r = LoadTrace(path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, Sample());
}

TEST(TraceFile, SaveReplacesAnExistingFileAndStaleTemp) {
  TempDir dir;
  const std::string path = dir.Join("start.trace");
  ASSERT_TRUE(SaveTrace(path, Sample()).ok());
  std::ofstream(path + ".tmp") << "stale";
  ASSERT_TRUE(SaveTrace(path, Trace{}).ok());
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  auto r = LoadTrace(path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, Trace{});
}

TEST(TraceFile, SaveRejectsInvalidTraceBeforeWriting) {
  TempDir dir;
  const std::string path = dir.Join("start.trace");
  Trace t = Sample();
  t.ranges[0].layer = 9;
  Status s = SaveTrace(path, t);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find(path), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST(TraceFile, SaveFailureLeavesOldFile) {
  TempDir dir;
  const std::string path = dir.Join("start.trace");
  ASSERT_TRUE(SaveTrace(path, Sample()).ok());
  std::filesystem::create_directory(path + ".tmp");  // the temp file cannot be created
  EXPECT_FALSE(SaveTrace(path, Trace{}).ok());
  auto r = LoadTrace(path);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, Sample());
}

TEST(TraceFile, LoadErrorsNameThePath) {
  TempDir dir;
  const std::string missing = dir.Join("missing.trace");
  auto r = LoadTrace(missing);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(missing), std::string::npos) << r.status().ToString();

  const std::string bad = dir.Join("bad.trace");
  std::string bytes = EncodeTrace(Sample());
  bytes[20] ^= 1;
  std::ofstream(bad, std::ios::binary) << bytes;
  r = LoadTrace(bad);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCorruption);
  EXPECT_EQ(r.status().message().rfind(bad + ": line ", 0), 0u) << r.status().ToString();
}

TEST(TraceFile, LoadRejectsOversizeFileUnread) {
  TempDir dir;
  const std::string path = dir.Join("huge.trace");
  std::ofstream(path) << "ovbd-trace 1\n";
  std::filesystem::resize_file(path, kMaxTraceFileSize + 1);  // sparse
  auto r = LoadTrace(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCorruption);
  EXPECT_NE(r.status().message().find(path + ": trace file is 67108865 bytes"), std::string::npos)
      << r.status().ToString();
}

}  // namespace
}  // namespace ovbd::trace
