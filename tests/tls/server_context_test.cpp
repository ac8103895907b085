// make_server_context: the negotiated suite follows the server's order, tickets are sent as
// configured and resume, bad lists are refused. Handshakes run in memory over the engine.
#include <gtest/gtest.h>

#include <openssl/provider.h>
#include <openssl/ssl.h>

#include <string>
#include <vector>

#include "letsencrypt/tls/error.hpp"
#include "letsencrypt/tls/server_context.hpp"
#include "letsencrypt/tls/sni_map.hpp"
#include "letsencrypt/tls/tickets.hpp"
#include "memory_pair.hpp"
#include "tls/libctx.hpp"
#include "test_certs.hpp"

using namespace letsencrypt;
using namespace letsencrypt::tls;
using letsencrypt::testing::provider_name;
using letsencrypt::testing::test_certs;

namespace {

struct outcome {
  std::string suite;
  bool reused = false;
  int tickets = 0;          // NewSessionTicket messages the client received
  ssl_session_ptr session;  // the last ticket's session, if any
};

int count_ticket(SSL* ssl, SSL_SESSION*) {
  ++*static_cast<int*>(SSL_get_app_data(ssl));
  return 0;  // the client keeps its own reference through SSL_get1_session
}

outcome connect(SSL_CTX* cctx, SSL_CTX* sctx, int version, SSL_SESSION* resume = nullptr) {
  outcome o;
  SSL_CTX_set_session_cache_mode(cctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(cctx, count_ticket);
  auto m = letsencrypt::testing::connect_in_memory(cctx, sctx, "ctx.test", version, resume,
                                                   [&](SSL* ssl) { SSL_set_app_data(ssl, &o.tickets); });
  o.suite = m.suite;
  o.reused = m.reused;
  o.session = std::move(m.session);
  return o;
}

// A provider that offers nothing: enough to be one the application loaded.
int empty_provider_init(const OSSL_CORE_HANDLE*, const OSSL_DISPATCH*, const OSSL_DISPATCH** out, void** provctx) {
  static const OSSL_DISPATCH none[] = {{0, nullptr}};
  *out = none;
  *provctx = nullptr;
  return 1;
}

// Puts a P-256 and an RSA certificate for "ctx.test" from `certs` on `sctx`, read as the
// loaders read them, each checked to live in the library context.
void serve_ec_and_rsa(SSL_CTX* sctx, test_certs& certs) {
  ASSERT_TRUE(sctx);
  for (auto kind : {letsencrypt::testing::key_kind::ec_p256, letsencrypt::testing::key_kind::rsa2048}) {
    auto leaf = certs.issue({"ctx.test"}, kind);
    auto chain = load_certificate_chain_pem(leaf.chain_pem);
    auto key = load_private_key_pem(leaf.key_pem);
    ASSERT_TRUE(chain && key);
    EXPECT_EQ(provider_name(X509_get0_pubkey((*chain)[0].get())), "letsencrypt-default-filtered");
    EXPECT_EQ(provider_name(key->get()), "letsencrypt-default-filtered");
    x509_stack_ptr rest(sk_X509_new_null());
    ASSERT_EQ(sk_X509_push(rest.get(), up_ref((*chain)[1].get()).release()), 1);
    ASSERT_EQ(SSL_CTX_use_cert_and_key(sctx, (*chain)[0].get(), key->get(), rest.get(), 1), 1);
  }
}

// make_server_context() with serve_ec_and_rsa's certificates; null when it fails.
ssl_ctx_ptr ec_and_rsa_server(test_certs& certs) {
  auto made = make_server_context();
  if (!made) return nullptr;
  serve_ec_and_rsa(made->get(), certs);
  return std::move(*made);
}

}  // namespace

TEST(server_context, server_order_wins_over_a_client_that_prefers_aes256) {
  test_certs certs;
  auto leaf = certs.issue({"ctx.test"});
  auto made = make_server_context();
  ASSERT_TRUE(made) << made.error().message();
  ssl_ctx_ptr sctx = std::move(*made);
  ASSERT_EQ(SSL_CTX_use_certificate(sctx.get(), leaf.cert.get()), 1);
  ASSERT_EQ(SSL_CTX_use_PrivateKey(sctx.get(), leaf.key.get()), 1);
  auto cctx = certs.client_context();
  // OpenSSL's own client order puts TLS_AES_256_GCM_SHA384 first.
  ASSERT_EQ(SSL_CTX_set_ciphersuites(cctx.get(), "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256"), 1);
  EXPECT_EQ(connect(cctx.get(), sctx.get(), TLS1_3_VERSION).suite, "TLS_AES_128_GCM_SHA256");
  EXPECT_EQ(connect(cctx.get(), sctx.get(), TLS1_2_VERSION).suite, "ECDHE-ECDSA-AES128-GCM-SHA256");

  // A client that offers only AES-256 still connects.
  ASSERT_EQ(SSL_CTX_set_ciphersuites(cctx.get(), "TLS_AES_256_GCM_SHA384"), 1);
  EXPECT_EQ(connect(cctx.get(), sctx.get(), TLS1_3_VERSION).suite, "TLS_AES_256_GCM_SHA384");
}

TEST(server_context, sends_the_configured_number_of_tickets_and_resumes) {
  test_certs certs;
  auto leaf = certs.issue({"ctx.test"});
  auto cctx = certs.client_context();
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{3}}) {
    SCOPED_TRACE(n);
    server_context_options o;
    o.tickets_per_handshake = n;
    auto made = make_server_context(o);
    ASSERT_TRUE(made) << made.error().message();
    ssl_ctx_ptr sctx = std::move(*made);
    ASSERT_EQ(SSL_CTX_use_certificate(sctx.get(), leaf.cert.get()), 1);
    ASSERT_EQ(SSL_CTX_use_PrivateKey(sctx.get(), leaf.key.get()), 1);
    ticket_keys keys;
    ASSERT_TRUE(keys.install(sctx.get()));
    auto first = connect(cctx.get(), sctx.get(), TLS1_3_VERSION);
    EXPECT_EQ(first.tickets, static_cast<int>(n));
    EXPECT_FALSE(first.reused);
    if (n == 0) {
      EXPECT_EQ(keys.stats().issued, 0u);
      continue;
    }
    EXPECT_EQ(keys.stats().issued, n);
    ASSERT_TRUE(first.session);
    auto fresh = connect(cctx.get(), sctx.get(), TLS1_3_VERSION);
    ASSERT_TRUE(fresh.session);
    // A ticket under the current key resumes and needs no replacement...
    auto second = connect(cctx.get(), sctx.get(), TLS1_3_VERSION, first.session.get());
    EXPECT_TRUE(second.reused);
    EXPECT_EQ(second.tickets, 0);
    // ...one under the previous key resumes and is replaced (OpenSSL sends one ticket on a
    // resumed connection, whatever the count for full handshakes).
    ASSERT_TRUE(keys.rotate());
    auto third = connect(cctx.get(), sctx.get(), TLS1_3_VERSION, fresh.session.get());
    EXPECT_TRUE(third.reused);
    EXPECT_EQ(third.tickets, 1);
  }
}

TEST(server_context, refuses_unknown_lists_and_old_versions) {
  server_context_options o;
  o.ciphersuites = "TLS_NOT_A_SUITE";
  auto r = make_server_context(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(&r.error().category(), &tls_category());
  EXPECT_FALSE(r.error().message().empty());

  // A list with one good and one unknown suite: OpenSSL would keep the good one silently.
  o = {};
  o.ciphersuites = "TLS_AES_128_GCM_SHA256:TLS_BOGUS_SUITE";
  EXPECT_EQ(make_server_context(o).error(), make_error_code(errc::invalid_argument));
  o.ciphersuites = "";
  EXPECT_FALSE(make_server_context(o));

  o = {};
  o.groups = "X25519:not-a-group";
  EXPECT_FALSE(make_server_context(o));

  o = {};
  o.tls12_ciphers = "NO-SUCH-CIPHER";
  EXPECT_FALSE(make_server_context(o));

  o = {};
  o.min_version = TLS1_1_VERSION;
  auto old = make_server_context(o);
  ASSERT_FALSE(old);
  EXPECT_EQ(old.error(), make_error_code(errc::invalid_argument));

  o = {};
  o.min_version = TLS1_3_VERSION;
  auto modern = make_server_context(o);
  ASSERT_TRUE(modern);
  EXPECT_EQ(SSL_CTX_get_min_proto_version(modern->get()), TLS1_3_VERSION);
}

TEST(server_context, lives_in_the_library_context_and_serves_what_the_loaders_read) {
  ASSERT_NE(detail::library_context(), nullptr) << "the default provider is available and FIPS is off here";
  // EC and RSA certificates and keys as the loaders read them, on one context: every group
  // and signature the handshake needs is there, and the client sees each certificate.
  test_certs certs;
  ssl_ctx_ptr sctx = ec_and_rsa_server(certs);
  ASSERT_TRUE(sctx && !HasFatalFailure());
  auto cctx = certs.client_context();
  for (const char* sigalgs : {"ECDSA+SHA256", "rsa_pss_rsae_sha256"}) {
    SCOPED_TRACE(sigalgs);
    ASSERT_EQ(SSL_CTX_set1_sigalgs_list(cctx.get(), sigalgs), 1);
    for (int version : {TLS1_3_VERSION, TLS1_2_VERSION}) {
      SCOPED_TRACE(version);
      auto m = letsencrypt::testing::connect_in_memory(cctx.get(), sctx.get(), "ctx.test", version, nullptr, {});
      EXPECT_TRUE(m.handshake_done);
      // The server's key share was made in the library context, as its SSL_CTX was (a TLS
      // 1.2 server frees its share once the keys are derived).
      if (version == TLS1_3_VERSION) {
        EXPECT_EQ(m.server_share_provider, "letsencrypt-default-filtered");
      }
      EXPECT_EQ(m.peer_key_type, std::string_view(sigalgs).starts_with("ECDSA") ? EVP_PKEY_EC : EVP_PKEY_RSA);
    }
  }
}

// The library context keeps only the ciphers TLS uses (libctx.cpp): every suite the server
// offers by default still handshakes there, for both key types.
TEST(server_context, every_default_suite_handshakes_in_the_library_context) {
  ASSERT_NE(detail::library_context(), nullptr);
  test_certs certs;
  ssl_ctx_ptr sctx = ec_and_rsa_server(certs);
  ASSERT_TRUE(sctx && !HasFatalFailure());
  const server_context_options defaults;
  std::vector<std::string> tls12;
  for (std::string_view rest = defaults.tls12_ciphers; !rest.empty();) {
    const auto colon = rest.find(':');
    tls12.emplace_back(rest.substr(0, colon));
    rest = colon == std::string_view::npos ? std::string_view{} : rest.substr(colon + 1);
  }
  ASSERT_EQ(tls12.size(), 6u);
  for (const std::string& cipher : tls12) {
    SCOPED_TRACE(cipher);
    auto cctx = certs.client_context();
    ASSERT_EQ(SSL_CTX_set_cipher_list(cctx.get(), cipher.c_str()), 1);
    auto m = letsencrypt::testing::connect_in_memory(cctx.get(), sctx.get(), "ctx.test", TLS1_2_VERSION, nullptr, {});
    EXPECT_TRUE(m.handshake_done);
    EXPECT_EQ(m.suite, cipher);
  }
  for (const char* suite : {"TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_256_GCM_SHA384"}) {
    SCOPED_TRACE(suite);
    auto cctx = certs.client_context();
    ASSERT_EQ(SSL_CTX_set_ciphersuites(cctx.get(), suite), 1);
    auto m = letsencrypt::testing::connect_in_memory(cctx.get(), sctx.get(), "ctx.test", TLS1_3_VERSION, nullptr, {});
    EXPECT_TRUE(m.handshake_done);
    EXPECT_EQ(m.suite, suite);
  }
}

TEST(server_context, stays_in_the_default_context_while_the_application_has_another_provider) {
  ASSERT_NE(detail::library_context(), nullptr);
  // An application that loaded a provider of its own (pkcs11, a post-quantum group) keeps
  // it for what the library makes from then on: server contexts, certificates and keys.
  ASSERT_EQ(OSSL_PROVIDER_add_builtin(nullptr, "letsencrypt-test-extra", &empty_provider_init), 1);
  OSSL_PROVIDER* extra = OSSL_PROVIDER_load(nullptr, "letsencrypt-test-extra");
  ASSERT_NE(extra, nullptr);
  EXPECT_EQ(detail::library_context(), nullptr);
  test_certs certs;
  auto leaf = certs.issue({"ctx.test"});
  auto chain = load_certificate_chain_pem(leaf.chain_pem);
  auto key = load_private_key_pem(leaf.key_pem);
  ASSERT_TRUE(chain && key);
  EXPECT_EQ(provider_name(X509_get0_pubkey((*chain)[0].get())), "default");
  EXPECT_EQ(provider_name(key->get()), "default");
  auto made = make_server_context();
  ASSERT_TRUE(made);
  ssl_ctx_ptr sctx = std::move(*made);
  ASSERT_EQ(SSL_CTX_use_certificate(sctx.get(), (*chain)[0].get()), 1);
  ASSERT_EQ(SSL_CTX_use_PrivateKey(sctx.get(), key->get()), 1);
  auto cctx = certs.client_context();
  auto m = letsencrypt::testing::connect_in_memory(cctx.get(), sctx.get(), "ctx.test", TLS1_3_VERSION, nullptr, {});
  EXPECT_TRUE(m.handshake_done);
  EXPECT_EQ(m.server_share_provider, "default");
  // A certificate loaded with its key keeps a key object of its own there: the default
  // context's key manager cannot take the private part into the certificate's.
  auto ck = load_certified_key_der(letsencrypt::testing::der_of(leaf.cert.get()),
                                   letsencrypt::testing::pkcs8_der_of(leaf.key.get()));
  ASSERT_TRUE(ck) << ck.error().message();
  EXPECT_NE((*ck)->key.get(), X509_get0_pubkey((*ck)->leaf.get()));
  EXPECT_EQ(EVP_PKEY_eq((*ck)->key.get(), leaf.key.get()), 1);
  // Once it is gone, the library's context is back.
  ASSERT_EQ(OSSL_PROVIDER_unload(extra), 1);
  EXPECT_NE(detail::library_context(), nullptr);
}

TEST(server_context, takes_chains_and_keys_from_openssls_own_file_readers) {
  // What a configure_tls hook may do: load a chain and a key with OpenSSL's file functions
  // into the library's server context, whose decoders are narrowed to public keys. OpenSSL
  // then reads the keys its older way; they must still sign.
  test_certs certs;
  auto cctx = certs.client_context();
  for (auto kind : {letsencrypt::testing::key_kind::ec_p256, letsencrypt::testing::key_kind::rsa2048}) {
    auto leaf = certs.issue({"ctx.test"}, kind);
    // PKCS#8, then the traditional form, then PKCS#8 under a passphrase.
    auto [crt, key] = certs.write(leaf, "file");
    const std::filesystem::path keys[] = {
        key, certs.write_file("file-trad.key", letsencrypt::testing::traditional_key_pem(leaf.key.get())),
        certs.write_file("file-enc.key", letsencrypt::testing::encrypted_key_pem(leaf.key.get(), "passphrase"))};
    for (const auto& k : keys) {
      SCOPED_TRACE(k.filename().string());
      auto made = make_server_context();
      ASSERT_TRUE(made);
      ssl_ctx_ptr sctx = std::move(*made);
      SSL_CTX_set_default_passwd_cb_userdata(sctx.get(), const_cast<char*>("passphrase"));
      ASSERT_EQ(SSL_CTX_use_certificate_chain_file(sctx.get(), crt.c_str()), 1);
      ASSERT_EQ(SSL_CTX_use_PrivateKey_file(sctx.get(), k.c_str(), SSL_FILETYPE_PEM), 1);
      ASSERT_EQ(SSL_CTX_check_private_key(sctx.get()), 1);
      for (int version : {TLS1_3_VERSION, TLS1_2_VERSION}) {
        auto m = letsencrypt::testing::connect_in_memory(cctx.get(), sctx.get(), "ctx.test", version, nullptr, {});
        EXPECT_TRUE(m.handshake_done) << version;
      }
    }
  }
}

// load_certified_key_der keeps an EC key in the certificate's own key object: a server
// serving that pair completes TLS 1.3 and 1.2 handshakes that verify against the CA, signing
// with the attached private key, on each curve.
TEST(server_context, serves_a_key_attached_to_its_certificates_public_key) {
  ASSERT_NE(detail::library_context(), nullptr);
  test_certs certs;
  auto cctx = certs.client_context();
  X509* chain[] = {certs.ca_cert()};
  using letsencrypt::testing::key_kind;
  for (auto curve : {key_kind::ec_p256, key_kind::ec_p384, key_kind::ec_p521}) {
    SCOPED_TRACE(static_cast<int>(curve));
    auto c = certs.issue({"ctx.test"}, curve);
    auto ck = load_certified_key_der(letsencrypt::testing::der_of(c.cert.get()),
                                     letsencrypt::testing::pkcs8_der_of(c.key.get()), chain);
    ASSERT_TRUE(ck) << ck.error().message();
    ASSERT_EQ((*ck)->key.get(), X509_get0_pubkey((*ck)->leaf.get()));
    for (int version : {TLS1_3_VERSION, TLS1_2_VERSION}) {
      SCOPED_TRACE(version);
      auto made = make_server_context();
      ASSERT_TRUE(made);
      ssl_ctx_ptr sctx = std::move(*made);
      auto st = to_stack((*ck)->chain);
      ASSERT_TRUE(st);
      ASSERT_EQ(SSL_CTX_use_cert_and_key(sctx.get(), (*ck)->leaf.get(), (*ck)->key.get(), st->get(), 1), 1);
      auto m = letsencrypt::testing::connect_in_memory(cctx.get(), sctx.get(), "ctx.test", version, nullptr, {});
      EXPECT_TRUE(m.handshake_done);
      EXPECT_EQ(m.peer_key_type, EVP_PKEY_EC);
    }
  }
}
