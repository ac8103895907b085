#include "letsencrypt/tls/challenge_cert.hpp"

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include <chrono>
#include <ctime>
#include <string>

#include "letsencrypt/tls/error.hpp"
#include "letsencrypt/tls/names.hpp"

namespace letsencrypt::tls {

namespace {

using asn1_object_ptr = std::unique_ptr<ASN1_OBJECT, detail::free_fn<ASN1_OBJECT, ASN1_OBJECT_free>>;
using asn1_octet_ptr =
    std::unique_ptr<ASN1_OCTET_STRING, detail::free_fn<ASN1_OCTET_STRING, ASN1_OCTET_STRING_free>>;
using extension_ptr = std::unique_ptr<X509_EXTENSION, detail::free_fn<X509_EXTENSION, X509_EXTENSION_free>>;
using general_names_ptr = std::unique_ptr<GENERAL_NAMES, detail::free_fn<GENERAL_NAMES, GENERAL_NAMES_free>>;
using bignum_ptr = std::unique_ptr<BIGNUM, detail::free_fn<BIGNUM, BN_free>>;

result<void> add_ext(X509* cert, int nid, bool critical, void* value) {
  if (X509_add1_ext_i2d(cert, nid, value, critical ? 1 : 0, X509V3_ADD_REPLACE) != 1) return tls_error();
  return ok();
}

}  // namespace

result<certified_key> make_tls_alpn01_certificate(std::string_view name,
                                                  std::string_view key_authorization) {
  LE_TRY(host, normalise_name(name));
  if (is_wildcard(host)) return errc::invalid_name;
  if (key_authorization.empty()) return errc::invalid_argument;
  ERR_clear_error();

  LE_TRY(key, generate_ec_p256_key());
  x509_ptr cert(X509_new());
  if (!cert) return tls_error();
  if (X509_set_version(cert.get(), X509_VERSION_3) != 1) return tls_error();

  unsigned char serial_bytes[16];
  if (RAND_bytes(serial_bytes, sizeof serial_bytes) != 1) return tls_error();
  serial_bytes[0] &= 0x7f;  // a positive INTEGER
  bignum_ptr serial_bn(BN_bin2bn(serial_bytes, sizeof serial_bytes, nullptr));
  if (!serial_bn || !BN_to_ASN1_INTEGER(serial_bn.get(), X509_get_serialNumber(cert.get())))
    return tls_error();

  constexpr long day = 24 * 60 * 60;
  if (!X509_gmtime_adj(X509_getm_notBefore(cert.get()), -day) ||
      !X509_gmtime_adj(X509_getm_notAfter(cert.get()), 7 * day))
    return tls_error();

  // The subject carries no meaning for the validator; the name lives in the SAN alone.
  X509_NAME* subject = X509_get_subject_name(cert.get());
  static constexpr unsigned char cn[] = "ACME tls-alpn-01 challenge";
  if (X509_NAME_add_entry_by_NID(subject, NID_commonName, MBSTRING_ASC, cn, -1, -1, 0) != 1 ||
      X509_set_issuer_name(cert.get(), subject) != 1)
    return tls_error();
  if (X509_set_pubkey(cert.get(), key.get()) != 1) return tls_error();

  // subjectAltName: exactly one dNSName.
  general_names_ptr sans(GENERAL_NAMES_new());
  GENERAL_NAME* gn = GENERAL_NAME_new();
  ASN1_IA5STRING* ia5 = ASN1_IA5STRING_new();
  if (!sans || !gn || !ia5 || ASN1_STRING_set(ia5, host.data(), static_cast<int>(host.size())) != 1) {
    GENERAL_NAME_free(gn);
    ASN1_IA5STRING_free(ia5);
    return tls_error();
  }
  GENERAL_NAME_set0_value(gn, GEN_DNS, ia5);
  if (sk_GENERAL_NAME_push(sans.get(), gn) <= 0) {
    GENERAL_NAME_free(gn);
    return tls_error();
  }
  LE_TRY_VOID(add_ext(cert.get(), NID_subject_alt_name, false, sans.get()));

  // acmeIdentifier: extnValue = DER(OCTET STRING(SHA-256(keyAuthorization))).
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(key_authorization.data()), key_authorization.size(),
         digest);
  unsigned char der[2 + SHA256_DIGEST_LENGTH] = {V_ASN1_OCTET_STRING, SHA256_DIGEST_LENGTH};
  std::copy(digest, digest + SHA256_DIGEST_LENGTH, der + 2);
  asn1_object_ptr oid(OBJ_txt2obj(acme_identifier_oid, 1));
  asn1_octet_ptr value(ASN1_OCTET_STRING_new());
  if (!oid || !value || ASN1_OCTET_STRING_set(value.get(), der, sizeof der) != 1) return tls_error();
  extension_ptr ext(X509_EXTENSION_create_by_OBJ(nullptr, oid.get(), 1, value.get()));
  if (!ext || X509_add_ext(cert.get(), ext.get(), -1) != 1) return tls_error();

  if (X509_sign(cert.get(), key.get(), EVP_sha256()) <= 0) return tls_error();

  certified_key out;
  out.kind = key_kind::ecdsa;
  auto not_after = to_time_point(X509_get0_notAfter(cert.get()));
  if (!not_after) return tls_error();
  out.not_after = *not_after;
  out.leaf = std::move(cert);
  out.key = std::move(key);
  return out;
}

}  // namespace letsencrypt::tls
