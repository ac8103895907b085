#include "letsencrypt/tls/handles.hpp"

#include <openssl/err.h>
#include <openssl/pem.h>

#include <climits>

#include "letsencrypt/tls/error.hpp"

namespace letsencrypt::tls {
namespace {

result<bio_ptr> memory_source(std::string_view text) {
  if (text.size() > static_cast<std::size_t>(INT_MAX)) return errc::message_too_large;
  bio_ptr b(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
  if (!b) return tls_error();
  return b;
}

result<std::string> drain(BIO* b) {
  char* data = nullptr;
  long n = BIO_get_mem_data(b, &data);
  if (n < 0 || (n > 0 && !data)) return tls_error();
  return std::string(data, static_cast<std::size_t>(n));
}

}  // namespace

x509_ptr up_ref(X509* p) noexcept {
  if (p && X509_up_ref(p) == 1) return x509_ptr(p);
  return {};
}

evp_pkey_ptr up_ref(EVP_PKEY* p) noexcept {
  if (p && EVP_PKEY_up_ref(p) == 1) return evp_pkey_ptr(p);
  return {};
}

ssl_ctx_ptr up_ref(SSL_CTX* p) noexcept {
  if (p && SSL_CTX_up_ref(p) == 1) return ssl_ctx_ptr(p);
  return {};
}

std::vector<x509_ptr> copy_chain(std::span<const x509_ptr> chain) {
  std::vector<x509_ptr> out;
  out.reserve(chain.size());
  for (const auto& c : chain) out.push_back(up_ref(c.get()));
  return out;
}

result<x509_stack_ptr> to_stack(std::span<const x509_ptr> chain) {
  x509_stack_ptr st(sk_X509_new_null());
  if (!st) return tls_error();
  for (const auto& c : chain) {
    x509_ptr ref = up_ref(c.get());
    if (!ref) return errc::invalid_argument;
    if (sk_X509_push(st.get(), ref.get()) <= 0) return tls_error();
    (void)ref.release();  // owned by the stack now
  }
  return st;
}

result<std::vector<x509_ptr>> load_certificate_chain_pem(std::string_view pem) {
  ERR_clear_error();
  LE_TRY(b, memory_source(pem));
  std::vector<x509_ptr> out;
  for (;;) {
    x509_ptr c(PEM_read_bio_X509(b.get(), nullptr, nullptr, nullptr));
    if (!c) break;
    out.push_back(std::move(c));
  }
  // The loop ends at the first failure: either the clean end of the text (PEM_R_NO_START_LINE
  // after at least one block) or a block that does not parse.
  unsigned long e = ERR_peek_last_error();
  bool clean_end = ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
  ERR_clear_error();
  if (out.empty() || !clean_end) return tls_errc::bad_pem;
  return out;
}

result<evp_pkey_ptr> load_private_key_pem(std::string_view pem) {
  ERR_clear_error();
  LE_TRY(b, memory_source(pem));
  // A null password callback would prompt on the terminal for encrypted keys; refuse instead.
  auto no_password = [](char*, int, int, void*) -> int { return -1; };
  evp_pkey_ptr k(PEM_read_bio_PrivateKey(b.get(), nullptr, no_password, nullptr));
  ERR_clear_error();
  if (!k) return tls_errc::bad_pem;
  return k;
}

result<std::string> to_pem(X509* cert) {
  if (!cert) return errc::invalid_argument;
  ERR_clear_error();
  bio_ptr b(BIO_new(BIO_s_mem()));
  if (!b || PEM_write_bio_X509(b.get(), cert) != 1) return tls_error();
  return drain(b.get());
}

result<std::string> to_pem(std::span<const x509_ptr> chain) {
  std::string out;
  for (const auto& c : chain) {
    LE_TRY(one, to_pem(c.get()));
    out += one;
  }
  return out;
}

result<std::string> to_pem(EVP_PKEY* key) {
  if (!key) return errc::invalid_argument;
  ERR_clear_error();
  bio_ptr b(BIO_new(BIO_s_mem()));
  if (!b || PEM_write_bio_PKCS8PrivateKey(b.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1)
    return tls_error();
  return drain(b.get());
}

result<std::string> public_key_pem(EVP_PKEY* key) {
  if (!key) return errc::invalid_argument;
  ERR_clear_error();
  bio_ptr b(BIO_new(BIO_s_mem()));
  if (!b || PEM_write_bio_PUBKEY(b.get(), key) != 1) return tls_error();
  return drain(b.get());
}

result<evp_pkey_ptr> generate_ec_p256_key() {
  ERR_clear_error();
  evp_pkey_ptr k(EVP_EC_gen("P-256"));
  if (!k) return tls_error();
  return k;
}

result<evp_pkey_ptr> generate_rsa_key(unsigned bits) {
  if (bits < 2048 || bits > 16384) return errc::invalid_argument;
  ERR_clear_error();
  evp_pkey_ptr k(EVP_RSA_gen(bits));
  if (!k) return tls_error();
  return k;
}

}  // namespace letsencrypt::tls
