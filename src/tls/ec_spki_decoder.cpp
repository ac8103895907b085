// The EC_KEY functions are deprecated in OpenSSL 3.0, but an EC_KEY is what the default
// provider's EC key manager holds and loads by reference.
#define OPENSSL_SUPPRESS_DEPRECATED
#include "tls/ec_spki_decoder.hpp"
#include "tls/dispatch.hpp"

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/ec.h>
#include <openssl/obj_mac.h>
#include <openssl/params.h>

#include <array>
#include <atomic>
#include <cstring>
#include <new>
#include <span>

// Why: OpenSSL 3.0 decodes a certificate's EC public key through the default provider's
// decoder, which builds the curve's group from its name for every key: two Montgomery
// set-ups with modular inversions, about 7 us of a 26 us certificate parse here. Copying a
// group made once costs a fraction of that, and the key is otherwise the same object.

namespace letsencrypt::tls::detail {
namespace {

// The DER a certificate carries for each curve, up to the point's first byte (0x04,
// uncompressed): SEQUENCE { SEQUENCE { id-ecPublicKey, namedCurve }, BIT STRING }.
struct curve {
  int nid;
  std::span<const unsigned char> prefix;
  std::size_t coordinate;  // bytes per coordinate
  EC_GROUP* group = nullptr;
};

constexpr unsigned char p256_prefix[] = {0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
                                         0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00};
constexpr unsigned char p384_prefix[] = {0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02,
                                         0x01, 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22, 0x03, 0x62, 0x00};
constexpr unsigned char p521_prefix[] = {0x30, 0x81, 0x9b, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02,
                                         0x01, 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23, 0x03, 0x81, 0x86, 0x00};

std::array<curve, 3> curves{{{NID_X9_62_prime256v1, p256_prefix, 32},
                             {NID_secp384r1, p384_prefix, 48},
                             {NID_secp521r1, p521_prefix, 66}}};

constexpr std::size_t longest_spki = sizeof p521_prefix + 1 + 2 * 66;

OSSL_FUNC_decoder_does_selection_fn* openssl_does_selection = nullptr;
OSSL_FUNC_keymgmt_export_fn* ec_export_fn = nullptr;
OSSL_FUNC_BIO_read_ex_fn* core_read = nullptr;
OSSL_LIB_CTX* keys_ctx = nullptr;
std::atomic<std::uint64_t> decoded{0};

// The selection a decode was asked for, which export_object passes on as OpenSSL's does.
struct decoder_ctx {
  int selection = 0;
};

void* newctx(void*) noexcept { return new (std::nothrow) decoder_ctx; }
void freectx(void* vctx) noexcept { delete static_cast<decoder_ctx*>(vctx); }

int does_selection(void* provctx, int selection) noexcept { return openssl_does_selection(provctx, selection); }

// Reads exactly `out.size()` bytes from the core's BIO; false when it ends or fails first.
bool read_exactly(OSSL_CORE_BIO* in, std::span<unsigned char> out) noexcept {
  std::size_t got = 0;
  while (got < out.size()) {
    std::size_t n = 0;
    if (core_read(in, out.data() + got, out.size() - got, &n) != 1 || n == 0) return false;
    got += n;
  }
  return true;
}

// Reads one DER SEQUENCE of a size this decoder takes, and no byte past it (as OpenSSL's
// decoder reads one object: the input may be a stream holding more); its size, or 0.
std::size_t read_one_sequence(OSSL_CORE_BIO* in, std::span<unsigned char> out) noexcept {
  if (!read_exactly(in, out.first(2)) || out[0] != 0x30) return 0;
  std::size_t header = 2;
  std::size_t length = out[1];
  if (length == 0x81) {
    if (!read_exactly(in, out.subspan(2, 1))) return 0;
    header = 3;
    length = out[2];
  } else if (length > 0x7f) {
    return 0;
  }
  if (header + length > out.size() || !read_exactly(in, out.subspan(header, length))) return 0;
  return header + length;
}

// The key in `der`, when it is exactly one of `curves`' prefixes and a point on that curve;
// null otherwise.
EC_KEY* fast_key(std::span<const unsigned char> der) noexcept {
  for (const curve& c : curves) {
    const std::size_t size = c.prefix.size() + 1 + 2 * c.coordinate;
    if (der.size() != size || std::memcmp(der.data(), c.prefix.data(), c.prefix.size()) != 0 ||
        der[c.prefix.size()] != 0x04)
      continue;
    EC_KEY* key = EC_KEY_new_ex(keys_ctx, nullptr);
    // EC_KEY_set_group copies the group; EC_KEY_oct2key checks that the point is on it.
    if (key && EC_KEY_set_group(key, c.group) == 1 &&
        EC_KEY_oct2key(key, der.data() + c.prefix.size(), der.size() - c.prefix.size(), nullptr) == 1)
      return key;
    EC_KEY_free(key);
    return nullptr;
  }
  return nullptr;
}

// Makes a key only from what fast_key takes, and otherwise nothing, so that the next
// decoder (OpenSSL's) decides; a decoder that makes nothing has not failed.
int decode(void* vctx, OSSL_CORE_BIO* in, int selection, OSSL_CALLBACK* data_cb, void* data_cbarg,
           OSSL_PASSPHRASE_CALLBACK*, void*) noexcept {
  auto& ctx = *static_cast<decoder_ctx*>(vctx);
  ctx.selection = selection;
  // OpenSSL's SubjectPublicKeyInfo decoder makes a key for a public-key selection (or none
  // given) and nothing when a private key is asked for; parameters alone are left to it.
  if (selection != 0 &&
      ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0 || (selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) == 0))
    return 1;
  if (!core_read) return 1;
  unsigned char der[longest_spki];
  const std::size_t n = read_one_sequence(in, der);
  EC_KEY* key = n ? fast_key({der, n}) : nullptr;
  if (!key) return 1;
  int object_type = OSSL_OBJECT_PKEY;
  char data_type[] = "EC";
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &object_type),
      OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_TYPE, data_type, 0),
      // The address of the key is the reference, which the key manager's load takes over.
      OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_REFERENCE, &key, sizeof key),
      OSSL_PARAM_construct_end(),
  };
  const int ok = data_cb(params, data_cbarg);
  if (!key) decoded.fetch_add(1, std::memory_order_relaxed);
  EC_KEY_free(key);  // null when the load took it
  return ok;
}

int export_object(void* vctx, const void* reference, std::size_t reference_sz, OSSL_CALLBACK* export_cb,
                  void* export_cbarg) noexcept {
  const auto& ctx = *static_cast<const decoder_ctx*>(vctx);
  void* keydata = nullptr;
  if (reference_sz != sizeof keydata) return 0;
  std::memcpy(&keydata, reference, sizeof keydata);
  return ec_export_fn(keydata, ctx.selection != 0 ? ctx.selection : OSSL_KEYMGMT_SELECT_ALL, export_cb, export_cbarg);
}

const OSSL_DISPATCH functions[] = {
    {OSSL_FUNC_DECODER_NEWCTX, as_dispatch(&newctx)},
    {OSSL_FUNC_DECODER_FREECTX, as_dispatch(&freectx)},
    {OSSL_FUNC_DECODER_DOES_SELECTION, as_dispatch(&does_selection)},
    {OSSL_FUNC_DECODER_DECODE, as_dispatch(&decode)},
    {OSSL_FUNC_DECODER_EXPORT_OBJECT, as_dispatch(&export_object)},
    {0, nullptr},
};

}  // namespace

const OSSL_DISPATCH* ec_spki_decoder_functions(const OSSL_DISPATCH* openssl_spki_ec, void (*ec_export)(),
                                               OSSL_LIB_CTX* key_ctx) noexcept {
  auto* const selection_fn = reinterpret_cast<OSSL_FUNC_decoder_does_selection_fn*>(
      find_function(openssl_spki_ec, OSSL_FUNC_DECODER_DOES_SELECTION));
  if (!selection_fn || !ec_export) return nullptr;
  // The groups belong to `key_ctx`, the context the keys are made in; OpenSSL's decoder makes
  // its groups in the default context. A group's context only supplies randomness to point
  // arithmetic given no BN_CTX, which a public key's group is never used for.
  for (curve& c : curves) {
    if (!c.group) {
      c.group = EC_GROUP_new_by_curve_name_ex(key_ctx, nullptr, c.nid);
      if (!c.group) return nullptr;
      // Every key copies this group. The curve's seed (how its parameters were generated)
      // enters no computation and is written only with explicit parameters, where it is
      // optional and OpenSSL's matching of parameters to a named curve skips it when
      // absent: 32 bytes per key not copied.
      EC_GROUP_set_seed(c.group, nullptr, 0);
    }
  }
  openssl_does_selection = selection_fn;
  ec_export_fn = reinterpret_cast<OSSL_FUNC_keymgmt_export_fn*>(ec_export);
  keys_ctx = key_ctx;
  return functions;
}

void ec_spki_decoder_set_core(const OSSL_DISPATCH* core) noexcept {
  core_read = reinterpret_cast<OSSL_FUNC_BIO_read_ex_fn*>(find_function(core, OSSL_FUNC_BIO_READ_EX));
}

std::uint64_t ec_spki_keys_decoded() noexcept { return decoded.load(std::memory_order_relaxed); }

}  // namespace letsencrypt::tls::detail
