#include "letsencrypt/acme/csr.hpp"

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "letsencrypt/acme/error.hpp"
#include "pem_no_prompt.hpp"

namespace letsencrypt::acme {
namespace {

struct x509_req_deleter {
  void operator()(X509_REQ* r) const noexcept { X509_REQ_free(r); }
};
struct x509_deleter {
  void operator()(X509* x) const noexcept { X509_free(x); }
};
struct bio_deleter {
  void operator()(BIO* b) const noexcept { BIO_free(b); }
};
struct gens_deleter {
  void operator()(GENERAL_NAMES* g) const noexcept { GENERAL_NAMES_free(g); }
};
struct exts_deleter {
  void operator()(STACK_OF(X509_EXTENSION) * s) const noexcept { sk_X509_EXTENSION_pop_free(s, X509_EXTENSION_free); }
};
struct aki_deleter {
  void operator()(AUTHORITY_KEYID* a) const noexcept { AUTHORITY_KEYID_free(a); }
};

}  // namespace

std::string csr_bundle::der_b64url() const { return base64url(der); }

result<csr_bundle> make_csr(std::span<const std::string> names, cert_key_type type) {
  if (names.empty()) return letsencrypt::errc::invalid_argument;
  for (const auto& n : names)
    if (n.empty() || n.size() > 253 || n.find('\0') != std::string::npos) return letsencrypt::errc::invalid_argument;
  csr_bundle b;
  b.key.reset(type == cert_key_type::p256 ? EVP_EC_gen("P-256") : EVP_RSA_gen(2048));
  if (!b.key) return errc::key_error;
  std::unique_ptr<X509_REQ, x509_req_deleter> req(X509_REQ_new());
  if (!req || X509_REQ_set_version(req.get(), 0) != 1) return errc::key_error;
  // The CN must fit in 64 bytes (RFC 5280 ub-common-name); longer names live in the SAN only.
  if (names.front().size() <= 64) {
    X509_NAME* subj = X509_REQ_get_subject_name(req.get());
    if (X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(names.front().c_str()),
                                   -1, -1, 0) != 1)
      return letsencrypt::errc::invalid_argument;
  }
  std::unique_ptr<GENERAL_NAMES, gens_deleter> gens(GENERAL_NAMES_new());
  if (!gens) return errc::key_error;
  for (const auto& n : names) {
    GENERAL_NAME* g = GENERAL_NAME_new();
    ASN1_IA5STRING* s = ASN1_IA5STRING_new();
    if (!g || !s || ASN1_STRING_set(s, n.data(), static_cast<int>(n.size())) != 1) {
      GENERAL_NAME_free(g);
      ASN1_IA5STRING_free(s);
      return errc::key_error;
    }
    GENERAL_NAME_set0_value(g, GEN_DNS, s);
    if (sk_GENERAL_NAME_push(gens.get(), g) == 0) {
      GENERAL_NAME_free(g);
      return errc::key_error;
    }
  }
  std::unique_ptr<STACK_OF(X509_EXTENSION), exts_deleter> exts(sk_X509_EXTENSION_new_null());
  X509_EXTENSION* ext = X509V3_EXT_i2d(NID_subject_alt_name, 0, gens.get());
  if (!exts || !ext) {
    X509_EXTENSION_free(ext);
    return errc::key_error;
  }
  if (sk_X509_EXTENSION_push(exts.get(), ext) == 0) {
    X509_EXTENSION_free(ext);
    return errc::key_error;
  }
  if (X509_REQ_add_extensions(req.get(), exts.get()) != 1 || X509_REQ_set_pubkey(req.get(), b.key.get()) != 1 ||
      X509_REQ_sign(req.get(), b.key.get(), EVP_sha256()) <= 0)
    return errc::key_error;
  int len = i2d_X509_REQ(req.get(), nullptr);
  if (len <= 0) return errc::key_error;
  b.der.resize(static_cast<std::size_t>(len));
  auto* p = reinterpret_cast<unsigned char*>(b.der.data());
  if (i2d_X509_REQ(req.get(), &p) != len) return errc::key_error;
  std::unique_ptr<BIO, bio_deleter> bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), b.key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1)
    return errc::key_error;
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  b.key_pem.assign(data, static_cast<std::size_t>(n));
  return b;
}

result<std::string> ari_certificate_id(std::string_view cert_pem) {
  std::unique_ptr<BIO, bio_deleter> bio(BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size())));
  if (!bio) return errc::key_error;
  std::unique_ptr<X509, x509_deleter> cert(
      PEM_read_bio_X509(bio.get(), nullptr, letsencrypt::detail::refuse_pem_passphrase, nullptr));
  if (!cert) return letsencrypt::errc::invalid_argument;
  int crit = 0;
  std::unique_ptr<AUTHORITY_KEYID, aki_deleter> aki(
      static_cast<AUTHORITY_KEYID*>(X509_get_ext_d2i(cert.get(), NID_authority_key_identifier, &crit, nullptr)));
  if (!aki || !aki->keyid || aki->keyid->length <= 0) return errc::bad_response;
  const ASN1_INTEGER* serial = X509_get0_serialNumber(cert.get());
  // The DER content octets of the serial: a positive INTEGER with a leading zero byte when
  // its top bit is set. Encoding the INTEGER and stripping tag and length gives exactly that.
  int len = i2d_ASN1_INTEGER(serial, nullptr);
  if (len <= 2) return errc::bad_response;
  std::string der(static_cast<std::size_t>(len), '\0');
  auto* p = reinterpret_cast<unsigned char*>(der.data());
  i2d_ASN1_INTEGER(serial, &p);
  std::size_t hdr = 2;
  auto l0 = static_cast<unsigned char>(der[1]);
  if (l0 & 0x80) hdr += l0 & 0x7f;
  if (hdr >= der.size()) return errc::bad_response;
  std::string id = base64url(std::string_view(reinterpret_cast<const char*>(aki->keyid->data),
                                              static_cast<std::size_t>(aki->keyid->length)));
  id.push_back('.');
  id += base64url(std::string_view(der).substr(hdr));
  return id;
}

std::vector<std::string> split_pem_chain(std::string_view pem) {
  constexpr std::string_view begin = "-----BEGIN CERTIFICATE-----";
  constexpr std::string_view end = "-----END CERTIFICATE-----";
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (true) {
    auto b = pem.find(begin, pos);
    if (b == std::string_view::npos) break;
    auto e = pem.find(end, b);
    if (e == std::string_view::npos) break;
    e += end.size();
    std::string block(pem.substr(b, e - b));
    block.push_back('\n');
    out.push_back(std::move(block));
    pos = e;
  }
  return out;
}

}  // namespace letsencrypt::acme
