// OpenSSL 3.0 deprecates the low-level SHA-2 functions in favour of EVP; the per-call
// digest fetch and context allocation of EVP are what this file exists to avoid.
#define OPENSSL_SUPPRESS_DEPRECATED
#include "tls/tls13_kdf.hpp"
#include "tls/dispatch.hpp"

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/proverr.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <string_view>
#include <utility>

#include <string.h>  // explicit_bzero

// Why: libssl runs every step of the TLS 1.3 key schedule (about 25 in a full handshake)
// through a freshly made "TLS13-KDF" context. OpenSSL 3.0's implementation fetches the
// digest by name when the context is given it, allocates an HMAC context per expansion
// and fetches the HMAC MAC and the digest again per extraction: perf puts that at about a
// tenth of a full handshake's server CPU, most of it fetches, locks and malloc rather than
// hashing. Here the digest is matched by name once per context and HMAC runs on the
// stack over the low-level hash functions.

namespace letsencrypt::tls::detail {
namespace {

union hash_ctx {
  SHA256_CTX sha256;
  SHA512_CTX sha512;  // SHA-384 too
};

struct hash_impl {
  const char* name;  // OpenSSL's
  std::size_t size;
  std::size_t block;
  void (*init)(hash_ctx&) noexcept;
  void (*update)(hash_ctx&, const void*, std::size_t) noexcept;
  void (*final)(hash_ctx&, unsigned char*) noexcept;
};

constexpr hash_impl sha256_impl{
    "SHA2-256",
    32,
    64,
    [](hash_ctx& c) noexcept { SHA256_Init(&c.sha256); },
    [](hash_ctx& c, const void* p, std::size_t n) noexcept { SHA256_Update(&c.sha256, p, n); },
    [](hash_ctx& c, unsigned char* out) noexcept { SHA256_Final(out, &c.sha256); },
};

constexpr hash_impl sha384_impl{
    "SHA2-384",
    48,
    128,
    [](hash_ctx& c) noexcept { SHA384_Init(&c.sha512); },
    [](hash_ctx& c, const void* p, std::size_t n) noexcept { SHA384_Update(&c.sha512, p, n); },
    [](hash_ctx& c, unsigned char* out) noexcept { SHA384_Final(out, &c.sha512); },
};

// Wipes secret bytes with stores the compiler cannot drop. OPENSSL_cleanse stores a word at
// a time, and the states, pads and digests wiped here come to about 1 KiB per derivation:
// explicit_bzero (glibc's vector memset behind a barrier) takes 0.8% off a full handshake's
// instructions and 1% off a resumed one's (bench_tls under callgrind).
inline void wipe(void* p, std::size_t n) noexcept { explicit_bzero(p, n); }

constexpr std::size_t max_hash_size = 48;
constexpr std::size_t max_block_size = 128;

const hash_impl& impl_of(hkdf_hash h) noexcept { return h == hkdf_hash::sha256 ? sha256_impl : sha384_impl; }

// HMAC's key schedule: the hash states after the inner and the outer padded key.
struct hmac_key {
  hash_ctx inner;
  hash_ctx outer;

  hmac_key(const hash_impl& h, std::span<const unsigned char> key) noexcept {
    unsigned char pad[max_block_size] = {};
    if (key.size() > h.block) {
      hash_ctx c;
      h.init(c);
      h.update(c, key.data(), key.size());
      h.final(c, pad);
      wipe(&c, sizeof c);
    } else if (!key.empty()) {
      std::memcpy(pad, key.data(), key.size());
    }
    for (std::size_t i = 0; i < h.block; ++i) pad[i] ^= 0x36;
    h.init(inner);
    h.update(inner, pad, h.block);
    for (std::size_t i = 0; i < h.block; ++i) pad[i] ^= 0x36 ^ 0x5c;
    h.init(outer);
    h.update(outer, pad, h.block);
    wipe(pad, sizeof pad);
  }
  ~hmac_key() { wipe(this, sizeof *this); }
  hmac_key(const hmac_key&) = delete;
  hmac_key& operator=(const hmac_key&) = delete;

  // Finishes one MAC: `message` is a copy of `inner` that has absorbed the message; it is
  // cleansed.
  void finish(const hash_impl& h, hash_ctx& message, unsigned char* out) const noexcept {
    unsigned char digest[max_hash_size];
    h.final(message, digest);
    hash_ctx o = outer;
    h.update(o, digest, h.size);
    h.final(o, out);
    wipe(digest, sizeof digest);
    wipe(&o, sizeof o);
    wipe(&message, sizeof message);
  }
};

void extract(const hash_impl& h, std::span<const unsigned char> salt, std::span<const unsigned char> ikm,
             unsigned char* prk) noexcept {
  const hmac_key k(h, salt);
  hash_ctx c = k.inner;
  h.update(c, ikm.data(), ikm.size());
  k.finish(h, c, prk);
}

bool expand(const hash_impl& h, std::span<const unsigned char> prk, std::span<const unsigned char> info,
            std::span<unsigned char> out) noexcept {
  const std::size_t blocks = (out.size() + h.size - 1) / h.size;
  if (blocks > 255) return false;
  const hmac_key k(h, prk);
  unsigned char t[max_hash_size];
  std::size_t done = 0;
  for (std::size_t i = 1; i <= blocks; ++i) {
    hash_ctx c = k.inner;
    if (i > 1) h.update(c, t, h.size);
    h.update(c, info.data(), info.size());
    const auto counter = static_cast<unsigned char>(i);
    h.update(c, &counter, 1);
    k.finish(h, c, t);
    const std::size_t n = std::min(h.size, out.size() - done);
    std::memcpy(out.data() + done, t, n);
    done += n;
  }
  wipe(t, sizeof t);
  return true;
}

// RFC 8446's HKDF-Expand-Label, with OpenSSL's limits: `out` at most 65535 bytes,
// prefix and label together and the context each at most 255.
bool expand_label(const hash_impl& h, std::span<const unsigned char> secret, std::span<const unsigned char> prefix,
                  std::span<const unsigned char> label, std::span<const unsigned char> context,
                  std::span<unsigned char> out) noexcept {
  if (out.size() > 0xffff || prefix.size() + label.size() > 255 || context.size() > 255) return false;
  unsigned char info[2 + 1 + 255 + 1 + 255];
  std::size_t n = 0;
  info[n++] = static_cast<unsigned char>(out.size() >> 8);
  info[n++] = static_cast<unsigned char>(out.size());
  info[n++] = static_cast<unsigned char>(prefix.size() + label.size());
  if (!prefix.empty()) std::memcpy(info + n, prefix.data(), prefix.size());
  n += prefix.size();
  if (!label.empty()) std::memcpy(info + n, label.data(), label.size());
  n += label.size();
  info[n++] = static_cast<unsigned char>(context.size());
  if (!context.empty()) std::memcpy(info + n, context.data(), context.size());
  n += context.size();
  return expand(h, secret, std::span<const unsigned char>(info, n), out);
}

// --- the provider algorithm ------------------------------------------------------------

// An octet-string parameter as OpenSSL's KDFs keep it: absent, or a copy (possibly empty).
class param_bytes {
 public:
  param_bytes() = default;
  param_bytes(const param_bytes&) = delete;
  param_bytes& operator=(const param_bytes&) = delete;
  ~param_bytes() { clear(); }

  bool present() const noexcept { return present_; }
  std::span<const unsigned char> view() const noexcept { return {data(), len_}; }
  const unsigned char* data() const noexcept { return heap_ ? heap_.get() : small_; }

  // Copies `p`; false, leaving it absent, when `p` is not an octet string with data.
  bool assign(const OSSL_PARAM& p) noexcept {
    clear();
    if (p.data_type != OSSL_PARAM_OCTET_STRING || p.data == nullptr) return false;
    if (p.data_size > sizeof small_) {
      heap_.reset(new (std::nothrow) unsigned char[p.data_size]);
      if (!heap_) return false;
    }
    if (p.data_size != 0) std::memcpy(heap_ ? heap_.get() : small_, p.data, p.data_size);
    len_ = p.data_size;
    present_ = true;
    return true;
  }

  // Wipes the bytes assign() wrote (none when absent or empty).
  void clear() noexcept {
    wipe(heap_ ? heap_.get() : small_, len_);
    heap_.reset();
    len_ = 0;
    present_ = false;
  }

 private:
  bool present_ = false;
  std::size_t len_ = 0;
  std::unique_ptr<unsigned char[]> heap_;  // when longer than small_
  unsigned char small_[64];
};

struct fallback_functions {
  OSSL_FUNC_kdf_newctx_fn* newctx = nullptr;
  OSSL_FUNC_kdf_freectx_fn* freectx = nullptr;
  OSSL_FUNC_kdf_set_ctx_params_fn* set_ctx_params = nullptr;
  OSSL_FUNC_kdf_get_ctx_params_fn* get_ctx_params = nullptr;
  OSSL_FUNC_kdf_derive_fn* derive = nullptr;
};
fallback_functions fallback;  // set once, before the provider is loaded

struct kdf_ctx {
  void* provctx;
  // OpenSSL's own context, once the parameters asked for what only it does (see
  // needs_openssl); every call goes to it from then on, until a reset.
  void* delegate = nullptr;
  int mode = EVP_KDF_HKDF_MODE_EXTRACT_AND_EXPAND;
  const hash_impl* hash = nullptr;
  param_bytes key, salt, prefix, label, data;

  explicit kdf_ctx(void* p) noexcept : provctx(p) {}
  ~kdf_ctx() {
    if (delegate) fallback.freectx(delegate);
  }
  kdf_ctx(const kdf_ctx&) = delete;
  kdf_ctx& operator=(const kdf_ctx&) = delete;

  void reset() noexcept {
    if (delegate) fallback.freectx(delegate);
    delegate = nullptr;
    mode = EVP_KDF_HKDF_MODE_EXTRACT_AND_EXPAND;
    hash = nullptr;
    key.clear();
    salt.clear();
    prefix.clear();
    label.clear();
    data.clear();
  }
};

bool ascii_iequal(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           const auto lower = [](char ch) { return ch >= 'A' && ch <= 'Z' ? static_cast<char>(ch - 'A' + 'a') : ch; };
           return lower(x) == lower(y);
         });
}

// The names OpenSSL 3.0's default provider gives SHA-256 and SHA-384.
const hash_impl* hash_named(std::string_view name) noexcept {
  static constexpr std::string_view sha256_names[] = {"SHA2-256", "SHA-256", "SHA256", "2.16.840.1.101.3.4.2.1"};
  static constexpr std::string_view sha384_names[] = {"SHA2-384", "SHA-384", "SHA384", "2.16.840.1.101.3.4.2.2"};
  for (const auto n : sha256_names)
    if (ascii_iequal(name, n)) return &sha256_impl;
  for (const auto n : sha384_names)
    if (ascii_iequal(name, n)) return &sha384_impl;
  return nullptr;
}

// The parameters this implementation reads, each the first of its name in the list, as
// OSSL_PARAM_locate would find it. Found in one pass because libssl passes six parameters to
// each of the fifteen or so derivations of a handshake, and looking up each of the nine names
// on its own compared the names about sixty times per derivation.
struct kdf_params {
  const OSSL_PARAM* engine = nullptr;
  const OSSL_PARAM* properties = nullptr;
  const OSSL_PARAM* digest = nullptr;
  const OSSL_PARAM* mode = nullptr;
  const OSSL_PARAM* key = nullptr;
  const OSSL_PARAM* salt = nullptr;
  const OSSL_PARAM* prefix = nullptr;
  const OSSL_PARAM* label = nullptr;
  const OSSL_PARAM* data = nullptr;

  explicit kdf_params(const OSSL_PARAM* params) noexcept {
    for (const OSSL_PARAM* p = params; p->key; ++p)
      if (const OSSL_PARAM** slot = slot_for(p->key); slot && !*slot) *slot = p;
  }

 private:
  const OSSL_PARAM** slot_for(std::string_view name) noexcept {
    const std::pair<std::string_view, const OSSL_PARAM**> slots[] = {
        {OSSL_KDF_PARAM_KEY, &key},       {OSSL_KDF_PARAM_DATA, &data},
        {OSSL_KDF_PARAM_PREFIX, &prefix}, {OSSL_KDF_PARAM_LABEL, &label},
        {OSSL_KDF_PARAM_MODE, &mode},     {OSSL_KDF_PARAM_DIGEST, &digest},
        {OSSL_KDF_PARAM_SALT, &salt},     {OSSL_KDF_PARAM_PROPERTIES, &properties},
        {OSSL_ALG_PARAM_ENGINE, &engine},
    };
    for (const auto& [n, slot] : slots)
      if (n == name) return slot;
    return nullptr;
  }
};

// Whether `params` ask for what only OpenSSL's implementation does: another digest (or a
// malformed digest parameter, which its own checks judge), a property query (which can
// make its digest fetch fail), or an engine. libssl asks for none of these. Otherwise sets
// `hash` to the digest asked for (unchanged when none is).
bool needs_openssl(const kdf_params& k, const hash_impl*& hash) noexcept {
  if (k.engine) return true;
  if (const OSSL_PARAM* p = k.properties)
    if (p->data_type != OSSL_PARAM_UTF8_STRING || (p->data && *static_cast<const char*>(p->data) != '\0')) return true;
  if (const OSSL_PARAM* p = k.digest) {
    if (p->data_type != OSSL_PARAM_UTF8_STRING || !p->data) return true;
    const hash_impl* h = hash_named(static_cast<const char*>(p->data));
    if (!h) return true;
    hash = h;
  }
  return false;
}

// Moves `c` to a context of OpenSSL's implementation in the same state. Its set-up always
// clears the data and stops at an invalid mode, so the state is given with a valid mode
// and, when `c`'s is not, that mode is set afterwards on its own.
bool hand_over(kdf_ctx& c) noexcept {
  void* const d = fallback.newctx(c.provctx);
  if (!d) return false;
  const bool mode_valid = c.mode == EVP_KDF_HKDF_MODE_EXTRACT_ONLY || c.mode == EVP_KDF_HKDF_MODE_EXPAND_ONLY;
  int mode = mode_valid ? c.mode : EVP_KDF_HKDF_MODE_EXPAND_ONLY;
  OSSL_PARAM params[8];
  OSSL_PARAM* p = params;
  *p++ = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
  if (c.hash) *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, const_cast<char*>(c.hash->name), 0);
  const std::pair<const char*, const param_bytes*> octets[] = {
      {OSSL_KDF_PARAM_KEY, &c.key},     {OSSL_KDF_PARAM_SALT, &c.salt}, {OSSL_KDF_PARAM_PREFIX, &c.prefix},
      {OSSL_KDF_PARAM_LABEL, &c.label}, {OSSL_KDF_PARAM_DATA, &c.data},
  };
  for (const auto& [name, b] : octets)
    if (b->present())
      *p++ = OSSL_PARAM_construct_octet_string(name, const_cast<unsigned char*>(b->data()), b->view().size());
  *p = OSSL_PARAM_construct_end();
  if (fallback.set_ctx_params(d, params) != 1) {
    fallback.freectx(d);
    return false;
  }
  if (!mode_valid) {
    int invalid = c.mode;
    const OSSL_PARAM again[] = {OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &invalid), OSSL_PARAM_construct_end()};
    ERR_set_mark();
    (void)fallback.set_ctx_params(d, again);  // refused after storing the mode, as wanted
    ERR_pop_to_mark();
  }
  c.reset();  // cleanses what is now OpenSSL's to hold
  c.delegate = d;
  return true;
}

int set_octets(param_bytes& b, const OSSL_PARAM* p) noexcept { return !p || b.assign(*p) ? 1 : 0; }

// OpenSSL 3.0's kdf_tls1_3_set_ctx_params, step for step.
int kdf_set_ctx_params(void* vctx, const OSSL_PARAM params[]) noexcept {
  auto& c = *static_cast<kdf_ctx*>(vctx);
  if (!params) return 1;
  if (c.delegate) return fallback.set_ctx_params(c.delegate, params);
  const kdf_params k(params);
  // What is left of ossl_prov_digest_load_from_params: a digest this file computes (set by
  // needs_openssl).
  if (needs_openssl(k, c.hash)) return hand_over(c) ? fallback.set_ctx_params(c.delegate, params) : 0;
  if (const OSSL_PARAM* p = k.mode) {
    int n = 0;
    if (p->data_type == OSSL_PARAM_UTF8_STRING) {
      const std::string_view s = p->data ? static_cast<const char*>(p->data) : "";
      if (ascii_iequal(s, "EXTRACT_AND_EXPAND"))
        c.mode = EVP_KDF_HKDF_MODE_EXTRACT_AND_EXPAND;
      else if (ascii_iequal(s, "EXTRACT_ONLY"))
        c.mode = EVP_KDF_HKDF_MODE_EXTRACT_ONLY;
      else if (ascii_iequal(s, "EXPAND_ONLY"))
        c.mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
      else {
        ERR_raise(ERR_LIB_PROV, PROV_R_INVALID_MODE);
        return 0;
      }
    } else if (OSSL_PARAM_get_int(p, &n) && (n == EVP_KDF_HKDF_MODE_EXTRACT_AND_EXPAND ||
                                             n == EVP_KDF_HKDF_MODE_EXTRACT_ONLY || n == EVP_KDF_HKDF_MODE_EXPAND_ONLY)) {
      c.mode = n;
    } else {
      ERR_raise(ERR_LIB_PROV, PROV_R_INVALID_MODE);
      return 0;
    }
  }
  if (!set_octets(c.key, k.key) || !set_octets(c.salt, k.salt)) return 0;
  if (c.mode == EVP_KDF_HKDF_MODE_EXTRACT_AND_EXPAND) {
    ERR_raise(ERR_LIB_PROV, PROV_R_INVALID_MODE);
    return 0;
  }
  if (!set_octets(c.prefix, k.prefix) || !set_octets(c.label, k.label)) return 0;
  c.data.clear();  // the context is given anew with each call, as in OpenSSL
  return set_octets(c.data, k.data);
}

// RFC 8446's Derive-Secret(salt, "derived", "") then HKDF-Extract, as OpenSSL 3.0's
// prov_tls13_hkdf_generate_secret: a missing key is zeros, a missing salt skips the first
// step.
int generate_secret(const kdf_ctx& c, std::span<unsigned char> out) noexcept {
  const hash_impl& h = *c.hash;
  if (out.size() != h.size) {
    ERR_raise(ERR_LIB_PROV, PROV_R_WRONG_OUTPUT_BUFFER_SIZE);
    return 0;
  }
  static constexpr unsigned char zeros[max_hash_size] = {};
  const std::span<const unsigned char> insecret = c.key.present() ? c.key.view() : std::span(zeros, h.size);
  if (!c.salt.present()) {
    extract(h, {}, insecret, out.data());
    return 1;
  }
  unsigned char empty_hash[max_hash_size];
  hash_ctx e;
  h.init(e);
  h.final(e, empty_hash);
  unsigned char prev[max_hash_size];
  if (!expand_label(h, c.salt.view(), c.prefix.view(), c.label.view(), {empty_hash, h.size}, {prev, h.size}))
    return 0;
  extract(h, {prev, h.size}, insecret, out.data());
  wipe(prev, sizeof prev);
  return 1;
}

void* kdf_new(void* provctx) noexcept { return new (std::nothrow) kdf_ctx(provctx); }
void kdf_free(void* vctx) noexcept { delete static_cast<kdf_ctx*>(vctx); }
void kdf_reset(void* vctx) noexcept { static_cast<kdf_ctx*>(vctx)->reset(); }

int kdf_derive(void* vctx, unsigned char* out, std::size_t outlen, const OSSL_PARAM params[]) noexcept {
  auto& c = *static_cast<kdf_ctx*>(vctx);
  if (!kdf_set_ctx_params(vctx, params)) return 0;
  if (c.delegate) return fallback.derive(c.delegate, out, outlen, nullptr);  // given `params` above
  if (!c.hash) {
    ERR_raise(ERR_LIB_PROV, PROV_R_MISSING_MESSAGE_DIGEST);
    return 0;
  }
  if (!out) return 0;
  const std::span<unsigned char> dest(out, outlen);
  switch (c.mode) {
    case EVP_KDF_HKDF_MODE_EXTRACT_ONLY:
      return generate_secret(c, dest);
    case EVP_KDF_HKDF_MODE_EXPAND_ONLY:
      // OpenSSL's HMAC_Init_ex refuses a missing key.
      return c.key.present() && expand_label(*c.hash, c.key.view(), c.prefix.view(), c.label.view(), c.data.view(), dest)
                 ? 1
                 : 0;
    default:
      return 0;
  }
}

int kdf_get_ctx_params(void* vctx, OSSL_PARAM params[]) noexcept {
  const auto& c = *static_cast<const kdf_ctx*>(vctx);
  if (c.delegate) return fallback.get_ctx_params(c.delegate, params);
  if (OSSL_PARAM* p = OSSL_PARAM_locate(params, OSSL_KDF_PARAM_SIZE)) {
    if (c.mode != EVP_KDF_HKDF_MODE_EXTRACT_ONLY) return OSSL_PARAM_set_size_t(p, SIZE_MAX);
    if (!c.hash) {
      ERR_raise(ERR_LIB_PROV, PROV_R_MISSING_MESSAGE_DIGEST);
      return 0;
    }
    return OSSL_PARAM_set_size_t(p, c.hash->size);
  }
  if (OSSL_PARAM* p = OSSL_PARAM_locate(params, OSSL_KDF_PARAM_INFO)) {
    p->return_size = 0;  // TLS13-KDF takes no info
    return 1;
  }
  return -2;  // what OpenSSL's returns for nothing it knows
}

const OSSL_PARAM settable[] = {
    OSSL_PARAM_utf8_string(OSSL_KDF_PARAM_MODE, nullptr, 0),
    OSSL_PARAM_int(OSSL_KDF_PARAM_MODE, nullptr),
    OSSL_PARAM_utf8_string(OSSL_KDF_PARAM_PROPERTIES, nullptr, 0),
    OSSL_PARAM_utf8_string(OSSL_KDF_PARAM_DIGEST, nullptr, 0),
    OSSL_PARAM_octet_string(OSSL_KDF_PARAM_KEY, nullptr, 0),
    OSSL_PARAM_octet_string(OSSL_KDF_PARAM_SALT, nullptr, 0),
    OSSL_PARAM_octet_string(OSSL_KDF_PARAM_PREFIX, nullptr, 0),
    OSSL_PARAM_octet_string(OSSL_KDF_PARAM_LABEL, nullptr, 0),
    OSSL_PARAM_octet_string(OSSL_KDF_PARAM_DATA, nullptr, 0),
    OSSL_PARAM_END,
};

const OSSL_PARAM gettable[] = {
    OSSL_PARAM_size_t(OSSL_KDF_PARAM_SIZE, nullptr),
    OSSL_PARAM_octet_string(OSSL_KDF_PARAM_INFO, nullptr, 0),
    OSSL_PARAM_END,
};

const OSSL_PARAM* kdf_settable(void*, void*) noexcept { return settable; }
const OSSL_PARAM* kdf_gettable(void*, void*) noexcept { return gettable; }

const OSSL_DISPATCH functions[] = {
    {OSSL_FUNC_KDF_NEWCTX, as_dispatch(&kdf_new)},
    {OSSL_FUNC_KDF_FREECTX, as_dispatch(&kdf_free)},
    {OSSL_FUNC_KDF_RESET, as_dispatch(&kdf_reset)},
    {OSSL_FUNC_KDF_DERIVE, as_dispatch(&kdf_derive)},
    {OSSL_FUNC_KDF_SETTABLE_CTX_PARAMS, as_dispatch(&kdf_settable)},
    {OSSL_FUNC_KDF_SET_CTX_PARAMS, as_dispatch(&kdf_set_ctx_params)},
    {OSSL_FUNC_KDF_GETTABLE_CTX_PARAMS, as_dispatch(&kdf_gettable)},
    {OSSL_FUNC_KDF_GET_CTX_PARAMS, as_dispatch(&kdf_get_ctx_params)},
    {0, nullptr},
};

}  // namespace

std::size_t hkdf_hash_size(hkdf_hash h) noexcept { return impl_of(h).size; }

void hkdf_extract(hkdf_hash h, std::span<const unsigned char> salt, std::span<const unsigned char> ikm,
                  unsigned char* prk) noexcept {
  extract(impl_of(h), salt, ikm, prk);
}

bool hkdf_expand(hkdf_hash h, std::span<const unsigned char> prk, std::span<const unsigned char> info,
                 std::span<unsigned char> out) noexcept {
  return expand(impl_of(h), prk, info, out);
}

bool hkdf_expand_label(hkdf_hash h, std::span<const unsigned char> secret, std::string_view label,
                       std::span<unsigned char> out) noexcept {
  constexpr std::string_view prefix = "tls13 ";
  const auto bytes = [](std::string_view v) {
    return std::span(reinterpret_cast<const unsigned char*>(v.data()), v.size());
  };
  return expand_label(impl_of(h), secret, bytes(prefix), bytes(label), {}, out);
}

const OSSL_DISPATCH* tls13_kdf_functions(const OSSL_DISPATCH* from) noexcept {
  fallback_functions f;
  for (const OSSL_DISPATCH* d = from; d && d->function_id != 0; ++d) {
    switch (d->function_id) {
      case OSSL_FUNC_KDF_NEWCTX: f.newctx = OSSL_FUNC_kdf_newctx(d); break;
      case OSSL_FUNC_KDF_FREECTX: f.freectx = OSSL_FUNC_kdf_freectx(d); break;
      case OSSL_FUNC_KDF_SET_CTX_PARAMS: f.set_ctx_params = OSSL_FUNC_kdf_set_ctx_params(d); break;
      case OSSL_FUNC_KDF_GET_CTX_PARAMS: f.get_ctx_params = OSSL_FUNC_kdf_get_ctx_params(d); break;
      case OSSL_FUNC_KDF_DERIVE: f.derive = OSSL_FUNC_kdf_derive(d); break;
      default: break;
    }
  }
  if (!f.newctx || !f.freectx || !f.set_ctx_params || !f.get_ctx_params || !f.derive) return nullptr;
  fallback = f;
  return functions;
}

const OSSL_PARAM* tls13_kdf_settable_params() noexcept { return settable; }

}  // namespace letsencrypt::tls::detail
