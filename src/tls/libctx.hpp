// The OpenSSL library context the library's certificates, keys and server contexts live in.
#pragma once

#include <openssl/types.h>

namespace letsencrypt::tls::detail {

/// The library context certificates are parsed in, keys made in and server SSL_CTXs made
/// in: one provider that offers the default provider's algorithms, narrowed to what TLS,
/// certificates and key files use (its decoders to what a certificate's public key needs),
/// with its TLS13-KDF the library's own (tls13_kdf.hpp; see libctx.cpp for why). Made on first
/// use and kept until OPENSSL_cleanup. Null, meaning OpenSSL's default context, while that
/// context has FIPS properties on by default or any provider active besides default and
/// base (asked at each call, so a provider loaded later takes effect for what is made after
/// it), or when the context cannot be made. Thread-safe.
OSSL_LIB_CTX* library_context() noexcept;

/// Whether the library context decodes public keys of SubjectPublicKeyInfo algorithm `nid`
/// (EC, RSA, RSA-PSS, Ed25519, Ed448); a certificate with another key type is parsed again
/// in OpenSSL's default context.
bool decodes_public_key(int nid) noexcept;

}  // namespace letsencrypt::tls::detail
