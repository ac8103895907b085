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

std::shared_ptr<const tls::deferred_key> deferred(const test_certs& ca, const issued_cert& c,
                                                  std::shared_ptr<tls::deferred_cache> cache = {}) {
  X509* chain[] = {ca.ca_cert()};
  auto d = tls::deferred_key::make(der_of(c.cert.get()), pkcs8_der(c.key.get()), chain, std::move(cache));
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
  const auto k = d->get();
  ASSERT_NE(k, nullptr) << d->error().message();
  EXPECT_TRUE(d->parsed());
  EXPECT_FALSE(d->error());
  EXPECT_EQ(X509_cmp(k->leaf.get(), ec.cert.get()), 0);
  EXPECT_EQ(EVP_PKEY_eq(k->key.get(), ec.key.get()), 1);
  ASSERT_EQ(k->chain.size(), 1u);
  EXPECT_EQ(X509_cmp(k->chain[0].get(), ca.ca_cert()), 0);
  EXPECT_EQ(k->kind, tls::key_kind::ecdsa);
  EXPECT_EQ(d->get(), k);  // the same object every time without a cache

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
    std::vector<std::shared_ptr<const tls::certified_key>> seen(4);
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
    for (const auto& s : seen) EXPECT_EQ(s, seen[0]);
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

// One in-memory handshake for `name`; the leaf the client verified, or null when the
// handshake failed.
tls::x509_ptr served_leaf(SSL_CTX* client_ctx, SSL_CTX* server_ctx, const char* name) {
  tls::ssl_ptr c(SSL_new(client_ctx)), s(SSL_new(server_ctx));
  BIO *cb = nullptr, *sb = nullptr;
  if (!c || !s || BIO_new_bio_pair(&cb, 0, &sb, 0) != 1) return nullptr;
  SSL_set_bio(c.get(), cb, cb);
  SSL_set_bio(s.get(), sb, sb);
  SSL_set_connect_state(c.get());
  SSL_set_accept_state(s.get());
  SSL_set_tlsext_host_name(c.get(), name);
  SSL_set1_host(c.get(), name);
  const bool ok = handshake(c.get(), s.get());
  ERR_clear_error();
  if (!ok || SSL_get_verify_result(c.get()) != X509_V_OK || !SSL_get0_peer_certificate(c.get())) return nullptr;
  return tls::up_ref(SSL_get0_peer_certificate(c.get()));
}

// A map holding `ups`, answered through a resolver installed in a server context.
struct served_map {
  explicit served_map(const std::vector<tls::sni_update>& ups) {
    EXPECT_TRUE(map.apply(ups));
    auto made = tls::make_server_context();
    EXPECT_TRUE(made);
    if (made) sctx = std::move(*made);
    res.install(sctx.get());
  }
  tls::sni_map map;
  tls::resolver res{map};
  tls::ssl_ctx_ptr sctx;
};

}  // namespace

TEST(deferred_key, a_handshake_gets_the_deferred_certificate_and_a_broken_one_is_refused) {
  test_certs ca;
  auto good = ca.issue({"good.example"});
  auto other = ca.issue({"other.example"});
  std::vector<tls::sni_update> ups;
  ups.push_back({"good.example", {}, {deferred(ca, good)}});
  // Parses at first use only, and then fails: the key belongs to another certificate.
  X509* chain[] = {ca.ca_cert()};
  ups.push_back({"broken.example", {}, {*tls::deferred_key::make(der_of(good.cert.get()), pkcs8_der(other.key.get()), chain)}});
  served_map served(ups);
  ASSERT_TRUE(served.sctx);
  auto cctx = ca.client_context();

  for (const char* name : {"good.example", "good.example", "broken.example"}) {
    SCOPED_TRACE(name);
    const auto leaf = served_leaf(cctx.get(), served.sctx.get(), name);
    if (std::string(name) == "broken.example") {
      EXPECT_EQ(leaf, nullptr);
      continue;
    }
    ASSERT_NE(leaf, nullptr);
    EXPECT_EQ(X509_cmp(leaf.get(), good.cert.get()), 0);
  }
  EXPECT_EQ(served.res.stats().hits, 2u);
  EXPECT_EQ(served.res.stats().refusals, 1u);
}

TEST(deferred_cache, keeps_at_most_its_capacity_parsed_and_parses_again_on_use) {
  test_certs ca;
  auto cache = tls::deferred_cache::make(2);
  EXPECT_EQ(cache->capacity(), 2u);
  EXPECT_EQ(tls::deferred_cache::make(0)->capacity(), 1u);
  std::vector<issued_cert> certs;
  std::vector<std::shared_ptr<const tls::deferred_key>> keys;
  for (int i = 0; i < 5; ++i) {
    certs.push_back(ca.issue({"c" + std::to_string(i) + ".example"}));
    keys.push_back(deferred(ca, certs.back(), cache));
    ASSERT_TRUE(keys.back());
  }
  // Held across its eviction, a parsed form stays usable.
  const auto first = keys[0]->get();
  ASSERT_NE(first, nullptr);
  for (std::size_t i = 1; i < keys.size(); ++i) ASSERT_NE(keys[i]->get(), nullptr) << i;
  EXPECT_EQ(cache->size(), 2u);
  EXPECT_EQ(cache->evictions(), 3u);
  int held = 0;
  for (const auto& k : keys) held += k->parsed() ? 1 : 0;
  EXPECT_EQ(held, 2);
  EXPECT_FALSE(keys[0]->parsed());
  EXPECT_EQ(X509_cmp(first->leaf.get(), certs[0].cert.get()), 0);
  EXPECT_EQ(EVP_PKEY_eq(first->key.get(), certs[0].key.get()), 1);

  // Dropped and asked for again: parsed anew from the kept DER, key and chain included.
  const auto again = keys[0]->get();
  ASSERT_NE(again, nullptr) << keys[0]->error().message();
  EXPECT_NE(again, first);
  EXPECT_EQ(X509_cmp(again->leaf.get(), certs[0].cert.get()), 0);
  EXPECT_EQ(EVP_PKEY_eq(again->key.get(), certs[0].key.get()), 1);
  ASSERT_EQ(again->chain.size(), 1u);
  EXPECT_EQ(X509_cmp(again->chain[0].get(), ca.ca_cert()), 0);
  EXPECT_EQ(cache->size(), 2u);
  EXPECT_EQ(cache->evictions(), 4u);
}

TEST(deferred_cache, a_pass_over_every_name_does_not_displace_the_names_in_use) {
  test_certs ca;
  auto cache = tls::deferred_cache::make(4);
  auto hot_a_cert = ca.issue({"hot-a.example"});
  auto hot_b_cert = ca.issue({"hot-b.example"});
  auto hot_a = deferred(ca, hot_a_cert, cache);
  auto hot_b = deferred(ca, hot_b_cert, cache);
  ASSERT_TRUE(hot_a && hot_b);
  auto cold_cert = ca.issue({"cold.example"});
  std::vector<std::shared_ptr<const tls::deferred_key>> cold;
  for (int i = 0; i < 40; ++i) cold.push_back(deferred(ca, cold_cert, cache));
  for (std::size_t i = 0; i < cold.size(); ++i) {
    ASSERT_NE(hot_a->get(), nullptr);
    ASSERT_NE(hot_b->get(), nullptr);
    ASSERT_NE(cold[i]->get(), nullptr);
    // Without the reference bit, the hand would reach the hot keys every few admissions.
    ASSERT_TRUE(hot_a->parsed()) << "after cold key " << i;
    ASSERT_TRUE(hot_b->parsed()) << "after cold key " << i;
  }
  EXPECT_EQ(cache->size(), 4u);
  EXPECT_EQ(cache->evictions(), cold.size() - 2);
}

TEST(deferred_cache, a_dropped_key_frees_its_place_without_an_eviction) {
  test_certs ca;
  auto cache = tls::deferred_cache::make(2);
  auto ca_ = ca.issue({"a.example"}), cb = ca.issue({"b.example"}), cc = ca.issue({"c.example"});
  auto a = deferred(ca, ca_, cache), b = deferred(ca, cb, cache), c = deferred(ca, cc, cache);
  ASSERT_NE(a->get(), nullptr);
  ASSERT_NE(b->get(), nullptr);
  ASSERT_NE(a->get(), nullptr);  // used again: the hand spares it once
  b.reset();                       // the map let go of it (a replaced certificate)
  ASSERT_NE(c->get(), nullptr);    // takes b's place, which the hand reaches next
  EXPECT_EQ(cache->evictions(), 0u);
  EXPECT_TRUE(a->parsed());
  EXPECT_TRUE(c->parsed());
  // Keys outliving their cache's creator keep it alive.
  std::weak_ptr<tls::deferred_cache> w = cache;
  cache.reset();
  EXPECT_FALSE(w.expired());
  a.reset();
  c.reset();
  EXPECT_TRUE(w.expired());
}

TEST(deferred_cache, concurrent_use_with_evictions_gives_every_caller_its_certificate) {
  test_certs ca;
  auto cache = tls::deferred_cache::make(3);
  std::vector<issued_cert> certs;
  std::vector<std::shared_ptr<const tls::deferred_key>> keys;
  for (int i = 0; i < 12; ++i) {
    certs.push_back(ca.issue({"p" + std::to_string(i) + ".example"}));
    keys.push_back(deferred(ca, certs.back(), cache));
  }
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      std::uint32_t x = 0x9e3779b9u * (t + 1);
      for (int n = 0; n < 300; ++n) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        const std::size_t i = x % keys.size();
        const auto k = keys[i]->get();
        if (!k || X509_cmp(k->leaf.get(), certs[i].cert.get()) != 0) wrong.fetch_add(1);
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(cache->evictions(), 0u);
  EXPECT_LE(cache->size(), cache->capacity());
  int held = 0;
  for (const auto& k : keys) held += k->parsed() ? 1 : 0;
  EXPECT_LE(held, 3);
}

TEST(deferred_cache, handshakes_get_the_right_certificate_while_parses_are_dropped) {
  test_certs ca;
  auto cache = tls::deferred_cache::make(1);
  std::vector<issued_cert> certs;
  std::vector<tls::sni_update> ups;
  const char* names[] = {"x.example", "y.example", "z.example"};
  for (const char* n : names) {
    certs.push_back(ca.issue({n}));
    ups.push_back({n, {}, {deferred(ca, certs.back(), cache)}});
  }
  served_map served(ups);
  ASSERT_TRUE(served.sctx);
  auto cctx = ca.client_context();
  for (int round = 0; round < 2; ++round)
    for (std::size_t i = 0; i < 3; ++i) {
      SCOPED_TRACE(names[i]);
      const auto leaf = served_leaf(cctx.get(), served.sctx.get(), names[i]);
      ASSERT_NE(leaf, nullptr);
      EXPECT_EQ(X509_cmp(leaf.get(), certs[i].cert.get()), 0);
    }
  EXPECT_EQ(served.res.stats().hits, 6u);
  EXPECT_EQ(cache->size(), 1u);
  EXPECT_EQ(cache->evictions(), 5u);
}
