#include "tls/x25519_keygen.hpp"

#include <gmp.h>
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <sodium.h>

#include <array>
#include <atomic>
#include <cstring>
#include <new>

// Why: every TLS 1.3 handshake with an X25519 key share generates a key pair. OpenSSL 3.0
// computes its public key with ref10's fixed-base multiplication on 25.5-bit limbs, about
// 23 us here, a sixth of a full handshake's server CPU and more than the X25519 exchange
// itself (which runs on 64-bit limbs in assembly). libsodium's fixed-base multiplication on
// the Edwards curve takes about 11 us, and mapping its point to the Montgomery curve costs
// one inversion of a public value, about 1.3 us with GMP.

namespace letsencrypt::tls::detail {
namespace {

// OpenSSL's X25519 key manager functions this one calls.
struct openssl_functions {
  OSSL_FUNC_keymgmt_new_fn* new_key = nullptr;
  OSSL_FUNC_keymgmt_free_fn* free_key = nullptr;
  OSSL_FUNC_keymgmt_import_fn* import = nullptr;
  OSSL_FUNC_keymgmt_gen_init_fn* gen_init = nullptr;
  OSSL_FUNC_keymgmt_gen_set_params_fn* gen_set_params = nullptr;
  OSSL_FUNC_keymgmt_gen_settable_params_fn* gen_settable_params = nullptr;
  OSSL_FUNC_keymgmt_gen_fn* gen = nullptr;
  OSSL_FUNC_keymgmt_gen_cleanup_fn* gen_cleanup = nullptr;
};

openssl_functions openssl;
OSSL_LIB_CTX* rand_ctx = nullptr;
std::atomic<std::uint64_t> generated{0};

// A generation: OpenSSL's context, which checks and keeps the parameters, and what decides
// whose generation runs.
struct gen_ctx {
  void* inner;
  void* provctx;
  int selection;
  bool openssl_only = false;  // given a property query
};

bool has_properties(const OSSL_PARAM params[]) noexcept {
  return params && OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_PROPERTIES) != nullptr;
}

void* gen_init(void* provctx, int selection, const OSSL_PARAM params[]) noexcept {
  void* inner = openssl.gen_init(provctx, selection, params);
  if (!inner) return nullptr;
  auto* g = new (std::nothrow) gen_ctx{inner, provctx, selection, has_properties(params)};
  if (!g) openssl.gen_cleanup(inner);
  return g;
}

int gen_set_params(void* vctx, const OSSL_PARAM params[]) noexcept {
  auto* g = static_cast<gen_ctx*>(vctx);
  if (!g) return 0;
  if (has_properties(params)) g->openssl_only = true;
  return openssl.gen_set_params(g->inner, params);
}

const OSSL_PARAM* gen_settable_params(void* vctx, void* provctx) noexcept {
  auto* g = static_cast<gen_ctx*>(vctx);
  return openssl.gen_settable_params(g ? g->inner : nullptr, provctx);
}

void gen_cleanup(void* vctx) noexcept {
  auto* g = static_cast<gen_ctx*>(vctx);
  if (!g) return;
  openssl.gen_cleanup(g->inner);
  delete g;
}

// OpenSSL's key object holding `priv` and `pub`, made by its own import; null on failure.
void* import_pair(void* provctx, unsigned char* priv, unsigned char* pub) noexcept {
  void* key = openssl.new_key(provctx);
  if (!key) return nullptr;
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PRIV_KEY, priv, 32),
      OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, pub, 32),
      OSSL_PARAM_construct_end(),
  };
  if (openssl.import(key, OSSL_KEYMGMT_SELECT_KEYPAIR, params) != 1) {
    openssl.free_key(key);
    return nullptr;
  }
  return key;
}

void* gen(void* vctx, OSSL_CALLBACK* cb, void* cbarg) noexcept {
  auto* g = static_cast<gen_ctx*>(vctx);
  if (!g) return nullptr;
  if (g->openssl_only || (g->selection & OSSL_KEYMGMT_SELECT_KEYPAIR) == 0 || CRYPTO_secure_malloc_initialized())
    return openssl.gen(g->inner, cb, cbarg);
  unsigned char priv[32];
  unsigned char pub[32];
  void* key = nullptr;
  if (RAND_priv_bytes_ex(rand_ctx, priv, sizeof priv, 0) > 0) {
    // RFC 7748's clamping, which OpenSSL applies to the key it keeps.
    priv[0] &= 248;
    priv[31] &= 127;
    priv[31] |= 64;
    if (x25519_public_from_private(priv, pub)) {
      key = import_pair(g->provctx, priv, pub);
      if (key) generated.fetch_add(1, std::memory_order_relaxed);
    } else
      key = openssl.gen(g->inner, cb, cbarg);  // a library failed: OpenSSL's way still works
  }
  OPENSSL_cleanse(priv, sizeof priv);
  return key;
}

template <typename Fn>
void (*as_dispatch(Fn* f))() {
  return reinterpret_cast<void (*)()>(f);  // how OSSL_DISPATCH holds functions
}

// OpenSSL's table with the generation entries replaced; 3.0's X25519 key manager has 21.
std::array<OSSL_DISPATCH, 48> functions{};

}  // namespace

bool x25519_public_from_private(std::span<const unsigned char, 32> scalar,
                                std::span<unsigned char, 32> public_key) noexcept {
  unsigned char edwards[32];
  // The clamped scalar is below 2^255, so the "noclamp" function takes it as it is; it
  // fails only on the point at infinity.
  if (crypto_scalarmult_ed25519_base_noclamp(edwards, scalar.data()) != 0) return false;
  edwards[31] &= 0x7f;  // y; the top bit is x's sign, which u does not depend on
  mpz_t p, y, num, den;
  mpz_inits(p, y, num, den, nullptr);
  mpz_ui_pow_ui(p, 2, 255);
  mpz_sub_ui(p, p, 19);
  mpz_import(y, sizeof edwards, -1, 1, 0, 0, edwards);
  mpz_add_ui(num, y, 1);  // 1 + y < 2p
  mpz_mod(num, num, p);
  mpz_ui_sub(den, 1, y);  // 1 - y, in (-p, 1]
  mpz_mod(den, den, p);
  const bool ok = mpz_invert(den, den, p) != 0;  // 0 only for y = 1, the neutral point
  if (ok) {
    mpz_mul(num, num, den);
    mpz_mod(num, num, p);
    std::size_t written = 0;
    unsigned char u[32] = {};
    mpz_export(u, &written, -1, 1, 0, 0, num);  // little-endian, `written` <= 32 bytes
    std::memcpy(public_key.data(), u, sizeof u);
  }
  mpz_clears(p, y, num, den, nullptr);
  return ok;
}

const OSSL_DISPATCH* x25519_keymgmt_functions(const OSSL_DISPATCH* from, OSSL_LIB_CTX* rand) noexcept {
  if (sodium_init() < 0) return nullptr;
  openssl_functions f;
  std::size_t n = 0;
  for (const OSSL_DISPATCH* d = from; d && d->function_id != 0; ++d) {
    if (n + 1 >= functions.size()) return nullptr;
    OSSL_DISPATCH entry = *d;
    switch (d->function_id) {
      case OSSL_FUNC_KEYMGMT_NEW: f.new_key = OSSL_FUNC_keymgmt_new(d); break;
      case OSSL_FUNC_KEYMGMT_FREE: f.free_key = OSSL_FUNC_keymgmt_free(d); break;
      case OSSL_FUNC_KEYMGMT_IMPORT: f.import = OSSL_FUNC_keymgmt_import(d); break;
      case OSSL_FUNC_KEYMGMT_GEN_INIT:
        f.gen_init = OSSL_FUNC_keymgmt_gen_init(d);
        entry.function = as_dispatch(&gen_init);
        break;
      case OSSL_FUNC_KEYMGMT_GEN_SET_PARAMS:
        f.gen_set_params = OSSL_FUNC_keymgmt_gen_set_params(d);
        entry.function = as_dispatch(&gen_set_params);
        break;
      case OSSL_FUNC_KEYMGMT_GEN_SETTABLE_PARAMS:
        f.gen_settable_params = OSSL_FUNC_keymgmt_gen_settable_params(d);
        entry.function = as_dispatch(&gen_settable_params);
        break;
      case OSSL_FUNC_KEYMGMT_GEN:
        f.gen = OSSL_FUNC_keymgmt_gen(d);
        entry.function = as_dispatch(&gen);
        break;
      case OSSL_FUNC_KEYMGMT_GEN_CLEANUP:
        f.gen_cleanup = OSSL_FUNC_keymgmt_gen_cleanup(d);
        entry.function = as_dispatch(&gen_cleanup);
        break;
      case OSSL_FUNC_KEYMGMT_GEN_SET_TEMPLATE:
        return nullptr;  // a context it would be handed is ours, not OpenSSL's
      default:
        break;
    }
    functions[n++] = entry;
  }
  if (!f.new_key || !f.free_key || !f.import || !f.gen_init || !f.gen_set_params || !f.gen_settable_params ||
      !f.gen || !f.gen_cleanup)
    return nullptr;
  functions[n] = OSSL_DISPATCH{0, nullptr};
  openssl = f;
  rand_ctx = rand;
  return functions.data();
}

std::uint64_t x25519_keys_generated() noexcept { return generated.load(std::memory_order_relaxed); }

}  // namespace letsencrypt::tls::detail
