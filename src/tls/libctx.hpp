// The OpenSSL library context the library's certificates, keys and server contexts live in.
#pragma once

#include <openssl/types.h>

namespace letsencrypt::tls::detail {

/// The library context certificates are parsed in, keys made in and server SSL_CTXs made
/// in, made on first use: one provider that offers the default provider's algorithms, with
/// its decoders narrowed to what a certificate's public key needs (see libctx.cpp for why).
/// Null, meaning OpenSSL's default context, when FIPS properties are on by default, the
/// default provider is not available, or the context cannot be made. Lives until the
/// process ends; thread-safe.
OSSL_LIB_CTX* library_context() noexcept;

}  // namespace letsencrypt::tls::detail
