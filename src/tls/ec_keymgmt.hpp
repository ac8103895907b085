// The library context's EC key manager: OpenSSL's, able to give a public key its private part.
#pragma once

#include <openssl/core.h>

#include <cstdint>

namespace letsencrypt::tls::detail {

/// The key parameter that gives an EC public key with no private part its private scalar
/// (an unsigned integer, OSSL_PARAM_construct_BN), set through EVP_PKEY_set_params. A
/// certificate's public key object then serves as the key pair: one key object and one
/// curve group per certificate rather than two (about 2 KiB). The key manager refuses it
/// (the call fails, the key unchanged) when the key already has a private part or no public
/// one, or the scalar is zero or not below the group order; whether the scalar belongs to
/// the public key is the caller's to check.
inline constexpr char attach_private_key_param[] = "letsencrypt-attach-private-key";

/// The provider functions of the default provider's EC key manager `openssl_ec`, with its
/// set_params taking attach_private_key_param as well; every other function is OpenSSL's.
/// Returns null, and the caller keeps OpenSSL's table, when the table has no set_params.
/// The table must outlive the provider. Call once, before the provider loads.
const OSSL_DISPATCH* ec_keymgmt_functions(const OSSL_DISPATCH* openssl_ec) noexcept;

/// How many private keys have been attached in this process, so a test can tell it runs.
std::uint64_t ec_private_keys_attached() noexcept;

}  // namespace letsencrypt::tls::detail
