// In-memory tests of the ACME core: base64url, JSON escaping, JWK/JWS, EAB, key change,
// key authorizations, CSR and the RFC 9773 certificate identifier.
#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <simdjson.h>
#include <unistd.h>

#include <random>

#include "../no_input.hpp"

#include "letsencrypt/acme/csr.hpp"
#include "letsencrypt/acme/jws.hpp"
#include "letsencrypt/acme/types.hpp"
#include "test_util.hpp"

namespace acme = letsencrypt::acme;
using acme_test::data_file;
using acme_test::run;

namespace {

std::string member(std::string_view json, const char* key) {
  simdjson::dom::parser p;
  simdjson::padded_string ps(json);
  std::string_view s;
  if (p.parse(ps)[key].get_string().get(s) != simdjson::SUCCESS) return "<missing>";
  return std::string(s);
}

std::string decode(std::string_view b64) {
  auto r = acme::base64url_decode(b64);
  return r ? *r : std::string("<bad>");
}

std::string tmp_path(const char* stem) {
  return std::string(::testing::TempDir()) + stem + std::to_string(::getpid());
}

}  // namespace

TEST(base64url, rfc4648_vectors_without_padding) {
  // RFC 4648 §10, with '=' padding removed and the URL alphabet.
  EXPECT_EQ(acme::base64url(""), "");
  EXPECT_EQ(acme::base64url("f"), "Zg");
  EXPECT_EQ(acme::base64url("fo"), "Zm8");
  EXPECT_EQ(acme::base64url("foo"), "Zm9v");
  EXPECT_EQ(acme::base64url("foob"), "Zm9vYg");
  EXPECT_EQ(acme::base64url("fooba"), "Zm9vYmE");
  EXPECT_EQ(acme::base64url("foobar"), "Zm9vYmFy");
  EXPECT_EQ(acme::base64url(std::string("\xfb\xff\xfe", 3)), "-__-");
}

TEST(base64url, round_trips_random_bytes_and_rejects_garbage) {
  std::mt19937 rng(7);
  for (int len = 0; len < 70; ++len) {
    std::string s(static_cast<std::size_t>(len), '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    auto enc = acme::base64url(s);
    EXPECT_EQ(enc.find_first_of("+/="), std::string::npos);
    auto dec = acme::base64url_decode(enc);
    ASSERT_TRUE(dec);
    EXPECT_EQ(*dec, s);
  }
  EXPECT_FALSE(acme::base64url_decode("ab+c"));
  EXPECT_FALSE(acme::base64url_decode("a"));
  EXPECT_FALSE(acme::base64url_decode("ab c"));
  EXPECT_EQ(*acme::base64url_decode("Zm8="), "fo");
}

TEST(json_string, escapes_controls_quotes_and_keeps_unicode) {
  std::string in = std::string("a\"b\\c\n\t\x01\x1f\x7f", 11) + "é€😀" + std::string(1, '\0') + "end";
  std::string lit = acme::json_string(in);
  EXPECT_EQ(lit.find('\n'), std::string::npos);
  EXPECT_NE(lit.find("\\u0001"), std::string::npos);
  EXPECT_NE(lit.find("\\u0000"), std::string::npos);
  // A real JSON parser reads back exactly the input.
  std::string doc = "{\"k\":" + lit + "}";
  EXPECT_EQ(member(doc, "k"), in);
}

TEST(jwk, rfc7638_rsa_thumbprint_from_real_key) {
  std::string vec = data_file("rfc7638_rsa.json");
  std::string n = decode(member(vec, "n")), e = decode(member(vec, "e"));
  BIGNUM* bn_n = BN_bin2bn(reinterpret_cast<const unsigned char*>(n.data()), static_cast<int>(n.size()), nullptr);
  BIGNUM* bn_e = BN_bin2bn(reinterpret_cast<const unsigned char*>(e.data()), static_cast<int>(e.size()), nullptr);
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n);
  OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e);
  OSSL_PARAM* params = OSSL_PARAM_BLD_to_param(bld);
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr);
  EVP_PKEY* pkey = nullptr;
  ASSERT_EQ(EVP_PKEY_fromdata_init(ctx), 1);
  ASSERT_EQ(EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params), 1);
  EVP_PKEY_CTX_free(ctx);
  OSSL_PARAM_free(params);
  OSSL_PARAM_BLD_free(bld);
  BN_free(bn_n);
  BN_free(bn_e);
  auto key = acme::account_key::from_pkey(acme::pkey_ptr(pkey));
  ASSERT_TRUE(key) << key.error().message();
  EXPECT_EQ(key->alg(), "RS256");
  EXPECT_EQ(key->thumbprint(), member(vec, "thumbprint"));
  EXPECT_EQ(acme::jwk_thumbprint(acme::rsa_jwk(member(vec, "e"), member(vec, "n"))), member(vec, "thumbprint"));
}

TEST(jwk, ec_thumbprint_matches_openssl_cli) {
  auto key = acme::account_key::generate_p256();
  ASSERT_TRUE(key);
  auto pem = key->private_pem();
  ASSERT_TRUE(pem);
  std::string path = tmp_path("acme_ec_key");
  {
    std::ofstream(path) << *pem;
  }
  // The uncompressed point 04||x||y as the openssl CLI prints it, computed without our code.
  std::string text = run("openssl ec -in " + path + " -pubout -outform DER 2>/dev/null | tail -c 65 | od -An -v -tx1 | tr -d ' \\n'");
  ASSERT_EQ(text.size(), 130u) << text;
  ASSERT_EQ(text.substr(0, 2), "04");
  std::string x = acme_test::hex_decode(text.substr(2, 64)), y = acme_test::hex_decode(text.substr(66, 64));
  std::string jwk = "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"" + acme::base64url(x) + "\",\"y\":\"" + acme::base64url(y) + "\"}";
  std::string jwk_path = path + ".jwk";
  {
    std::ofstream(jwk_path, std::ios::binary) << jwk;
  }
  std::string digest = run("openssl dgst -sha256 -binary " + jwk_path + " | openssl base64 -A | tr '+/' '-_' | tr -d '='");
  ::unlink(path.c_str());
  ::unlink(jwk_path.c_str());
  EXPECT_EQ(key->jwk(), jwk);
  EXPECT_EQ(key->thumbprint(), digest);
}

TEST(account_key, pem_round_trip_and_rejects_bad_keys) {
  auto key = acme::account_key::generate_p256();
  ASSERT_TRUE(key);
  auto again = acme::account_key::from_pem(*key->private_pem());
  ASSERT_TRUE(again);
  EXPECT_EQ(again->jwk(), key->jwk());
  EXPECT_FALSE(acme::account_key::from_pem("not a key"));
  // An encrypted key is refused at once, not prompted for on the terminal or standard input.
  std::unique_ptr<BIO, decltype(&BIO_free)> b(BIO_new(BIO_s_mem()), &BIO_free);
  ASSERT_EQ(PEM_write_bio_PKCS8PrivateKey(b.get(), key->get(), EVP_aes_256_cbc(), nullptr, 0, nullptr,
                                          const_cast<char*>("secret")),
            1);
  char* data = nullptr;
  const long n = BIO_get_mem_data(b.get(), &data);
  const std::string encrypted(data, static_cast<std::size_t>(n));
  EXPECT_EQ(letsencrypt::testing::run_without_input([&] { return !acme::account_key::from_pem(encrypted); }),
            letsencrypt::testing::outcome::answered_true);
  EXPECT_FALSE(acme::account_key::generate_rsa(1024));
  auto p384 = acme::pkey_ptr(EVP_EC_gen("P-384"));
  EXPECT_FALSE(acme::account_key::from_pkey(std::move(p384)));
}

class jws_test : public ::testing::TestWithParam<bool> {};

TEST_P(jws_test, signs_flattened_jws_that_verifies) {
  auto key = GetParam() ? acme::account_key::generate_p256() : acme::account_key::generate_rsa(2048);
  ASSERT_TRUE(key);
  for (std::string kid : {std::string(), std::string("https://ca.test/acct/1")}) {
    std::string payload = R"({"termsOfServiceAgreed":true})";
    auto jws = acme::sign_jws(*key, payload, {.nonce = "n0nce", .url = "https://ca.test/new-acct", .kid = kid});
    ASSERT_TRUE(jws);
    std::string prot = member(*jws, "protected"), pay = member(*jws, "payload"), sig = member(*jws, "signature");
    EXPECT_EQ(decode(pay), payload);
    std::string header = decode(prot);
    EXPECT_EQ(member(header, "alg"), key->alg());
    EXPECT_EQ(member(header, "nonce"), "n0nce");
    EXPECT_EQ(member(header, "url"), "https://ca.test/new-acct");
    if (kid.empty()) {
      EXPECT_NE(header.find(key->jwk()), std::string::npos);
      EXPECT_EQ(member(header, "kid"), "<missing>");
    } else {
      EXPECT_EQ(member(header, "kid"), kid);
      EXPECT_EQ(header.find("\"jwk\""), std::string::npos);
    }
    if (GetParam()) {
      EXPECT_EQ(decode(sig).size(), 64u);
    }
    EXPECT_TRUE(acme_test::verify_signature(key->get(), key->alg(), prot + "." + pay, decode(sig)));
    EXPECT_FALSE(acme_test::verify_signature(key->get(), key->alg(), prot + "." + pay + "x", decode(sig)));
  }
}

INSTANTIATE_TEST_SUITE_P(algs, jws_test, ::testing::Values(true, false));

TEST(jws, post_as_get_has_empty_payload) {
  auto key = acme::account_key::generate_p256();
  auto jws = acme::sign_jws(*key, "", {.nonce = "n", .url = "https://ca.test/order/1", .kid = "k"});
  ASSERT_TRUE(jws);
  EXPECT_EQ(member(*jws, "payload"), "");
  EXPECT_TRUE(acme_test::verify_signature(key->get(), "ES256", member(*jws, "protected") + ".",
                                          decode(member(*jws, "signature"))));
}

TEST(jws, es256_verifies_with_openssl_cli) {
  auto key = acme::account_key::generate_p256();
  auto jws = acme::sign_jws(*key, "{}", {.nonce = "n", .url = "u", .kid = "k"});
  ASSERT_TRUE(jws);
  std::string input = member(*jws, "protected") + "." + member(*jws, "payload");
  std::string raw = decode(member(*jws, "signature"));
  // DER-encode r||s by hand (independent of OpenSSL's ECDSA_SIG) for the CLI.
  auto der_int = [](std::string v) {
    while (v.size() > 1 && v[0] == 0 && !(static_cast<unsigned char>(v[1]) & 0x80)) v.erase(0, 1);
    if (static_cast<unsigned char>(v[0]) & 0x80) v.insert(0, 1, '\0');
    return std::string("\x02", 1) + static_cast<char>(v.size()) + v;
  };
  std::string body = der_int(raw.substr(0, 32)) + der_int(raw.substr(32));
  std::string der = std::string("\x30", 1) + static_cast<char>(body.size()) + body;
  std::string base = tmp_path("acme_cli_jws");
  std::ofstream(base + ".key") << *key->private_pem();
  std::ofstream(base + ".in", std::ios::binary) << input;
  std::ofstream(base + ".sig", std::ios::binary) << der;
  std::string out = run("openssl ec -in " + base + ".key -pubout -out " + base + ".pub 2>/dev/null && openssl dgst -sha256 -verify " +
                        base + ".pub -signature " + base + ".sig " + base + ".in");
  for (auto ext : {".key", ".in", ".sig", ".pub"}) ::unlink((base + ext).c_str());
  EXPECT_NE(out.find("Verified OK"), std::string::npos) << out;
}

TEST(jws, external_account_binding_is_hs256_over_jwk) {
  auto key = acme::account_key::generate_p256();
  std::string mac_key = "secret-mac-key-32-bytes-long....";
  auto eab = acme::eab_jws(*key, "kid-1", acme::base64url(mac_key), "https://ca.test/new-acct");
  ASSERT_TRUE(eab);
  std::string prot = member(*eab, "protected"), pay = member(*eab, "payload");
  std::string header = decode(prot);
  EXPECT_EQ(member(header, "alg"), "HS256");
  EXPECT_EQ(member(header, "kid"), "kid-1");
  EXPECT_EQ(member(header, "url"), "https://ca.test/new-acct");
  EXPECT_EQ(member(header, "nonce"), "<missing>");
  EXPECT_EQ(decode(pay), key->jwk());
  std::string input = prot + "." + pay;
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  HMAC(EVP_sha256(), mac_key.data(), static_cast<int>(mac_key.size()), reinterpret_cast<const unsigned char*>(input.data()),
       input.size(), mac, &len);
  EXPECT_EQ(decode(member(*eab, "signature")), std::string(reinterpret_cast<char*>(mac), len));
  EXPECT_FALSE(acme::eab_jws(*key, "kid-1", "not base64!", "u"));
  EXPECT_FALSE(acme::eab_jws(*key, "", acme::base64url(mac_key), "u"));
}

TEST(jws, key_change_inner_is_signed_by_new_key) {
  auto old_key = acme::account_key::generate_p256();
  auto new_key = acme::account_key::generate_p256();
  auto inner = acme::key_change_inner(*new_key, *old_key, "https://ca.test/acct/1", "https://ca.test/key-change");
  ASSERT_TRUE(inner);
  std::string prot = member(*inner, "protected"), pay = member(*inner, "payload");
  std::string header = decode(prot), payload = decode(pay);
  EXPECT_NE(header.find(new_key->jwk()), std::string::npos);
  EXPECT_EQ(member(header, "url"), "https://ca.test/key-change");
  EXPECT_EQ(member(header, "nonce"), "<missing>");
  EXPECT_EQ(member(payload, "account"), "https://ca.test/acct/1");
  EXPECT_NE(payload.find(old_key->jwk()), std::string::npos);
  EXPECT_TRUE(acme_test::verify_signature(new_key->get(), "ES256", prot + "." + pay, decode(member(*inner, "signature"))));
  EXPECT_FALSE(acme_test::verify_signature(old_key->get(), "ES256", prot + "." + pay, decode(member(*inner, "signature"))));
}

TEST(challenge, key_authorization_and_dns01_value) {
  auto key = acme::account_key::generate_p256();
  std::string token = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA";
  std::string ka = acme::key_authorization(token, *key);
  EXPECT_EQ(ka, token + "." + key->thumbprint());
  std::string path = tmp_path("acme_ka");
  std::ofstream(path, std::ios::binary) << ka;
  std::string expected = run("openssl dgst -sha256 -binary " + path + " | openssl base64 -A | tr '+/' '-_' | tr -d '='");
  ::unlink(path.c_str());
  EXPECT_EQ(acme::dns01_txt_value(ka), expected);
  EXPECT_EQ(acme::dns01_txt_value(ka).size(), 43u);
}

TEST(csr, has_all_names_and_a_valid_signature) {
  std::vector<std::string> names = {"a.example.com", "*.b.example.com",
                                    std::string(40, 'x') + "." + std::string(40, 'y') + ".example"};
  for (auto type : {acme::cert_key_type::p256, acme::cert_key_type::rsa2048}) {
    auto b = acme::make_csr(names, type);
    ASSERT_TRUE(b);
    auto* p = reinterpret_cast<const unsigned char*>(b->der.data());
    X509_REQ* req = d2i_X509_REQ(nullptr, &p, static_cast<long>(b->der.size()));
    ASSERT_NE(req, nullptr);
    EVP_PKEY* pub = X509_REQ_get0_pubkey(req);
    EXPECT_EQ(X509_REQ_verify(req, pub), 1);
    EXPECT_EQ(EVP_PKEY_eq(pub, b->key.get()), 1);
    EXPECT_EQ(EVP_PKEY_get_base_id(pub), type == acme::cert_key_type::p256 ? EVP_PKEY_EC : EVP_PKEY_RSA);
    STACK_OF(X509_EXTENSION)* exts = X509_REQ_get_extensions(req);
    std::vector<std::string> got;
    for (int i = 0; i < sk_X509_EXTENSION_num(exts); ++i) {
      X509_EXTENSION* ext = sk_X509_EXTENSION_value(exts, i);
      if (OBJ_obj2nid(X509_EXTENSION_get_object(ext)) != NID_subject_alt_name) continue;
      auto* gens = static_cast<GENERAL_NAMES*>(X509V3_EXT_d2i(ext));
      for (int j = 0; j < sk_GENERAL_NAME_num(gens); ++j) {
        int t = 0;
        auto* s = static_cast<ASN1_STRING*>(GENERAL_NAME_get0_value(sk_GENERAL_NAME_value(gens, j), &t));
        EXPECT_EQ(t, GEN_DNS);
        got.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)), ASN1_STRING_length(s));
      }
      GENERAL_NAMES_free(gens);
    }
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(req);
    EXPECT_EQ(got, names);
    EXPECT_NE(b->key_pem.find("PRIVATE KEY"), std::string::npos);
    EXPECT_EQ(*acme::base64url_decode(b->der_b64url()), b->der);
  }
  EXPECT_FALSE(acme::make_csr(std::vector<std::string>{}));
  EXPECT_FALSE(acme::make_csr(std::vector<std::string>{""}));
}

TEST(ari, rfc9773_certificate_identifier) {
  std::string vec = data_file("rfc9773_certid.json");
  std::string keyid = acme_test::hex_decode(member(vec, "aki_keyid_hex"));
  std::string serial = acme_test::hex_decode(member(vec, "serial_hex"));
  // A certificate with exactly that AKI and serial, made here.
  EVP_PKEY* k = EVP_EC_gen("P-256");
  X509* x = X509_new();
  X509_set_version(x, 2);
  BIGNUM* bn = BN_bin2bn(reinterpret_cast<const unsigned char*>(serial.data()), static_cast<int>(serial.size()), nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(x), 0);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("t"), -1, -1, 0);
  X509_set_issuer_name(x, X509_get_subject_name(x));
  X509_set_pubkey(x, k);
  AUTHORITY_KEYID* aki = AUTHORITY_KEYID_new();
  aki->keyid = ASN1_OCTET_STRING_new();
  ASN1_OCTET_STRING_set(aki->keyid, reinterpret_cast<const unsigned char*>(keyid.data()), static_cast<int>(keyid.size()));
  X509_add1_ext_i2d(x, NID_authority_key_identifier, aki, 0, X509V3_ADD_DEFAULT);
  AUTHORITY_KEYID_free(aki);
  X509_sign(x, k, EVP_sha256());
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, x);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<std::size_t>(n));
  BIO_free(bio);
  X509_free(x);
  EVP_PKEY_free(k);
  auto id = acme::ari_certificate_id(pem);
  ASSERT_TRUE(id) << id.error().message();
  EXPECT_EQ(*id, member(vec, "cert_id"));
  EXPECT_FALSE(acme::ari_certificate_id("garbage"));
  // The same certificate under the headers of an encrypted block: an error, not a prompt.
  const std::string headed = letsencrypt::testing::with_encryption_headers(pem);
  EXPECT_EQ(letsencrypt::testing::run_without_input([&] { return !acme::ari_certificate_id(headed); }),
            letsencrypt::testing::outcome::answered_true);
  auto chain = acme::split_pem_chain(pem + "junk\n" + pem);
  EXPECT_EQ(chain.size(), 2u);
}
