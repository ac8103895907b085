// The self-signed certificate that answers an ACME tls-alpn-01 challenge (RFC 8737).
#pragma once

#include <memory>
#include <string_view>

#include "letsencrypt/result.hpp"
#include "letsencrypt/tls/sni_map.hpp"

namespace letsencrypt::tls {

/// OID of the acmeIdentifier extension (RFC 8737, id-pe-acmeIdentifier).
inline constexpr const char* acme_identifier_oid = "1.3.6.1.5.5.7.1.31";

/// The ALPN protocol name of tls-alpn-01 validation connections.
inline constexpr std::string_view acme_tls_alpn_protocol = "acme-tls/1";

/// Makes the tls-alpn-01 certificate for `name`: a fresh P-256 key, self-signed, valid from
/// one day ago for seven days, with exactly one subjectAltName dNSName (`name`, normalised)
/// and a critical acmeIdentifier extension holding the DER OCTET STRING of
/// SHA-256(`key_authorization`). Fails with errc::invalid_name for an invalid or wildcard
/// name (tls-alpn-01 cannot validate wildcards), errc::invalid_argument for an empty key
/// authorization, and a tls_category() code when OpenSSL fails.
result<certified_key> make_tls_alpn01_certificate(std::string_view name,
                                                  std::string_view key_authorization);

}  // namespace letsencrypt::tls
