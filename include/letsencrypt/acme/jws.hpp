// JOSE for ACME: base64url, account keys with their JWK and RFC 7638 thumbprint, flattened
// JWS (ES256 / RS256) as RFC 8555 §6.2 requires, external account binding (§7.3.4), key
// rollover (§7.3.5), and challenge key authorizations (§8.1, dns-01 §8.4).
#pragma once

#include <openssl/evp.h>

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "letsencrypt/result.hpp"

namespace letsencrypt::acme {

/// base64url without padding (RFC 7515 §2).
std::string base64url(std::span<const std::byte> data);
std::string base64url(std::string_view data);
/// Decodes unpadded (or padded) base64url; errc::invalid_argument on any other character or
/// an impossible length.
result<std::string> base64url_decode(std::string_view text);

/// SHA-256 of `data`, 32 raw bytes.
std::string sha256(std::string_view data);

struct pkey_deleter {
  void operator()(EVP_PKEY* k) const noexcept { EVP_PKEY_free(k); }
};
using pkey_ptr = std::unique_ptr<EVP_PKEY, pkey_deleter>;

/// An account (or certificate) key that signs JWS: P-256 (ES256, the default) or RSA >= 2048
/// bits (RS256). The JWK and its thumbprint are computed once, at construction.
class account_key {
 public:
  /// A new P-256 key. Errors: acme::errc::key_error when OpenSSL fails.
  static result<account_key> generate_p256();
  /// A new RSA key of `bits` (>= 2048).
  static result<account_key> generate_rsa(int bits = 2048);
  /// Loads a PEM private key (PKCS#8 or traditional); P-256 and RSA >= 2048 only.
  static result<account_key> from_pem(std::string_view pem);
  /// Takes ownership of `key` (a private key, or a public key for jwk/thumbprint only).
  static result<account_key> from_pkey(pkey_ptr key);

  /// The private key as PKCS#8 PEM (a secret: never log it).
  result<std::string> private_pem() const;
  /// The JWK of the public key with members in RFC 7638 lexicographic order, no spaces.
  const std::string& jwk() const noexcept { return jwk_; }
  /// base64url(SHA-256(jwk())) — the RFC 7638 thumbprint.
  const std::string& thumbprint() const noexcept { return thumbprint_; }
  /// "ES256" or "RS256".
  std::string_view alg() const noexcept { return alg_; }
  EVP_PKEY* get() const noexcept { return key_.get(); }

  /// Signs `input` with the JWS algorithm; for ES256 the DER signature is turned into the
  /// 64-byte r||s form. Returns the raw signature bytes.
  result<std::string> sign(std::string_view input) const;

 private:
  account_key() = default;
  pkey_ptr key_;
  std::string jwk_;
  std::string thumbprint_;
  std::string alg_;
};

/// The JWK of a public key given by its members (RFC 7638 order), for tests and checks.
std::string rsa_jwk(std::string_view e_b64, std::string_view n_b64);
std::string ec_jwk(std::string_view crv, std::string_view x_b64, std::string_view y_b64);
/// base64url(SHA-256(jwk)).
std::string jwk_thumbprint(std::string_view canonical_jwk);

/// The protected header's key reference: `kid` (the account URL) when non-empty, else the
/// full `jwk` (newAccount, revocation by certificate key).
struct jws_params {
  std::string_view nonce;  ///< Replay-Nonce; omitted when empty (inner key-change JWS, EAB)
  std::string_view url;
  std::string_view kid;
};

/// A flattened JSON JWS {"protected","payload","signature"}. `payload` is the JSON text to
/// sign; an empty string makes a POST-as-GET (payload ""). Errors: key_error.
result<std::string> sign_jws(const account_key& key, std::string_view payload, const jws_params& p);

/// The externalAccountBinding member for newAccount: an HS256 JWS over the account's JWK
/// with protected header {"alg":"HS256","kid":eab_kid,"url":new_account_url}.
/// `hmac_key_b64url` is the CA-provided MAC key (base64url). Errors: invalid_argument for a
/// key that is not base64url or is empty.
result<std::string> eab_jws(const account_key& account, std::string_view eab_kid,
                            std::string_view hmac_key_b64url, std::string_view new_account_url);

/// The inner JWS of a key change: signed by `new_key` with its jwk, protected header
/// {"alg","jwk","url":key_change_url}, payload {"account":account_url,"oldKey":old jwk}.
result<std::string> key_change_inner(const account_key& new_key, const account_key& old_key,
                                     std::string_view account_url, std::string_view key_change_url);

/// token || '.' || thumbprint (RFC 8555 §8.1).
std::string key_authorization(std::string_view token, const account_key& key);
/// base64url(SHA-256(key_authorization)), the dns-01 TXT record value.
std::string dns01_txt_value(std::string_view key_authorization);

}  // namespace letsencrypt::acme
