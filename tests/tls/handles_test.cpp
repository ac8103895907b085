#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/kdf.h>
#include <openssl/pem.h>
#include <openssl/core_names.h>
#include <openssl/decoder.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <atomic>
#include <random>
#include <thread>

#include "letsencrypt/tls/error.hpp"
#include "letsencrypt/tls/handles.hpp"
#include "../no_input.hpp"
#include "test_certs.hpp"
#include "tls/ec_keymgmt.hpp"
#include "tls/ec_pkcs8.hpp"
#include "tls/ec_spki_decoder.hpp"
#include "tls/libctx.hpp"

using namespace letsencrypt;
using namespace letsencrypt::tls;
using letsencrypt::testing::key_kind;
using letsencrypt::testing::der_of;
using letsencrypt::testing::pkcs8_der_of;
using letsencrypt::testing::provider_name;
using letsencrypt::testing::test_certs;

TEST(handles, pem_round_trip_of_chain_and_keys) {
  test_certs certs;
  for (auto kind : {key_kind::ec_p256, key_kind::rsa2048}) {
    auto leaf = certs.issue({"pem.test", "*.pem.test"}, kind);
    auto chain = load_certificate_chain_pem(leaf.chain_pem);
    ASSERT_TRUE(chain) << chain.error().message();
    ASSERT_EQ(chain->size(), 2u);
    EXPECT_EQ(X509_cmp((*chain)[0].get(), leaf.cert.get()), 0);
    EXPECT_EQ(X509_cmp((*chain)[1].get(), certs.ca_cert()), 0);
    auto again = to_pem(std::span<const x509_ptr>(*chain));
    ASSERT_TRUE(again);
    EXPECT_EQ(*again, leaf.chain_pem);

    auto key = load_private_key_pem(leaf.key_pem);
    ASSERT_TRUE(key) << key.error().message();
    EXPECT_EQ(EVP_PKEY_eq(key->get(), leaf.key.get()), 1);
    EXPECT_EQ(X509_check_private_key(leaf.cert.get(), key->get()), 1);
    auto kp = to_pem(key->get());
    ASSERT_TRUE(kp);
    EXPECT_EQ(kp->rfind("-----BEGIN PRIVATE KEY-----", 0), 0u) << "PKCS#8";
    EXPECT_EQ(*kp, leaf.key_pem);
    auto pub = public_key_pem(key->get());
    ASSERT_TRUE(pub);
    EXPECT_EQ(pub->rfind("-----BEGIN PUBLIC KEY-----", 0), 0u);
    EXPECT_EQ(pub->find("PRIVATE"), std::string::npos);
  }
}

TEST(handles, traditional_key_formats_load) {
  auto k = generate_rsa_key(2048);
  ASSERT_TRUE(k);
  const std::string pem = letsencrypt::testing::traditional_key_pem(k->get());
  EXPECT_NE(pem.find("BEGIN RSA PRIVATE KEY"), std::string::npos);
  auto loaded = load_private_key_pem(pem);
  ASSERT_TRUE(loaded);
  EXPECT_EQ(EVP_PKEY_eq(loaded->get(), k->get()), 1);
}

TEST(handles, bad_pem_is_a_clear_error) {
  for (std::string bad : {std::string(), std::string("not pem at all"),
                          std::string("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
                          std::string("-----BEGIN CERTIFICATE-----\n")}) {
    auto c = load_certificate_chain_pem(bad);
    ASSERT_FALSE(c);
    EXPECT_EQ(c.error(), tls_errc::bad_pem);
    auto k = load_private_key_pem(bad);
    ASSERT_FALSE(k);
    EXPECT_EQ(k.error(), tls_errc::bad_pem);
  }
  // A good certificate followed by a damaged one fails as a whole.
  test_certs certs;
  auto leaf = certs.issue({"x.test"});
  auto c = load_certificate_chain_pem(leaf.cert_pem + "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error(), tls_errc::bad_pem);
  // An encrypted key is refused instead of prompting for a password.
  bio_ptr b(BIO_new(BIO_s_mem()));
  ASSERT_EQ(PEM_write_bio_PKCS8PrivateKey(b.get(), leaf.key.get(), EVP_aes_256_cbc(), nullptr, 0, nullptr,
                                          const_cast<char*>("secret")),
            1);
  char* data = nullptr;
  long n = BIO_get_mem_data(b.get(), &data);
  auto k = load_private_key_pem(std::string_view(data, std::size_t(n)));
  ASSERT_FALSE(k);
  EXPECT_EQ(k.error(), tls_errc::bad_pem);
  EXPECT_EQ(ERR_peek_error(), 0u);
}

// A block whose headers say it is encrypted, key or certificate, fails at once: OpenSSL's
// default would prompt for a passphrase and keep the calling thread waiting for input.
TEST(handles, pem_readers_never_ask_for_a_passphrase) {
  using letsencrypt::testing::outcome;
  using letsencrypt::testing::run_without_input;
  test_certs certs;
  auto leaf = certs.issue({"prompt.test"});
  const std::string key = letsencrypt::testing::encrypted_key_pem(leaf.key.get(), "secret");
  const std::string cert = letsencrypt::testing::with_encryption_headers(leaf.cert_pem);
  EXPECT_EQ(run_without_input([&] {
              auto k = load_private_key_pem(key);
              return !k && k.error() == tls_errc::bad_pem;
            }),
            outcome::answered_true);
  EXPECT_EQ(run_without_input([&] {
              auto c = load_certificate_chain_pem(cert);
              return !c && c.error() == tls_errc::bad_pem;
            }),
            outcome::answered_true);
  // The same text without the headers parses: the refusal is the headers'.
  EXPECT_TRUE(load_certificate_chain_pem(leaf.cert_pem));
}

TEST(handles, up_ref_and_chain_copy_share_objects) {
  test_certs certs;
  auto leaf = certs.issue({"ref.test"});
  x509_ptr a = up_ref(leaf.cert.get());
  ASSERT_EQ(a.get(), leaf.cert.get());
  evp_pkey_ptr k = up_ref(leaf.key.get());
  ASSERT_EQ(k.get(), leaf.key.get());
  EXPECT_FALSE(up_ref(static_cast<X509*>(nullptr)));
  std::vector<x509_ptr> chain;
  chain.push_back(up_ref(leaf.cert.get()));
  chain.push_back(up_ref(certs.ca_cert()));
  auto copy = copy_chain(chain);
  ASSERT_EQ(copy.size(), 2u);
  EXPECT_EQ(copy[0].get(), chain[0].get());
  auto st = to_stack(chain);
  ASSERT_TRUE(st);
  EXPECT_EQ(sk_X509_num(st->get()), 2);
  chain.clear();
  copy.clear();
  // The stack still holds its own references.
  EXPECT_EQ(X509_cmp(sk_X509_value(st->get(), 1), certs.ca_cert()), 0);
}

TEST(handles, key_generation) {
  auto ec = generate_ec_p256_key();
  ASSERT_TRUE(ec);
  EXPECT_EQ(EVP_PKEY_get_base_id(ec->get()), EVP_PKEY_EC);
  EXPECT_EQ(EVP_PKEY_get_bits(ec->get()), 256);
  auto rsa = generate_rsa_key(2048);
  ASSERT_TRUE(rsa);
  EXPECT_EQ(EVP_PKEY_get_base_id(rsa->get()), EVP_PKEY_RSA);
  EXPECT_EQ(EVP_PKEY_get_bits(rsa->get()), 2048);
  auto small = generate_rsa_key(512);
  ASSERT_FALSE(small);
  EXPECT_EQ(small.error(), errc::invalid_argument);
  auto e1 = generate_ec_p256_key();
  EXPECT_NE(EVP_PKEY_eq(e1->get(), ec->get()), 1) << "fresh keys differ";
}

TEST(handles, tls_error_turns_the_queue_into_a_readable_code) {
  ERR_clear_error();
  EXPECT_EQ(tls_error(tls_errc::handshake_failed), tls_errc::handshake_failed) << "empty queue: fallback";
  // Provoke a real OpenSSL error: using a key that does not match the certificate.
  test_certs certs;
  auto a = certs.issue({"a.test"});
  auto b = certs.issue({"b.test"});
  ssl_ctx_ptr ctx(SSL_CTX_new(TLS_server_method()));
  ASSERT_EQ(SSL_CTX_use_certificate(ctx.get(), a.cert.get()), 1);
  ASSERT_NE(SSL_CTX_use_PrivateKey(ctx.get(), b.key.get()), 1);
  auto ec = tls_error();
  EXPECT_EQ(ec.category(), tls_category());
  EXPECT_EQ(ERR_peek_error(), 0u) << "queue cleared";
  EXPECT_NE(ec.message().find("key values mismatch"), std::string::npos) << ec.message();
  EXPECT_EQ(classify(ec), tls_errc::key_mismatch);
  EXPECT_EQ(std::error_code(tls_errc::alert_received).message(), "TLS alert received from peer");
  EXPECT_EQ(classify(std::error_code(tls_errc::unexpected_eof)), tls_errc::unexpected_eof);
  EXPECT_EQ(classify(make_error_code(errc::timed_out)), tls_errc::handshake_failed);
}

namespace {

std::chrono::system_clock::time_point time_point_of(const ASN1_TIME* t) {
  std::tm tm{};
  EXPECT_EQ(ASN1_TIME_to_tm(t, &tm), 1);
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

}  // namespace

TEST(handles, pem_blocks_der_decodes_without_parsing) {
  test_certs certs;
  auto leaf = certs.issue({"der.test"});
  auto blocks = pem_blocks_der(leaf.chain_pem, "CERTIFICATE");
  ASSERT_TRUE(blocks) << blocks.error().message();
  ASSERT_EQ(blocks->size(), 2u);
  EXPECT_EQ((*blocks)[0], der_of(leaf.cert.get()));
  EXPECT_EQ((*blocks)[1], der_of(certs.ca_cert()));
  // Other labels are skipped: a key file that starts with EC PARAMETERS, as `openssl ecparam
  // -genkey` writes.
  auto key = pem_blocks_der("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n" + leaf.key_pem,
                            "PRIVATE KEY");
  ASSERT_TRUE(key) << key.error().message();
  ASSERT_EQ(key->size(), 1u);
  const auto* p = reinterpret_cast<const unsigned char*>((*key)[0].data());
  evp_pkey_ptr parsed(d2i_AutoPrivateKey(nullptr, &p, static_cast<long>((*key)[0].size())));
  ASSERT_TRUE(parsed);
  EXPECT_EQ(EVP_PKEY_eq(parsed.get(), leaf.key.get()), 1);

  EXPECT_EQ(pem_blocks_der(leaf.chain_pem, "PRIVATE KEY").error(), make_error_code(tls_errc::bad_pem));
  EXPECT_EQ(pem_blocks_der("", "CERTIFICATE").error(), make_error_code(tls_errc::bad_pem));
  // A block whose base64 is damaged, after a good one.
  std::string damaged = leaf.chain_pem;
  damaged.insert(damaged.rfind("-----END CERTIFICATE-----") - 10, "!!!");
  EXPECT_EQ(pem_blocks_der(damaged, "CERTIFICATE").error(), make_error_code(tls_errc::bad_pem));
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST(handles, certificate_validity_reads_the_dates_only) {
  test_certs certs;
  letsencrypt::testing::issue_options o;
  o.not_before = std::chrono::hours(-48);
  o.not_after = std::chrono::hours(24 * 90);
  for (auto kind : {key_kind::ec_p256, key_kind::rsa2048}) {
    o.kind = kind;
    auto leaf = certs.issue({"dates.test"}, o);
    auto v = certificate_validity(der_of(leaf.cert.get()));
    ASSERT_TRUE(v) << v.error().message();
    EXPECT_EQ(v->first, time_point_of(X509_get0_notBefore(leaf.cert.get())));
    EXPECT_EQ(v->second, time_point_of(X509_get0_notAfter(leaf.cert.get())));
  }
  // The CA certificate too (a v3 certificate with the explicit version).
  auto ca = certificate_validity(der_of(certs.ca_cert()));
  ASSERT_TRUE(ca);
  EXPECT_EQ(ca->second, time_point_of(X509_get0_notAfter(certs.ca_cert())));

  // Every truncation and a few corruptions fail cleanly.
  const std::string der = der_of(certs.issue({"cut.test"}).cert.get());
  for (std::size_t n = 0; n < 200 && n < der.size(); ++n)
    EXPECT_FALSE(certificate_validity(der.substr(0, n))) << n;
  for (std::size_t i = 0; i < 40; ++i) {
    std::string bad = der;
    bad[i] = static_cast<char>(bad[i] ^ 0x5a);
    (void)certificate_validity(bad);  // must not crash or read out of bounds (ASan)
  }
  EXPECT_FALSE(certificate_validity("not a certificate"));
  // Random byte changes anywhere (the walk reaches the validity through four headers).
  std::mt19937 rng(1234);
  for (int round = 0; round < 5000; ++round) {
    std::string bad = der;
    for (int k = 0; k < 1 + round % 4; ++k) bad[rng() % bad.size()] = static_cast<char>(rng());
    (void)certificate_validity(bad);
  }
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST(handles, to_time_point_clamps_dates_past_the_clock) {
  std::unique_ptr<ASN1_TIME, decltype(&ASN1_TIME_free)> t(ASN1_TIME_new(), &ASN1_TIME_free);
  ASSERT_TRUE(ASN1_TIME_set_string(t.get(), "20310101000000Z"));
  EXPECT_EQ(to_time_point(t.get())->time_since_epoch(), std::chrono::seconds(1924992000));
  // RFC 5280's "no well-defined expiration": the start of 2200, not an overflow.
  ASSERT_TRUE(ASN1_TIME_set_string(t.get(), "99991231235959Z"));
  EXPECT_EQ(to_time_point(t.get())->time_since_epoch(), std::chrono::seconds(7258118400));
  EXPECT_EQ(to_time_point(nullptr).error(), make_error_code(errc::invalid_argument));
}

namespace {

// The private scalar and the public point, which decide whether two keys are the same.
std::pair<std::string, std::string> ec_material(EVP_PKEY* k) {
  BIGNUM* priv = nullptr;
  std::string scalar;
  if (EVP_PKEY_get_bn_param(k, "priv", &priv) == 1) {
    char* hex = BN_bn2hex(priv);
    scalar = hex;
    OPENSSL_free(hex);
  }
  BN_clear_free(priv);
  unsigned char pub[200];
  std::size_t n = 0;
  if (EVP_PKEY_get_octet_string_param(k, "pub", pub, sizeof pub, &n) != 1) n = 0;
  return {scalar, std::string(reinterpret_cast<char*>(pub), n)};
}

// What OpenSSL's own decoders make of the bytes: the reference the direct reader must match.
evp_pkey_ptr openssl_reads(const std::string& der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  evp_pkey_ptr k(d2i_AutoPrivateKey(nullptr, &p, static_cast<long>(der.size())));
  ERR_clear_error();
  return k;
}

}  // namespace

TEST(handles, ec_pkcs8_keys_read_directly_are_the_keys_openssl_reads_and_sign) {
  for (const char* curve : {"P-256", "P-384", "P-521"}) {
    SCOPED_TRACE(curve);
    for (int i = 0; i < 20; ++i) {  // short scalars (leading zero bytes) come up on the way
      evp_pkey_ptr k(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", curve));
      ASSERT_TRUE(k);
      const std::string der = pkcs8_der_of(k.get());
      auto loaded = load_private_key_der(der);
      ASSERT_TRUE(loaded) << loaded.error().message();
      EXPECT_EQ(ec_material(loaded->get()), ec_material(k.get()));
      EXPECT_EQ(EVP_PKEY_get_bits(loaded->get()), EVP_PKEY_get_bits(k.get()));
      // A signature by the loaded key verifies under the original's public key.
      const unsigned char msg[] = "handshake transcript";
      std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> sc(EVP_MD_CTX_new(), &EVP_MD_CTX_free), vc(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
      unsigned char sig[160];
      std::size_t sig_len = sizeof sig;
      ASSERT_EQ(EVP_DigestSignInit(sc.get(), nullptr, EVP_sha256(), nullptr, loaded->get()), 1);
      ASSERT_EQ(EVP_DigestSign(sc.get(), sig, &sig_len, msg, sizeof msg), 1);
      ASSERT_EQ(EVP_DigestVerifyInit(vc.get(), nullptr, EVP_sha256(), nullptr, k.get()), 1);
      EXPECT_EQ(EVP_DigestVerify(vc.get(), sig, sig_len, msg, sizeof msg), 1);
      // And through the PEM reader.
      auto pem = to_pem(k.get());
      ASSERT_TRUE(pem);
      auto from_pem = load_private_key_pem(*pem);
      ASSERT_TRUE(from_pem);
      EXPECT_EQ(ec_material(from_pem->get()), ec_material(k.get()));
    }
  }
  // Keys the direct reader leaves to OpenSSL still load: RSA.
  auto rsa = generate_rsa_key(2048);
  ASSERT_TRUE(rsa);
  auto loaded_rsa = load_private_key_der(pkcs8_der_of(rsa->get()));
  ASSERT_TRUE(loaded_rsa);
  EXPECT_EQ(EVP_PKEY_eq(loaded_rsa->get(), rsa->get()), 1);
  EXPECT_EQ(load_private_key_der("").error(), make_error_code(tls_errc::bad_pem));
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST(handles, ec_pkcs8_reader_agrees_with_openssl_on_every_truncation_and_byte_change) {
  evp_pkey_ptr k(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  ASSERT_TRUE(k);
  const std::string der = pkcs8_der_of(k.get());
  ASSERT_FALSE(der.empty());
  std::size_t checked = 0;
  auto agree = [&](const std::string& bytes) {
    auto ours = load_private_key_der(bytes);
    auto theirs = openssl_reads(bytes);
    ASSERT_EQ(bool(ours), bool(theirs)) << "at " << checked;
    if (ours) {
      EXPECT_EQ(ec_material(ours->get()), ec_material(theirs.get())) << "at " << checked;
    }
    ++checked;
  };
  for (std::size_t n = 0; n < der.size(); ++n) agree(der.substr(0, n));
  for (std::size_t i = 0; i < der.size(); ++i)
    for (unsigned char x : {0x01, 0x80, 0xff}) {
      std::string m = der;
      m[i] = static_cast<char>(static_cast<unsigned char>(m[i]) ^ x);
      agree(m);
    }
  EXPECT_EQ(checked, der.size() * 4);
  EXPECT_EQ(ERR_peek_error(), 0u);
}

namespace {

std::string tlv(unsigned char tag, const std::string& body) {
  std::string out(1, static_cast<char>(tag));
  if (body.size() >= 256) {
    out += '\x82';
    out += static_cast<char>(body.size() >> 8);
  } else if (body.size() >= 128) {
    out += '\x81';
  }
  out += static_cast<char>(body.size() & 0xff);
  return out + body;
}

}  // namespace

TEST(handles, ec_pkcs8_direct_reader_takes_well_formed_keys_and_leaves_the_rest_to_openssl) {
  // Every curve of the table, as OpenSSL writes the key.
  for (const char* curve : {"P-256", "P-384", "P-521"}) {
    evp_pkey_ptr k(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", curve));
    ASSERT_TRUE(k);
    auto direct = detail::read_ec_pkcs8(pkcs8_der_of(k.get()));
    ASSERT_TRUE(direct) << curve;
    EXPECT_EQ(ec_material(direct.get()), ec_material(k.get())) << curve;
  }

  // The same P-256 key written out by hand, then bent.
  evp_pkey_ptr k(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  ASSERT_TRUE(k);
  BIGNUM* bn = nullptr;
  ASSERT_EQ(EVP_PKEY_get_bn_param(k.get(), "priv", &bn), 1);
  unsigned char scalar[32];
  ASSERT_EQ(BN_bn2binpad(bn, scalar, sizeof scalar), 32);
  BN_clear_free(bn);
  unsigned char point[65];
  std::size_t point_len = 0;
  ASSERT_EQ(EVP_PKEY_get_octet_string_param(k.get(), "pub", point, sizeof point, &point_len), 1);
  ASSERT_EQ(point_len, 65u);
  const std::string priv(reinterpret_cast<char*>(scalar), 32), pub(reinterpret_cast<char*>(point), 65);
  const std::string ec_oid = tlv(0x06, "\x2a\x86\x48\xce\x3d\x02\x01");
  const std::string p256 = tlv(0x06, "\x2a\x86\x48\xce\x3d\x03\x01\x07");
  const std::string p384 = tlv(0x06, std::string("\x2b\x81\x04\x00\x22", 5));
  const std::string version1 = tlv(0x02, "\x01"), secret = tlv(0x04, priv);
  const std::string a0 = tlv(0xa0, p256), a1 = tlv(0xa1, tlv(0x03, std::string(1, '\0') + pub));
  auto pkcs8 = [&](const std::string& ec_fields, const std::string& after = "") {
    return tlv(0x30, tlv(0x02, std::string(1, '\0')) + tlv(0x30, ec_oid + p256) + tlv(0x04, tlv(0x30, ec_fields)) + after);
  };

  for (const std::string& good : {pkcs8(version1 + secret + a0 + a1), pkcs8(version1 + secret + a1),
                                  pkcs8(version1 + secret + a0 + a1, tlv(0xa0, ""))}) {
    auto direct = detail::read_ec_pkcs8(good);
    ASSERT_TRUE(direct);
    EXPECT_EQ(ec_material(direct.get()), ec_material(k.get()));
    auto reference = openssl_reads(good);
    ASSERT_TRUE(reference);
    EXPECT_EQ(ec_material(reference.get()), ec_material(k.get()));
  }
  // Without the public key: OpenSSL's to compute.
  const std::string no_pub = pkcs8(version1 + secret + a0);
  EXPECT_FALSE(detail::read_ec_pkcs8(no_pub));
  auto computed = load_private_key_der(no_pub);
  ASSERT_TRUE(computed);
  EXPECT_EQ(ec_material(computed->get()), ec_material(k.get()));

  // Shapes the direct reader refuses; load_private_key_der then says what OpenSSL says.
  const std::string bent[] = {
      pkcs8(version1 + secret + a0 + a1, tlv(0x02, "\x05")),  // more after the key
      pkcs8(version1 + secret + a1 + a0),                      // [1] before [0]
      pkcs8(version1 + secret + a0 + a1 + a1),                 // [1] twice
      pkcs8(version1 + secret + a0 + a0 + a1),                 // [0] twice
      pkcs8(version1 + secret + tlv(0xa0, p256 + tlv(0x05, "")) + a1),                               // more inside [0]
      pkcs8(version1 + secret + a0 + tlv(0xa1, tlv(0x03, std::string(1, '\0') + pub) + tlv(0x05, ""))),  // more inside [1]
      pkcs8(version1 + secret + tlv(0xa0, p384) + a1),         // [0] names another curve
      pkcs8(version1 + secret + a0 + a1 + tlv(0xa2, tlv(0x05, ""))),  // a field RFC 5915 has not
      pkcs8(tlv(0x02, "\x02") + secret + a0 + a1),            // ECPrivateKey version 2
      pkcs8(version1 + tlv(0x04, priv + priv) + a0 + a1),      // a scalar longer than the field
  };
  for (std::size_t i = 0; i < std::size(bent); ++i) {
    EXPECT_FALSE(detail::read_ec_pkcs8(bent[i])) << i;
    EXPECT_EQ(bool(load_private_key_der(bent[i])), bool(openssl_reads(bent[i]))) << i;
  }
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST(handles, certificates_parse_in_the_library_context_for_every_key_type_and_verify) {
  ASSERT_NE(detail::library_context(), nullptr) << "FIPS is off and only the default provider is loaded here";
  test_certs ca;
  struct kind {
    const char* name;
    evp_pkey_ptr key;
    bool in_library_context;  // X25519 is no certificate key type: parsed as d2i_X509 does
  };
  std::vector<kind> kinds;
  kinds.push_back({"P-256", evp_pkey_ptr(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256")), true});
  kinds.push_back({"P-384", evp_pkey_ptr(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384")), true});
  kinds.push_back({"RSA", evp_pkey_ptr(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", std::size_t{2048})), true});
  kinds.push_back({"ED25519", evp_pkey_ptr(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519")), true});
  kinds.push_back({"ED448", evp_pkey_ptr(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED448")), true});
  kinds.push_back({"X25519", evp_pkey_ptr(EVP_PKEY_Q_keygen(nullptr, nullptr, "X25519")), false});
  for (auto& k : kinds) {
    SCOPED_TRACE(k.name);
    ASSERT_TRUE(k.key);
    letsencrypt::testing::issue_options o;
    o.key = k.key.get();
    auto leaf = ca.issue({"kind.test"}, o);
    const std::string der = der_of(leaf.cert.get());
    auto x = parse_certificate_der(der);
    ASSERT_TRUE(x) << x.error().message();
    EXPECT_EQ(der_of(x->get()), der);
    EVP_PKEY* pub = X509_get0_pubkey(x->get());
    ASSERT_NE(pub, nullptr);
    EXPECT_EQ(provider_name(pub), k.in_library_context ? "letsencrypt-default-filtered" : "default");
    // The key made in OpenSSL's default context is the same key, and signatures check both
    // ways: the parsed leaf under the CA's key, and (below) a leaf under a parsed CA.
    EXPECT_EQ(EVP_PKEY_eq(pub, k.key.get()), 1);
    EXPECT_EQ(X509_check_private_key(x->get(), k.key.get()), 1);
    EXPECT_EQ(X509_verify(x->get(), ca.ca_key()), 1);
    auto chain = load_certificate_chain_pem(leaf.chain_pem);
    ASSERT_TRUE(chain);
    ASSERT_EQ(chain->size(), 2u);
    EXPECT_EQ(der_of((*chain)[0].get()), der);
    EXPECT_EQ(EVP_PKEY_eq(X509_get0_pubkey((*chain)[0].get()), k.key.get()), 1);
    EXPECT_EQ(X509_verify(leaf.cert.get(), X509_get0_pubkey((*chain)[1].get())), 1);
  }
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST(handles, keys_the_library_reads_or_makes_live_in_the_library_context) {
  ASSERT_NE(detail::library_context(), nullptr);
  // Made there, so that certificates parsed there compare with them and a server context
  // there signs with them without OpenSSL keeping a copy in each context.
  auto ec = generate_ec_p256_key();
  auto rsa = generate_rsa_key(2048);
  ASSERT_TRUE(ec && rsa);
  EXPECT_EQ(provider_name(ec->get()), "letsencrypt-default-filtered");
  EXPECT_EQ(provider_name(rsa->get()), "letsencrypt-default-filtered");
  // Every form a key file comes in, whichever reader takes it: the direct PKCS#8 EC reader,
  // OpenSSL's decoders for the rest (RSA, Ed25519, SEC1 "EC PRIVATE KEY", "RSA PRIVATE KEY").
  std::vector<std::pair<std::string, evp_pkey_ptr>> made;
  made.emplace_back("P-256", evp_pkey_ptr(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256")));
  made.emplace_back("RSA", evp_pkey_ptr(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", std::size_t{2048})));
  made.emplace_back("ED25519", evp_pkey_ptr(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519")));
  for (auto& [name, k] : made) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(k);
    EXPECT_EQ(provider_name(k.get()), "default");
    auto pem = to_pem(k.get());
    ASSERT_TRUE(pem);
    std::vector<std::pair<const char*, result<evp_pkey_ptr>>> read;
    read.emplace_back("PKCS#8 PEM", load_private_key_pem(*pem));
    read.emplace_back("PKCS#8 DER", load_private_key_der(pkcs8_der_of(k.get())));
    if (name != "ED25519") read.emplace_back("traditional PEM", load_private_key_pem(letsencrypt::testing::traditional_key_pem(k.get())));
    for (auto& [form, r] : read) {
      SCOPED_TRACE(form);
      ASSERT_TRUE(r);
      EXPECT_EQ(provider_name(r->get()), "letsencrypt-default-filtered");
      EXPECT_EQ(EVP_PKEY_eq(r->get(), k.get()), 1);
    }
  }
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST(handles, certificate_parser_agrees_with_openssl_on_every_truncation_and_byte_change) {
  test_certs ca;
  const std::string der = der_of(ca.issue({"cut.test", "*.cut.test"}).cert.get());
  std::size_t accepted = 0;
  auto agree = [&](const std::string& bytes) {
    auto ours = parse_certificate_der(bytes);
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
    x509_ptr theirs(d2i_X509(nullptr, &p, static_cast<long>(bytes.size())));
    const bool theirs_whole = theirs && p == reinterpret_cast<const unsigned char*>(bytes.data()) + bytes.size();
    ERR_clear_error();
    ASSERT_EQ(ours.has_value(), theirs_whole);
    if (!ours) {
      EXPECT_EQ(ours.error(), make_error_code(tls_errc::bad_pem));
      return;
    }
    ++accepted;
    EXPECT_EQ(der_of(ours->get()), der_of(theirs.get()));
    EVP_PKEY* a = X509_get0_pubkey(ours->get());
    EVP_PKEY* b = X509_get0_pubkey(theirs.get());
    ERR_clear_error();
    ASSERT_EQ(a == nullptr, b == nullptr);
    if (a) {
      EXPECT_EQ(EVP_PKEY_eq(a, b), 1);
    }
  };
  for (std::size_t n = 0; n <= der.size() + 1; ++n) {
    SCOPED_TRACE(n);
    agree(n <= der.size() ? der.substr(0, n) : der + '\0');  // and one trailing byte
  }
  for (std::size_t i = 0; i < der.size(); ++i) {
    for (unsigned char flip : {0x01, 0x80, 0xff}) {
      SCOPED_TRACE(i);
      std::string bytes = der;
      bytes[i] = static_cast<char>(static_cast<unsigned char>(bytes[i]) ^ flip);
      agree(bytes);
    }
  }
  EXPECT_GT(accepted, der.size()) << "changes inside values parse on both sides";
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST(handles, asking_for_the_library_context_keeps_the_callers_queued_errors) {
  ERR_clear_error();
  ERR_raise(ERR_LIB_SSL, SSL_R_BAD_LENGTH);
  const unsigned long queued = ERR_peek_last_error();
  ASSERT_NE(queued, 0u);
  (void)detail::library_context();
  EXPECT_EQ(ERR_peek_last_error(), queued);
  ERR_clear_error();
}

TEST(handles, the_library_context_keeps_the_key_managers_tls_needs_and_keys_of_others_still_load) {
  OSSL_LIB_CTX* lib = detail::library_context();
  ASSERT_NE(lib, nullptr);
  auto offers = [lib](const char* name) {
    EVP_KEYMGMT* k = EVP_KEYMGMT_fetch(lib, name, nullptr);
    EVP_KEYMGMT_free(k);
    return k != nullptr;
  };
  ERR_set_mark();
  for (const char* kept : {"EC", "RSA", "RSA-PSS", "ED25519", "ED448", "X25519", "X448", "DH", "HMAC"})
    EXPECT_TRUE(offers(kept)) << kept;
  for (const char* left : {"DSA", "DHX", "SM2", "HKDF", "TLS1-PRF", "SCRYPT", "SIPHASH", "POLY1305", "CMAC"})
    EXPECT_FALSE(offers(left)) << left;
  ERR_pop_to_mark();
  // A DSA key, which the context cannot hold, loads as OpenSSL's default context reads it.
  evp_pkey_ptr params;
  {
    letsencrypt::testing::evp_pkey_ctx_ptr pc(EVP_PKEY_CTX_new_from_name(nullptr, "DSA", nullptr));
    ASSERT_TRUE(pc);
    ASSERT_EQ(EVP_PKEY_paramgen_init(pc.get()), 1);
    ASSERT_EQ(EVP_PKEY_CTX_set_dsa_paramgen_bits(pc.get(), 1024), 1);
    EVP_PKEY* p = nullptr;
    ASSERT_EQ(EVP_PKEY_paramgen(pc.get(), &p), 1);
    params.reset(p);
  }
  letsencrypt::testing::evp_pkey_ctx_ptr kc(EVP_PKEY_CTX_new_from_pkey(nullptr, params.get(), nullptr));
  ASSERT_TRUE(kc);
  ASSERT_EQ(EVP_PKEY_keygen_init(kc.get()), 1);
  EVP_PKEY* raw = nullptr;
  ASSERT_EQ(EVP_PKEY_keygen(kc.get(), &raw), 1);
  evp_pkey_ptr dsa(raw);
  auto pem = to_pem(dsa.get());
  ASSERT_TRUE(pem);
  auto read = load_private_key_pem(*pem);
  ASSERT_TRUE(read) << read.error().message();
  EXPECT_EQ(provider_name(read->get()), "default");
  EXPECT_EQ(EVP_PKEY_eq(read->get(), dsa.get()), 1);
  EXPECT_EQ(ERR_peek_error(), 0u);
}

// Each operation's table is narrowed to what TLS, certificates and key files use, because
// every certificate parse walks the whole store of EVP algorithms (libctx.cpp).
TEST(handles, the_library_context_keeps_the_algorithms_tls_needs_and_not_the_others) {
  OSSL_LIB_CTX* lib = detail::library_context();
  ASSERT_NE(lib, nullptr);
  // As a server context's set-up fills the store, before anything is counted.
  ssl_ctx_ptr server(SSL_CTX_new_ex(lib, nullptr, TLS_server_method()));
  ASSERT_TRUE(server);
  ERR_set_mark();
  auto offers = [lib](auto fetch, auto free, const char* name) {
    auto* a = fetch(lib, name, nullptr);
    free(a);
    return a != nullptr;
  };
  auto cipher = [&](const char* n) { return offers(EVP_CIPHER_fetch, EVP_CIPHER_free, n); };
  auto digest = [&](const char* n) { return offers(EVP_MD_fetch, EVP_MD_free, n); };
  auto mac = [&](const char* n) { return offers(EVP_MAC_fetch, EVP_MAC_free, n); };
  auto kdf = [&](const char* n) { return offers(EVP_KDF_fetch, EVP_KDF_free, n); };
  auto exchange = [&](const char* n) { return offers(EVP_KEYEXCH_fetch, EVP_KEYEXCH_free, n); };
  auto signature = [&](const char* n) { return offers(EVP_SIGNATURE_fetch, EVP_SIGNATURE_free, n); };
  for (const char* n : {"AES-128-GCM", "AES-256-GCM", "ChaCha20-Poly1305", "AES-128-CCM", "AES-256-CBC", "AES-256-CTR",
                        "AES-128-CBC-HMAC-SHA256"})
    EXPECT_TRUE(cipher(n)) << n;
  for (const char* n : {"CAMELLIA-128-CBC", "ARIA-128-GCM", "DES-EDE3-CBC", "SM4-CBC", "AES-128-XTS"})
    EXPECT_FALSE(cipher(n)) << n;
  for (const char* n : {"SHA1", "SHA2-256", "SHA2-384", "SHA3-256", "SHAKE-256", "MD5-SHA1"}) EXPECT_TRUE(digest(n)) << n;
  for (const char* n : {"SM3", "RIPEMD-160", "BLAKE2B-512"}) EXPECT_FALSE(digest(n)) << n;
  EXPECT_TRUE(mac("HMAC"));
  EXPECT_FALSE(mac("SIPHASH"));
  for (const char* n : {"HKDF", "TLS13-KDF", "TLS1-PRF", "PBKDF2"}) EXPECT_TRUE(kdf(n)) << n;
  for (const char* n : {"SSHKDF", "KRB5KDF", "X942KDF-ASN1"}) EXPECT_FALSE(kdf(n)) << n;
  for (const char* n : {"ECDH", "X25519", "DH"}) EXPECT_TRUE(exchange(n)) << n;
  EXPECT_FALSE(exchange("HKDF"));
  for (const char* n : {"ECDSA", "RSA", "ED25519", "HMAC"}) EXPECT_TRUE(signature(n)) << n;
  for (const char* n : {"DSA", "SM2", "SIPHASH"}) EXPECT_FALSE(signature(n)) << n;
  ERR_pop_to_mark();
  int ciphers = 0;
  EVP_CIPHER_do_all_provided(lib, [](EVP_CIPHER*, void* n) { ++*static_cast<int*>(n); }, &ciphers);
  EXPECT_LE(ciphers, 24) << "the default provider offers 124";
  // The context's random generator (CTR-DRBG over AES-256-CTR) still runs.
  unsigned char bytes[32] = {};
  EXPECT_EQ(RAND_bytes_ex(lib, bytes, sizeof bytes, 0), 1);
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST(handles, ec_public_keys_decode_through_the_librarys_decoder_and_the_rest_through_openssls) {
  ASSERT_NE(detail::library_context(), nullptr);
  test_certs ca;
  struct kind {
    const char* name;
    const char* curve;
    bool compressed;
    bool ours;  // the library's decoder takes named curves with uncompressed points
  };
  const kind kinds[] = {{"P-256", "P-256", false, true}, {"P-384", "P-384", false, true},
                        {"P-521", "P-521", false, true}, {"P-256 compressed", "P-256", true, false},
                        {"P-224", "P-224", false, false}};
  for (const kind& k : kinds) {
    SCOPED_TRACE(k.name);
    evp_pkey_ptr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", k.curve));
    ASSERT_TRUE(key);
    if (k.compressed) {
      ASSERT_EQ(EVP_PKEY_set_utf8_string_param(key.get(), OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT,
                                               OSSL_PKEY_EC_POINT_CONVERSION_FORMAT_COMPRESSED),
                1);
    }
    letsencrypt::testing::issue_options o;
    o.key = key.get();
    auto leaf = ca.issue({"ec.test"}, o);
    const std::string der = der_of(leaf.cert.get());
    const std::uint64_t before = detail::ec_spki_keys_decoded();
    auto x = parse_certificate_der(der);
    ASSERT_TRUE(x) << x.error().message();
    EXPECT_EQ(detail::ec_spki_keys_decoded() - before, k.ours ? 1u : 0u);
    EXPECT_EQ(der_of(x->get()), der);
    EVP_PKEY* pub = X509_get0_pubkey(x->get());
    ASSERT_NE(pub, nullptr);
    EXPECT_EQ(provider_name(pub), "letsencrypt-default-filtered");
    EXPECT_EQ(EVP_PKEY_eq(pub, key.get()), 1);
    EXPECT_EQ(EVP_PKEY_get_bits(pub), EVP_PKEY_get_bits(key.get()));
    char group[32] = {};
    ASSERT_EQ(EVP_PKEY_get_group_name(pub, group, sizeof group, nullptr), 1);
    char want[32] = {};
    ASSERT_EQ(EVP_PKEY_get_group_name(key.get(), want, sizeof want, nullptr), 1);
    EXPECT_STREQ(group, want);
    EXPECT_EQ(X509_check_private_key(x->get(), key.get()), 1);
    EXPECT_EQ(X509_verify(x->get(), ca.ca_key()), 1);
    // The key re-encodes as the certificate has it, compressed or not.
    unsigned char* spki = nullptr;
    const int n = i2d_PUBKEY(pub, &spki);
    unsigned char* want_spki = nullptr;
    const int wn = i2d_PUBKEY(X509_get0_pubkey(leaf.cert.get()), &want_spki);
    ASSERT_GT(n, 0);
    EXPECT_EQ(std::string(reinterpret_cast<char*>(spki), static_cast<std::size_t>(n)),
              std::string(reinterpret_cast<char*>(want_spki), static_cast<std::size_t>(wn)));
    OPENSSL_free(spki);
    OPENSSL_free(want_spki);
  }
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST(handles, ec_public_keys_of_the_librarys_decoder_carry_no_curve_seed_and_still_write_explicit_parameters) {
  ASSERT_NE(detail::library_context(), nullptr);
  test_certs ca;
  for (const char* curve : {"P-256", "P-384", "P-521"}) {
    SCOPED_TRACE(curve);
    evp_pkey_ptr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", curve));
    ASSERT_TRUE(key);
    letsencrypt::testing::issue_options o;
    o.key = key.get();
    auto leaf = ca.issue({"ec.test"}, o);
    const std::uint64_t before = detail::ec_spki_keys_decoded();
    auto x = parse_certificate_der(der_of(leaf.cert.get()));
    ASSERT_TRUE(x) << x.error().message();
    ASSERT_EQ(detail::ec_spki_keys_decoded() - before, 1u);
    EVP_PKEY* pub = X509_get0_pubkey(x->get());
    // OpenSSL's own key of the curve has the seed; the library's keys do not copy it.
    unsigned char seed[64];
    std::size_t seed_len = 0;
    ERR_set_mark();
    EXPECT_EQ(EVP_PKEY_get_octet_string_param(key.get(), OSSL_PKEY_PARAM_EC_SEED, seed, sizeof seed, &seed_len), 1);
    EXPECT_GT(seed_len, 0u);
    EXPECT_EQ(EVP_PKEY_get_octet_string_param(pub, OSSL_PKEY_PARAM_EC_SEED, seed, sizeof seed, &seed_len), 0);
    ERR_pop_to_mark();
    // Written with explicit parameters (where a seed would go), the key reads back in
    // OpenSSL's default context as the same key on the same named curve.
    evp_pkey_ptr explicit_key(EVP_PKEY_dup(pub));
    ASSERT_TRUE(explicit_key);
    ASSERT_EQ(EVP_PKEY_set_utf8_string_param(explicit_key.get(), OSSL_PKEY_PARAM_EC_ENCODING,
                                             OSSL_PKEY_EC_ENCODING_EXPLICIT),
              1);
    unsigned char* spki = nullptr;
    const int n = i2d_PUBKEY(explicit_key.get(), &spki);
    ASSERT_GT(n, 0);
    const unsigned char* p = spki;
    evp_pkey_ptr back(d2i_PUBKEY(nullptr, &p, n));
    OPENSSL_free(spki);
    ASSERT_TRUE(back);
    EXPECT_EQ(EVP_PKEY_eq(back.get(), key.get()), 1);
    char group[32] = {}, want[32] = {};
    ASSERT_EQ(EVP_PKEY_get_group_name(back.get(), group, sizeof group, nullptr), 1);
    ASSERT_EQ(EVP_PKEY_get_group_name(key.get(), want, sizeof want, nullptr), 1);
    EXPECT_STREQ(group, want);
  }
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST(handles, ec_public_key_decoding_agrees_with_openssl_on_every_byte_change_and_reads_one_object) {
  OSSL_LIB_CTX* lib = detail::library_context();
  ASSERT_NE(lib, nullptr);
  for (const char* curve : {"P-256", "P-384", "P-521"}) {
    SCOPED_TRACE(curve);
    evp_pkey_ptr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", curve));
    ASSERT_TRUE(key);
    unsigned char* raw = nullptr;
    const int len = i2d_PUBKEY(key.get(), &raw);
    ASSERT_GT(len, 0);
    const std::string spki(reinterpret_cast<char*>(raw), static_cast<std::size_t>(len));
    OPENSSL_free(raw);
    // The library's decoder gives the key that signed: a signature by the key verifies.
    {
      const auto* p = reinterpret_cast<const unsigned char*>(spki.data());
      evp_pkey_ptr pub(d2i_PUBKEY_ex(nullptr, &p, len, lib, nullptr));
      ASSERT_TRUE(pub);
      const std::uint64_t before = detail::ec_spki_keys_decoded();
      p = reinterpret_cast<const unsigned char*>(spki.data());
      evp_pkey_ptr again(d2i_PUBKEY_ex(nullptr, &p, len, lib, nullptr));
      EXPECT_EQ(detail::ec_spki_keys_decoded() - before, 1u);
      const unsigned char msg[] = "signed by the key";
      std::unique_ptr<EVP_MD_CTX, detail::free_fn<EVP_MD_CTX, EVP_MD_CTX_free>> sign(EVP_MD_CTX_new()), verify(EVP_MD_CTX_new());
      std::vector<unsigned char> sig(256);
      std::size_t sig_len = sig.size();
      ASSERT_EQ(EVP_DigestSignInit(sign.get(), nullptr, EVP_sha256(), nullptr, key.get()), 1);
      ASSERT_EQ(EVP_DigestSign(sign.get(), sig.data(), &sig_len, msg, sizeof msg), 1);
      ASSERT_EQ(EVP_DigestVerifyInit_ex(verify.get(), nullptr, "SHA256", lib, nullptr, pub.get(), nullptr), 1);
      EXPECT_EQ(EVP_DigestVerify(verify.get(), sig.data(), sig_len, msg, sizeof msg), 1);
    }
    // Every byte changed (three ways) and every truncation: the library context decodes a
    // key exactly when OpenSSL's default context does, and the same key.
    auto agree = [&](const std::string& der, const char* what, std::size_t at) {
      const auto* p1 = reinterpret_cast<const unsigned char*>(der.data());
      const auto* p2 = p1;
      ERR_set_mark();
      evp_pkey_ptr ours(d2i_PUBKEY_ex(nullptr, &p1, static_cast<long>(der.size()), lib, nullptr));
      evp_pkey_ptr theirs(d2i_PUBKEY(nullptr, &p2, static_cast<long>(der.size())));
      ERR_pop_to_mark();
      ASSERT_EQ(ours != nullptr, theirs != nullptr) << what << " at " << at;
      if (ours) {
        EXPECT_EQ(EVP_PKEY_eq(ours.get(), theirs.get()), 1) << what << " at " << at;
        EXPECT_EQ(p1 - reinterpret_cast<const unsigned char*>(der.data()),
                  p2 - reinterpret_cast<const unsigned char*>(der.data()));
      }
    };
    for (std::size_t i = 0; i < spki.size(); ++i) {
      for (unsigned char x : {0x01, 0x02, 0x80}) {
        std::string m = spki;
        m[i] = static_cast<char>(m[i] ^ x);
        agree(m, "byte change", i);
      }
      agree(spki.substr(0, i), "truncation", i);
    }
    // Trailing bytes after the object: it is read alone, as OpenSSL's decoder reads it.
    std::string longer = spki + std::string(10, '\x30');
    agree(longer, "trailing bytes", spki.size());
    std::unique_ptr<OSSL_DECODER_CTX, detail::free_fn<OSSL_DECODER_CTX, OSSL_DECODER_CTX_free>> dctx;
    EVP_PKEY* decoded = nullptr;
    dctx.reset(OSSL_DECODER_CTX_new_for_pkey(&decoded, "DER", "SubjectPublicKeyInfo", "EC", EVP_PKEY_PUBLIC_KEY, lib, nullptr));
    ASSERT_TRUE(dctx);
    const auto* data = reinterpret_cast<const unsigned char*>(longer.data());
    std::size_t left = longer.size();
    const std::uint64_t before = detail::ec_spki_keys_decoded();
    ASSERT_EQ(OSSL_DECODER_from_data(dctx.get(), &data, &left), 1);
    evp_pkey_ptr owned(decoded);
    EXPECT_EQ(left, 10u);
    EXPECT_EQ(detail::ec_spki_keys_decoded() - before, 1u);
    EXPECT_EQ(EVP_PKEY_eq(decoded, key.get()), 1);
  }
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST(handles, certificates_and_key_shares_are_made_from_several_threads_at_once) {
  // The library context's EC decoder copies groups shared by every thread, and its X25519
  // generation runs on shared state set up once: both read-only after set-up.
  OSSL_LIB_CTX* lib = detail::library_context();
  ASSERT_NE(lib, nullptr);
  test_certs ca;
  std::vector<std::string> ders;
  for (const char* curve : {"P-256", "P-384", "P-521"}) {
    evp_pkey_ptr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", curve));
    ASSERT_TRUE(key);
    letsencrypt::testing::issue_options o;
    o.key = key.get();
    ders.push_back(der_of(ca.issue({"threads.test"}, o).cert.get()));
  }
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        auto x = parse_certificate_der(ders[static_cast<std::size_t>(i + t) % ders.size()]);
        if (!x || X509_verify(x->get(), ca.ca_key()) != 1) ++failures;
        evp_pkey_ptr share(EVP_PKEY_Q_keygen(lib, nullptr, "X25519"));
        if (!share) ++failures;
      }
      ERR_clear_error();
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
}

namespace {

// Whether `k` holds a private part.
bool has_private(EVP_PKEY* k) {
  BIGNUM* priv = nullptr;
  const bool has = EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_PRIV_KEY, &priv) == 1;
  BN_clear_free(priv);
  ERR_clear_error();
  return has;
}

// Sets detail::attach_private_key_param on `k` to `scalar` (big-endian); what
// EVP_PKEY_set_params returns.
int set_attach_param(EVP_PKEY* k, std::string scalar) {
  std::reverse(scalar.begin(), scalar.end());  // OSSL_PARAM integers: the host's order
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_BN(detail::attach_private_key_param, reinterpret_cast<unsigned char*>(scalar.data()),
                              scalar.size()),
      OSSL_PARAM_construct_end()};
  const int r = EVP_PKEY_set_params(k, params);
  ERR_clear_error();
  return r;
}

}  // namespace

// A certificate's public key object takes the private scalar of its own key, and is then
// that key pair in every way OpenSSL looks at it.
TEST(handles, ec_private_key_attaches_to_its_certificates_public_key) {
  ASSERT_NE(detail::library_context(), nullptr);
  test_certs ca;
  for (auto curve : {key_kind::ec_p256, key_kind::ec_p384, key_kind::ec_p521}) {
    SCOPED_TRACE(static_cast<int>(curve));
    auto c = ca.issue({"attach.example"}, curve);
    EVP_PKEY* const k = c.key.get();  // the key written
    auto leaf = parse_certificate_der(der_of(c.cert.get()));
    ASSERT_TRUE(leaf);
    EVP_PKEY* pub = X509_get0_pubkey(leaf->get());
    ASSERT_FALSE(has_private(pub));
    const std::string der = pkcs8_der_of(k);
    auto fields = detail::read_ec_pkcs8_fields(der);
    ASSERT_TRUE(fields);
    const std::uint64_t before = detail::ec_private_keys_attached();
    ASSERT_TRUE(detail::attach_ec_private_key(leaf->get(), *fields));
    EXPECT_EQ(detail::ec_private_keys_attached(), before + 1);
    EXPECT_EQ(ec_material(pub), ec_material(k));
    EXPECT_EQ(EVP_PKEY_eq(pub, k), 1);
    EXPECT_EQ(X509_check_private_key(leaf->get(), pub), 1);
    // OpenSSL's own checks of a key pair: the scalar, the point, and that they agree.
    letsencrypt::testing::evp_pkey_ctx_ptr check(EVP_PKEY_CTX_new_from_pkey(detail::library_context(), pub, nullptr));
    ASSERT_TRUE(check);
    EXPECT_EQ(EVP_PKEY_check(check.get()), 1);
    EXPECT_EQ(EVP_PKEY_pairwise_check(check.get()), 1);
    // It signs, and the original key verifies; written out, it reads back as the original.
    const unsigned char msg[] = "handshake transcript";
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> sc(EVP_MD_CTX_new(), &EVP_MD_CTX_free),
        vc(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
    unsigned char sig[160];
    std::size_t sig_len = sizeof sig;
    ASSERT_EQ(EVP_DigestSignInit(sc.get(), nullptr, EVP_sha256(), nullptr, pub), 1);
    ASSERT_EQ(EVP_DigestSign(sc.get(), sig, &sig_len, msg, sizeof msg), 1);
    ASSERT_EQ(EVP_DigestVerifyInit(vc.get(), nullptr, EVP_sha256(), nullptr, k), 1);
    EXPECT_EQ(EVP_DigestVerify(vc.get(), sig, sig_len, msg, sizeof msg), 1);
    auto pem = to_pem(pub);
    ASSERT_TRUE(pem);
    auto again = load_private_key_pem(*pem);
    ASSERT_TRUE(again);
    EXPECT_EQ(ec_material(again->get()), ec_material(k));
    // A second attach is refused, even of the same scalar.
    EXPECT_FALSE(detail::attach_ec_private_key(leaf->get(), *fields));
    EXPECT_EQ(ec_material(pub), ec_material(k));
    // The certificate still encodes as before, and its key's public encoding has no more
    // than the public key.
    EXPECT_EQ(der_of(leaf->get()), der_of(c.cert.get()));
    auto spki = [](EVP_PKEY* key) {
      unsigned char* out = nullptr;
      const int n = i2d_PUBKEY(key, &out);
      std::string s = n > 0 ? std::string(reinterpret_cast<char*>(out), static_cast<std::size_t>(n)) : "";
      OPENSSL_free(out);
      return s;
    };
    EXPECT_EQ(spki(pub), spki(k));
    EXPECT_FALSE(spki(pub).empty());
  }
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST(handles, ec_private_key_attaches_only_to_the_same_public_key_of_the_library_context) {
  ASSERT_NE(detail::library_context(), nullptr);
  test_certs ca;
  auto c = ca.issue({"attach.example"}, key_kind::ec_p256);
  const std::string cert_der = der_of(c.cert.get());
  auto fresh_leaf = [&] {
    auto leaf = parse_certificate_der(cert_der);
    EXPECT_TRUE(leaf);
    return std::move(leaf).value();
  };
  // Key files: this certificate's key, another certificate's, one on another curve.
  evp_pkey_ptr other(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  evp_pkey_ptr p384(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384"));
  ASSERT_TRUE(other && p384);
  const std::string own_der = pkcs8_der_of(c.key.get()), other_der = pkcs8_der_of(other.get()),
                    p384_der = pkcs8_der_of(p384.get());
  auto fields_of = [](const std::string& der) {
    auto f = detail::read_ec_pkcs8_fields(der);
    EXPECT_TRUE(f);
    return f.value_or(detail::ec_pkcs8_fields{"", {}, {}});
  };
  // Refused, and the public key left without a private part.
  auto refused = [](X509* leaf, const detail::ec_pkcs8_fields& f) {
    EXPECT_FALSE(detail::attach_ec_private_key(leaf, f));
    EXPECT_FALSE(has_private(X509_get0_pubkey(leaf)));
  };
  refused(fresh_leaf().get(), fields_of(other_der));
  refused(fresh_leaf().get(), fields_of(p384_der));
  // The right scalar with another certificate's public point in the key file: the points
  // decide, as X509_check_private_key's do.
  detail::ec_pkcs8_fields bent = fields_of(own_der);
  bent.public_point = fields_of(other_der).public_point;
  refused(fresh_leaf().get(), bent);
  // A certificate that encodes its point compressed, with the key file's point uncompressed:
  // the bytes differ, so the attach declines (load_certified_key_der then reads the key
  // whole: sni_map_test.cpp).
  {
    letsencrypt::testing::issue_options o;
    o.compressed_point = true;
    auto compressed = ca.issue({"attach.example"}, o);
    auto leaf = parse_certificate_der(der_of(compressed.cert.get()));
    ASSERT_TRUE(leaf);
    refused(leaf->get(), fields_of(pkcs8_der_of(compressed.key.get())));
  }
  // A certificate parsed in OpenSSL's default context: its key manager ignores the
  // parameter, and the attach says so.
  {
    const auto* p = reinterpret_cast<const unsigned char*>(cert_der.data());
    x509_ptr plain(d2i_X509(nullptr, &p, static_cast<long>(cert_der.size())));
    ASSERT_TRUE(plain);
    EXPECT_EQ(provider_name(X509_get0_pubkey(plain.get())), "default");
    refused(plain.get(), fields_of(own_der));
  }
  // The key manager refuses a zero scalar and one not below the group order.
  {
    auto leaf = fresh_leaf();
    EVP_PKEY* pub = X509_get0_pubkey(leaf.get());
    EXPECT_EQ(set_attach_param(pub, std::string(32, '\0')), 0);
    const std::string order("\xff\xff\xff\xff\x00\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff"
                            "\xbc\xe6\xfa\xad\xa7\x17\x9e\x84\xf3\xb9\xca\xc2\xfc\x63\x25\x51", 32);
    EXPECT_EQ(set_attach_param(pub, order), 0);
    EXPECT_EQ(set_attach_param(pub, std::string(33, '\xff')), 0);
    EXPECT_FALSE(has_private(pub));
    // The largest scalar there is, order - 1, is taken (on a key of its own).
    std::string largest = order;
    largest.back() = static_cast<char>(largest.back() - 1);
    auto other_leaf = fresh_leaf();
    EXPECT_EQ(set_attach_param(X509_get0_pubkey(other_leaf.get()), largest), 1);
    EXPECT_TRUE(has_private(X509_get0_pubkey(other_leaf.get())));
    // Its other parameters still reach OpenSSL's set_params.
    auto format = [&] {
      char name[32] = "";
      std::size_t len = 0;
      EXPECT_EQ(EVP_PKEY_get_utf8_string_param(pub, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, name, sizeof name, &len), 1);
      return std::string(name, len);
    };
    EXPECT_EQ(format(), "uncompressed");
    OSSL_PARAM compressed[] = {OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT,
                                                                const_cast<char*>("compressed"), 0),
                               OSSL_PARAM_construct_end()};
    EXPECT_EQ(EVP_PKEY_set_params(pub, compressed), 1);
    EXPECT_EQ(format(), "compressed");
  }
  EXPECT_EQ(ERR_peek_error(), 0u);
}
