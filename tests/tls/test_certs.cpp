#include "test_certs.hpp"

#include <arpa/inet.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <atomic>
#include <fstream>
#include <stdexcept>

#include "letsencrypt/tls/server_context.hpp"

namespace letsencrypt::testing {
namespace {

[[noreturn]] void fail(const char* what) {
  char buf[256] = {};
  ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
  ERR_clear_error();
  throw std::runtime_error(std::string("test_certs: ") + what + ": " + buf);
}

tls::evp_pkey_ptr make_key(key_kind k) {
  if (k == key_kind::ec_p384 || k == key_kind::ec_p521) {
    tls::evp_pkey_ptr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", k == key_kind::ec_p384 ? "P-384" : "P-521"));
    if (!key) fail("key generation");
    return key;
  }
  auto r = k == key_kind::ec_p256 ? tls::generate_ec_p256_key() : tls::generate_rsa_key(2048);
  if (!r) fail("key generation");
  return std::move(r).value();
}

bool is_ip(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

void add_ext(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (!ext) fail("extension");
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

tls::x509_ptr make_cert(EVP_PKEY* subject_key, const std::string& cn, X509* issuer, EVP_PKEY* issuer_key,
                        bool ca, const std::vector<std::string>& names, std::chrono::seconds nb,
                        std::chrono::seconds na) {
  tls::x509_ptr c(X509_new());
  if (!c) fail("X509_new");
  X509_set_version(c.get(), 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(c.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(c.get()), static_cast<long>(nb.count()));
  X509_gmtime_adj(X509_getm_notAfter(c.get()), static_cast<long>(na.count()));
  X509_set_pubkey(c.get(), subject_key);
  X509_NAME* name = X509_get_subject_name(c.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(c.get(), issuer ? X509_get_subject_name(issuer) : name);
  X509* iss = issuer ? issuer : c.get();
  add_ext(c.get(), iss, NID_subject_key_identifier, "hash");
  add_ext(c.get(), iss, NID_authority_key_identifier, "keyid:always");
  if (ca) {
    add_ext(c.get(), iss, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(c.get(), iss, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_ext(c.get(), iss, NID_basic_constraints, "critical,CA:FALSE");
    add_ext(c.get(), iss, NID_key_usage, "critical,digitalSignature,keyEncipherment");
    add_ext(c.get(), iss, NID_ext_key_usage, "serverAuth,clientAuth");
    std::string san;
    for (const auto& n : names) {
      if (!san.empty()) san += ",";
      san += (is_ip(n) ? "IP:" : "DNS:") + n;
    }
    if (!san.empty()) add_ext(c.get(), iss, NID_subject_alt_name, san);
  }
  if (X509_sign(c.get(), issuer_key, EVP_sha256()) <= 0) fail("X509_sign");
  return c;
}

issued_cert finish(tls::x509_ptr cert, tls::evp_pkey_ptr key, const std::string& ca_pem) {
  issued_cert out;
  auto cp = tls::to_pem(cert.get());
  auto kp = tls::to_pem(key.get());
  if (!cp || !kp) fail("PEM");
  out.cert_pem = *cp;
  out.chain_pem = *cp + ca_pem;
  out.key_pem = *kp;
  out.cert = std::move(cert);
  out.key = std::move(key);
  return out;
}

}  // namespace

test_certs::test_certs(std::string ca_name, key_kind ca_kind) {
  ca_key_ = make_key(ca_kind);
  ca_ = make_cert(ca_key_.get(), ca_name, nullptr, ca_key_.get(), true, {}, std::chrono::hours(-1),
                  std::chrono::hours(24 * 30));
  auto p = tls::to_pem(ca_.get());
  if (!p) fail("PEM");
  ca_pem_ = *p;
}

test_certs::~test_certs() {
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

issued_cert test_certs::issue(const std::vector<std::string>& names, issue_options o) const {
  auto key = o.key ? tls::up_ref(o.key) : make_key(o.kind);
  std::string cn = !o.common_name.empty() ? o.common_name : (names.empty() ? "leaf" : names.front());
  auto set_format = [&](const char* format) {
    if (EVP_PKEY_set_utf8_string_param(key.get(), OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, format) != 1)
      fail("EVP_PKEY_set_utf8_string_param(point format)");
  };
  if (o.compressed_point) set_format(OSSL_PKEY_EC_POINT_CONVERSION_FORMAT_COMPRESSED);
  auto cert = make_cert(key.get(), cn, ca_.get(), ca_key_.get(), false, names, o.not_before, o.not_after);
  if (o.compressed_point) set_format(OSSL_PKEY_EC_POINT_CONVERSION_FORMAT_UNCOMPRESSED);
  return finish(std::move(cert), std::move(key), ca_pem_);
}

issued_cert test_certs::self_signed(const std::vector<std::string>& names, key_kind kind) {
  auto key = make_key(kind);
  std::string cn = names.empty() ? "self-signed" : names.front();
  auto cert = make_cert(key.get(), cn, nullptr, key.get(), false, names, std::chrono::hours(-1),
                        std::chrono::hours(24));
  auto out = finish(std::move(cert), std::move(key), "");
  return out;
}

const std::filesystem::path& test_certs::dir() {
  if (dir_.empty()) {
    static std::atomic<unsigned> counter{0};
    auto base = std::filesystem::temp_directory_path();
    for (;;) {
      auto p = base / ("le-test-certs-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
      if (std::filesystem::create_directory(p)) {
        dir_ = p;
        break;
      }
    }
  }
  return dir_;
}

std::filesystem::path test_certs::write_file(const std::string& name, const std::string& text) {
  auto p = dir() / name;
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << text;
  if (!f) throw std::runtime_error("test_certs: cannot write " + p.string());
  return p;
}

std::filesystem::path test_certs::write_ca() { return write_file("ca.pem", ca_pem_); }

std::pair<std::filesystem::path, std::filesystem::path> test_certs::write(const issued_cert& c,
                                                                          const std::string& base) {
  auto crt = write_file(base + ".crt", c.chain_pem);
  auto key = write_file(base + ".key", c.key_pem);
  std::filesystem::permissions(key, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  return {crt, key};
}

tls::ssl_ctx_ptr test_certs::server_context(const issued_cert& c) {
  tls::ssl_ctx_ptr ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) fail("SSL_CTX_new");
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  if (SSL_CTX_use_certificate(ctx.get(), c.cert.get()) != 1) fail("use_certificate");
  if (SSL_CTX_use_PrivateKey(ctx.get(), c.key.get()) != 1) fail("use_PrivateKey");
  auto chain = tls::load_certificate_chain_pem(c.chain_pem);
  if (chain && chain->size() > 1) {
    for (std::size_t i = 1; i < chain->size(); ++i) {
      if (SSL_CTX_add1_chain_cert(ctx.get(), (*chain)[i].get()) != 1) fail("add1_chain_cert");
    }
  }
  return ctx;
}

tls::ssl_ctx_ptr test_certs::library_server_context(const issued_cert& c) {
  auto made = tls::make_server_context();
  if (!made) throw std::runtime_error("test_certs: make_server_context: " + made.error().message());
  tls::ssl_ctx_ptr ctx = std::move(*made);
  if (SSL_CTX_use_certificate(ctx.get(), c.cert.get()) != 1) fail("use_certificate");
  if (SSL_CTX_use_PrivateKey(ctx.get(), c.key.get()) != 1) fail("use_PrivateKey");
  return ctx;
}

tls::ssl_ctx_ptr test_certs::client_context() const {
  tls::ssl_ctx_ptr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) fail("SSL_CTX_new");
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx.get()), ca_.get());
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  return ctx;
}

std::string provider_name(EVP_PKEY* k) {
  const OSSL_PROVIDER* p = k ? EVP_PKEY_get0_provider(k) : nullptr;
  return p ? OSSL_PROVIDER_get0_name(p) : "";
}

std::string der_of(X509* c) {
  unsigned char* der = nullptr;
  const int n = i2d_X509(c, &der);
  if (n <= 0) throw std::runtime_error("i2d_X509 failed");
  std::string out(reinterpret_cast<char*>(der), static_cast<std::size_t>(n));
  OPENSSL_free(der);
  return out;
}

std::string pkcs8_der_of(EVP_PKEY* k) {
  std::unique_ptr<PKCS8_PRIV_KEY_INFO, decltype(&PKCS8_PRIV_KEY_INFO_free)> info(EVP_PKEY2PKCS8(k),
                                                                                  &PKCS8_PRIV_KEY_INFO_free);
  unsigned char* der = nullptr;
  const int n = info ? i2d_PKCS8_PRIV_KEY_INFO(info.get(), &der) : -1;
  if (n <= 0) throw std::runtime_error("i2d_PKCS8_PRIV_KEY_INFO failed");
  std::string out(reinterpret_cast<char*>(der), static_cast<std::size_t>(n));
  OPENSSL_clear_free(der, static_cast<std::size_t>(n));
  return out;
}

namespace {

// What `write` puts into a memory BIO, as text; throws when it fails.
template <class Write>
std::string key_pem(Write write) {
  tls::bio_ptr b(BIO_new(BIO_s_mem()));
  if (!b || write(b.get()) != 1) throw std::runtime_error("writing a key as PEM failed");
  char* data = nullptr;
  const long n = BIO_get_mem_data(b.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

}  // namespace

std::string traditional_key_pem(EVP_PKEY* k) {
  return key_pem([k](BIO* b) { return PEM_write_bio_PrivateKey_traditional(b, k, nullptr, nullptr, 0, nullptr, nullptr); });
}

std::string encrypted_key_pem(EVP_PKEY* k, const std::string& passphrase) {
  return key_pem([&](BIO* b) {
    return PEM_write_bio_PKCS8PrivateKey(b, k, EVP_aes_128_cbc(), nullptr, 0, nullptr, const_cast<char*>(passphrase.c_str()));
  });
}

}  // namespace letsencrypt::testing
