#include "bench_certs.hpp"

#include <openssl/bn.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <stdexcept>

namespace letsencrypt::bench {

void fail(const char* what) { throw std::runtime_error(what); }

namespace {

void add_extension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer ? issuer : cert, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (!ext) fail("extension");
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

}  // namespace

tls::x509_ptr mint(EVP_PKEY* subject_key, const std::string& dns, X509* issuer, EVP_PKEY* issuer_key,
                   leaf_shape shape) {
  tls::x509_ptr c(X509_new());
  if (!c) fail("X509_new");
  X509_set_version(c.get(), X509_VERSION_3);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(c.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(c.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(c.get()), 90 * 24 * 3600);
  X509_set_pubkey(c.get(), subject_key);
  X509_NAME* name = X509_get_subject_name(c.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(dns.c_str()), -1, -1, 0);
  X509_set_issuer_name(c.get(), issuer ? X509_get_subject_name(issuer) : name);
  if (!issuer) {
    add_extension(c.get(), nullptr, NID_basic_constraints, "critical,CA:TRUE");
    add_extension(c.get(), nullptr, NID_subject_key_identifier, "hash");
  } else if (shape == leaf_shape::san_only) {
    add_extension(c.get(), issuer, NID_subject_alt_name, "DNS:" + dns);
  } else {
    add_extension(c.get(), issuer, NID_basic_constraints, "critical,CA:FALSE");
    add_extension(c.get(), issuer, NID_key_usage, "critical,digitalSignature");
    add_extension(c.get(), issuer, NID_ext_key_usage, "serverAuth");
    add_extension(c.get(), issuer, NID_subject_alt_name, "DNS:" + dns);
    add_extension(c.get(), issuer, NID_authority_key_identifier, "keyid");
  }
  if (X509_sign(c.get(), issuer_key, EVP_sha256()) <= 0) fail("X509_sign");
  // Round-trip through DER, as certificates loaded from storage are held.
  unsigned char* der = nullptr;
  const int len = i2d_X509(c.get(), &der);
  const unsigned char* p = der;
  tls::x509_ptr parsed(d2i_X509(nullptr, &p, len));
  OPENSSL_free(der);
  if (!parsed) fail("d2i_X509");
  return parsed;
}

std::shared_ptr<const tls::certified_key> throwaway_ca::leaf(const std::string& dns, leaf_shape shape) const {
  tls::evp_pkey_ptr k(EVP_EC_gen("P-256"));
  if (!k) fail("EVP_EC_gen");
  auto c = mint(k.get(), dns, cert.get(), key.get(), shape);
  X509* chain[] = {cert.get()};
  auto ck = tls::make_certified_key(c.get(), k.get(), chain);
  if (!ck) fail("make_certified_key");
  return std::move(ck).value();
}

const throwaway_ca& ca() {
  static const throwaway_ca instance;
  return instance;
}

}  // namespace letsencrypt::bench
