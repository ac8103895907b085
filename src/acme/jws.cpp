#include "letsencrypt/acme/jws.hpp"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>

#include <array>

#include "letsencrypt/acme/error.hpp"
#include "letsencrypt/acme/types.hpp"
#include "pem_no_prompt.hpp"

namespace letsencrypt::acme {
namespace {

constexpr char b64url_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

struct bn_deleter {
  void operator()(BIGNUM* b) const noexcept { BN_free(b); }
};
using bn_ptr = std::unique_ptr<BIGNUM, bn_deleter>;
struct bio_deleter {
  void operator()(BIO* b) const noexcept { BIO_free(b); }
};
using bio_ptr = std::unique_ptr<BIO, bio_deleter>;
struct md_ctx_deleter {
  void operator()(EVP_MD_CTX* c) const noexcept { EVP_MD_CTX_free(c); }
};
struct ecdsa_sig_deleter {
  void operator()(ECDSA_SIG* s) const noexcept { ECDSA_SIG_free(s); }
};

bn_ptr get_bn(EVP_PKEY* k, const char* name) {
  BIGNUM* b = nullptr;
  if (EVP_PKEY_get_bn_param(k, name, &b) != 1) return nullptr;
  return bn_ptr(b);
}

std::string bn_bytes(const BIGNUM* b, int pad) {
  int n = pad > 0 ? pad : BN_num_bytes(b);
  std::string out(static_cast<std::size_t>(n), '\0');
  if (pad > 0) {
    if (BN_bn2binpad(b, reinterpret_cast<unsigned char*>(out.data()), pad) != pad) return {};
  } else {
    BN_bn2bin(b, reinterpret_cast<unsigned char*>(out.data()));
  }
  return out;
}

}  // namespace

std::string base64url(std::span<const std::byte> data) {
  std::string out;
  out.reserve((data.size() * 4 + 2) / 3);
  std::size_t i = 0;
  auto at = [&](std::size_t k) { return static_cast<unsigned>(data[k]); };
  for (; i + 3 <= data.size(); i += 3) {
    unsigned v = (at(i) << 16) | (at(i + 1) << 8) | at(i + 2);
    out.push_back(b64url_chars[(v >> 18) & 63]);
    out.push_back(b64url_chars[(v >> 12) & 63]);
    out.push_back(b64url_chars[(v >> 6) & 63]);
    out.push_back(b64url_chars[v & 63]);
  }
  if (data.size() - i == 1) {
    unsigned v = at(i) << 16;
    out.push_back(b64url_chars[(v >> 18) & 63]);
    out.push_back(b64url_chars[(v >> 12) & 63]);
  } else if (data.size() - i == 2) {
    unsigned v = (at(i) << 16) | (at(i + 1) << 8);
    out.push_back(b64url_chars[(v >> 18) & 63]);
    out.push_back(b64url_chars[(v >> 12) & 63]);
    out.push_back(b64url_chars[(v >> 6) & 63]);
  }
  return out;
}

std::string base64url(std::string_view data) {
  return base64url(std::span<const std::byte>(reinterpret_cast<const std::byte*>(data.data()), data.size()));
}

result<std::string> base64url_decode(std::string_view text) {
  while (!text.empty() && text.back() == '=') text.remove_suffix(1);
  if (text.size() % 4 == 1) return letsencrypt::errc::invalid_argument;
  std::string out;
  out.reserve(text.size() * 3 / 4);
  unsigned acc = 0;
  int bits = 0;
  for (char c : text) {
    int v;
    if (c >= 'A' && c <= 'Z') v = c - 'A';
    else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
    else if (c >= '0' && c <= '9') v = c - '0' + 52;
    else if (c == '-') v = 62;
    else if (c == '_') v = 63;
    else return letsencrypt::errc::invalid_argument;
    acc = (acc << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

std::string sha256(std::string_view data) {
  std::string out(SHA256_DIGEST_LENGTH, '\0');
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), reinterpret_cast<unsigned char*>(out.data()));
  return out;
}

std::string rsa_jwk(std::string_view e_b64, std::string_view n_b64) {
  std::string out = R"({"e":)";
  append_json_string(out, e_b64);
  out += R"(,"kty":"RSA","n":)";
  append_json_string(out, n_b64);
  out += "}";
  return out;
}

std::string ec_jwk(std::string_view crv, std::string_view x_b64, std::string_view y_b64) {
  std::string out = R"({"crv":)";
  append_json_string(out, crv);
  out += R"(,"kty":"EC","x":)";
  append_json_string(out, x_b64);
  out += R"(,"y":)";
  append_json_string(out, y_b64);
  out += "}";
  return out;
}

std::string jwk_thumbprint(std::string_view canonical_jwk) { return base64url(sha256(canonical_jwk)); }

result<account_key> account_key::generate_p256() {
  EVP_PKEY* k = EVP_EC_gen("P-256");
  if (!k) return errc::key_error;
  return from_pkey(pkey_ptr(k));
}

result<account_key> account_key::generate_rsa(int bits) {
  if (bits < 2048) return letsencrypt::errc::invalid_argument;
  EVP_PKEY* k = EVP_RSA_gen(static_cast<unsigned>(bits));
  if (!k) return errc::key_error;
  return from_pkey(pkey_ptr(k));
}

result<account_key> account_key::from_pem(std::string_view pem) {
  bio_ptr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return errc::key_error;
  EVP_PKEY* k = PEM_read_bio_PrivateKey(bio.get(), nullptr, letsencrypt::detail::refuse_pem_passphrase, nullptr);
  if (!k) return letsencrypt::errc::invalid_argument;
  return from_pkey(pkey_ptr(k));
}

result<account_key> account_key::from_pkey(pkey_ptr key) {
  if (!key) return letsencrypt::errc::invalid_argument;
  account_key a;
  int id = EVP_PKEY_get_base_id(key.get());
  if (id == EVP_PKEY_EC) {
    char group[64] = {};
    std::size_t len = 0;
    if (EVP_PKEY_get_utf8_string_param(key.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &len) != 1)
      return errc::key_error;
    std::string_view g(group, len);
    if (g != "prime256v1" && g != "P-256") return letsencrypt::errc::unsupported;
    auto x = get_bn(key.get(), OSSL_PKEY_PARAM_EC_PUB_X);
    auto y = get_bn(key.get(), OSSL_PKEY_PARAM_EC_PUB_Y);
    if (!x || !y) return errc::key_error;
    std::string xs = bn_bytes(x.get(), 32), ys = bn_bytes(y.get(), 32);
    if (xs.empty() || ys.empty()) return errc::key_error;
    a.jwk_ = ec_jwk("P-256", base64url(xs), base64url(ys));
    a.alg_ = "ES256";
  } else if (id == EVP_PKEY_RSA) {
    if (EVP_PKEY_get_bits(key.get()) < 2048) return letsencrypt::errc::unsupported;
    auto n = get_bn(key.get(), OSSL_PKEY_PARAM_RSA_N);
    auto e = get_bn(key.get(), OSSL_PKEY_PARAM_RSA_E);
    if (!n || !e) return errc::key_error;
    a.jwk_ = rsa_jwk(base64url(bn_bytes(e.get(), 0)), base64url(bn_bytes(n.get(), 0)));
    a.alg_ = "RS256";
  } else {
    return letsencrypt::errc::unsupported;
  }
  a.thumbprint_ = jwk_thumbprint(a.jwk_);
  a.key_ = std::move(key);
  return a;
}

result<std::string> account_key::private_pem() const {
  bio_ptr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key_.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1)
    return errc::key_error;
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

result<std::string> account_key::sign(std::string_view input) const {
  std::unique_ptr<EVP_MD_CTX, md_ctx_deleter> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key_.get()) != 1)
    return errc::key_error;
  std::size_t len = 0;
  auto in = reinterpret_cast<const unsigned char*>(input.data());
  if (EVP_DigestSign(ctx.get(), nullptr, &len, in, input.size()) != 1) return errc::key_error;
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, in, input.size()) != 1)
    return errc::key_error;
  sig.resize(len);
  if (alg_ != "ES256") return sig;
  // JWS wants the fixed-size r||s form (RFC 7518 §3.4), not DER.
  auto p = reinterpret_cast<const unsigned char*>(sig.data());
  std::unique_ptr<ECDSA_SIG, ecdsa_sig_deleter> es(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size())));
  if (!es) return errc::key_error;
  const BIGNUM* r = nullptr;
  const BIGNUM* s = nullptr;
  ECDSA_SIG_get0(es.get(), &r, &s);
  std::string raw = bn_bytes(r, 32) + bn_bytes(s, 32);
  if (raw.size() != 64) return errc::key_error;
  return raw;
}

result<std::string> sign_jws(const account_key& key, std::string_view payload, const jws_params& p) {
  std::string header = R"({"alg":)";
  append_json_string(header, key.alg());
  if (!p.kid.empty()) {
    header += R"(,"kid":)";
    append_json_string(header, p.kid);
  } else {
    header += R"(,"jwk":)";
    header += key.jwk();
  }
  if (!p.nonce.empty()) {
    header += R"(,"nonce":)";
    append_json_string(header, p.nonce);
  }
  header += R"(,"url":)";
  append_json_string(header, p.url);
  header += "}";
  std::string protected_b64 = base64url(header);
  std::string payload_b64 = base64url(payload);
  LE_TRY(sig, key.sign(protected_b64 + "." + payload_b64));
  std::string out = R"({"protected":")";
  out += protected_b64;
  out += R"(","payload":")";
  out += payload_b64;
  out += R"(","signature":")";
  out += base64url(sig);
  out += R"("})";
  return out;
}

result<std::string> eab_jws(const account_key& account, std::string_view eab_kid, std::string_view hmac_key_b64url,
                            std::string_view new_account_url) {
  LE_TRY(mac_key, base64url_decode(hmac_key_b64url));
  if (mac_key.empty() || eab_kid.empty()) return letsencrypt::errc::invalid_argument;
  std::string header = R"({"alg":"HS256","kid":)";
  append_json_string(header, eab_kid);
  header += R"(,"url":)";
  append_json_string(header, new_account_url);
  header += "}";
  std::string input = base64url(header) + "." + base64url(account.jwk());
  std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
  unsigned mac_len = 0;
  if (!HMAC(EVP_sha256(), mac_key.data(), static_cast<int>(mac_key.size()),
            reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac.data(), &mac_len))
    return errc::key_error;
  auto dot = input.find('.');
  std::string out = R"({"protected":")";
  out += std::string_view(input).substr(0, dot);
  out += R"(","payload":")";
  out += std::string_view(input).substr(dot + 1);
  out += R"(","signature":")";
  out += base64url(std::string_view(reinterpret_cast<const char*>(mac.data()), mac_len));
  out += R"("})";
  return out;
}

result<std::string> key_change_inner(const account_key& new_key, const account_key& old_key,
                                     std::string_view account_url, std::string_view key_change_url) {
  std::string payload = R"({"account":)";
  append_json_string(payload, account_url);
  payload += R"(,"oldKey":)";
  payload += old_key.jwk();
  payload += "}";
  return sign_jws(new_key, payload, jws_params{.nonce = {}, .url = key_change_url, .kid = {}});
}

std::string key_authorization(std::string_view token, const account_key& key) {
  std::string out(token);
  out.push_back('.');
  out += key.thumbprint();
  return out;
}

std::string dns01_txt_value(std::string_view key_authorization) { return base64url(sha256(key_authorization)); }

}  // namespace letsencrypt::acme
