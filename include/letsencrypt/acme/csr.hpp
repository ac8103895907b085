// Certificate signing requests for finalize (RFC 8555 §7.4) and the RFC 9773 certificate
// identifier used by ARI renewalInfo and an order's `replaces`.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "letsencrypt/acme/jws.hpp"
#include "letsencrypt/result.hpp"

namespace letsencrypt::acme {

enum class cert_key_type { p256, rsa2048 };

/// A fresh certificate key and a CSR for it.
struct csr_bundle {
  pkey_ptr key;          ///< the certificate's private key
  std::string key_pem;   ///< the same key as PKCS#8 PEM (a secret)
  std::string der;       ///< the CSR, DER
  std::string der_b64url() const;
};

/// Makes a new key of `type` and a CSR whose subject CN is the first name and whose
/// subjectAltName lists every name (dNSName). Errors: invalid_argument for no names or an
/// empty name; acme::errc::key_error when OpenSSL fails.
result<csr_bundle> make_csr(std::span<const std::string> names, cert_key_type type = cert_key_type::p256);

/// The RFC 9773 identifier: base64url(AKI keyIdentifier) '.' base64url(serial DER content
/// bytes) of the first certificate in `cert_pem`. Errors: invalid_argument for unparsable
/// PEM; acme::errc::bad_response for a certificate without an AKI key identifier.
result<std::string> ari_certificate_id(std::string_view cert_pem);

/// The PEM blocks of a chain ("-----BEGIN CERTIFICATE-----" ...), in order; empty when none.
std::vector<std::string> split_pem_chain(std::string_view pem);

}  // namespace letsencrypt::acme
