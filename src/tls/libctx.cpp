#include "tls/libctx.hpp"

#include "tls/dispatch.hpp"
#include "tls/ec_keymgmt.hpp"
#include "tls/ec_spki_decoder.hpp"
#include "tls/tls13_kdf.hpp"
#include "tls/x25519_keygen.hpp"

#include <openssl/core_dispatch.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/provider.h>

#include <cstring>
#include <iterator>
#include <new>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

// Why a library context of our own: when d2i_X509 meets the public key, OpenSSL 3.0 builds
// an OSSL_DECODER context for it, and building one walks every key manager and every
// decoder of every provider, looking each name up under a read lock. For one P-256
// certificate that is about 60 of the 90 us d2i_X509 takes here, and the work does not
// depend on the certificate. In a context whose decoders are only those a certificate's
// public key can need, the whole parse takes about 30 us.
//
// The context's one provider is a default provider seen through a filter: its query hands
// out that provider's own algorithm tables, so every algorithm is the default provider's
// code working on its own provider context, with four exceptions. The decoders are narrowed
// (to SubjectPublicKeyInfo for EC, RSA, RSA-PSS, Ed25519 and Ed448), and so are the key
// managers (to those key types, TLS's key exchanges and HMAC), because building a decoder
// context walks every key manager. The TLS 1.3 key schedule's KDF is the library's own
// (tls13_kdf.cpp), because OpenSSL's fetches a digest and allocates HMAC contexts at every
// step of every handshake. And X25519 key pairs are generated through a faster fixed-base
// multiplication (x25519_keygen.cpp), into OpenSSL's own key objects, because every
// handshake makes one. And the EC key manager's set_params also takes a private scalar for a
// public key (ec_keymgmt.cpp), so that a certificate and its key share one key object and
// one curve group. That default provider is loaded into a hidden context of its own,
// not borrowed from OpenSSL's default context, so its internal fetches and its lifetime do
// not depend on how the application configures or unloads the default context's providers.
//
// Why the other operations are narrowed too (ciphers to AES and ChaCha20, digests to the SHA
// families and MD5, MACs, KDFs, and key exchanges, signatures and asymmetric ciphers to those
// of the kept key types): OpenSSL 3.0 keeps the algorithms of every EVP operation in one
// store, and EVP_KEYMGMT_do_all_provided, which every decoder context (so every certificate
// parse) runs, copies that whole store under its lock and takes a reference on each entry.
// Once a server context has fetched the default provider's 124 ciphers, that walk took 50 us
// of a 300 us certificate load here; on the narrowed store it takes 23 us. TLS suites whose
// cipher is left out (ARIA, Camellia, SM4, triple DES) are simply not offered.
//
// Why keys and server contexts live there too: OpenSSL compares and uses keys of two
// contexts by exporting one into the other's key manager and keeping the copy with the key.
// A certificate parsed here checked against a key made in the default context (as
// make_certified_key and every SSL_use_cert_and_key do) would keep such a copy of its
// public key, about 2 KiB per certificate.

namespace letsencrypt::tls::detail {
namespace {

struct filter_state {
  OSSL_LIB_CTX* hidden = nullptr;  // holds `base`
  OSSL_PROVIDER* base = nullptr;
  // Copies of the default provider's table entries, whose strings and dispatch tables are
  // static in OpenSSL 3.0, so they outlive the unquery.
  // The operations whose tables are narrowed copies, each with its table.
  std::vector<std::pair<int, std::vector<OSSL_ALGORITHM>>> narrowed;

  const OSSL_ALGORITHM* table_of(int operation) const noexcept {
    for (const auto& [op, table] : narrowed)
      if (op == operation) return table.data();
    return nullptr;
  }
};

filter_state* state = nullptr;  // set once, before the provider is loaded; never freed

// The key types of TLS server certificates: the only ones whose decoders the context keeps.
struct key_type {
  std::string_view name;  // the first name of the provider's algorithm
  int nid;                // the SubjectPublicKeyInfo algorithm
};
constexpr key_type certificate_key_types[] = {
    {"EC", NID_X9_62_id_ecPublicKey}, {"RSA", NID_rsaEncryption}, {"RSA-PSS", NID_rsassaPss},
    {"ED25519", NID_ED25519},         {"ED448", NID_ED448},
};

// The name an algorithm is known by first: "EC" of "EC:id-ecPublicKey:1.2.840.10045.2.1".
std::string_view first_name(const char* names) {
  const std::string_view all(names);
  return all.substr(0, all.find(':'));
}

bool certificate_key_type(const char* names) {
  for (const auto& k : certificate_key_types)
    if (first_name(names) == k.name) return true;
  return false;
}

const OSSL_ALGORITHM* filter_query(void*, int operation, int* no_cache) {
  *no_cache = 0;
  if (const OSSL_ALGORITHM* ours = state->table_of(operation)) return ours;
  return OSSL_PROVIDER_query_operation(state->base, operation, no_cache);
}

void filter_unquery(void*, int operation, const OSSL_ALGORITHM* algs) {
  if (!state->table_of(operation)) OSSL_PROVIDER_unquery_operation(state->base, operation, algs);
}

int filter_get_capabilities(void*, const char* capability, OSSL_CALLBACK* cb, void* arg) {
  return OSSL_PROVIDER_get_capabilities(state->base, capability, cb, arg);
}

void filter_teardown(void*) {}  // the context it lent is the default provider's

const OSSL_DISPATCH filter_dispatch[] = {
    {OSSL_FUNC_PROVIDER_QUERY_OPERATION, as_dispatch(&filter_query)},
    {OSSL_FUNC_PROVIDER_UNQUERY_OPERATION, as_dispatch(&filter_unquery)},
    {OSSL_FUNC_PROVIDER_GET_CAPABILITIES, as_dispatch(&filter_get_capabilities)},
    {OSSL_FUNC_PROVIDER_TEARDOWN, as_dispatch(&filter_teardown)},
    {0, nullptr},
};

int filter_init(const OSSL_CORE_HANDLE*, const OSSL_DISPATCH* core, const OSSL_DISPATCH** out, void** provctx) {
  ec_spki_decoder_set_core(core);
  // The default provider's functions are called with the provider context of the provider
  // they were fetched from: lend them their own.
  *provctx = OSSL_PROVIDER_get0_provider_ctx(state->base);
  *out = filter_dispatch;
  return *provctx != nullptr ? 1 : 0;
}

// A copy of `base`'s table for `operation`, terminated, with the entries `keep` returns
// true for (it may change the entry it is given).
template <typename Keep>
std::vector<OSSL_ALGORITHM> copy_table(OSSL_PROVIDER* base, int operation, Keep keep) {
  std::vector<OSSL_ALGORITHM> out;
  int no_cache = 0;
  const OSSL_ALGORITHM* const all = OSSL_PROVIDER_query_operation(base, operation, &no_cache);
  for (const OSSL_ALGORITHM* a = all; a && a->algorithm_names; ++a) {
    OSSL_ALGORITHM entry = *a;
    if (keep(entry)) out.push_back(entry);
  }
  OSSL_PROVIDER_unquery_operation(base, operation, all);
  out.push_back(OSSL_ALGORITHM{nullptr, nullptr, nullptr, nullptr});
  return out;
}

// The implementation of the first entry of `table` known first by `name`, or null.
const OSSL_DISPATCH* implementation_of(const std::vector<OSSL_ALGORITHM>& table, std::string_view name) {
  for (const OSSL_ALGORITHM& a : table)
    if (a.algorithm_names && first_name(a.algorithm_names) == name) return a.implementation;
  return nullptr;
}

// The decoders a certificate's public key can need, and the library's EC one after
// OpenSSL's: decoders run in the reverse of their order here, so the library's sees a key
// first and leaves what it does not take to OpenSSL's. Its property definition is OpenSSL's
// with one more property, because a provider's two decoders of one name with the same
// properties would be stored as one. `ec_export` is the EC key manager's export function,
// which the library's decoder hands keys to another provider with.
std::vector<OSSL_ALGORITHM> narrowed_decoders(OSSL_PROVIDER* base, OSSL_LIB_CTX* hidden, void (*ec_export)()) {
  static const std::string* fast_properties = nullptr;  // never freed, as the table is not
  std::vector<OSSL_ALGORITHM> out = copy_table(base, OSSL_OP_DECODER, [](const OSSL_ALGORITHM& a) {
    const char* props = a.property_definition;
    return certificate_key_type(a.algorithm_names) && props && std::strstr(props, "input=der") &&
           std::strstr(props, "structure=SubjectPublicKeyInfo");
  });
  for (std::size_t i = 0; i < out.size(); ++i) {
    OSSL_ALGORITHM& a = out[i];
    if (!a.algorithm_names || first_name(a.algorithm_names) != "EC") continue;
    const OSSL_DISPATCH* ours = ec_spki_decoder_functions(a.implementation, ec_export, hidden);
    if (!ours) break;
    fast_properties = new std::string(std::string(a.property_definition) + ",letsencrypt.cached_group=yes");
    OSSL_ALGORITHM fast = a;
    fast.property_definition = fast_properties->c_str();
    fast.implementation = ours;
    out.insert(out.begin() + static_cast<std::ptrdiff_t>(i) + 1, fast);
    break;
  }
  return out;
}

bool one_of(const char* names, std::span<const std::string_view> kept) {
  for (std::string_view k : kept)
    if (first_name(names) == k) return true;
  return false;
}

// The ciphers TLS suites, session tickets and the random generator (CTR-DRBG) use.
constexpr std::string_view kept_ciphers[] = {
    "AES-128-ECB", "AES-192-ECB", "AES-256-ECB", "AES-128-CBC", "AES-192-CBC", "AES-256-CBC",
    "AES-128-CTR", "AES-192-CTR", "AES-256-CTR", "AES-128-GCM", "AES-192-GCM", "AES-256-GCM",
    "AES-128-CCM", "AES-192-CCM", "AES-256-CCM", "ChaCha20", "ChaCha20-Poly1305",
    "AES-128-CBC-HMAC-SHA1", "AES-256-CBC-HMAC-SHA1", "AES-128-CBC-HMAC-SHA256", "AES-256-CBC-HMAC-SHA256"};
// What certificates are signed with, TLS's transcripts and PRFs, and Ed448's SHAKE.
constexpr std::string_view kept_digests[] = {
    "SHA1",     "SHA2-224", "SHA2-256", "SHA2-384",  "SHA2-512",  "SHA2-512/224", "SHA2-512/256", "SHA3-224",
    "SHA3-256", "SHA3-384", "SHA3-512", "SHAKE-128", "SHAKE-256", "MD5",          "MD5-SHA1"};
constexpr std::string_view kept_macs[] = {"HMAC", "GMAC", "CMAC", "POLY1305"};
// TLS's key schedules, and the password KDFs of encrypted PKCS#8 keys.
constexpr std::string_view kept_kdfs[] = {"HKDF", "TLS13-KDF", "TLS1-PRF", "PBKDF2", "SCRYPT"};
// The operations of the kept key managers.
constexpr std::string_view kept_key_exchanges[] = {"ECDH", "X25519", "X448", "DH"};
constexpr std::string_view kept_signatures[] = {"ECDSA", "RSA", "ED25519", "ED448", "HMAC"};
constexpr std::string_view kept_asym_ciphers[] = {"RSA"};

// The default provider's KDFs the context keeps, with TLS13-KDF's functions replaced by the
// library's.
std::vector<OSSL_ALGORITHM> kdfs_with_ours(OSSL_PROVIDER* base) {
  return copy_table(base, OSSL_OP_KDF, [](OSSL_ALGORITHM& a) {
    if (first_name(a.algorithm_names) == "TLS13-KDF")
      if (const OSSL_DISPATCH* ours = tls13_kdf_functions(a.implementation)) a.implementation = ours;
    return one_of(a.algorithm_names, kept_kdfs);
  });
}

// The default provider's algorithms of `operation` named in `kept`.
std::vector<OSSL_ALGORITHM> kept_of(OSSL_PROVIDER* base, int operation, std::span<const std::string_view> kept) {
  return copy_table(base, operation, [kept](const OSSL_ALGORITHM& a) { return one_of(a.algorithm_names, kept); });
}

// The key managers the context keeps: certificate keys, TLS's key exchanges (X25519, X448,
// ECDH through EC, finite-field groups through DH), and HMAC, which libssl makes keys of for
// TLS 1.3's Finished and PSK binder. Left out: DSA (TLS 1.3 has no DSA, and DSA certificates'
// keys are not decoded here anyway), X9.42 DH, SM2, and the key types OpenSSL keeps only so
// that EVP_PKEY can drive KDFs and other MACs (HKDF, TLS1-PRF, SCRYPT, SipHash, Poly1305,
// CMAC), which libssl does not use.
constexpr std::string_view kept_key_managers[] = {"EC",     "RSA",  "RSA-PSS", "ED25519", "ED448",
                                                  "X25519", "X448", "DH",      "HMAC"};

// The default provider's key managers the context keeps, with X25519's key-pair generation
// replaced by the library's and EC's able to attach a private key to a certificate's public
// one (ec_keymgmt.hpp); OpenSSL's where that cannot be set up.
std::vector<OSSL_ALGORITHM> keymgmts_with_ours(OSSL_PROVIDER* base, OSSL_LIB_CTX* hidden) {
  return copy_table(base, OSSL_OP_KEYMGMT, [hidden](OSSL_ALGORITHM& a) {
    const std::string_view name = first_name(a.algorithm_names);
    if (name == "X25519")
      if (const OSSL_DISPATCH* ours = x25519_keymgmt_functions(a.implementation, hidden)) a.implementation = ours;
    if (name == "EC")
      if (const OSSL_DISPATCH* ours = ec_keymgmt_functions(a.implementation)) a.implementation = ours;
    for (std::string_view k : kept_key_managers)
      if (name == k) return true;
    return false;
  });
}

// The filter's state over a default provider in a hidden context; null when OpenSSL or
// memory fails.
filter_state* make_state() noexcept {
  OSSL_LIB_CTX* hidden = OSSL_LIB_CTX_new();
  if (!hidden) return nullptr;
  OSSL_PROVIDER* base = OSSL_PROVIDER_load(hidden, "default");
  filter_state* s = nullptr;
  if (base) {
    try {
      std::vector<OSSL_ALGORITHM> keymgmt = keymgmts_with_ours(base, hidden);
      void (*const ec_export)() = find_function(implementation_of(keymgmt, "EC"), OSSL_FUNC_KEYMGMT_EXPORT);
      s = new filter_state{hidden, base, {}};
      s->narrowed.emplace_back(OSSL_OP_DECODER, narrowed_decoders(base, hidden, ec_export));
      s->narrowed.emplace_back(OSSL_OP_KEYMGMT, std::move(keymgmt));
      s->narrowed.emplace_back(OSSL_OP_KDF, kdfs_with_ours(base));
      s->narrowed.emplace_back(OSSL_OP_CIPHER, kept_of(base, OSSL_OP_CIPHER, kept_ciphers));
      s->narrowed.emplace_back(OSSL_OP_DIGEST, kept_of(base, OSSL_OP_DIGEST, kept_digests));
      s->narrowed.emplace_back(OSSL_OP_MAC, kept_of(base, OSSL_OP_MAC, kept_macs));
      s->narrowed.emplace_back(OSSL_OP_KEYEXCH, kept_of(base, OSSL_OP_KEYEXCH, kept_key_exchanges));
      s->narrowed.emplace_back(OSSL_OP_SIGNATURE, kept_of(base, OSSL_OP_SIGNATURE, kept_signatures));
      s->narrowed.emplace_back(OSSL_OP_ASYM_CIPHER, kept_of(base, OSSL_OP_ASYM_CIPHER, kept_asym_ciphers));
    } catch (const std::bad_alloc&) {
    }
  }
  // Every table must hold what TLS needs of it; an OpenSSL whose names differ keeps the
  // default context.
  auto holds = [s](int operation, std::size_t at_least) {
    const OSSL_ALGORITHM* t = s->table_of(operation);
    std::size_t n = 0;
    for (; t && t[n].algorithm_names; ++n) {
    }
    return n >= at_least;
  };
  if (s && holds(OSSL_OP_DECODER, 1) && holds(OSSL_OP_CIPHER, std::size(kept_ciphers)) &&
      holds(OSSL_OP_DIGEST, std::size(kept_digests)) && holds(OSSL_OP_MAC, std::size(kept_macs)) &&
      holds(OSSL_OP_KDF, std::size(kept_kdfs)) && holds(OSSL_OP_KEYEXCH, std::size(kept_key_exchanges)) &&
      holds(OSSL_OP_SIGNATURE, std::size(kept_signatures)) && holds(OSSL_OP_ASYM_CIPHER, 1))
    return s;
  delete s;
  if (base) OSSL_PROVIDER_unload(base);
  OSSL_LIB_CTX_free(hidden);
  return nullptr;
}

OSSL_LIB_CTX* make_libctx() noexcept {
  filter_state* s = make_state();
  if (!s) return nullptr;
  state = s;  // kept for good: the context below refers to it until the process ends
  OSSL_LIB_CTX* ctx = OSSL_LIB_CTX_new();
  if (!ctx) return nullptr;
  if (OSSL_PROVIDER_add_builtin(ctx, "letsencrypt-default-filtered", &filter_init) != 1 ||
      !OSSL_PROVIDER_load(ctx, "letsencrypt-default-filtered")) {
    OSSL_LIB_CTX_free(ctx);
    return nullptr;
  }
  return ctx;
}

// Whether OpenSSL's default context offers nothing the library context lacks: FIPS
// properties off, and no provider active but default and base. A provider the application
// loaded (pkcs11, a post-quantum group, legacy) or FIPS mode keeps the library out of its
// own context, so what was configured keeps working.
bool default_context_is_plain() noexcept {
  OSSL_LIB_CTX* const global = OSSL_LIB_CTX_get0_global_default();
  if (EVP_default_properties_is_fips_enabled(global) == 1) return false;
  struct seen {
    bool other = false;
    bool default_provider = false;
  } s;
  const int walked = OSSL_PROVIDER_do_all(
      global,
      [](OSSL_PROVIDER* p, void* arg) -> int {
        auto& out = *static_cast<seen*>(arg);
        const std::string_view name = OSSL_PROVIDER_get0_name(p);
        if (name == "default")
          out.default_provider = true;
        else if (name != "base")
          out.other = true;
        return 1;
      },
      &s);
  return walked == 1 && s.default_provider && !s.other;
}

}  // namespace

bool decodes_public_key(int nid) noexcept {
  for (const auto& k : certificate_key_types)
    if (nid == k.nid) return true;
  return false;
}

OSSL_LIB_CTX* library_context() noexcept {
  // The marks drop what the set-up and the walk may queue, and keep the caller's errors.
  static OSSL_LIB_CTX* const ctx = [] {
    ERR_set_mark();
    OSSL_LIB_CTX* c = make_libctx();
    ERR_pop_to_mark();
    return c;
  }();
  if (!ctx) return nullptr;
  ERR_set_mark();
  const bool plain = default_context_is_plain();
  ERR_pop_to_mark();
  return plain ? ctx : nullptr;
}

}  // namespace letsencrypt::tls::detail
