#include "letsencrypt/tls/handles.hpp"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/params.h>
#include <openssl/pem.h>

#include <bit>
#include <climits>
#include <ctime>
#include <optional>

#include "letsencrypt/tls/error.hpp"
#include "tls/ec_keymgmt.hpp"
#include "tls/ec_pkcs8.hpp"
#include "pem_no_prompt.hpp"
#include "tls/libctx.hpp"

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

// `x`, or when its public key is of a type whose decoder the library context leaves out,
// the same certificate parsed in OpenSSL's default context, from `der` or, when that is
// empty, from x's own encoding. A malformed key of the types it decodes would fail there
// too: such a certificate is returned without a key, as d2i_X509 returns it.
x509_ptr with_public_key(x509_ptr x, std::string_view der = {}) {
  if (!x || X509_get0_pubkey(x.get()) != nullptr) return x;
  ERR_clear_error();
  ASN1_OBJECT* algorithm = nullptr;
  if (X509_PUBKEY_get0_param(&algorithm, nullptr, nullptr, nullptr, X509_get_X509_PUBKEY(x.get())) == 1 &&
      detail::decodes_public_key(OBJ_obj2nid(algorithm)))
    return x;
  std::string encoded;
  if (der.empty()) {
    unsigned char* buf = nullptr;
    const int n = i2d_X509(x.get(), &buf);
    if (n <= 0) {
      ERR_clear_error();
      return x;
    }
    encoded.assign(reinterpret_cast<const char*>(buf), static_cast<std::size_t>(n));
    OPENSSL_free(buf);
    der = encoded;
  }
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  x509_ptr again(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  ERR_clear_error();
  return again ? std::move(again) : std::move(x);
}

// A key pair of `type` made in `ctx` (null: OpenSSL's default context) from `params`; null
// when OpenSSL refuses them.
evp_pkey_ptr keypair_from_params(OSSL_LIB_CTX* ctx, const char* type, OSSL_PARAM* params) noexcept {
  EVP_PKEY* out = nullptr;
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> pctx(EVP_PKEY_CTX_new_from_name(ctx, type, nullptr),
                                                                  &EVP_PKEY_CTX_free);
  if (pctx && EVP_PKEY_fromdata_init(pctx.get()) == 1) (void)EVP_PKEY_fromdata(pctx.get(), &out, EVP_PKEY_KEYPAIR, params);
  return evp_pkey_ptr(out);
}

// `k` made again in the library context, so that certificates parsed there compare with it,
// and a server context there signs with it, without OpenSSL keeping a copy of it in each
// context. `k` itself when there is no library context or it does not export (it then
// works as before). The exported parameters hold the private key: cleansed before freed.
evp_pkey_ptr into_library_context(evp_pkey_ptr k) {
  OSSL_LIB_CTX* const ctx = detail::library_context();
  if (!ctx || !k) return k;
  const char* type = EVP_PKEY_get0_type_name(k.get());
  OSSL_PARAM* params = nullptr;
  if (!type || EVP_PKEY_todata(k.get(), EVP_PKEY_KEYPAIR, &params) != 1) {
    ERR_clear_error();
    return k;
  }
  evp_pkey_ptr out = keypair_from_params(ctx, type, params);
  for (OSSL_PARAM* p = params; p->key != nullptr; ++p)
    if (p->data) OPENSSL_cleanse(p->data, p->data_size);
  OSSL_PARAM_free(params);
  ERR_clear_error();
  return out ? std::move(out) : std::move(k);
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

result<x509_ptr> parse_certificate_der(std::string_view der) {
  if (der.empty() || der.size() > static_cast<std::size_t>(LONG_MAX)) return tls_errc::bad_pem;
  ERR_clear_error();
  const auto* begin = reinterpret_cast<const unsigned char*>(der.data());
  const auto* p = begin;
  X509* raw = nullptr;
  if (OSSL_LIB_CTX* ctx = detail::library_context()) {
    raw = X509_new_ex(ctx, nullptr);
    if (!raw) return tls_error();
  }
  // On failure d2i_X509 frees what `raw` held and clears it.
  x509_ptr x(d2i_X509(&raw, &p, static_cast<long>(der.size())));
  if (!x || p != begin + der.size()) {
    if (!x) X509_free(raw);
    ERR_clear_error();
    return tls_errc::bad_pem;
  }
  return with_public_key(std::move(x), der);
}

result<std::vector<x509_ptr>> load_certificate_chain_pem(std::string_view pem) {
  ERR_clear_error();
  LE_TRY(b, memory_source(pem));
  OSSL_LIB_CTX* const ctx = detail::library_context();
  std::vector<x509_ptr> out;
  for (;;) {
    X509* raw = nullptr;
    if (ctx && !(raw = X509_new_ex(ctx, nullptr))) return tls_error();
    // On a block that does not parse d2i_X509 frees what `raw` held and clears it; at the
    // end of the text `raw` is left as it was.
    x509_ptr c(PEM_read_bio_X509(b.get(), &raw, letsencrypt::detail::refuse_pem_passphrase, nullptr));
    if (!c) {
      X509_free(raw);
      break;
    }
    out.push_back(with_public_key(std::move(c)));
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

namespace detail {

std::optional<ec_pkcs8_fields> read_ec_pkcs8_fields(std::string_view der) noexcept {
  static constexpr unsigned char ec_public_key[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01};
  struct curve {
    std::string_view oid;
    const char* name;
    std::size_t bytes;
  };
  static constexpr curve curves[] = {
      {std::string_view("\x2a\x86\x48\xce\x3d\x03\x01\x07", 8), "prime256v1", 32},
      {std::string_view("\x2b\x81\x04\x00\x22", 5), "secp384r1", 48},  // holds a NUL: sized
      {std::string_view("\x2b\x81\x04\x00\x23", 5), "secp521r1", 66},
  };
  auto is = [](const der_element& e, int tag, bool constructed) {
    return e.cls == V_ASN1_UNIVERSAL && e.tag == tag && e.constructed == constructed;
  };
  auto bytes = [](const der_element& e) {
    return std::string_view(reinterpret_cast<const char*>(e.contents), static_cast<std::size_t>(e.length));
  };
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  const unsigned char* end = p + der.size();
  der_element info, version, alg, oid, params, octets;
  // PrivateKeyInfo ::= SEQUENCE { version 0, AlgorithmIdentifier { id-ecPublicKey,
  //   namedCurve }, privateKey OCTET STRING, [0] attributes OPTIONAL } (RFC 5208, 5480)
  if (!next_element(p, end, info) || !is(info, V_ASN1_SEQUENCE, true) || p != end) return std::nullopt;
  p = info.contents;
  end = info.contents + info.length;
  if (!next_element(p, end, version) || !is(version, V_ASN1_INTEGER, false) || bytes(version) != std::string_view("\0", 1))
    return std::nullopt;
  if (!next_element(p, end, alg) || !is(alg, V_ASN1_SEQUENCE, true)) return std::nullopt;
  if (!next_element(p, end, octets) || !is(octets, V_ASN1_OCTET_STRING, false)) return std::nullopt;
  der_element attributes;
  if (p != end && (!next_element(p, end, attributes) || attributes.cls != V_ASN1_CONTEXT_SPECIFIC ||
                   attributes.tag != 0 || !attributes.constructed || p != end))
    return std::nullopt;
  const unsigned char* a = alg.contents;
  const unsigned char* a_end = alg.contents + alg.length;
  if (!next_element(a, a_end, oid) || !is(oid, V_ASN1_OBJECT, false) ||
      bytes(oid) != std::string_view(reinterpret_cast<const char*>(ec_public_key), sizeof ec_public_key))
    return std::nullopt;
  if (!next_element(a, a_end, params) || !is(params, V_ASN1_OBJECT, false) || a != a_end) return std::nullopt;
  const curve* c = nullptr;
  for (const auto& k : curves)
    if (bytes(params) == k.oid) c = &k;
  if (!c) return std::nullopt;

  // ECPrivateKey ::= SEQUENCE { version 1, privateKey OCTET STRING, [0] parameters
  //   OPTIONAL, [1] publicKey BIT STRING OPTIONAL } (RFC 5915)
  p = octets.contents;
  end = octets.contents + octets.length;
  der_element ec, ec_version, priv, e, pub;
  if (!next_element(p, end, ec) || !is(ec, V_ASN1_SEQUENCE, true) || p != end) return std::nullopt;
  p = ec.contents;
  end = ec.contents + ec.length;
  if (!next_element(p, end, ec_version) || !is(ec_version, V_ASN1_INTEGER, false) || bytes(ec_version) != "\x01")
    return std::nullopt;
  if (!next_element(p, end, priv) || !is(priv, V_ASN1_OCTET_STRING, false) || priv.length == 0 ||
      static_cast<std::size_t>(priv.length) > c->bytes)
    return std::nullopt;
  // [0] then [1], each at most once and holding exactly one element.
  bool have_pub = false;
  int last_tag = -1;
  while (p != end) {
    if (!next_element(p, end, e) || e.cls != V_ASN1_CONTEXT_SPECIFIC || !e.constructed || e.tag <= last_tag ||
        e.tag > 1)
      return std::nullopt;
    last_tag = e.tag;
    const unsigned char* q = e.contents;
    const unsigned char* q_end = e.contents + e.length;
    der_element inner;
    if (!next_element(q, q_end, inner) || q != q_end) return std::nullopt;
    if (e.tag == 0) {  // the curve again: it must be the one named outside
      if (!is(inner, V_ASN1_OBJECT, false) || bytes(inner) != c->oid) return std::nullopt;
    } else {
      if (!is(inner, V_ASN1_BIT_STRING, false)) return std::nullopt;
      pub = inner;
      have_pub = true;
    }
  }
  // BIT STRING: no unused bits, then the uncompressed point 04 || X || Y.
  if (!have_pub || static_cast<std::size_t>(pub.length) != 2 + 2 * c->bytes || pub.contents[0] != 0 ||
      pub.contents[1] != 0x04)
    return std::nullopt;

  return ec_pkcs8_fields{c->name, bytes(priv),
                        std::string_view(reinterpret_cast<const char*>(pub.contents) + 1,
                                         static_cast<std::size_t>(pub.length) - 1)};
}

namespace {

// `f`'s scalar as an OSSL_PARAM integer takes it: in the host's byte order, in `out`.
std::size_t scalar_in_host_order(const ec_pkcs8_fields& f, unsigned char (&out)[66]) noexcept {
  const std::size_t n = f.scalar.size();
  for (std::size_t i = 0; i < n; ++i)
    out[i] = static_cast<unsigned char>(std::endian::native == std::endian::little ? f.scalar[n - 1 - i] : f.scalar[i]);
  return n;
}

}  // namespace

// Read without OpenSSL 3.0's decoders: about 13 us where d2i_AutoPrivateKey takes about 320
// us, which a deferred certificate's first handshake and every start-up load would pay.
evp_pkey_ptr read_ec_pkcs8(std::string_view der) noexcept {
  const std::optional<ec_pkcs8_fields> f = read_ec_pkcs8_fields(der);
  if (!f) return nullptr;
  unsigned char scalar[66];
  const std::size_t n = scalar_in_host_order(*f, scalar);
  OSSL_PARAM params_out[] = {
      // fromdata only reads the parameters; the constructors take non-const pointers.
      OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, const_cast<char*>(f->group_name), 0),
      OSSL_PARAM_construct_BN(OSSL_PKEY_PARAM_PRIV_KEY, scalar, n),
      OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY,
                                        reinterpret_cast<unsigned char*>(const_cast<char*>(f->public_point.data())),
                                        f->public_point.size()),
      OSSL_PARAM_construct_end(),
  };
  evp_pkey_ptr out = keypair_from_params(library_context(), "EC", params_out);
  OPENSSL_cleanse(scalar, sizeof scalar);
  ERR_clear_error();
  return out;
}

bool attach_ec_private_key(X509* leaf, const ec_pkcs8_fields& key) noexcept {
  EVP_PKEY* const public_key = leaf ? X509_get0_pubkey(leaf) : nullptr;
  if (!public_key || EVP_PKEY_is_a(public_key, "EC") != 1) return false;
  ERR_set_mark();  // what the checks below queue is theirs; the caller's errors stay
  // The certificate's own encoding of the key its key object was decoded from: the curve's
  // OID and the point's bytes as they stand. Asking the key for its encoded point instead
  // would convert the point to affine coordinates again, a field inversion per certificate.
  const unsigned char* bits = nullptr;
  int bits_len = 0;
  X509_ALGOR* algorithm = nullptr;
  const ASN1_OBJECT* curve = nullptr;
  int curve_type = V_ASN1_UNDEF;
  const void* curve_value = nullptr;
  if (X509_PUBKEY_get0_param(nullptr, &bits, &bits_len, &algorithm, X509_get_X509_PUBKEY(leaf)) == 1 && algorithm)
    X509_ALGOR_get0(&curve, &curve_type, &curve_value, algorithm);
  const int want_curve = OBJ_sn2nid(key.group_name);
  const bool same = bits && bits_len > 0 && curve_type == V_ASN1_OBJECT && want_curve != NID_undef &&
                    OBJ_obj2nid(static_cast<const ASN1_OBJECT*>(curve_value)) == want_curve &&
                    std::string_view(reinterpret_cast<const char*>(bits), static_cast<std::size_t>(bits_len)) ==
                        key.public_point;
  bool attached = false;
  if (same) {
    unsigned char scalar[66];
    const std::size_t n = scalar_in_host_order(key, scalar);
    OSSL_PARAM params[] = {OSSL_PARAM_construct_BN(attach_private_key_param, scalar, n), OSSL_PARAM_construct_end()};
    // A key manager that does not know the parameter (outside the library context) ignores
    // it and succeeds: the private part read back says whether it took.
    BIGNUM* now = nullptr;
    BIGNUM* want = BN_bin2bn(reinterpret_cast<const unsigned char*>(key.scalar.data()),
                             static_cast<int>(key.scalar.size()), nullptr);
    attached = want && EVP_PKEY_set_params(public_key, params) == 1 &&
               EVP_PKEY_get_bn_param(public_key, OSSL_PKEY_PARAM_PRIV_KEY, &now) == 1 && BN_cmp(now, want) == 0;
    BN_clear_free(now);
    BN_clear_free(want);
    OPENSSL_cleanse(scalar, sizeof scalar);
  }
  ERR_pop_to_mark();
  return attached;
}

}  // namespace detail

result<evp_pkey_ptr> load_private_key_der(std::string_view der) {
  if (auto k = detail::read_ec_pkcs8(der)) return k;
  ERR_clear_error();
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  evp_pkey_ptr k(d2i_AutoPrivateKey(nullptr, &p, static_cast<long>(der.size())));
  ERR_clear_error();
  if (!k) return tls_errc::bad_pem;
  return into_library_context(std::move(k));
}

result<evp_pkey_ptr> load_private_key_pem(std::string_view pem) {
  ERR_clear_error();
  // The usual key file, one PKCS#8 block, skips OpenSSL's decoders; any other text, or a
  // block that does not parse so, is read by OpenSSL as before (its first key of any form).
  const std::size_t first = pem.find("-----BEGIN ");
  if (first != std::string_view::npos && pem.substr(first).starts_with("-----BEGIN PRIVATE KEY-----")) {
    if (auto blocks = pem_blocks_der(pem, "PRIVATE KEY")) {
      auto k = load_private_key_der(blocks->front());
      for (auto& d : *blocks) OPENSSL_cleanse(d.data(), d.size());
      if (k) return k;
    }
  }
  ERR_clear_error();
  LE_TRY(b, memory_source(pem));
  evp_pkey_ptr k(PEM_read_bio_PrivateKey(b.get(), nullptr, letsencrypt::detail::refuse_pem_passphrase, nullptr));
  ERR_clear_error();
  if (!k) return tls_errc::bad_pem;
  return into_library_context(std::move(k));
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
  evp_pkey_ptr k(EVP_PKEY_Q_keygen(detail::library_context(), nullptr, "EC", "P-256"));
  if (!k) return tls_error();
  return k;
}

result<evp_pkey_ptr> generate_rsa_key(unsigned bits) {
  if (bits < 2048 || bits > 16384) return errc::invalid_argument;
  ERR_clear_error();
  evp_pkey_ptr k(EVP_PKEY_Q_keygen(detail::library_context(), nullptr, "RSA", static_cast<std::size_t>(bits)));
  if (!k) return tls_error();
  return k;
}

}  // namespace letsencrypt::tls
