// Challenge, Base64, token answer, credentials file and digest verifier parsing.
#include <gtest/gtest.h>

#include "base/hash.h"
#include "remote/auth.h"
#include "remote/credentials.h"
#include "remote/digest_verifier.h"

namespace ovbd::remote {
namespace {

TEST(Challenge, BearerWithQuotedParams) {
  auto c = ParseChallenge(R"(Bearer realm="https://auth.io/token",service="reg.io",scope="repository:a/b:pull,push")");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->scheme, "bearer");
  EXPECT_EQ(c->params["realm"], "https://auth.io/token");
  EXPECT_EQ(c->params["service"], "reg.io");
  EXPECT_EQ(c->params["scope"], "repository:a/b:pull,push");
}

TEST(Challenge, BasicTokensEscapesAndSecondChallenge) {
  auto c = ParseChallenge(R"(basic Realm=plain , charset="UTF\"8")");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->scheme, "basic");
  EXPECT_EQ(c->params["realm"], "plain");
  EXPECT_EQ(c->params["charset"], "UTF\"8");
  auto two = ParseChallenge(R"(Bearer realm="r", Basic realm="x")");
  ASSERT_TRUE(two.ok()) << two.status().ToString();
  EXPECT_EQ(two->params.size(), 1u);
}

TEST(Challenge, RejectsMalformedAndOverCap) {
  EXPECT_EQ(ParseChallenge("Negotiate abc").status().code(), Code::kNotSupported);
  for (const char* bad : {"", "   ", "Bearer service=x", R"(Bearer realm="unterminated)", "Bearer realm=",
                          "Bearer realm=\"r\" service=x", "Basic =x"}) {
    EXPECT_EQ(ParseChallenge(bad).status().code(), Code::kInvalidArgument) << bad;
  }
  std::string many = "Bearer realm=r";
  for (size_t i = 0; i < kMaxChallengeParams; ++i) many += ",p" + std::to_string(i) + "=v";
  EXPECT_EQ(ParseChallenge(many).status().code(), Code::kInvalidArgument);
  std::string long_header = "Bearer realm=\"" + std::string(kMaxChallengeBytes, 'a') + "\"";
  EXPECT_EQ(ParseChallenge(long_header).status().code(), Code::kInvalidArgument);
}

TEST(Base64, RoundTripAndRejects) {
  for (std::string s : std::vector<std::string>{"", "a", "ab", "abc", "user:pass", std::string("\0\xff\x10", 3)}) {
    auto d = Base64Decode(Base64Encode(s));
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(*d, s);
  }
  EXPECT_EQ(Base64Encode("user:pass"), "dXNlcjpwYXNz");
  EXPECT_FALSE(Base64Decode("dXN*").ok());
  EXPECT_FALSE(Base64Decode("a").ok());
}

TEST(Token, ParsesAndClampsLifetime) {
  auto t = ParseTokenResponse(R"({"token":"abc","expires_in":300})");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->value, "abc");
  EXPECT_EQ(t->lifetime.count(), 300);
  auto a = ParseTokenResponse(R"({"access_token":"x"})");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->lifetime, kDefaultTokenLifetime);
  EXPECT_EQ(ParseTokenResponse(R"({"token":"x","expires_in":1})")->lifetime, kMinTokenLifetime);
  EXPECT_EQ(ParseTokenResponse(R"({"token":"x","expires_in":1e12})")->lifetime, kMaxTokenLifetime);
  for (const char* bad : {"", "[]", "{}", R"({"token":5})", R"({"token":""})", R"({"token":"a b"})", "{"}) {
    EXPECT_FALSE(ParseTokenResponse(bad).ok()) << bad;
  }
  EXPECT_FALSE(ParseTokenResponse("{\"token\":\"" + std::string(kMaxTokenBytes + 1, 'a') + "\"}").ok());
}

TEST(AuthState, ExpiresAndClears) {
  AuthState s;
  auto now = AuthState::Clock::now();
  s.Set("Bearer t", now + std::chrono::seconds(10));
  EXPECT_EQ(s.Header(now), "Bearer t");
  EXPECT_EQ(s.Header(now + std::chrono::seconds(11)), "");
  s.Set("Basic b", std::nullopt);
  EXPECT_EQ(s.Header(now + std::chrono::hours(1000)), "Basic b");
  s.Clear();
  EXPECT_EQ(s.Header(now), "");
}

TEST(Credentials, DockerConfigForms) {
  std::string json = R"({"auths":{
    "https://reg.io/v1/": {"auth": "dXNlcjpwYXNz"},
    "127.0.0.1:5000": {"username": "u", "password": "p:q"}}})";
  auto a = FindCredentials(json, "reg.io");
  ASSERT_TRUE(a.ok() && a->has_value()) << a.status().ToString();
  EXPECT_EQ((*a)->username, "user");
  EXPECT_EQ((*a)->password, "pass");
  auto b = FindCredentials(json, "127.0.0.1:5000");
  ASSERT_TRUE(b.ok() && b->has_value());
  EXPECT_EQ((*b)->password, "p:q");
  auto none = FindCredentials(json, "other.io");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  EXPECT_FALSE(FindCredentials(R"({"x":1})", "h")->has_value());
}

TEST(Credentials, RejectsMalformed) {
  for (const char* bad : {"", "[", "[]", R"({"auths":[]})", R"({"auths":{"h":5}})", R"({"auths":{"h":{"auth":"***"}}})",
                          R"({"auths":{"h":{"auth":"bm9jb2xvbg=="}}})", R"({"auths":{"h":{"username":"u"}}})",
                          R"({"auths":{"h":{"auth":"OnBhc3M="}}})"}) {
    EXPECT_FALSE(FindCredentials(bad, "h").ok()) << bad;
  }
  EXPECT_FALSE(FindCredentials(std::string(kMaxCredentialsFileBytes + 1, ' '), "h").ok());
  std::string long_user = R"({"auths":{"h":{"username":")" + std::string(kMaxCredentialBytes, 'u') + R"(","password":"p"}}})";
  EXPECT_FALSE(FindCredentials(long_user, "h").ok());
  EXPECT_EQ(LoadCredentials("/nonexistent/cred.json", "h").status().code(), Code::kNotFound);
}

std::vector<uint8_t> Bytes(size_t n) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * 7);
  return v;
}

TEST(DigestVerifier, InOrderOverlappingAndOutOfOrder) {
  auto data = Bytes(1000);
  std::string digest = "sha256:" + Sha256Hex(data);
  DigestVerifier v(digest, data.size(), "blob");
  ASSERT_TRUE(v.Add(500, std::span(data).subspan(500, 100)).ok());  // out of order: ignored
  ASSERT_TRUE(v.Add(0, std::span(data).subspan(0, 300)).ok());
  ASSERT_TRUE(v.Add(200, std::span(data).subspan(200, 300)).ok());  // overlaps the prefix
  EXPECT_FALSE(v.verified());
  ASSERT_TRUE(v.Add(500, std::span(data).subspan(500, 500)).ok());
  EXPECT_TRUE(v.verified());
}

TEST(DigestVerifier, MismatchFailsTheCompletingAddThenStartsOver) {
  auto data = Bytes(100);
  DigestVerifier v("sha256:" + std::string(64, '0'), data.size(), "blob");
  EXPECT_TRUE(v.Add(0, std::span(data).subspan(0, 50)).ok());
  Status s = v.Add(50, std::span(data).subspan(50));
  EXPECT_EQ(s.code(), Code::kCorruption);
  EXPECT_NE(s.message().find("blob"), std::string::npos) << s.message();
  EXPECT_EQ(v.mismatches(), 1u);
  EXPECT_TRUE(v.Add(0, std::span(data).subspan(0, 10)).ok());  // a new pass, not failed forever
  EXPECT_FALSE(v.verified());
}

TEST(DigestVerifier, ACorruptedPassThenAGoodOneVerifies) {
  auto data = Bytes(100);
  DigestVerifier v("sha256:" + Sha256Hex(data), data.size(), "blob");
  auto bad = data;
  bad[70] ^= 1;
  EXPECT_EQ(v.Add(0, bad).code(), Code::kCorruption);
  EXPECT_TRUE(v.Add(0, data).ok());
  EXPECT_TRUE(v.verified());
}

TEST(DigestVerifier, ForgettingHashedBytesStartsOver) {
  auto data = Bytes(100);
  DigestVerifier v("sha256:" + Sha256Hex(data), data.size(), "blob");
  auto bad = data;
  bad[10] ^= 1;
  EXPECT_TRUE(v.Add(0, std::span(bad).subspan(0, 50)).ok());
  v.Forget(60, 10);  // not hashed yet: nothing to forget
  v.Forget(10, 1);   // a reader's check failed there: the prefix is hashed again
  EXPECT_TRUE(v.Add(50, std::span(data).subspan(50)).ok());  // no longer continues the prefix
  EXPECT_FALSE(v.verified());
  EXPECT_TRUE(v.Add(0, data).ok());
  EXPECT_TRUE(v.verified());
}

}  // namespace
}  // namespace ovbd::remote
