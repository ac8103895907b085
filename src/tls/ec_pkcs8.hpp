// The direct reader behind tls::load_private_key_der, visible to its tests.
#pragma once

#include <optional>
#include <string_view>

#include "letsencrypt/tls/handles.hpp"

namespace letsencrypt::tls::detail {

/// What an unencrypted PKCS#8 EC key on P-256, P-384 or P-521 that carries its public key
/// holds; the views point into the DER it was read from.
struct ec_pkcs8_fields {
  const char* group_name;        // OpenSSL's name of the curve: "prime256v1", ...
  std::string_view scalar;       // the private key, big-endian, as stored
  std::string_view public_point; // uncompressed: 04 || X || Y
};

/// Reads such a key without OpenSSL's decoders. Nullopt for anything else, malformed or
/// not: the caller hands those to OpenSSL, so this never accepts bytes OpenSSL would refuse
/// or read differently.
std::optional<ec_pkcs8_fields> read_ec_pkcs8_fields(std::string_view der) noexcept;

/// The key pair read_ec_pkcs8_fields finds, made in the library context; null where that
/// returns nullopt or OpenSSL refuses the key.
evp_pkey_ptr read_ec_pkcs8(std::string_view der) noexcept;

/// Gives the public EC key of `leaf`, a certificate parsed in the library context, the
/// private scalar of `key` (see attach_private_key_param), when `key` is on the curve the
/// certificate names and carries the point the certificate encodes, byte for byte: the
/// scalar then belongs to the public key as much as a key read whole belongs to its
/// certificate (X509_check_private_key compares the same points). False, with the key
/// unchanged, otherwise (a certificate that encodes its point compressed included: the
/// caller then reads the key whole), and when the key has a private part already or is not
/// the library context's (whose key manager ignores the parameter).
/// As OpenSSL's own import and X509_check_private_key, it does not check that the scalar
/// makes the point: a key file with the right point and a wrong scalar loads, and its
/// signatures fail. Call it only on a certificate just parsed, before anything else has
/// used its key: OpenSSL 3.0 keeps a legacy EC_KEY made by EVP_PKEY_get0_EC_KEY and its kin
/// for good, and one made before the attach would stay without the private part.
/// Not thread-safe for one certificate.
bool attach_ec_private_key(X509* leaf, const ec_pkcs8_fields& key) noexcept;

}  // namespace letsencrypt::tls::detail
