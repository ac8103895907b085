// The library context's X25519 key generation: public keys against RFC 7748 and OpenSSL's
// own computation, generated keys as OpenSSL keys that agree with OpenSSL's in key
// agreement, OpenSSL's generation kept where it must be, and handshakes through it.
#include <gtest/gtest.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include <openssl/crypto.h>

#include <array>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "memory_pair.hpp"
#include "test_certs.hpp"
#include "tls/libctx.hpp"
#include "tls/x25519_keygen.hpp"

using namespace letsencrypt;
using namespace letsencrypt::tls;
using letsencrypt::testing::test_certs;
using reference_context = letsencrypt::testing::openssl_reference_context;

namespace {

using key32 = std::array<unsigned char, 32>;
using letsencrypt::testing::evp_pkey_ctx_ptr;

key32 from_hex(std::string_view hex) {
  key32 out{};
  for (std::size_t i = 0; i < out.size(); ++i)
    out[i] = static_cast<unsigned char>(std::stoi(std::string(hex.substr(2 * i, 2)), nullptr, 16));
  return out;
}

key32 clamped(key32 k) {
  k[0] &= 248;
  k[31] &= 127;
  k[31] |= 64;
  return k;
}

key32 raw(EVP_PKEY* k, bool private_key) {
  key32 out{};
  std::size_t len = out.size();
  const int ok = private_key ? EVP_PKEY_get_raw_private_key(k, out.data(), &len)
                             : EVP_PKEY_get_raw_public_key(k, out.data(), &len);
  EXPECT_EQ(ok, 1);
  EXPECT_EQ(len, 32u);
  return out;
}

// OpenSSL's public key of `priv`, computed in the reference context.
key32 openssl_public(reference_context& ref, const key32& priv) {
  evp_pkey_ptr k(EVP_PKEY_new_raw_private_key_ex(ref.ctx.get(), "X25519", nullptr, priv.data(), priv.size()));
  EXPECT_TRUE(k);
  return k ? raw(k.get(), false) : key32{};
}

std::vector<unsigned char> derive(EVP_PKEY* mine, EVP_PKEY* peer) {
  evp_pkey_ctx_ptr c(EVP_PKEY_CTX_new_from_pkey(nullptr, mine, nullptr));
  std::vector<unsigned char> out(32);
  std::size_t len = out.size();
  if (!c || EVP_PKEY_derive_init(c.get()) != 1 || EVP_PKEY_derive_set_peer(c.get(), peer) != 1 ||
      EVP_PKEY_derive(c.get(), out.data(), &len) != 1)
    return {};
  out.resize(len);
  return out;
}

evp_pkey_ptr generate(OSSL_LIB_CTX* lib, const OSSL_PARAM* params = nullptr) {
  evp_pkey_ctx_ptr c(EVP_PKEY_CTX_new_from_name(lib, "X25519", nullptr));
  EVP_PKEY* k = nullptr;
  if (!c || EVP_PKEY_keygen_init(c.get()) != 1) return nullptr;
  if (params && EVP_PKEY_CTX_set_params(c.get(), params) != 1) return nullptr;
  if (EVP_PKEY_generate(c.get(), &k) != 1) return nullptr;
  return evp_pkey_ptr(k);
}

}  // namespace

TEST(x25519_keygen, gives_rfc7748s_public_keys) {
  // RFC 7748, 6.1: Alice's and Bob's keys.
  const key32 alice = clamped(from_hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"));
  const key32 bob = clamped(from_hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"));
  key32 pub{};
  ASSERT_TRUE(detail::x25519_public_from_private(alice, pub));
  EXPECT_EQ(pub, from_hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"));
  ASSERT_TRUE(detail::x25519_public_from_private(bob, pub));
  EXPECT_EQ(pub, from_hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"));
}

TEST(x25519_keygen, a_scalar_whose_point_is_infinity_gives_nothing) {
  // Zero, and the order of the base point (RFC 8032's L): never clamped scalars, but the
  // function's contract.
  for (const key32& k : {key32{}, from_hex("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010")}) {
    key32 pub;
    pub.fill(0xa5);
    EXPECT_FALSE(detail::x25519_public_from_private(k, pub));
    for (unsigned char b : pub) ASSERT_EQ(b, 0xa5) << "written on failure";
  }
}

TEST(x25519_keygen, public_keys_are_openssls_for_every_scalar) {
  reference_context ref;
  std::vector<key32> scalars;
  key32 lowest{};  // 2^254, the smallest clamped scalar
  lowest[31] = 64;
  scalars.push_back(lowest);
  key32 highest;  // 2^255 - 8, the largest
  highest.fill(0xff);
  scalars.push_back(clamped(highest));
  for (int i = 0; i < 3000; ++i) {
    key32 k;
    ASSERT_EQ(RAND_bytes(k.data(), static_cast<int>(k.size())), 1);
    scalars.push_back(clamped(k));
  }
  int compared = 0;
  for (const key32& k : scalars) {
    key32 pub{};
    ASSERT_TRUE(detail::x25519_public_from_private(k, pub));
    ASSERT_EQ(pub, openssl_public(ref, k)) << "scalar #" << compared;
    ++compared;
  }
  EXPECT_EQ(compared, 3002);
}

TEST(x25519_keygen, the_library_context_generates_openssl_keys_that_agree_with_openssls) {
  OSSL_LIB_CTX* lib = detail::library_context();
  ASSERT_NE(lib, nullptr);
  reference_context ref;
  const std::uint64_t before = detail::x25519_keys_generated();
  std::set<key32> seen;
  for (int i = 0; i < 500; ++i) {
    evp_pkey_ptr ours = generate(lib);
    ASSERT_TRUE(ours);
    EXPECT_TRUE(EVP_PKEY_is_a(ours.get(), "X25519"));
    const key32 priv = raw(ours.get(), true);
    EXPECT_EQ(priv, clamped(priv)) << "kept clamped, as OpenSSL keeps it";
    EXPECT_EQ(raw(ours.get(), false), openssl_public(ref, priv));
    EXPECT_TRUE(seen.insert(priv).second) << "a private key came twice";
    // Key agreement with a key OpenSSL generated, both ways, gives one secret.
    evp_pkey_ptr theirs(EVP_PKEY_Q_keygen(ref.ctx.get(), nullptr, "X25519"));
    ASSERT_TRUE(theirs);
    const auto a = derive(ours.get(), theirs.get());
    const auto b = derive(theirs.get(), ours.get());
    ASSERT_EQ(a.size(), 32u);
    EXPECT_EQ(a, b);
  }
  EXPECT_EQ(detail::x25519_keys_generated() - before, 500u);
}

TEST(x25519_keygen, a_generated_key_is_a_whole_openssl_key) {
  OSSL_LIB_CTX* lib = detail::library_context();
  ASSERT_NE(lib, nullptr);
  evp_pkey_ptr k = generate(lib);
  ASSERT_TRUE(k);
  EXPECT_EQ(EVP_PKEY_get_bits(k.get()), 253);
  EXPECT_EQ(EVP_PKEY_get_security_bits(k.get()), 128);
  EXPECT_EQ(EVP_PKEY_get_size(k.get()), 32);
  evp_pkey_ctx_ptr check(EVP_PKEY_CTX_new_from_pkey(lib, k.get(), nullptr));
  ASSERT_TRUE(check);
  EXPECT_EQ(EVP_PKEY_pairwise_check(check.get()), 1);
  EXPECT_EQ(EVP_PKEY_check(check.get()), 1);
  // The same private key imported in the library context is the same key.
  const key32 priv = raw(k.get(), true);
  evp_pkey_ptr same(EVP_PKEY_new_raw_private_key_ex(lib, "X25519", nullptr, priv.data(), priv.size()));
  ASSERT_TRUE(same);
  EXPECT_EQ(EVP_PKEY_eq(k.get(), same.get()), 1);
  evp_pkey_ptr copy(EVP_PKEY_dup(k.get()));
  ASSERT_TRUE(copy);
  EXPECT_EQ(EVP_PKEY_eq(k.get(), copy.get()), 1);
  EXPECT_EQ(raw(copy.get(), true), priv);
  unsigned char* encoded = nullptr;
  const std::size_t n = EVP_PKEY_get1_encoded_public_key(k.get(), &encoded);
  ASSERT_EQ(n, 32u);
  const key32 pub = raw(k.get(), false);
  EXPECT_EQ(std::memcmp(encoded, pub.data(), n), 0);
  OPENSSL_free(encoded);
  // The generation's parameters are OpenSSL's, asked with no generation context.
  std::unique_ptr<EVP_KEYMGMT, detail::free_fn<EVP_KEYMGMT, EVP_KEYMGMT_free>> km(EVP_KEYMGMT_fetch(lib, "X25519", nullptr));
  ASSERT_TRUE(km);
  const OSSL_PARAM* settable = EVP_KEYMGMT_gen_settable_params(km.get());
  ASSERT_NE(settable, nullptr);
  EXPECT_NE(OSSL_PARAM_locate_const(settable, OSSL_PKEY_PARAM_GROUP_NAME), nullptr);
}

TEST(x25519_keygen, while_the_secure_heap_is_on_generation_is_openssls) {
  OSSL_LIB_CTX* lib = detail::library_context();
  ASSERT_NE(lib, nullptr);
  ASSERT_EQ(CRYPTO_secure_malloc_initialized(), 0);
  ASSERT_EQ(CRYPTO_secure_malloc_init(1 << 16, 32), 1);
  const std::uint64_t before = detail::x25519_keys_generated();
  {
    evp_pkey_ptr k = generate(lib);
    ASSERT_TRUE(k);
    EXPECT_EQ(detail::x25519_keys_generated(), before);
    reference_context ref;
    EXPECT_EQ(raw(k.get(), false), openssl_public(ref, raw(k.get(), true)));
  }
  EXPECT_EQ(CRYPTO_secure_malloc_done(), 1);
  evp_pkey_ptr after = generate(lib);
  ASSERT_TRUE(after);
  EXPECT_EQ(detail::x25519_keys_generated(), before + 1);
}

TEST(x25519_keygen, a_property_query_or_a_parameters_only_generation_is_openssls) {
  OSSL_LIB_CTX* lib = detail::library_context();
  ASSERT_NE(lib, nullptr);
  const std::uint64_t before = detail::x25519_keys_generated();
  char empty[] = "";
  const OSSL_PARAM props[] = {OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_PROPERTIES, empty, 0),
                              OSSL_PARAM_construct_end()};
  evp_pkey_ptr k = generate(lib, props);
  ASSERT_TRUE(k);
  reference_context ref;
  EXPECT_EQ(raw(k.get(), false), openssl_public(ref, raw(k.get(), true)));
  EXPECT_EQ(detail::x25519_keys_generated(), before);

  // The group name OpenSSL checks is still checked.
  char x448[] = "x448";
  const OSSL_PARAM wrong_group[] = {OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, x448, 0),
                                    OSSL_PARAM_construct_end()};
  EXPECT_FALSE(generate(lib, wrong_group));
  char x25519[] = "X25519";
  const OSSL_PARAM right_group[] = {OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, x25519, 0),
                                    OSSL_PARAM_construct_end()};
  EXPECT_TRUE(generate(lib, right_group));
  EXPECT_EQ(detail::x25519_keys_generated(), before + 1);

  // Parameter generation makes a key with no key material, as OpenSSL's does.
  evp_pkey_ctx_ptr c(EVP_PKEY_CTX_new_from_name(lib, "X25519", nullptr));
  ASSERT_TRUE(c);
  ASSERT_EQ(EVP_PKEY_paramgen_init(c.get()), 1);
  EVP_PKEY* params_only = nullptr;
  ASSERT_EQ(EVP_PKEY_paramgen(c.get(), &params_only), 1);
  evp_pkey_ptr owned(params_only);
  unsigned char buf[32];
  std::size_t len = sizeof buf;
  EXPECT_NE(EVP_PKEY_get_raw_private_key(params_only, buf, &len), 1);
  EXPECT_EQ(detail::x25519_keys_generated(), before + 1);
}

TEST(x25519_keygen, handshakes_make_their_key_shares_through_it) {
  test_certs certs;
  ssl_ctx_ptr sctx = test_certs::library_server_context(certs.issue({"share.test"}));
  ASSERT_NE(detail::library_context(), nullptr);
  for (int version : {TLS1_3_VERSION, TLS1_2_VERSION}) {
    SCOPED_TRACE(version);
    auto cctx = certs.client_context();
    // P-256 too: in TLS 1.2 the client's groups also bound the certificate's curve.
    ASSERT_EQ(SSL_CTX_set1_groups_list(cctx.get(), "X25519:P-256"), 1);
    const std::uint64_t before = detail::x25519_keys_generated();
    auto c = letsencrypt::testing::connect_in_memory(cctx.get(), sctx.get(), "share.test", version);
    EXPECT_TRUE(c.handshake_done);
    // TLS 1.2 frees the server's share once the client's has arrived.
    if (version == TLS1_3_VERSION) {
      EXPECT_EQ(c.server_share_provider, "letsencrypt-default-filtered");
    }
    EXPECT_EQ(detail::x25519_keys_generated() - before, 1u) << "the server's share, and not the client's";
  }
}
