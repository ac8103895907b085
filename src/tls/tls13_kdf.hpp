// HKDF and the TLS 1.3 key schedule's KDF, for the library context's provider.
#pragma once

#include <openssl/core.h>

#include <cstddef>
#include <span>
#include <string_view>

namespace letsencrypt::tls::detail {

/// The hashes TLS 1.3's cipher suites use.
enum class hkdf_hash { sha256, sha384 };

/// The output size of `h` in bytes (32 or 48).
std::size_t hkdf_hash_size(hkdf_hash h) noexcept;

/// HKDF-Extract (RFC 5869, 2.2) with HMAC-`h`: writes hkdf_hash_size(h) bytes to `prk`. An
/// empty `salt` is the RFC's default salt. Cannot fail.
void hkdf_extract(hkdf_hash h, std::span<const unsigned char> salt, std::span<const unsigned char> ikm,
                  unsigned char* prk) noexcept;

/// HKDF-Expand (RFC 5869, 2.3) with HMAC-`h`: fills `out`. Returns false, writing nothing,
/// when `out` is longer than 255 hash outputs.
bool hkdf_expand(hkdf_hash h, std::span<const unsigned char> prk, std::span<const unsigned char> info,
                 std::span<unsigned char> out) noexcept;

/// HKDF-Expand-Label(secret, label, "", out.size()) of RFC 8446, 7.1 ("tls13 " before the
/// label), the same code the KDF below runs: fills `out`. Returns false, writing nothing,
/// when `label` is longer than 249 bytes or `out` longer than 255 hash outputs.
bool hkdf_expand_label(hkdf_hash h, std::span<const unsigned char> secret, std::string_view label,
                       std::span<unsigned char> out) noexcept;

/// The provider functions of the library context's "TLS13-KDF", the KDF libssl runs for
/// every step of the TLS 1.3 key schedule. It takes the same parameters and gives the same
/// results and failures as OpenSSL 3.0's own, but computes HKDF over SHA-256 and SHA-384
/// with the low-level hash functions: no digest fetch, no HMAC context and no MAC fetch per
/// step. A context given another digest, a property query or an engine (none of which
/// libssl gives) hands its state and all later calls to `fallback`, the default provider's
/// TLS13-KDF functions, which must stay valid for the process's life. Call once, before the
/// provider that offers the returned table is loaded.
const OSSL_DISPATCH* tls13_kdf_functions(const OSSL_DISPATCH* fallback) noexcept;

/// The settable-parameter list the functions above report; lets a test tell this
/// implementation from OpenSSL's through EVP_KDF_settable_ctx_params.
const OSSL_PARAM* tls13_kdf_settable_params() noexcept;

}  // namespace letsencrypt::tls::detail
