// X25519 key generation for the library context's provider.
#pragma once

#include <openssl/core.h>
#include <openssl/types.h>

#include <cstdint>
#include <span>

namespace letsencrypt::tls::detail {

/// Computes the X25519 public key of `scalar` (32 bytes, already clamped as RFC 7748 says)
/// into `public_key`: the u-coordinate of scalar * G on Curve25519, through the fixed-base
/// multiplication on the birationally equivalent Edwards curve (libsodium) and the map
/// u = (1 + y) / (1 - y) (GMP). Returns false, writing nothing, for a scalar whose point is
/// the point at infinity (zero, a multiple of the group order: never a clamped one), or one
/// y in 2^63 whose 1 - y this does not invert (the caller then uses another way). Only
/// `scalar` is secret: the inversion works on the public point, and the stack libsodium used
/// is cleared. Allocates nothing.
bool x25519_public_from_private(std::span<const unsigned char, 32> scalar,
                                std::span<unsigned char, 32> public_key) noexcept;

/// The provider functions of the library context's X25519 key manager: `openssl_table`'s (the
/// default provider's X25519 key manager, which must stay valid for the process's life) with
/// key-pair generation replaced. A generated key is the same as OpenSSL's (32 random bytes
/// from `rand_ctx`'s private generator, clamped, kept clamped, and their public key) and is
/// made by `openssl_table`'s own import, so every other operation sees OpenSSL's key object; only
/// the public key is computed faster, by x25519_public_from_private, where OpenSSL 3.0 runs
/// a fixed-base multiplication on 25.5-bit limbs that takes longer than a whole X25519
/// exchange. A generation given a property query, one for parameters only, or one while
/// OpenSSL's secure heap is on (where OpenSSL keeps private keys; an imported key would be
/// on the normal heap) is OpenSSL's. Returns null, and the caller keeps OpenSSL's table,
/// when `openssl_table` lacks a function this needs, has one this does not know (which
/// might take a generation context), or libsodium cannot start. Call once, before
/// the provider that offers the returned table is loaded; `rand_ctx` must outlive it.
const OSSL_DISPATCH* x25519_keymgmt_functions(const OSSL_DISPATCH* openssl_table, OSSL_LIB_CTX* rand_ctx) noexcept;

/// How many key pairs the functions above have generated their own way in this process, so
/// a test or a benchmark can tell that handshakes use them.
std::uint64_t x25519_keys_generated() noexcept;

}  // namespace letsencrypt::tls::detail
