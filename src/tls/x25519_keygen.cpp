#include "tls/x25519_keygen.hpp"
#include "tls/dispatch.hpp"

#include <gmp.h>
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <sodium.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <new>

static_assert(GMP_NUMB_BITS == 64 && GMP_NAIL_BITS == 0, "the field element is four 64-bit limbs");

// Why: every TLS 1.3 handshake with an X25519 key share generates a key pair. OpenSSL 3.0
// computes its public key with ref10's fixed-base multiplication on 25.5-bit limbs, about
// 23 us here, a sixth of a full handshake's server CPU and more than the X25519 exchange
// itself (which runs on 64-bit limbs in assembly). libsodium's fixed-base multiplication on
// the Edwards curve takes about 11 us, and mapping its point to the Montgomery curve costs
// one inversion of a public value, about 1.3 us with GMP's extended GCD (its constant-time
// inversion takes 10 us; nothing secret reaches GMP). GMP's low-level functions are used on
// limbs on the stack: they take their scratch space from the stack at these sizes, where
// its integer type would allocate, and GMP aborts the process when an allocation fails.

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
    } else {
      key = openssl.gen(g->inner, cb, cbarg);  // the rare y left to OpenSSL: its way still works
    }
  }
  OPENSSL_cleanse(priv, sizeof priv);
  return key;
}

// Functions of a key manager that take no generation context, which this one hands to
// OpenSSL's as they are. Anything else (a later OpenSSL's GEN_GET_PARAMS, say) would be
// handed this file's generation context, so a table with one is left alone.
bool takes_no_generation_context(int id) noexcept {
  switch (id) {
    case OSSL_FUNC_KEYMGMT_NEW:
    case OSSL_FUNC_KEYMGMT_LOAD:
    case OSSL_FUNC_KEYMGMT_FREE:
    case OSSL_FUNC_KEYMGMT_GET_PARAMS:
    case OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS:
    case OSSL_FUNC_KEYMGMT_SET_PARAMS:
    case OSSL_FUNC_KEYMGMT_SETTABLE_PARAMS:
    case OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME:
    case OSSL_FUNC_KEYMGMT_HAS:
    case OSSL_FUNC_KEYMGMT_VALIDATE:
    case OSSL_FUNC_KEYMGMT_MATCH:
    case OSSL_FUNC_KEYMGMT_IMPORT:
    case OSSL_FUNC_KEYMGMT_IMPORT_TYPES:
    case OSSL_FUNC_KEYMGMT_EXPORT:
    case OSSL_FUNC_KEYMGMT_EXPORT_TYPES:
    case OSSL_FUNC_KEYMGMT_DUP:
      return true;
    default:
      return false;
  }
}

// 2^255 - 19, least significant limb first.
constexpr mp_limb_t field_prime[4] = {0xffffffffffffffedu, 0xffffffffffffffffu, 0xffffffffffffffffu,
                                      0x7fffffffffffffffu};

// Overwrites the stack below the caller's frame, where libsodium's fixed-base multiplication
// leaves the scalar's digits (OpenSSL's own clears its copies).
[[gnu::noinline]] void clear_stack_below() noexcept {
  unsigned char area[8192];
  sodium_memzero(area, sizeof area);
}

// (1 + y) / (1 - y) mod p for a canonical y < p, into `out`; false when 1 - y has no
// inverse (y = 1, the neutral point) or is below 2^192 (one y in 2^63; the caller then
// takes OpenSSL's way rather than this one handling a shorter operand).
bool edwards_y_to_montgomery_u(const mp_limb_t (&y)[4], mp_limb_t (&out)[4]) noexcept {
  mp_limb_t num[4];
  mpn_add_1(num, y, 4, 1);  // y + 1 <= p: no carry (p itself is reduced below)
  // mpn_gcdext destroys its operands and needs one limb more than their size.
  mp_limb_t den[5] = {};
  mp_limb_t prime[5] = {field_prime[0], field_prime[1], field_prime[2], field_prime[3], 0};
  mpn_add_1(den, field_prime, 4, 1);
  mpn_sub_n(den, den, y, 4);  // p + 1 - y = 1 - y mod p, in [2, p] for y < p
  if (den[3] == 0 || mpn_cmp(den, field_prime, 4) == 0) return false;
  // gcd(den, p) = den * s + p * t, so s = den^-1 mod p when the gcd is 1.
  mp_limb_t g[5] = {};
  mp_limb_t s[5] = {};
  mp_size_t s_size = 0;
  const mp_size_t g_size = mpn_gcdext(g, s, &s_size, den, 4, prime, 4);
  const mp_size_t s_limbs = s_size < 0 ? -s_size : s_size;
  if (g_size != 1 || g[0] != 1 || s_limbs == 0 || s_limbs > 4) return false;
  mp_limb_t inverse[4] = {};
  std::memcpy(inverse, s, static_cast<std::size_t>(s_limbs) * sizeof(mp_limb_t));
  if (s_size < 0) mpn_sub_n(inverse, field_prime, inverse, 4);  // |s| < p
  mp_limb_t product[8];
  mpn_mul_n(product, num, inverse, 4);
  mp_limb_t quotient[5];
  mpn_tdiv_qr(quotient, out, 0, product, 8, field_prime, 4);
  return true;
}

// OpenSSL's table with the generation entries replaced; 3.0's X25519 key manager has 20
// functions.
std::array<OSSL_DISPATCH, 48> functions{};

}  // namespace

bool x25519_public_from_private(std::span<const unsigned char, 32> scalar,
                                std::span<unsigned char, 32> public_key) noexcept {
  unsigned char edwards[32];
  // The clamped scalar is below 2^255, so the "noclamp" function takes it as it is; it
  // fails only on the point at infinity (and on a zero scalar).
  const int failed = crypto_scalarmult_ed25519_base_noclamp(edwards, scalar.data());
  clear_stack_below();
  if (failed != 0) return false;
  edwards[31] &= 0x7f;  // y, canonical; the top bit is x's sign, which u does not depend on
  mp_limb_t y[4];
  for (int i = 0; i < 4; ++i) {
    std::uint64_t limb = 0;
    for (int b = 7; b >= 0; --b) limb = (limb << 8) | edwards[8 * i + b];
    y[i] = limb;
  }
  mp_limb_t u[4];
  if (!edwards_y_to_montgomery_u(y, u)) return false;
  for (int i = 0; i < 4; ++i)
    for (int b = 0; b < 8; ++b) public_key[static_cast<std::size_t>(8 * i + b)] = static_cast<unsigned char>(u[i] >> (8 * b));
  return true;
}

const OSSL_DISPATCH* x25519_keymgmt_functions(const OSSL_DISPATCH* openssl_table, OSSL_LIB_CTX* rand) noexcept {
  if (sodium_init() < 0) return nullptr;
  openssl_functions f;
  std::size_t n = 0;
  for (const OSSL_DISPATCH* d = openssl_table; d && d->function_id != 0; ++d) {
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
      default:
        if (!takes_no_generation_context(d->function_id)) return nullptr;  // GEN_SET_TEMPLATE too
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
