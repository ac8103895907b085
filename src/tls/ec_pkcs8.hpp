// The direct reader behind tls::load_private_key_der, visible to its tests.
#pragma once

#include <string_view>

#include "letsencrypt/tls/handles.hpp"

namespace letsencrypt::tls::detail {

/// Reads an unencrypted PKCS#8 EC key on P-256, P-384 or P-521 that carries its public key,
/// without OpenSSL's decoders. Null for anything else, malformed or not: the caller hands
/// those to OpenSSL, so this never accepts bytes OpenSSL would refuse or read differently.
evp_pkey_ptr read_ec_pkcs8(std::string_view der) noexcept;

}  // namespace letsencrypt::tls::detail
