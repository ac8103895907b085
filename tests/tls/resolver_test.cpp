#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "letsencrypt/tls/challenge_cert.hpp"
#include "letsencrypt/tls/resolver.hpp"
#include "letsencrypt/tls/sni_map.hpp"
#include "test_certs.hpp"

using namespace letsencrypt;

namespace {

using key_ptr = std::shared_ptr<const tls::certified_key>;

// What the client saw of one in-memory handshake.
struct outcome {
  bool client_ok = false;
  bool server_ok = false;
  bool server_retry = false;  // the server stopped at SSL_ERROR_WANT_CLIENT_HELLO_CB
  int client_alert = -1;      // description of the alert the client received, if any
  long verify = -1;
};

void record_alert(const SSL* ssl, int where, int ret) {
  if ((where & SSL_CB_READ_ALERT) != 0) {
    auto* o = static_cast<outcome*>(SSL_get_app_data(ssl));
    if (o) o->client_alert = ret & 0xff;
  }
}

class connection {
 public:
  connection(SSL_CTX* server_ctx, SSL_CTX* client_ctx) : server_(SSL_new(server_ctx)), client_(SSL_new(client_ctx)) {
    BIO *c = nullptr, *s = nullptr;
    EXPECT_EQ(BIO_new_bio_pair(&c, 0, &s, 0), 1);
    SSL_set_bio(client_.get(), c, c);
    SSL_set_bio(server_.get(), s, s);
    SSL_set_connect_state(client_.get());
    SSL_set_accept_state(server_.get());
    SSL_set_app_data(client_.get(), &out_);
    SSL_set_info_callback(client_.get(), record_alert);
  }
  SSL* client() { return client_.get(); }
  SSL* server() { return server_.get(); }

  // Runs both sides until both finish, either fails, or the server asks for a retry.
  const outcome& drive() {
    out_.server_retry = false;
    bool client_failed = false, server_failed = false;
    for (int round = 0; round < 64; ++round) {
      if (!out_.client_ok && !client_failed) {
        int r = SSL_do_handshake(client_.get());
        if (r == 1) {
          out_.client_ok = true;
        } else {
          int e = SSL_get_error(client_.get(), r);
          if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) client_failed = true;
        }
      }
      if (!out_.server_ok && !server_failed) {
        int r = SSL_do_handshake(server_.get());
        if (r == 1) {
          out_.server_ok = true;
        } else {
          int e = SSL_get_error(server_.get(), r);
          if (e == SSL_ERROR_WANT_CLIENT_HELLO_CB) {
            out_.server_retry = true;
            break;
          }
          if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) server_failed = true;
        }
      }
      if ((out_.client_ok || client_failed) && (out_.server_ok || server_failed)) break;
    }
    ERR_clear_error();
    out_.verify = SSL_get_verify_result(client_.get());
    return out_;
  }

  // The leaf the client received, or null.
  X509* peer() { return SSL_get0_peer_certificate(client_.get()); }
  std::string alpn() {
    const unsigned char* p = nullptr;
    unsigned int n = 0;
    SSL_get0_alpn_selected(client_.get(), &p, &n);
    return std::string(reinterpret_cast<const char*>(p), n);
  }

 private:
  tls::ssl_ptr server_;
  tls::ssl_ptr client_;
  outcome out_;
};

class resolver_test : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ca_ = new letsencrypt::testing::test_certs();
    keys_ = new std::vector<key_ptr>;
    keys_->push_back(make({"a.example"}, letsencrypt::testing::key_kind::ec_p256));    // 0
    keys_->push_back(make({"b.example"}, letsencrypt::testing::key_kind::ec_p256));    // 1
    keys_->push_back(make({"*.w.example"}, letsencrypt::testing::key_kind::ec_p256));  // 2
    keys_->push_back(make({"both.example"}, letsencrypt::testing::key_kind::ec_p256)); // 3
    keys_->push_back(make({"both.example"}, letsencrypt::testing::key_kind::rsa2048)); // 4
    keys_->push_back(make({"late.example"}, letsencrypt::testing::key_kind::ec_p256)); // 5
  }
  static void TearDownTestSuite() {
    delete keys_;
    delete ca_;
  }
  static key_ptr make(std::vector<std::string> names, letsencrypt::testing::key_kind kind) {
    auto c = ca_->issue(names, kind);
    X509* chain[] = {ca_->ca_cert()};
    auto k = tls::make_certified_key(c.cert.get(), c.key.get(), chain);
    EXPECT_TRUE(k);
    return std::move(k).value();
  }
  static key_ptr key(std::size_t i) { return (*keys_)[i]; }

  void SetUp() override {
    ASSERT_TRUE(map_.insert("a.example", key(0)));
    ASSERT_TRUE(map_.insert("b.example", key(1)));
    ASSERT_TRUE(map_.insert("*.w.example", key(2)));
    ASSERT_TRUE(map_.insert("both.example", key(3)));
    ASSERT_TRUE(map_.insert("both.example", key(4)));
    server_ctx_.reset(SSL_CTX_new(TLS_server_method()));
    ASSERT_TRUE(server_ctx_);
    SSL_CTX_set_min_proto_version(server_ctx_.get(), TLS1_2_VERSION);
    res_.set_alpn_protocols({"h2", "http/1.1"});
    res_.install(server_ctx_.get());
    client_ctx_ = ca_->client_context();
  }

  // A connection whose client sends `sni` (none when empty) and checks the name.
  std::unique_ptr<connection> connect(const std::string& sni, SSL_CTX* client_ctx = nullptr) {
    auto c = std::make_unique<connection>(server_ctx_.get(), client_ctx ? client_ctx : client_ctx_.get());
    if (!sni.empty()) {
      EXPECT_EQ(SSL_set_tlsext_host_name(c->client(), sni.c_str()), 1);
      std::string host = sni;
      if (!host.empty() && host.back() == '.') host.pop_back();
      SSL_set1_host(c->client(), host.c_str());
    }
    return c;
  }

  static inline letsencrypt::testing::test_certs* ca_ = nullptr;
  static inline std::vector<key_ptr>* keys_ = nullptr;
  tls::sni_map map_;
  tls::resolver res_{map_};
  tls::ssl_ctx_ptr server_ctx_;
  tls::ssl_ctx_ptr client_ctx_;
};

TEST_F(resolver_test, serves_the_certificate_of_each_name) {
  struct expect {
    std::string sni;
    std::size_t key;
  };
  const expect cases[] = {{"a.example", 0}, {"b.example", 1}, {"A.EXAMPLE", 0}, {"x.w.example", 2}, {"y.w.example", 2}};
  for (const auto& c : cases) {
    auto conn = connect(c.sni);
    const auto& o = conn->drive();
    ASSERT_TRUE(o.client_ok && o.server_ok) << c.sni;
    ASSERT_NE(conn->peer(), nullptr);
    EXPECT_EQ(X509_cmp(conn->peer(), key(c.key)->leaf.get()), 0) << c.sni;
    EXPECT_EQ(o.verify, X509_V_OK) << c.sni;  // chain sent, name matches
  }
  EXPECT_EQ(res_.stats().hits, std::size(cases));
  EXPECT_EQ(res_.stats().misses, 0u);
}

TEST_F(resolver_test, replacement_is_seen_by_the_next_handshake) {
  auto renewed = make({"a.example"}, letsencrypt::testing::key_kind::ec_p256);
  ASSERT_TRUE(map_.set("a.example", {renewed}));
  auto conn = connect("a.example");
  ASSERT_TRUE(conn->drive().client_ok);
  ASSERT_NE(conn->peer(), nullptr);
  EXPECT_EQ(X509_cmp(conn->peer(), renewed->leaf.get()), 0);
}

TEST_F(resolver_test, unknown_name_is_refused_with_an_alert) {
  for (const char* sni : {"unknown.example", "z.a.example", "w.example", "bad_name.example", "10.1.2.3"}) {
    auto conn = connect(sni);
    const auto& o = conn->drive();
    EXPECT_FALSE(o.client_ok) << sni;
    EXPECT_FALSE(o.server_ok) << sni;
    EXPECT_EQ(o.client_alert, SSL_AD_UNRECOGNIZED_NAME) << sni;
  }
  auto s = res_.stats();
  EXPECT_EQ(s.refusals, 5u);
  EXPECT_EQ(s.misses, 3u);  // the invalid names are refused without a lookup
  EXPECT_EQ(s.hits, 0u);
}

TEST_F(resolver_test, refuse_policy_sees_the_normalised_name) {
  std::string asked;
  res_.set_miss_policy([&](std::string_view n) {
    asked = n;
    return tls::miss_action::refuse;
  });
  auto conn = connect("Unknown.Example");
  EXPECT_FALSE(conn->drive().client_ok);
  EXPECT_EQ(asked, "unknown.example");
}

TEST_F(resolver_test, throwing_miss_policy_fails_the_handshake_only) {
  res_.set_miss_policy([](std::string_view) -> tls::miss_action { throw std::runtime_error("policy failed"); });
  auto conn = connect("unknown.example");
  const auto& o = conn->drive();
  EXPECT_FALSE(o.client_ok);
  EXPECT_EQ(o.client_alert, SSL_AD_INTERNAL_ERROR);
  EXPECT_EQ(res_.stats().refusals, 1u);
  auto ok = connect("a.example");
  EXPECT_TRUE(ok->drive().client_ok);
}

TEST_F(resolver_test, chooses_ecdsa_or_rsa_by_client_sigalgs) {
  struct expect {
    const char* sigalgs;
    int max_version;
    std::size_t key;
  };
  const expect cases[] = {
      {"ECDSA+SHA256:RSA-PSS+SHA256:RSA+SHA256", TLS1_3_VERSION, 3},
      {"RSA-PSS+SHA256:ECDSA+SHA256", TLS1_3_VERSION, 3},  // ECDSA preferred when accepted
      {"RSA-PSS+SHA256:RSA-PSS+SHA384", TLS1_3_VERSION, 4},
      // TLS 1.3 binds ECDSA schemes to curves: a P-256 key needs ecdsa_secp256r1_sha256.
      {"ECDSA+SHA384:RSA-PSS+SHA256", TLS1_3_VERSION, 4},
      {"RSA+SHA256", TLS1_2_VERSION, 4},
      {"ECDSA+SHA256", TLS1_2_VERSION, 3},
      {"ECDSA+SHA384:RSA+SHA256", TLS1_2_VERSION, 3},  // TLS 1.2: any hash with any curve
  };
  for (const auto& c : cases) {
    auto conn = connect("both.example");
    ASSERT_EQ(SSL_set1_sigalgs_list(conn->client(), c.sigalgs), 1);
    SSL_set_max_proto_version(conn->client(), c.max_version);
    const auto& o = conn->drive();
    ASSERT_TRUE(o.client_ok && o.server_ok) << c.sigalgs;
    EXPECT_EQ(X509_cmp(conn->peer(), key(c.key)->leaf.get()), 0) << c.sigalgs;
  }
}

// A TLS 1.2 client that cannot take the ECDSA certificate gets the name's RSA one instead of a
// failed handshake: its only ECDSA scheme is SHA-1 (OpenSSL 3 signs none by default), or its
// supported_groups lacks the certificate's curve (RFC 8422 5.1.1).
TEST_F(resolver_test, tls12_client_that_cannot_take_the_ecdsa_key_gets_rsa) {
  for (int k = 0; k < 3; ++k) {
    auto conn = connect("both.example");
    SSL_set_max_proto_version(conn->client(), TLS1_2_VERSION);
    if (k == 0) {
      SSL_set_security_level(conn->client(), 0);  // lets the client offer ecdsa_sha1
      ASSERT_EQ(SSL_set1_sigalgs_list(conn->client(), "ECDSA+SHA1:RSA+SHA256"), 1);
    } else if (k == 1) {
      ASSERT_EQ(SSL_set1_groups_list(conn->client(), "X25519:P-384"), 1);
    } else {
      ASSERT_EQ(SSL_set1_groups_list(conn->client(), "X25519:P-256"), 1);  // the curve is named
    }
    const auto& o = conn->drive();
    ASSERT_TRUE(o.client_ok && o.server_ok) << k << " alert " << o.client_alert;
    EXPECT_EQ(X509_cmp(conn->peer(), key(k == 2 ? 3 : 4)->leaf.get()), 0) << k;
  }
}

TEST_F(resolver_test, alpn_passes_through_server_protocols) {
  auto conn = connect("a.example");
  static const unsigned char protos[] = "\x08http/1.1\x02h2";
  ASSERT_EQ(SSL_set_alpn_protos(conn->client(), protos, sizeof protos - 1), 0);
  ASSERT_TRUE(conn->drive().client_ok);
  EXPECT_EQ(conn->alpn(), "h2");  // the server's preference
  auto other = connect("a.example");
  static const unsigned char spdy[] = "\x06spdy/3";
  ASSERT_EQ(SSL_set_alpn_protos(other->client(), spdy, sizeof spdy - 1), 0);
  ASSERT_TRUE(other->drive().client_ok);
  EXPECT_EQ(other->alpn(), "");  // no common protocol: no ALPN answer
}

class challenge_test : public resolver_test {
 protected:
  void SetUp() override {
    resolver_test::SetUp();
    // The ACME validator does not verify the self-signed challenge certificate by a CA.
    validator_ctx_.reset(SSL_CTX_new(TLS_client_method()));
    SSL_CTX_set_verify(validator_ctx_.get(), SSL_VERIFY_NONE, nullptr);
  }
  std::unique_ptr<connection> validate(const std::string& name) {
    auto conn = connect(name, validator_ctx_.get());
    static const unsigned char acme[] = "\x0a" "acme-tls/1";
    EXPECT_EQ(SSL_set_alpn_protos(conn->client(), acme, sizeof acme - 1), 0);
    return conn;
  }
  tls::ssl_ctx_ptr validator_ctx_;
};

TEST_F(challenge_test, pending_challenge_is_served_only_to_acme_tls_1) {
  auto cert = tls::make_tls_alpn01_certificate("a.example", "token.thumb");
  ASSERT_TRUE(cert);
  auto challenge = std::make_shared<const tls::certified_key>(std::move(*cert));
  ASSERT_TRUE(res_.set_challenge("A.example", challenge));
  EXPECT_TRUE(res_.challenge_pending("a.example"));

  auto v = validate("a.example");
  const auto& o = v->drive();
  ASSERT_TRUE(o.client_ok && o.server_ok);
  EXPECT_EQ(X509_cmp(v->peer(), challenge->leaf.get()), 0);
  EXPECT_EQ(v->alpn(), "acme-tls/1");
  EXPECT_TRUE(tls::resolver::serving_challenge(v->server()));

  // Ordinary handshakes for the same name, with or without ALPN, get the real certificate.
  auto plain = connect("a.example");
  ASSERT_TRUE(plain->drive().client_ok);
  EXPECT_EQ(X509_cmp(plain->peer(), key(0)->leaf.get()), 0);
  EXPECT_FALSE(tls::resolver::serving_challenge(plain->server()));
  auto h2 = connect("a.example");
  static const unsigned char protos[] = "\x02h2";
  ASSERT_EQ(SSL_set_alpn_protos(h2->client(), protos, sizeof protos - 1), 0);
  ASSERT_TRUE(h2->drive().client_ok);
  EXPECT_EQ(X509_cmp(h2->peer(), key(0)->leaf.get()), 0);
  EXPECT_EQ(h2->alpn(), "h2");

  // A challenge for a name that has no certificate yet works too (first issuance).
  auto fresh = tls::make_tls_alpn01_certificate("new.example", "k");
  ASSERT_TRUE(fresh);
  X509* fresh_leaf = fresh->leaf.get();
  ASSERT_TRUE(res_.set_challenge("new.example", std::move(*fresh)));
  auto v2 = validate("new.example");
  ASSERT_TRUE(v2->drive().client_ok);
  EXPECT_EQ(X509_cmp(v2->peer(), fresh_leaf), 0);
  EXPECT_EQ(res_.stats().challenges, 2u);

  EXPECT_TRUE(res_.clear_challenge("a.example"));
  EXPECT_FALSE(res_.clear_challenge("a.example"));
  EXPECT_FALSE(res_.challenge_pending("a.example"));
  auto after = validate("a.example");
  const auto& o2 = after->drive();
  EXPECT_FALSE(o2.client_ok);
  EXPECT_EQ(o2.client_alert, SSL_AD_NO_APPLICATION_PROTOCOL);
}

TEST_F(challenge_test, acme_tls_1_without_challenge_is_refused) {
  for (const char* name : {"a.example", "unknown.example"}) {
    auto v = validate(name);
    const auto& o = v->drive();
    EXPECT_FALSE(o.client_ok) << name;
    EXPECT_FALSE(o.server_ok) << name;
    EXPECT_EQ(o.client_alert, SSL_AD_NO_APPLICATION_PROTOCOL) << name;
    EXPECT_EQ(v->peer(), nullptr);
  }
  EXPECT_EQ(res_.stats().refusals, 2u);
  EXPECT_EQ(res_.stats().challenges, 0u);
  // A challenge of another name does not help.
  auto cert = tls::make_tls_alpn01_certificate("b.example", "k");
  ASSERT_TRUE(cert);
  ASSERT_TRUE(res_.set_challenge("b.example", std::move(*cert)));
  auto v = validate("a.example");
  EXPECT_FALSE(v->drive().client_ok);
  EXPECT_FALSE(res_.set_challenge("*.w.example", key(2)));
  EXPECT_FALSE(res_.set_challenge("bad name", key(2)));
}

TEST_F(resolver_test, suspend_then_retry_completes_with_the_loaded_certificate) {
  std::vector<std::string> asked;
  res_.set_miss_policy([&](std::string_view n) {
    asked.emplace_back(n);
    return tls::miss_action::suspend;
  });
  auto conn = connect("Late.Example.");
  const auto& first = conn->drive();
  ASSERT_TRUE(first.server_retry);
  EXPECT_FALSE(first.client_ok);
  EXPECT_EQ(tls::resolver::pending_name(conn->server()), "late.example");
  ASSERT_EQ(asked.size(), 1u);

  // Still missing: the retry suspends again rather than failing.
  EXPECT_TRUE(conn->drive().server_retry);
  EXPECT_EQ(asked.size(), 2u);

  ASSERT_TRUE(map_.insert("late.example", key(5)));
  const auto& done = conn->drive();
  ASSERT_TRUE(done.client_ok && done.server_ok);
  EXPECT_EQ(X509_cmp(conn->peer(), key(5)->leaf.get()), 0);
  EXPECT_EQ(done.verify, X509_V_OK);
  EXPECT_EQ(tls::resolver::pending_name(conn->server()), "");
  EXPECT_EQ(asked.size(), 2u);
  auto s = res_.stats();
  EXPECT_EQ(s.misses, 2u);
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.refusals, 0u);
  EXPECT_EQ(tls::resolver::pending_name(nullptr), "");
}

TEST_F(resolver_test, no_sni_uses_default_name) {
  auto none = connect("");
  EXPECT_FALSE(none->drive().client_ok);  // no certificate at all: fails cleanly
  ASSERT_TRUE(res_.set_default_name("b.example"));
  auto conn = connect("");
  ASSERT_TRUE(conn->drive().client_ok);
  EXPECT_EQ(X509_cmp(conn->peer(), key(1)->leaf.get()), 0);
  EXPECT_FALSE(res_.set_default_name("-bad"));
}

// ---- hand-made ClientHello records -----------------------------------------------------

void put16(std::vector<unsigned char>& v, std::size_t x) {
  v.push_back(static_cast<unsigned char>(x >> 8));
  v.push_back(static_cast<unsigned char>(x));
}
void put_ext(std::vector<unsigned char>& v, unsigned type, const std::vector<unsigned char>& body) {
  put16(v, type);
  put16(v, body.size());
  v.insert(v.end(), body.begin(), body.end());
}

// A TLS 1.2 ClientHello record whose server_name extension body is `sni_body` and whose
// ALPN body, when given, is `alpn_body`.
std::vector<unsigned char> client_hello(const std::vector<unsigned char>& sni_body,
                                        const std::vector<unsigned char>* alpn_body = nullptr,
                                        const std::vector<unsigned char>* sigalgs_body = nullptr) {
  std::vector<unsigned char> ext;
  put_ext(ext, 0x0000, sni_body);
  put_ext(ext, 0x000a, {0x00, 0x02, 0x00, 0x17});  // supported_groups: secp256r1
  put_ext(ext, 0x000b, {0x01, 0x00});              // ec_point_formats: uncompressed
  put_ext(ext, 0x000d, sigalgs_body ? *sigalgs_body : std::vector<unsigned char>{0x00, 0x02, 0x04, 0x03});
  if (alpn_body) put_ext(ext, 0x0010, *alpn_body);
  std::vector<unsigned char> body{0x03, 0x03};
  for (int i = 0; i < 32; ++i) body.push_back(static_cast<unsigned char>(i));
  body.push_back(0);                           // session id
  put16(body, 4);                              // cipher suites
  body.insert(body.end(), {0xc0, 0x2b, 0xc0, 0x2f});
  body.insert(body.end(), {0x01, 0x00});       // null compression
  put16(body, ext.size());
  body.insert(body.end(), ext.begin(), ext.end());
  std::vector<unsigned char> hs{0x01, 0x00};
  put16(hs, body.size());
  hs.insert(hs.end(), body.begin(), body.end());
  std::vector<unsigned char> rec{0x16, 0x03, 0x01};
  put16(rec, hs.size());
  rec.insert(rec.end(), hs.begin(), hs.end());
  return rec;
}

std::vector<unsigned char> sni(const std::string& name) {
  std::vector<unsigned char> v;
  put16(v, name.size() + 3);
  v.push_back(0);
  put16(v, name.size());
  v.insert(v.end(), name.begin(), name.end());
  return v;
}

struct raw_result {
  int ssl_error = 0;
  int alert = -1;  // the alert description the server wrote, if any
};

raw_result feed(SSL_CTX* ctx, const std::vector<unsigned char>& record) {
  tls::ssl_ptr s(SSL_new(ctx));
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  BIO_write(in, record.data(), static_cast<int>(record.size()));
  SSL_set_bio(s.get(), in, out);
  SSL_set_accept_state(s.get());
  raw_result r;
  int rc = SSL_do_handshake(s.get());
  r.ssl_error = rc == 1 ? 0 : SSL_get_error(s.get(), rc);
  ERR_clear_error();
  char* data = nullptr;
  long n = BIO_get_mem_data(out, &data);
  const auto* p = reinterpret_cast<const unsigned char*>(data);
  if (n >= 7 && p[0] == 0x15 && p[3] == 0 && p[4] == 2 && p[5] == 2) r.alert = p[6];
  return r;
}

TEST_F(resolver_test, hand_made_client_hello_reaches_the_map) {
  // The harness itself: a well-formed record gets past the callback (then stalls, since
  // nothing answers), while an unknown name is refused.
  auto good = feed(server_ctx_.get(), client_hello(sni("a.example")));
  EXPECT_EQ(good.alert, -1);
  EXPECT_EQ(good.ssl_error, SSL_ERROR_WANT_READ);
  EXPECT_EQ(res_.stats().hits, 1u);
  auto unknown = feed(server_ctx_.get(), client_hello(sni("nope.example")));
  EXPECT_EQ(unknown.ssl_error, SSL_ERROR_SSL);
  EXPECT_EQ(unknown.alert, SSL_AD_UNRECOGNIZED_NAME);
}

TEST_F(resolver_test, malformed_extensions_fail_cleanly) {
  const std::vector<std::vector<unsigned char>> bad_sni = {
      {},                                          // empty body
      {0x00},                                      // half a length
      {0x00, 0x05, 0x00, 0x00, 0x01, 'a'},         // list length beyond the body
      {0x00, 0x01, 0x00},                          // entry header cut short
      {0x00, 0x04, 0x00, 0x00, 0x05, 'a'},         // name length beyond the list
      {0x00, 0x03, 0x00, 0x00, 0x00},              // empty host_name
      {0x00, 0x00},                                // empty list
      {0x00, 0x05, 0x01, 0x00, 0x02, 'a', 'b'},    // no host_name entry
      {0xff, 0xff, 0x00, 0x00, 0x01, 'a'},         // huge list length
  };
  for (const auto& body : bad_sni) {
    auto r = feed(server_ctx_.get(), client_hello(body));
    EXPECT_EQ(r.ssl_error, SSL_ERROR_SSL);
    EXPECT_EQ(r.alert, SSL_AD_DECODE_ERROR) << "sni body of " << body.size() << " bytes";
  }
  const std::vector<std::vector<unsigned char>> bad_alpn = {
      {0x00, 0x00},                          // empty list
      {0x00, 0x03, 0x05, 'a', 'b'},          // protocol longer than the list
      {0x00, 0x02, 0x00, 0x00},              // empty protocol name
      {0x00, 0x09, 0x02, 'h', '2'},          // list length beyond the body
  };
  for (const auto& body : bad_alpn) {
    auto r = feed(server_ctx_.get(), client_hello(sni("a.example"), &body));
    EXPECT_EQ(r.ssl_error, SSL_ERROR_SSL);
    EXPECT_EQ(r.alert, SSL_AD_DECODE_ERROR) << "alpn body of " << body.size() << " bytes";
  }
  const std::vector<std::vector<unsigned char>> bad_sigalgs = {
      {0x00, 0x00}, {0x00, 0x03, 0x04, 0x03, 0x05}, {0x00, 0x04, 0x04, 0x03}};
  for (const auto& body : bad_sigalgs) {
    auto r = feed(server_ctx_.get(), client_hello(sni("a.example"), nullptr, &body));
    EXPECT_EQ(r.ssl_error, SSL_ERROR_SSL);
    EXPECT_EQ(r.alert, SSL_AD_DECODE_ERROR) << "sigalgs body of " << body.size() << " bytes";
  }
  EXPECT_EQ(res_.stats().hits, 0u);
  EXPECT_EQ(res_.stats().refusals, bad_sni.size() + bad_alpn.size() + bad_sigalgs.size());
}

TEST(resolver_parsers, well_formed_bodies) {
  const unsigned char s[] = {0x00, 0x0b, 0x00, 0x00, 0x08, 'a', '.', 'e', 'x', 'a', 'm', 'p', 'l'};
  auto n = tls::parse_server_name(s);
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, "a.exampl");
  const unsigned char alpn[] = {0x00, 0x0e, 0x02, 'h', '2', 0x0a, 'a', 'c', 'm', 'e', '-', 't', 'l', 's', '/', '1'};
  EXPECT_TRUE(*tls::alpn_offers(alpn, "acme-tls/1"));
  EXPECT_TRUE(*tls::alpn_offers(alpn, "h2"));
  EXPECT_FALSE(*tls::alpn_offers(alpn, "acme-tls"));
  const unsigned char rsa_only[] = {0x00, 0x04, 0x08, 0x04, 0x04, 0x01};
  auto a = tls::parse_sigalgs(rsa_only);
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->rsa);
  EXPECT_FALSE(a->ecdsa_any || a->ecdsa_p256);
  const unsigned char ed_only[] = {0x00, 0x02, 0x08, 0x07};
  auto b = tls::parse_sigalgs(ed_only);
  ASSERT_TRUE(b);
  EXPECT_FALSE(b->rsa || b->ecdsa_any);
  const unsigned char p384[] = {0x00, 0x04, 0x05, 0x03, 0x04, 0x01};
  auto c = tls::parse_sigalgs(p384);
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->ecdsa_p384 && c->ecdsa_any && c->rsa);
  EXPECT_FALSE(c->ecdsa_p256 || c->ecdsa_p521);
}

}  // namespace
