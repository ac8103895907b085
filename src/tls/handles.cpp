#include "letsencrypt/tls/handles.hpp"

#include <openssl/err.h>
#include <openssl/pem.h>

#include <climits>
#include <ctime>

#include "letsencrypt/tls/error.hpp"

namespace letsencrypt::tls {
namespace {

result<bio_ptr> memory_source(std::string_view text) {
  if (text.size() > static_cast<std::size_t>(INT_MAX)) return errc::message_too_large;
  bio_ptr b(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
  if (!b) return tls_error();
  return b;
}

// Whether a loop of PEM reads stopped at the clean end of the text (no further BEGIN line)
// rather than at a block that does not decode. Clears the error queue either way.
bool pem_ended_cleanly() noexcept {
  const unsigned long e = ERR_peek_last_error();
  ERR_clear_error();
  return ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
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
  // The loop ends at the first failure: the end of the text, or a block that does not parse.
  if (!pem_ended_cleanly() || out.empty()) return tls_errc::bad_pem;
  return out;
}

result<std::vector<std::string>> pem_blocks_der(std::string_view pem, std::string_view label) {
  LE_TRY(b, memory_source(pem));
  std::vector<std::string> out;
  for (;;) {
    char* name = nullptr;
    char* header = nullptr;
    unsigned char* data = nullptr;
    long len = 0;
    // Secure flag: key text passes through here, and OpenSSL then cleanses its own buffers.
    const int ok = PEM_read_bio_ex(b.get(), &name, &header, &data, &len, PEM_FLAG_SECURE | PEM_FLAG_EAY_COMPATIBLE);
    if (ok == 1 && name && std::string_view(name) == label && len > 0)
      out.emplace_back(reinterpret_cast<const char*>(data), static_cast<std::size_t>(len));
    OPENSSL_secure_free(name);
    OPENSSL_secure_free(header);
    if (data) OPENSSL_secure_clear_free(data, static_cast<std::size_t>(len));
    if (ok != 1) break;
  }
  // The loop ends at the first failure: the end of the text, or a block that does not decode.
  if (!pem_ended_cleanly() || out.empty()) {
    for (auto& d : out) OPENSSL_cleanse(d.data(), d.size());
    return tls_errc::bad_pem;
  }
  return out;
}

namespace {

// One DER element: tag, class, whether constructed, and its contents. `p` moves past it.
struct der_element {
  int tag = 0;
  int cls = 0;
  bool constructed = false;
  const unsigned char* contents = nullptr;
  long length = 0;
  const unsigned char* start = nullptr;  // of the header
};

bool next_element(const unsigned char*& p, const unsigned char* end, der_element& e) noexcept {
  if (p >= end) return false;
  e.start = p;
  const unsigned char* q = p;
  const int r = ASN1_get_object(&q, &e.length, &e.tag, &e.cls, end - p);
  // 0x80: a malformed header or a length past `end`; 0x21: an indefinite length (not DER).
  if ((r & 0x80) != 0 || r == 0x21) return false;
  e.constructed = (r & V_ASN1_CONSTRUCTED) != 0;
  e.contents = q;
  if (e.length < 0 || e.length > end - q) return false;
  p = q + e.length;
  return true;
}

result<std::chrono::system_clock::time_point> time_of(const der_element& e) {
  if (e.cls != V_ASN1_UNIVERSAL || (e.tag != V_ASN1_UTCTIME && e.tag != V_ASN1_GENERALIZEDTIME)) return tls_errc::bad_pem;
  const unsigned char* q = e.start;
  std::unique_ptr<ASN1_TIME, decltype(&ASN1_TIME_free)> t(d2i_ASN1_TIME(nullptr, &q, e.contents + e.length - e.start),
                                                         &ASN1_TIME_free);
  auto tp = to_time_point(t.get());
  if (!tp) {
    ERR_clear_error();
    return tls_errc::bad_pem;
  }
  return tp;
}

using validity = std::pair<std::chrono::system_clock::time_point, std::chrono::system_clock::time_point>;

result<validity> read_validity(std::string_view der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  const unsigned char* end = p + der.size();
  der_element cert, tbs, e;
  // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL,
  //   serialNumber INTEGER, signature AlgorithmIdentifier, issuer Name, validity SEQUENCE {
  //   notBefore Time, notAfter Time }, ... }, ... }
  if (!next_element(p, end, cert) || cert.tag != V_ASN1_SEQUENCE || !cert.constructed) return tls_errc::bad_pem;
  p = cert.contents;
  end = cert.contents + cert.length;
  if (!next_element(p, end, tbs) || tbs.tag != V_ASN1_SEQUENCE || !tbs.constructed) return tls_errc::bad_pem;
  p = tbs.contents;
  end = tbs.contents + tbs.length;
  if (!next_element(p, end, e)) return tls_errc::bad_pem;
  if (e.cls == V_ASN1_CONTEXT_SPECIFIC && e.tag == 0 && !next_element(p, end, e)) return tls_errc::bad_pem;
  if (e.cls != V_ASN1_UNIVERSAL || e.tag != V_ASN1_INTEGER) return tls_errc::bad_pem;  // serialNumber
  if (!next_element(p, end, e) || e.tag != V_ASN1_SEQUENCE) return tls_errc::bad_pem;  // signature
  if (!next_element(p, end, e) || e.tag != V_ASN1_SEQUENCE) return tls_errc::bad_pem;  // issuer
  if (!next_element(p, end, e) || e.tag != V_ASN1_SEQUENCE || !e.constructed) return tls_errc::bad_pem;
  const unsigned char* v = e.contents;
  const unsigned char* v_end = e.contents + e.length;
  der_element nb, na;
  if (!next_element(v, v_end, nb) || !next_element(v, v_end, na) || v != v_end) return tls_errc::bad_pem;
  LE_TRY(not_before, time_of(nb));
  LE_TRY(not_after, time_of(na));
  return validity{not_before, not_after};
}

}  // namespace

result<std::chrono::system_clock::time_point> to_time_point(const ASN1_TIME* t) {
  std::tm tm{};
  if (!t || ASN1_TIME_to_tm(t, &tm) != 1) return errc::invalid_argument;
  // system_clock counts nanoseconds in 64 bits (to 2262).
  if (tm.tm_year + 1900 >= 2200) return std::chrono::system_clock::from_time_t(7258118400);  // 2200-01-01
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

result<std::pair<std::chrono::system_clock::time_point, std::chrono::system_clock::time_point>>
certificate_validity(std::string_view der) {
  auto v = read_validity(der);
  if (!v) ERR_clear_error();  // ASN1_get_object queues an error for a bad header
  return v;
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
