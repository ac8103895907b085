// The library context's TLS13-KDF: HKDF against RFC 5869, the whole KDF against OpenSSL's
// own over every shape of parameters, and real TLS 1.3 handshakes and resumptions in every
// suite through it.
#include <gtest/gtest.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/ssl.h>

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "letsencrypt/tls/tickets.hpp"
#include "memory_pair.hpp"
#include "test_certs.hpp"
#include "tls/libctx.hpp"
#include "tls/tls13_kdf.hpp"

using namespace letsencrypt;
using namespace letsencrypt::tls;
using letsencrypt::testing::test_certs;
using reference_context = letsencrypt::testing::openssl_reference_context;

namespace {

using bytes = std::vector<unsigned char>;

bytes from_hex(std::string_view hex) {
  bytes out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<unsigned char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  return out;
}

bytes counting(unsigned char from, std::size_t n) {
  bytes out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<unsigned char>(from + i);
  return out;
}

using kdf_ptr = std::unique_ptr<EVP_KDF, detail::free_fn<EVP_KDF, EVP_KDF_free>>;
using kdf_ctx_ptr = std::unique_ptr<EVP_KDF_CTX, detail::free_fn<EVP_KDF_CTX, EVP_KDF_CTX_free>>;

// One parameter as a KDF call takes it; the strings and bytes live here.
struct param {
  enum kind { octets, utf8, integer } type;
  std::string name;
  bytes data;
  std::string text;
  int number = 0;
};

std::vector<OSSL_PARAM> as_params(std::vector<param>& ps) {
  std::vector<OSSL_PARAM> out;
  for (auto& p : ps) {
    switch (p.type) {
      case param::octets:
        out.push_back(OSSL_PARAM_construct_octet_string(p.name.c_str(), p.data.data(), p.data.size()));
        break;
      case param::utf8:
        out.push_back(OSSL_PARAM_construct_utf8_string(p.name.c_str(), p.text.data(), 0));
        break;
      case param::integer:
        out.push_back(OSSL_PARAM_construct_int(p.name.c_str(), &p.number));
        break;
    }
  }
  out.push_back(OSSL_PARAM_construct_end());
  return out;
}

struct kdf_outcome {
  int set = 0;
  int derived = 0;
  bytes out;
  std::size_t size = 0;
  bool operator==(const kdf_outcome&) const = default;
};

// Sets `first`, derives `outlen` bytes giving `second`, and asks the size: what a caller of
// the KDF can observe.
kdf_outcome run(EVP_KDF* kdf, std::vector<param> first, std::vector<param> second, std::size_t outlen) {
  kdf_outcome o;
  kdf_ctx_ptr c(EVP_KDF_CTX_new(kdf));
  if (!c) return o;
  auto p1 = as_params(first);
  o.set = EVP_KDF_CTX_set_params(c.get(), p1.data());
  auto p2 = as_params(second);
  o.out.assign(outlen, 0xa5);
  o.derived = EVP_KDF_derive(c.get(), o.out.data(), outlen, p2.data());
  if (o.derived != 1) o.out.clear();
  o.size = EVP_KDF_CTX_get_kdf_size(c.get());
  ERR_clear_error();
  return o;
}

std::string describe(const std::vector<param>& ps) {
  std::string s;
  for (const auto& p : ps) {
    s += p.name + "=";
    if (p.type == param::octets) s += std::to_string(p.data.size()) + "B ";
    if (p.type == param::utf8) s += p.text + " ";
    if (p.type == param::integer) s += std::to_string(p.number) + " ";
  }
  return s;
}

}  // namespace

TEST(tls13_kdf, hkdf_gives_rfc5869s_sha256_vectors) {
  // RFC 5869, A.1 and A.3.
  const bytes ikm(22, 0x0b);
  unsigned char prk[32];
  detail::hkdf_extract(detail::hkdf_hash::sha256, counting(0x00, 13), ikm, prk);
  EXPECT_EQ(bytes(prk, prk + 32), from_hex("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5"));
  bytes okm(42);
  ASSERT_TRUE(detail::hkdf_expand(detail::hkdf_hash::sha256, {prk, 32}, counting(0xf0, 10), okm));
  EXPECT_EQ(okm, from_hex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"));

  detail::hkdf_extract(detail::hkdf_hash::sha256, {}, ikm, prk);
  EXPECT_EQ(bytes(prk, prk + 32), from_hex("19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04"));
  ASSERT_TRUE(detail::hkdf_expand(detail::hkdf_hash::sha256, {prk, 32}, {}, okm));
  EXPECT_EQ(okm, from_hex("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"));

  // More than 255 blocks is refused.
  bytes too_long(255 * 48 + 1);
  EXPECT_FALSE(detail::hkdf_expand(detail::hkdf_hash::sha384, {prk, 32}, {}, too_long));
  EXPECT_EQ(detail::hkdf_hash_size(detail::hkdf_hash::sha384), 48u);
}

TEST(tls13_kdf, the_library_context_serves_its_own_and_a_plain_context_openssls) {
  OSSL_LIB_CTX* lib = detail::library_context();
  ASSERT_NE(lib, nullptr);
  kdf_ptr ours(EVP_KDF_fetch(lib, "TLS13-KDF", nullptr));
  ASSERT_TRUE(ours);
  EXPECT_EQ(EVP_KDF_settable_ctx_params(ours.get()), detail::tls13_kdf_settable_params());
  reference_context ref;
  kdf_ptr theirs(EVP_KDF_fetch(ref.ctx.get(), "TLS13-KDF", nullptr));
  ASSERT_TRUE(theirs);
  EXPECT_NE(EVP_KDF_settable_ctx_params(theirs.get()), detail::tls13_kdf_settable_params());
  // Every other KDF is OpenSSL's own.
  kdf_ptr hkdf(EVP_KDF_fetch(lib, "HKDF", nullptr));
  ASSERT_TRUE(hkdf);
  EXPECT_NE(EVP_KDF_settable_ctx_params(hkdf.get()), detail::tls13_kdf_settable_params());
}

TEST(tls13_kdf, agrees_with_openssls_on_every_shape_of_parameters) {
  OSSL_LIB_CTX* lib = detail::library_context();
  ASSERT_NE(lib, nullptr);
  kdf_ptr ours(EVP_KDF_fetch(lib, "TLS13-KDF", nullptr));
  reference_context ref;
  kdf_ptr theirs(EVP_KDF_fetch(ref.ctx.get(), "TLS13-KDF", nullptr));
  ASSERT_TRUE(ours && theirs);

  std::mt19937 rng(20261130);
  auto pick = [&](auto const& options) { return options[rng() % std::size(options)]; };
  auto random_bytes = [&](std::size_t n) {
    bytes b(n);
    for (auto& x : b) x = static_cast<unsigned char>(rng());
    return b;
  };
  // SHA-512, SHA-224 and SHA3-256 go to OpenSSL's implementation; the misspelt name to none.
  const std::string digests[] = {"SHA256", "SHA2-256", "sha-256", "SHA384", "SHA2-384", "2.16.840.1.101.3.4.2.2",
                                 "SHA512", "SHA2-224", "SHA3-256", "SHA-257"};
  const std::string properties[] = {"provider=default", "", "fips=yes", "provider=fips", "?provider=nonesuch"};
  const std::size_t key_sizes[] = {0, 1, 32, 48, 56, 64, 65, 100, 128, 129, 300, 1024};
  const std::size_t out_sizes[] = {0, 1, 12, 16, 32, 48, 64, 100, 255 * 32, 255 * 32 + 1, 255 * 48, 255 * 48 + 1, 65536};

  int successes[12] = {};  // by digest_choice
  for (int round = 0; round < 6000; ++round) {
    std::vector<param> all;
    const int digest_choice = static_cast<int>(rng() % 12);  // 10 and 11: no digest
    if (digest_choice < 10) all.push_back({param::utf8, OSSL_KDF_PARAM_DIGEST, {}, digests[digest_choice]});
    switch (rng() % 8) {
      case 0: all.push_back({param::utf8, OSSL_KDF_PARAM_MODE, {}, "EXPAND_ONLY"}); break;
      case 1: all.push_back({param::utf8, OSSL_KDF_PARAM_MODE, {}, "extract_only"}); break;
      case 2: all.push_back({param::utf8, OSSL_KDF_PARAM_MODE, {}, "EXTRACT_AND_EXPAND"}); break;
      case 3: all.push_back({param::integer, OSSL_KDF_PARAM_MODE, {}, {}, 7}); break;
      case 4: break;  // no mode: OpenSSL's default, which TLS13-KDF refuses
      case 5:
      case 6: all.push_back({param::integer, OSSL_KDF_PARAM_MODE, {}, {}, EVP_KDF_HKDF_MODE_EXPAND_ONLY}); break;
      default: all.push_back({param::integer, OSSL_KDF_PARAM_MODE, {}, {}, EVP_KDF_HKDF_MODE_EXTRACT_ONLY}); break;
    }
    if (rng() % 5) all.push_back({param::octets, OSSL_KDF_PARAM_KEY, random_bytes(pick(key_sizes))});
    if (rng() % 2) all.push_back({param::octets, OSSL_KDF_PARAM_SALT, random_bytes(pick(key_sizes))});
    if (rng() % 4) all.push_back({param::octets, OSSL_KDF_PARAM_PREFIX, bytes{'t', 'l', 's', '1', '3', ' '}});
    if (rng() % 4) all.push_back({param::octets, OSSL_KDF_PARAM_LABEL, random_bytes(rng() % 8 ? rng() % 20 : rng() % 300)});
    if (rng() % 2) all.push_back({param::octets, OSSL_KDF_PARAM_DATA, random_bytes(rng() % 8 ? rng() % 65 : rng() % 300)});
    // A property query can make OpenSSL's digest fetch fail; an engine is looked up.
    if (rng() % 10 == 0) all.push_back({param::utf8, OSSL_KDF_PARAM_PROPERTIES, {}, pick(properties)});
    if (rng() % 40 == 0) all.push_back({param::utf8, OSSL_ALG_PARAM_ENGINE, {}, "no-such-engine"});
    // A name given twice: OpenSSL reads the first of each name, and so must this one.
    if (rng() % 6 == 0 && !all.empty()) {
      param again = all[rng() % all.size()];
      if (again.type == param::octets) again.data = random_bytes(pick(key_sizes));
      if (again.type == param::utf8) again.text = again.name == OSSL_KDF_PARAM_DIGEST ? pick(digests) : "";
      if (again.type == param::integer) again.number = static_cast<int>(rng() % 4);
      all.insert(all.begin() + static_cast<std::ptrdiff_t>(rng() % (all.size() + 1)), std::move(again));
    }
    // Some parameters at set-up, the rest with the derivation (the context is then data-less
    // unless the second call gives it, in both).
    std::vector<param> first, second;
    for (auto& p : all) (rng() % 3 ? second : first).push_back(p);
    const std::size_t outlen = rng() % 3 ? std::size_t{32 + 16 * (rng() % 2)} : pick(out_sizes);

    const auto a = run(ours.get(), first, second, outlen);
    const auto b = run(theirs.get(), first, second, outlen);
    ASSERT_EQ(a, b) << "round " << round << " first: " << describe(first) << " second: " << describe(second)
                    << " outlen " << outlen << " set " << a.set << "/" << b.set << " derived " << a.derived << "/"
                    << b.derived << " size " << a.size << "/" << b.size;
    successes[digest_choice] += a.derived == 1;
  }
  // The comparison means something only if derivations succeed with every digest OpenSSL
  // knows, through this implementation and through the fallback, and with no other.
  for (int d = 0; d < 9; ++d) EXPECT_GT(successes[d], 40) << digests[d];
  EXPECT_EQ(successes[9] + successes[10] + successes[11], 0);
}

TEST(tls13_kdf, every_tls13_suite_handshakes_and_resumes_through_it) {
  test_certs certs;
  ssl_ctx_ptr sctx = test_certs::library_server_context(certs.issue({"ctx.test"}));
  ASSERT_NE(detail::library_context(), nullptr);
  ticket_keys keys;
  ASSERT_TRUE(keys.install(sctx.get()));
  for (const char* suite : {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}) {
    SCOPED_TRACE(suite);
    auto cctx = certs.client_context();
    ASSERT_EQ(SSL_CTX_set_ciphersuites(cctx.get(), suite), 1);
    SSL_CTX_set_session_cache_mode(cctx.get(), SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    // The handshake checks both Finished MACs; the tickets that follow are read under the
    // application traffic keys.
    auto first = letsencrypt::testing::connect_in_memory(cctx.get(), sctx.get(), "ctx.test", TLS1_3_VERSION);
    EXPECT_TRUE(first.handshake_done);
    EXPECT_EQ(first.suite, suite);
    EXPECT_FALSE(first.reused);
    ASSERT_TRUE(first.session);
    // Resumption checks the PSK binder, derived from the resumption master secret.
    auto second = letsencrypt::testing::connect_in_memory(cctx.get(), sctx.get(), "ctx.test", TLS1_3_VERSION,
                                                          first.session.get());
    EXPECT_TRUE(second.handshake_done);
    EXPECT_TRUE(second.reused);
    EXPECT_EQ(second.suite, suite);
  }
}
