// deferred_key: certificates kept as DER and parsed on first use, alone, in the map, under
// concurrent first use, and in a real handshake through the resolver.
#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "letsencrypt/tls/error.hpp"
#include "letsencrypt/tls/resolver.hpp"
#include "letsencrypt/tls/server_context.hpp"
#include "letsencrypt/tls/sni_map.hpp"
#include "test_certs.hpp"

using namespace letsencrypt;
using letsencrypt::testing::issued_cert;
using letsencrypt::testing::der_of;
using letsencrypt::testing::test_certs;
namespace kinds = letsencrypt::testing;

namespace {

std::string pkcs8_der(EVP_PKEY* k) {
  std::unique_ptr<PKCS8_PRIV_KEY_INFO, decltype(&PKCS8_PRIV_KEY_INFO_free)> info(EVP_PKEY2PKCS8(k),
                                                                                  &PKCS8_PRIV_KEY_INFO_free);
  EXPECT_TRUE(info);
  unsigned char* der = nullptr;
  const int n = i2d_PKCS8_PRIV_KEY_INFO(info.get(), &der);
  EXPECT_GT(n, 0);
  std::string out(reinterpret_cast<char*>(der), static_cast<std::size_t>(n));
  OPENSSL_clear_free(der, static_cast<std::size_t>(n));
  return out;
}

// The key in its algorithm's own DER ("BEGIN EC PRIVATE KEY"), not PKCS#8.
std::string traditional_der(EVP_PKEY* k) {
  unsigned char* der = nullptr;
  const int n = i2d_PrivateKey(k, &der);
  EXPECT_GT(n, 0);
  std::string out(reinterpret_cast<char*>(der), static_cast<std::size_t>(n));
  OPENSSL_clear_free(der, static_cast<std::size_t>(n));
  return out;
}

std::shared_ptr<const tls::deferred_key> deferred(const test_certs& ca, const issued_cert& c) {
  X509* chain[] = {ca.ca_cert()};
  auto d = tls::deferred_key::make(der_of(c.cert.get()), pkcs8_der(c.key.get()), chain);
  EXPECT_TRUE(d) << d.error().message();
  return d ? *d : nullptr;
}

}  // namespace

TEST(deferred_key, parses_on_first_use_and_keeps_the_result) {
  test_certs ca;
  auto ec = ca.issue({"lazy.example"});
  auto d = deferred(ca, ec);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->kind(), tls::key_kind::ecdsa);
  EXPECT_FALSE(d->parsed());
  const tls::certified_key* k = d->get();
  ASSERT_NE(k, nullptr) << d->error().message();
  EXPECT_TRUE(d->parsed());
  EXPECT_FALSE(d->error());
  EXPECT_EQ(X509_cmp(k->leaf.get(), ec.cert.get()), 0);
  EXPECT_EQ(EVP_PKEY_eq(k->key.get(), ec.key.get()), 1);
  ASSERT_EQ(k->chain.size(), 1u);
  EXPECT_EQ(X509_cmp(k->chain[0].get(), ca.ca_cert()), 0);
  EXPECT_EQ(k->kind, tls::key_kind::ecdsa);
  EXPECT_EQ(d->get(), k);  // the same object every time

  auto rsa = ca.issue({"lazy.example"}, kinds::key_kind::rsa2048);
  auto dr = deferred(ca, rsa);
  ASSERT_TRUE(dr);
  EXPECT_EQ(dr->kind(), tls::key_kind::rsa);
  ASSERT_NE(dr->get(), nullptr);
  EXPECT_EQ(dr->get()->kind, tls::key_kind::rsa);

  // A shared, already parsed key.
  auto shared = tls::deferred_key::make(der_of(ec.cert.get()), ec.key.get());
  ASSERT_TRUE(shared);
  ASSERT_NE((*shared)->get(), nullptr);
  EXPECT_EQ((*shared)->get()->key.get(), ec.key.get());
}

TEST(deferred_key, refuses_bad_input_at_once_or_at_first_use) {
  test_certs ca;
  auto ec = ca.issue({"bad.example"});
  auto other = ca.issue({"other.example"});
  // At once: nothing to parse, a key that is not PKCS#8, a key of no supported algorithm.
  EXPECT_EQ(tls::deferred_key::make("", pkcs8_der(ec.key.get())).error(), make_error_code(errc::invalid_argument));
  EXPECT_EQ(tls::deferred_key::make(der_of(ec.cert.get()), traditional_der(ec.key.get())).error(),
            make_error_code(errc::invalid_argument));
  EXPECT_EQ(tls::deferred_key::make(der_of(ec.cert.get()), std::string("not a key")).error(),
            make_error_code(errc::invalid_argument));
  tls::evp_pkey_ptr ed(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  ASSERT_TRUE(ed);
  EXPECT_EQ(tls::deferred_key::make(der_of(ec.cert.get()), pkcs8_der(ed.get())).error(),
            make_error_code(errc::invalid_argument));
  EXPECT_FALSE(tls::deferred_key::make(der_of(ec.cert.get()), static_cast<EVP_PKEY*>(nullptr)));

  // At first use: a certificate that does not parse, a key of another certificate.
  auto garbage = tls::deferred_key::make(std::string(300, '\x30'), pkcs8_der(ec.key.get()));
  ASSERT_TRUE(garbage);
  EXPECT_EQ((*garbage)->get(), nullptr);
  EXPECT_EQ((*garbage)->error(), make_error_code(tls::tls_errc::bad_pem));
  EXPECT_EQ((*garbage)->get(), nullptr);  // and the same again, without parsing twice

  auto mismatch = tls::deferred_key::make(der_of(ec.cert.get()), pkcs8_der(other.key.get()));
  ASSERT_TRUE(mismatch);
  EXPECT_EQ((*mismatch)->get(), nullptr);
  EXPECT_EQ((*mismatch)->error(), make_error_code(tls::tls_errc::key_mismatch));
  EXPECT_EQ(ERR_peek_error(), 0u);  // no stale OpenSSL errors left behind
}

TEST(deferred_key, concurrent_first_use_parses_once) {
  test_certs ca;
  auto ec = ca.issue({"race.example"});
  for (int round = 0; round < 20; ++round) {
    auto d = deferred(ca, ec);
    ASSERT_TRUE(d);
    std::atomic<int> go{0};
    std::vector<const tls::certified_key*> seen(4, nullptr);
    std::vector<std::thread> threads;
    for (std::size_t t = 0; t < seen.size(); ++t)
      threads.emplace_back([&, t] {
        go.fetch_add(1);
        while (go.load() < static_cast<int>(seen.size())) {
        }
        seen[t] = d->get();
      });
    for (auto& t : threads) t.join();
    ASSERT_NE(seen[0], nullptr);
    for (auto* s : seen) EXPECT_EQ(s, seen[0]);
  }
}

TEST(deferred_key, map_entries_hold_deferred_keys_and_insert_replaces_them) {
  test_certs ca;
  auto ec = ca.issue({"m.example"});
  auto rsa = ca.issue({"m.example"}, kinds::key_kind::rsa2048);
  tls::sni_map map;
  std::vector<tls::sni_update> ups;
  ups.push_back({"m.example", {}, {deferred(ca, ec), deferred(ca, rsa)}});
  ASSERT_TRUE(map.apply(ups));
  EXPECT_EQ(map.size(), 1u);
  auto e = map.lookup("m.example");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->find(tls::key_kind::ecdsa), nullptr);  // not parsed by find
  ASSERT_NE(e->get(tls::key_kind::ecdsa), nullptr);
  EXPECT_EQ(X509_cmp(e->get(tls::key_kind::ecdsa)->leaf.get(), ec.cert.get()), 0);
  EXPECT_EQ(X509_cmp(e->get(tls::key_kind::rsa)->leaf.get(), rsa.cert.get()), 0);

  // A parsed ECDSA key replaces the deferred ECDSA one and keeps the deferred RSA one.
  auto renewed = ca.issue({"m.example"});
  X509* chain[] = {ca.ca_cert()};
  auto k = tls::make_certified_key(renewed.cert.get(), renewed.key.get(), chain);
  ASSERT_TRUE(k);
  ASSERT_TRUE(map.insert("m.example", *k));
  e = map.lookup("m.example");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->deferred.size(), 1u);
  EXPECT_EQ(X509_cmp(e->get(tls::key_kind::ecdsa)->leaf.get(), renewed.cert.get()), 0);
  EXPECT_EQ(X509_cmp(e->get(tls::key_kind::rsa)->leaf.get(), rsa.cert.get()), 0);

  // An update with a null deferred key is refused and changes nothing.
  std::vector<tls::sni_update> bad;
  bad.push_back({"n.example", {}, {nullptr}});
  EXPECT_EQ(map.apply(bad).error(), make_error_code(errc::invalid_argument));
  EXPECT_FALSE(map.lookup("n.example"));
}

namespace {

bool handshake(SSL* client, SSL* server) {
  bool c_ok = false, s_ok = false;
  for (int i = 0; i < 32 && !(c_ok && s_ok); ++i) {
    if (!c_ok) {
      const int r = SSL_do_handshake(client);
      c_ok = r == 1;
      if (!c_ok && SSL_get_error(client, r) != SSL_ERROR_WANT_READ) return false;
    }
    if (!s_ok) {
      const int r = SSL_do_handshake(server);
      s_ok = r == 1;
      if (!s_ok && SSL_get_error(server, r) != SSL_ERROR_WANT_READ) return false;
    }
  }
  return c_ok && s_ok;
}

}  // namespace

TEST(deferred_key, a_handshake_gets_the_deferred_certificate_and_a_broken_one_is_refused) {
  test_certs ca;
  auto good = ca.issue({"good.example"});
  auto other = ca.issue({"other.example"});
  tls::sni_map map;
  std::vector<tls::sni_update> ups;
  ups.push_back({"good.example", {}, {deferred(ca, good)}});
  // Parses at first use only, and then fails: the key belongs to another certificate.
  X509* chain[] = {ca.ca_cert()};
  ups.push_back({"broken.example", {}, {*tls::deferred_key::make(der_of(good.cert.get()), pkcs8_der(other.key.get()), chain)}});
  ASSERT_TRUE(map.apply(ups));
  tls::resolver res(map);
  auto sctx = tls::make_server_context();
  ASSERT_TRUE(sctx);
  res.install(sctx->get());
  auto cctx = ca.client_context();

  for (const char* name : {"good.example", "good.example", "broken.example"}) {
    SCOPED_TRACE(name);
    tls::ssl_ptr c(SSL_new(cctx.get())), s(SSL_new(sctx->get()));
    BIO *cb = nullptr, *sb = nullptr;
    ASSERT_EQ(BIO_new_bio_pair(&cb, 0, &sb, 0), 1);
    SSL_set_bio(c.get(), cb, cb);
    SSL_set_bio(s.get(), sb, sb);
    SSL_set_connect_state(c.get());
    SSL_set_accept_state(s.get());
    SSL_set_tlsext_host_name(c.get(), name);
    SSL_set1_host(c.get(), name);
    const bool ok = handshake(c.get(), s.get());
    ERR_clear_error();
    if (std::string(name) == "broken.example") {
      EXPECT_FALSE(ok);
      continue;
    }
    ASSERT_TRUE(ok);
    EXPECT_EQ(SSL_get_verify_result(c.get()), X509_V_OK);
    ASSERT_NE(SSL_get0_peer_certificate(c.get()), nullptr);
    EXPECT_EQ(X509_cmp(SSL_get0_peer_certificate(c.get()), good.cert.get()), 0);
  }
  EXPECT_EQ(res.stats().hits, 2u);
  EXPECT_EQ(res.stats().refusals, 1u);
}
