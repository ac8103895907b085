#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <chrono>
#include <string>

#include "letsencrypt/tls/challenge_cert.hpp"

using namespace letsencrypt;

namespace {

// Round-trips through DER so the checks read what a validator reads.
tls::x509_ptr reparse(X509* cert) {
  unsigned char* der = nullptr;
  int len = i2d_X509(cert, &der);
  EXPECT_GT(len, 0);
  const unsigned char* p = der;
  tls::x509_ptr out(d2i_X509(nullptr, &p, len));
  OPENSSL_free(der);
  return out;
}

TEST(challenge_cert, has_every_rfc8737_property) {
  const std::string key_auth = "token-abc.thumbprint-xyz";
  auto r = tls::make_tls_alpn01_certificate("Host.Example.COM.", key_auth);
  ASSERT_TRUE(r) << r.error().message();
  ASSERT_TRUE(r->leaf);
  ASSERT_TRUE(r->key);
  EXPECT_TRUE(r->chain.empty());
  EXPECT_EQ(r->kind, tls::key_kind::ecdsa);
  auto cert = reparse(r->leaf.get());
  ASSERT_TRUE(cert);

  // Fresh P-256 key that matches the certificate.
  EVP_PKEY* pub = X509_get0_pubkey(cert.get());
  ASSERT_NE(pub, nullptr);
  EXPECT_EQ(EVP_PKEY_get_base_id(pub), EVP_PKEY_EC);
  char group[64] = {};
  size_t glen = 0;
  ASSERT_EQ(EVP_PKEY_get_group_name(pub, group, sizeof group, &glen), 1);
  EXPECT_STREQ(group, "prime256v1");
  EXPECT_EQ(X509_check_private_key(cert.get(), r->key.get()), 1);

  // Self-signed: issuer == subject and the signature verifies with its own key.
  EXPECT_EQ(X509_NAME_cmp(X509_get_subject_name(cert.get()), X509_get_issuer_name(cert.get())), 0);
  EXPECT_EQ(X509_verify(cert.get(), pub), 1);
  EXPECT_EQ(X509_get_version(cert.get()), X509_VERSION_3);

  // Valid now.
  EXPECT_LT(X509_cmp_current_time(X509_get0_notBefore(cert.get())), 0);
  EXPECT_GT(X509_cmp_current_time(X509_get0_notAfter(cert.get())), 0);
  EXPECT_GT(r->not_after, std::chrono::system_clock::now());

  // Exactly one SAN, a dNSName equal to the normalised name.
  int crit = -1;
  auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert.get(), NID_subject_alt_name, &crit, nullptr));
  ASSERT_NE(sans, nullptr);
  ASSERT_EQ(sk_GENERAL_NAME_num(sans), 1);
  GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans, 0);
  ASSERT_EQ(gn->type, GEN_DNS);
  std::string dns(reinterpret_cast<const char*>(ASN1_STRING_get0_data(gn->d.dNSName)),
                  static_cast<std::size_t>(ASN1_STRING_length(gn->d.dNSName)));
  EXPECT_EQ(dns, "host.example.com");
  GENERAL_NAMES_free(sans);
  EXPECT_EQ(X509_check_host(cert.get(), "host.example.com", 0, 0, nullptr), 1);

  // The acmeIdentifier extension: critical, value = DER OCTET STRING of SHA-256(key auth).
  ASN1_OBJECT* oid = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
  ASSERT_NE(oid, nullptr);
  int idx = X509_get_ext_by_OBJ(cert.get(), oid, -1);
  ASSERT_GE(idx, 0);
  EXPECT_LT(X509_get_ext_by_OBJ(cert.get(), oid, idx), 0) << "extension appears twice";
  ASN1_OBJECT_free(oid);
  X509_EXTENSION* ext = X509_get_ext(cert.get(), idx);
  EXPECT_EQ(X509_EXTENSION_get_critical(ext), 1);
  ASN1_OCTET_STRING* value = X509_EXTENSION_get_data(ext);
  const unsigned char* p = ASN1_STRING_get0_data(value);
  ASN1_OCTET_STRING* inner = d2i_ASN1_OCTET_STRING(nullptr, &p, ASN1_STRING_length(value));
  ASSERT_NE(inner, nullptr);
  EXPECT_EQ(p, ASN1_STRING_get0_data(value) + ASN1_STRING_length(value)) << "trailing bytes";
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(key_auth.data()), key_auth.size(), digest);
  ASSERT_EQ(ASN1_STRING_length(inner), SHA256_DIGEST_LENGTH);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(inner)), SHA256_DIGEST_LENGTH),
            std::string(reinterpret_cast<const char*>(digest), SHA256_DIGEST_LENGTH));
  ASN1_OCTET_STRING_free(inner);
}

TEST(challenge_cert, fresh_key_each_time) {
  auto a = tls::make_tls_alpn01_certificate("a.example", "ka");
  auto b = tls::make_tls_alpn01_certificate("a.example", "ka");
  ASSERT_TRUE(a && b);
  EXPECT_NE(EVP_PKEY_eq(a->key.get(), b->key.get()), 1);
}

TEST(challenge_cert, rejects_bad_input) {
  EXPECT_EQ(tls::make_tls_alpn01_certificate("*.example.com", "ka").error(), make_error_code(errc::invalid_name));
  EXPECT_EQ(tls::make_tls_alpn01_certificate("bad_name", "ka").error(), make_error_code(errc::invalid_name));
  EXPECT_EQ(tls::make_tls_alpn01_certificate("127.0.0.1", "ka").error(), make_error_code(errc::invalid_name));
  EXPECT_EQ(tls::make_tls_alpn01_certificate("a.example", "").error(), make_error_code(errc::invalid_argument));
}

}  // namespace
