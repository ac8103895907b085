// A decoder of EC public keys for the library context's provider.
#pragma once

#include <openssl/core.h>
#include <openssl/types.h>

#include <cstdint>

namespace letsencrypt::tls::detail {

/// The provider functions of a SubjectPublicKeyInfo decoder for P-256, P-384 and P-521 keys
/// that makes the same key object as OpenSSL 3.0's (an EC_KEY handed to the EC key manager's
/// load by reference), with its curve copied from a group made once per curve instead of
/// built again for every key (two Montgomery set-ups, a fifth of a certificate's parse).
/// It takes only the strict DER of a named curve and an uncompressed point on it, as
/// certificates carry them; for anything else it makes nothing, and the default provider's
/// decoder, which must come after it in the decoder order, decides, as it does for every
/// other input. `openssl_spki_ec` is that decoder's table (whose selection check this one
/// shares), `ec_export` the EC key manager's export function (for a key going to another
/// provider) and `key_ctx` the library context the keys and groups belong to; all must
/// outlive the provider. Returns null, and the caller offers only OpenSSL's decoder, when a
/// function is missing or a group cannot be made. Call once, before the provider loads.
const OSSL_DISPATCH* ec_spki_decoder_functions(const OSSL_DISPATCH* openssl_spki_ec, void (*ec_export)(),
                                               OSSL_LIB_CTX* key_ctx) noexcept;

/// Hands the decoder the core's BIO reader, from the dispatch table the provider's init is
/// given; without it the decoder makes nothing.
void ec_spki_decoder_set_core(const OSSL_DISPATCH* core) noexcept;

/// How many keys the decoder has made in this process, so a test can tell it runs.
std::uint64_t ec_spki_keys_decoded() noexcept;

}  // namespace letsencrypt::tls::detail
