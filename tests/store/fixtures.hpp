// Test fixtures for the store tests: temporary directories and real keys/certificates made
// with OpenSSL at run time.
#pragma once

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "letsencrypt/store/record.hpp"

namespace store_test {

class temp_dir {
 public:
  temp_dir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "le-store-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp");
    path_ = tmpl;
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline std::string bio_string(BIO* b) {
  char* p = nullptr;
  long n = BIO_get_mem_data(b, &p);
  return std::string(p, static_cast<std::size_t>(n));
}

/// A fresh EC key as PEM: "EC PRIVATE KEY" (SEC1, like Go's x509.MarshalECPrivateKey) when
/// `sec1`, else PKCS#8.
inline std::string make_key_pem(const char* curve = "P-256", bool sec1 = false,
                                EVP_PKEY** out = nullptr) {
  EVP_PKEY* k = EVP_EC_gen(curve);
  if (!k) throw std::runtime_error("EVP_EC_gen");
  std::unique_ptr<BIO, decltype(&BIO_free)> b(BIO_new(BIO_s_mem()), &BIO_free);
  int ok = sec1 ? PEM_write_bio_PrivateKey_traditional(b.get(), k, nullptr, nullptr, 0, nullptr, nullptr)
                : PEM_write_bio_PrivateKey(b.get(), k, nullptr, nullptr, 0, nullptr, nullptr);
  if (!ok) throw std::runtime_error("PEM_write key");
  if (out) *out = k;
  else EVP_PKEY_free(k);
  return bio_string(b.get());
}

struct cert_pair {
  std::string chain_pem;
  std::string key_pem;
  long not_after = 0;  ///< unix seconds
};

/// A self-signed certificate for `names`, valid from now for `days` days.
inline cert_pair make_cert(const std::vector<std::string>& names, int days = 90) {
  EVP_PKEY* k = nullptr;
  cert_pair cp;
  cp.key_pem = make_key_pem("P-256", false, &k);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(k, &EVP_PKEY_free);
  std::unique_ptr<X509, decltype(&X509_free)> x(X509_new(), &X509_free);
  X509_set_version(x.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x.get()), std::rand());
  const long now = static_cast<long>(::time(nullptr));
  ASN1_TIME_set(X509_getm_notBefore(x.get()), now);
  ASN1_TIME_set(X509_getm_notAfter(x.get()), now + days * 86400L);
  cp.not_after = now + days * 86400L;
  X509_NAME* n = X509_get_subject_name(x.get());
  X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(names.at(0).c_str()), -1, -1, 0);
  X509_set_issuer_name(x.get(), n);
  X509_set_pubkey(x.get(), key.get());
  std::string san;
  for (auto& nm : names) san += (san.empty() ? "DNS:" : ",DNS:") + nm;
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, x.get(), x.get(), nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, san.c_str());
  X509_add_ext(x.get(), ext, -1);
  X509_EXTENSION_free(ext);
  if (!X509_sign(x.get(), key.get(), EVP_sha256())) throw std::runtime_error("X509_sign");
  std::unique_ptr<BIO, decltype(&BIO_free)> b(BIO_new(BIO_s_mem()), &BIO_free);
  PEM_write_bio_X509(b.get(), x.get());
  cp.chain_pem = bio_string(b.get());
  return cp;
}

inline letsencrypt::store::cert_record cert_record_for(const std::vector<std::string>& names) {
  auto cp = make_cert(names);
  letsencrypt::store::cert_record r;
  r.names = names;
  r.chain_pem = cp.chain_pem;
  r.key_pem = cp.key_pem;
  r.not_after = letsencrypt::store::unix_seconds(std::chrono::seconds(cp.not_after));
  r.ari_start = r.not_after - std::chrono::hours(24 * 30);
  r.ari_end = r.not_after - std::chrono::hours(24 * 28);
  r.ari_cert_id = "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE";
  return r;
}

}  // namespace store_test
