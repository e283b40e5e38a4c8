// URL, repository and reference parsing: every cap and malformed input.
#include "remote/url.h"

#include <gtest/gtest.h>

namespace ovbd::remote {
namespace {

TEST(Url, ParsesHostPortAndTarget) {
  auto u = ParseUrl("http://127.0.0.1:5000/v2/lib/app/blobs?x=1");
  ASSERT_TRUE(u.ok()) << u.status().ToString();
  EXPECT_EQ(u->host, "127.0.0.1");
  EXPECT_EQ(u->port, 5000);
  EXPECT_EQ(u->target, "/v2/lib/app/blobs?x=1");
  EXPECT_EQ(u->HostPort(), "127.0.0.1:5000");
  auto h = ParseUrl("https://Registry.Example");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->port, 443);
  EXPECT_EQ(h->target, "/");
  EXPECT_EQ(h->Origin(), "https://registry.example");
  EXPECT_TRUE(ParseUrl("http://[::1]:8080/x").ok());
}

TEST(Url, RejectsMalformed) {
  for (const char* bad : {"", "ftp://h/x", "http//h", "http://", "http://h:0/", "http://h:65536/",
                          "http://h:12a/", "http://user:pw@h/", "http://h/a b", "http://h/x#frag",
                          "http://h_x/", "http://[zz]/", "http://h/\x7f", "http://h:/"}) {
    EXPECT_EQ(ParseUrl(bad).status().code(), Code::kInvalidArgument) << bad;
  }
}

TEST(Url, RejectsOverCapLength) {
  std::string long_url = "http://h/" + std::string(kMaxUrlBytes, 'a');
  EXPECT_EQ(ParseUrl(long_url).status().code(), Code::kInvalidArgument);
  std::string long_host = "http://" + std::string(254, 'a') + "/";
  EXPECT_EQ(ParseUrl(long_host).status().code(), Code::kInvalidArgument);
}

TEST(RepoName, FollowsOciGrammar) {
  for (const char* ok : {"app", "lib/app", "a.b-c_d/e__f", "x0/y1/z2"}) EXPECT_TRUE(CheckRepoName(ok).ok()) << ok;
  for (const char* bad : {"", "App", "/app", "app/", "a//b", "a..b", "-a", "a-", "a b", "a:b"}) {
    EXPECT_FALSE(CheckRepoName(bad).ok()) << bad;
  }
  EXPECT_FALSE(CheckRepoName(std::string(kMaxRepoBytes + 1, 'a')).ok());
  EXPECT_TRUE(CheckRepoName(std::string(kMaxRepoBytes, 'a')).ok());
}

TEST(Digest, OnlySha256WithLowercaseHex) {
  std::string hex(64, 'a');
  EXPECT_TRUE(CheckDigest("sha256:" + hex).ok());
  EXPECT_EQ(CheckDigest("sha512:" + hex).code(), Code::kNotSupported);
  EXPECT_EQ(CheckDigest("sha256:" + std::string(64, 'A')).code(), Code::kInvalidArgument);
  EXPECT_EQ(CheckDigest("sha256:" + hex.substr(1)).code(), Code::kInvalidArgument);
  EXPECT_EQ(CheckDigest("sha256:" + hex + "a").code(), Code::kInvalidArgument);
  EXPECT_EQ(CheckDigest(hex).code(), Code::kInvalidArgument);
}

TEST(RepoUrl, PushTargetAndBlobUrl) {
  auto r = ParseRepoUrl("http://127.0.0.1:5000/lib/app/");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->repo, "lib/app");
  EXPECT_EQ(r->BlobsUrl(), "http://127.0.0.1:5000/v2/lib/app/blobs");
  EXPECT_FALSE(ParseRepoUrl("http://h/").ok());
  EXPECT_FALSE(ParseRepoUrl("http://h/app?x=1").ok());
  auto b = ParseRepoBlobUrl("https://reg.io/v2/lib/app/blobs");
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(b->repo, "lib/app");
  EXPECT_EQ(b->BlobUrl("sha256:ab"), "https://reg.io/v2/lib/app/blobs/sha256:ab");
  for (const char* bad : {"https://reg.io/v2/blobs", "https://reg.io/lib/app/blobs", "https://reg.io/v2/lib/app",
                          "https://reg.io/v2/Lib/blobs"}) {
    EXPECT_FALSE(ParseRepoBlobUrl(bad).ok()) << bad;
  }
}

TEST(OciReference, SchemesAndDigest) {
  std::string d = "sha256:" + std::string(64, 'b');
  auto r = ParseOciReference("oci://reg.io:5000/lib/app@" + d);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->repo.origin.scheme, "https");
  EXPECT_EQ(r->repo.repo, "lib/app");
  EXPECT_EQ(r->digest, d);
  auto h = ParseOciReference("oci+http://127.0.0.1:1/app@" + d);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->repo.origin.scheme, "http");
  EXPECT_FALSE(ParseOciReference("http://reg.io/app@" + d).ok());
  EXPECT_FALSE(ParseOciReference("oci://reg.io/app").ok());
  EXPECT_FALSE(ParseOciReference("oci://reg.io/app@sha256:12").ok());
  EXPECT_FALSE(ParseOciReference("oci://reg.io/@" + d).ok());
}

TEST(Location, AbsoluteRelativeAndCaps) {
  auto base = ParseUrl("http://reg:5000/v2/app/blobs/uploads/?a=b");
  ASSERT_TRUE(base.ok());
  auto abs = ResolveLocation(*base, "https://s3.example/bucket/x?sig=1");
  ASSERT_TRUE(abs.ok());
  EXPECT_EQ(abs->ToString(), "https://s3.example/bucket/x?sig=1");
  auto path = ResolveLocation(*base, "/v2/app/blobs/uploads/123?_state=z");
  ASSERT_TRUE(path.ok());
  EXPECT_EQ(path->ToString(), "http://reg:5000/v2/app/blobs/uploads/123?_state=z");
  auto rel = ResolveLocation(*base, "456");
  ASSERT_TRUE(rel.ok());
  EXPECT_EQ(rel->ToString(), "http://reg:5000/v2/app/blobs/uploads/456");
  auto net = ResolveLocation(*base, "//other:81/y");
  ASSERT_TRUE(net.ok());
  EXPECT_EQ(net->ToString(), "http://other:81/y");
  EXPECT_FALSE(ResolveLocation(*base, "").ok());
  EXPECT_FALSE(ResolveLocation(*base, "/a b").ok());
  EXPECT_FALSE(ResolveLocation(*base, "ftp://x/").ok());
  EXPECT_FALSE(ResolveLocation(*base, "/" + std::string(kMaxUrlBytes, 'a')).ok());
}

TEST(Query, AppendsEncoded) {
  EXPECT_EQ(AddQuery("http://h/u", "digest", "sha256:ab"), "http://h/u?digest=sha256%3Aab");
  EXPECT_EQ(AddQuery("http://h/u?s=1", "d", "a b"), "http://h/u?s=1&d=a%20b");
}

}  // namespace
}  // namespace ovbd::remote
