// test_certs: a throwaway CA made at run time, and leaf certificates it signs for any DNS
// names (wildcards too) or IP addresses, as OpenSSL objects, PEM text and PEM files.
#pragma once

#include <openssl/provider.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "letsencrypt/tls/handles.hpp"

namespace letsencrypt::testing {

enum class key_kind { ec_p256, ec_p384, ec_p521, rsa2048 };

/// A leaf certificate and its key. chain_pem is the leaf followed by the CA, as a server
/// sends it; cert_pem is the leaf alone. key_pem is PKCS#8.
struct issued_cert {
  tls::x509_ptr cert;
  tls::evp_pkey_ptr key;
  std::string cert_pem;
  std::string chain_pem;
  std::string key_pem;
};

struct issue_options {
  key_kind kind = key_kind::ec_p256;
  /// Validity window relative to now; a negative end makes an expired certificate.
  std::chrono::seconds not_before = std::chrono::hours(-1);
  std::chrono::seconds not_after = std::chrono::hours(24);
  /// The subject CN; the first name when empty.
  std::string common_name;
  /// Certify this key (up-ref'd) instead of a new one of `kind` (e.g. a CSR's key).
  EVP_PKEY* key = nullptr;
  /// For an EC key: the certificate encodes its public point compressed, while the key (and
  /// key_pem) keeps the point uncompressed, as OpenSSL writes keys by default.
  bool compressed_point = false;
};

/// Throws std::runtime_error when OpenSSL fails (test setup only). Owns a temporary
/// directory (created on first write, removed by the destructor).
class test_certs {
 public:
  explicit test_certs(std::string ca_name = "letsencrypt test CA", key_kind ca_kind = key_kind::ec_p256);
  ~test_certs();
  test_certs(const test_certs&) = delete;
  test_certs& operator=(const test_certs&) = delete;

  X509* ca_cert() const noexcept { return ca_.get(); }
  EVP_PKEY* ca_key() const noexcept { return ca_key_.get(); }
  const std::string& ca_pem() const noexcept { return ca_pem_; }

  /// A leaf for `names` (DNS names such as "a.test" or "*.b.test", or IPv4/IPv6 literals,
  /// which become IP SANs) signed by this CA.
  issued_cert issue(const std::vector<std::string>& names, issue_options o = {}) const;
  issued_cert issue(const std::vector<std::string>& names, key_kind kind) const {
    issue_options o;
    o.kind = kind;
    return issue(names, o);
  }
  /// A self-signed leaf that no CA vouches for.
  static issued_cert self_signed(const std::vector<std::string>& names, key_kind kind = key_kind::ec_p256);

  /// The temporary directory (created on first call).
  const std::filesystem::path& dir();
  /// Writes the CA certificate as <dir>/ca.pem and returns its path.
  std::filesystem::path write_ca();
  /// Writes <dir>/<base>.crt (the chain) and <dir>/<base>.key; returns {crt, key}.
  std::pair<std::filesystem::path, std::filesystem::path> write(const issued_cert& c, const std::string& base);
  /// Writes `text` to <dir>/<name> and returns the path.
  std::filesystem::path write_file(const std::string& name, const std::string& text);

  /// A server SSL_CTX (TLS 1.2+) serving `c` with its chain.
  static tls::ssl_ctx_ptr server_context(const issued_cert& c);
  /// A server SSL_CTX from tls::make_server_context (the library's context and TLS
  /// settings) serving `c`.
  static tls::ssl_ctx_ptr library_server_context(const issued_cert& c);
  /// A client SSL_CTX trusting only this CA, verifying the peer.
  tls::ssl_ctx_ptr client_context() const;

 private:
  tls::x509_ptr ca_;
  tls::evp_pkey_ptr ca_key_;
  std::string ca_pem_;
  std::filesystem::path dir_;
};

using evp_pkey_ctx_ptr = std::unique_ptr<EVP_PKEY_CTX, tls::detail::free_fn<EVP_PKEY_CTX, EVP_PKEY_CTX_free>>;

/// A library context with OpenSSL's own default provider, for comparing the library's
/// context with; unloaded and freed by the destructor.
struct openssl_reference_context {
  std::unique_ptr<OSSL_LIB_CTX, tls::detail::free_fn<OSSL_LIB_CTX, OSSL_LIB_CTX_free>> ctx{OSSL_LIB_CTX_new()};
  OSSL_PROVIDER* provider = OSSL_PROVIDER_load(ctx.get(), "default");
  openssl_reference_context() = default;
  openssl_reference_context(const openssl_reference_context&) = delete;
  openssl_reference_context& operator=(const openssl_reference_context&) = delete;
  ~openssl_reference_context() { OSSL_PROVIDER_unload(provider); }
};

/// The DER encoding of `c`; throws std::runtime_error when it cannot be encoded.
std::string der_of(X509* c);
/// The unencrypted PKCS#8 DER of `k`; throws std::runtime_error when it cannot be encoded.
std::string pkcs8_der_of(EVP_PKEY* k);

/// The name of the provider `k` lives in ("default", "letsencrypt-default-filtered"...), or
/// empty for a null or legacy key.
std::string provider_name(EVP_PKEY* k);

/// `k` as traditional PEM ("BEGIN RSA PRIVATE KEY", "BEGIN EC PRIVATE KEY"); throws
/// std::runtime_error when OpenSSL cannot write it.
std::string traditional_key_pem(EVP_PKEY* k);
/// `k` as PKCS#8 PEM encrypted with AES-128-CBC under `passphrase`; throws likewise.
std::string encrypted_key_pem(EVP_PKEY* k, const std::string& passphrase);

}  // namespace letsencrypt::testing
