// The EC_KEY functions are deprecated in OpenSSL 3.0, but an EC_KEY is what the default
// provider's EC key manager holds.
#define OPENSSL_SUPPRESS_DEPRECATED
#include "tls/ec_keymgmt.hpp"

#include <openssl/bn.h>
#include <openssl/core_dispatch.h>
#include <openssl/ec.h>
#include <openssl/params.h>

#include <array>
#include <atomic>

#include "tls/dispatch.hpp"

// Why: a server holds each certificate with its key. Parsed separately, OpenSSL 3.0 makes two
// EC_KEYs for them, each with its own copy of the curve's group (about 1.5 KiB for P-256),
// and building the private key's group takes about 7 us. The certificate's key object
// already has the group and the public point; the scalar is all the private key adds.

namespace letsencrypt::tls::detail {
namespace {

OSSL_FUNC_keymgmt_set_params_fn* openssl_set_params = nullptr;
std::array<OSSL_DISPATCH, 64> functions{};
std::atomic<std::uint64_t> attached{0};

// Sets the private scalar of `key` from `p`; false, with the key unchanged, when the key
// already has one or has no public point, or the scalar is out of range.
bool attach(EC_KEY* key, const OSSL_PARAM* p) noexcept {
  const EC_GROUP* group = key ? EC_KEY_get0_group(key) : nullptr;
  if (!group || EC_KEY_get0_private_key(key) || !EC_KEY_get0_public_key(key)) return false;
  // Secure when OpenSSL's secure heap is on, as OpenSSL's own import makes a private key; the
  // key's copy (EC_KEY_set_private_key's BN_dup) inherits it.
  BIGNUM* scalar = BN_secure_new();
  if (!scalar) return false;
  if (OSSL_PARAM_get_BN(p, &scalar) != 1) {
    BN_clear_free(scalar);
    return false;
  }
  const BIGNUM* order = EC_GROUP_get0_order(group);
  const bool ok = order && !BN_is_zero(scalar) && !BN_is_negative(scalar) && BN_cmp(scalar, order) < 0 &&
                  EC_KEY_set_private_key(key, scalar) == 1;  // takes a constant-time copy
  BN_clear_free(scalar);
  if (ok) attached.fetch_add(1, std::memory_order_relaxed);
  return ok;
}

int set_params(void* keydata, const OSSL_PARAM params[]) {
  if (const OSSL_PARAM* p = OSSL_PARAM_locate_const(params, attach_private_key_param))
    if (!attach(static_cast<EC_KEY*>(keydata), p)) return 0;
  // OpenSSL's looks only for the parameters it knows.
  return openssl_set_params(keydata, params);
}

}  // namespace

const OSSL_DISPATCH* ec_keymgmt_functions(const OSSL_DISPATCH* openssl_ec) noexcept {
  std::size_t n = 0;
  OSSL_FUNC_keymgmt_set_params_fn* found = nullptr;
  for (const OSSL_DISPATCH* d = openssl_ec; d && d->function_id != 0; ++d) {
    if (n + 1 >= functions.size()) return nullptr;
    OSSL_DISPATCH entry = *d;
    if (d->function_id == OSSL_FUNC_KEYMGMT_SET_PARAMS) {
      found = OSSL_FUNC_keymgmt_set_params(d);
      entry.function = as_dispatch(&set_params);
    }
    functions[n++] = entry;
  }
  if (!found) return nullptr;
  functions[n] = OSSL_DISPATCH{0, nullptr};
  openssl_set_params = found;
  return functions.data();
}

std::uint64_t ec_private_keys_attached() noexcept { return attached.load(std::memory_order_relaxed); }

}  // namespace letsencrypt::tls::detail
