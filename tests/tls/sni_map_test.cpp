#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <pthread.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "letsencrypt/tls/error.hpp"
#include "letsencrypt/tls/names.hpp"
#include "letsencrypt/tls/sni_map.hpp"
#include "test_certs.hpp"
#include "tls/sni_map_test_access.hpp"

using namespace letsencrypt;
using letsencrypt::testing::der_of;

namespace {

using key_ptr = std::shared_ptr<const tls::certified_key>;

class sni_map_test : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ca_ = new letsencrypt::testing::test_certs();
    ec_a_ = make(ca_->issue({"a.example"}, letsencrypt::testing::key_kind::ec_p256)).release();
    ec_b_ = make(ca_->issue({"b.example"}, letsencrypt::testing::key_kind::ec_p256)).release();
    rsa_a_ = make(ca_->issue({"a.example"}, letsencrypt::testing::key_kind::rsa2048)).release();
  }
  static void TearDownTestSuite() {
    delete ec_a_;
    delete ec_b_;
    delete rsa_a_;
    delete ca_;
  }
  static std::unique_ptr<key_ptr> make(const letsencrypt::testing::issued_cert& c) {
    X509* chain[] = {ca_->ca_cert()};
    auto k = tls::make_certified_key(c.cert.get(), c.key.get(), chain);
    EXPECT_TRUE(k) << k.error().message();
    return std::make_unique<key_ptr>(std::move(k).value());
  }
  static key_ptr ec_a() { return *ec_a_; }
  static key_ptr ec_b() { return *ec_b_; }
  static key_ptr rsa_a() { return *rsa_a_; }

  static inline letsencrypt::testing::test_certs* ca_ = nullptr;
  static inline key_ptr* ec_a_ = nullptr;
  static inline key_ptr* ec_b_ = nullptr;
  static inline key_ptr* rsa_a_ = nullptr;
};

TEST_F(sni_map_test, make_certified_key_reads_kind_and_expiry) {
  EXPECT_EQ(ec_a()->kind, tls::key_kind::ecdsa);
  EXPECT_EQ(rsa_a()->kind, tls::key_kind::rsa);
  ASSERT_EQ(ec_a()->chain.size(), 1u);
  EXPECT_EQ(X509_cmp(ec_a()->chain[0].get(), ca_->ca_cert()), 0);
  auto now = std::chrono::system_clock::now();
  EXPECT_GT(ec_a()->not_after, now + std::chrono::hours(23));
  EXPECT_LT(ec_a()->not_after, now + std::chrono::hours(25));
  // A key of another certificate is refused.
  auto wrong = tls::make_certified_key(ec_a()->leaf.get(), ec_b()->key.get());
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error(), make_error_code(errc::invalid_argument));
  EXPECT_FALSE(tls::make_certified_key(nullptr, ec_b()->key.get()));
}

// load_certified_key_der: an EC key with its public point becomes part of the certificate's
// key object; other keys are read whole; a key of another certificate or bytes that do not
// parse are refused.
TEST_F(sni_map_test, load_certified_key_der_shares_the_certificates_key_object_when_it_can) {
  using letsencrypt::testing::pkcs8_der_of;
  X509* chain[] = {ca_->ca_cert()};
  auto load = [&](const letsencrypt::testing::issued_cert& c) {
    return tls::load_certified_key_der(der_of(c.cert.get()), pkcs8_der_of(c.key.get()), chain);
  };
  auto ec = ca_->issue({"l.example"}, letsencrypt::testing::key_kind::ec_p256);
  auto k = load(ec);
  ASSERT_TRUE(k) << k.error().message();
  EXPECT_EQ((*k)->key.get(), X509_get0_pubkey((*k)->leaf.get()));
  EXPECT_EQ((*k)->kind, tls::key_kind::ecdsa);
  EXPECT_EQ(X509_cmp((*k)->leaf.get(), ec.cert.get()), 0);
  EXPECT_EQ(EVP_PKEY_eq((*k)->key.get(), ec.key.get()), 1);
  ASSERT_EQ((*k)->chain.size(), 1u);
  EXPECT_EQ((*k)->not_after, (*tls::make_certified_key(ec.cert.get(), ec.key.get()))->not_after);

  // RSA is read whole, into a key object of its own.
  auto rsa = ca_->issue({"l.example"}, letsencrypt::testing::key_kind::rsa2048);
  auto r = load(rsa);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_NE((*r)->key.get(), X509_get0_pubkey((*r)->leaf.get()));
  EXPECT_EQ((*r)->kind, tls::key_kind::rsa);
  EXPECT_EQ(EVP_PKEY_eq((*r)->key.get(), rsa.key.get()), 1);

  // A certificate that encodes its point compressed, with the key file's uncompressed: the
  // certificate's key object cannot take the scalar, and the key is read whole.
  {
    letsencrypt::testing::issue_options o;
    o.compressed_point = true;
    auto compressed = ca_->issue({"l.example"}, o);
    auto c = load(compressed);
    ASSERT_TRUE(c) << c.error().message();
    EXPECT_NE((*c)->key.get(), X509_get0_pubkey((*c)->leaf.get()));
    EXPECT_EQ(EVP_PKEY_eq((*c)->key.get(), compressed.key.get()), 1);
    EXPECT_EQ((*c)->kind, tls::key_kind::ecdsa);
  }

  // Another certificate's key: refused as make_certified_key refuses it.
  auto wrong = tls::load_certified_key_der(der_of(ec.cert.get()), pkcs8_der_of(rsa.key.get()), chain);
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error(), make_error_code(errc::invalid_argument));
  auto other = ca_->issue({"m.example"}, letsencrypt::testing::key_kind::ec_p256);
  wrong = tls::load_certified_key_der(der_of(ec.cert.get()), pkcs8_der_of(other.key.get()), chain);
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error(), make_error_code(errc::invalid_argument));

  // Bytes that do not parse.
  const std::string key_der = pkcs8_der_of(ec.key.get());
  EXPECT_EQ(tls::load_certified_key_der("", key_der).error(), make_error_code(tls::tls_errc::bad_pem));
  EXPECT_EQ(tls::load_certified_key_der(der_of(ec.cert.get()), key_der.substr(0, key_der.size() - 1)).error(),
            make_error_code(tls::tls_errc::bad_pem));
  EXPECT_EQ(ERR_peek_error(), 0u);
}

// use_certified_key puts the certificate, key and chain on the connection with references
// of its own: the connection keeps them after the certified_key is gone.
TEST_F(sni_map_test, use_certified_key_sets_certificate_key_and_chain) {
  letsencrypt::tls::ssl_ctx_ptr ctx(SSL_CTX_new(TLS_server_method()));
  ASSERT_TRUE(ctx);
  letsencrypt::tls::ssl_ptr ssl(SSL_new(ctx.get()));
  ASSERT_TRUE(ssl);
  std::string leaf_der;
  {
    auto k = make(ca_->issue({"c.example"}, letsencrypt::testing::key_kind::ec_p256));
    ASSERT_TRUE(tls::use_certified_key(ssl.get(), **k));
    EXPECT_EQ(SSL_get_certificate(ssl.get()), (*k)->leaf.get());
    EXPECT_EQ(SSL_get_privatekey(ssl.get()), (*k)->key.get());
    leaf_der = der_of((*k)->leaf.get());
  }
  // The connection's own references keep them (a use after free here is what the sanitizer
  // build would report).
  ASSERT_NE(SSL_get_certificate(ssl.get()), nullptr);
  EXPECT_EQ(der_of(SSL_get_certificate(ssl.get())), leaf_der);
  EXPECT_EQ(SSL_check_private_key(ssl.get()), 1);
  STACK_OF(X509)* chain = nullptr;
  ASSERT_EQ(SSL_get0_chain_certs(ssl.get(), &chain), 1);
  ASSERT_EQ(sk_X509_num(chain), 1);
  EXPECT_EQ(X509_cmp(sk_X509_value(chain, 0), ca_->ca_cert()), 0);
  // A certificate whose key does not match (filled by hand) is refused.
  tls::certified_key bad;
  bad.leaf = tls::up_ref(ec_a()->leaf.get());
  bad.key = tls::up_ref(ec_b()->key.get());
  EXPECT_FALSE(tls::use_certified_key(ssl.get(), bad));
  ERR_clear_error();
}

TEST_F(sni_map_test, insert_replace_remove_visible_to_next_lookup) {
  tls::sni_map m;
  EXPECT_EQ(m.size(), 0u);
  EXPECT_EQ(m.lookup("a.example"), nullptr);
  ASSERT_TRUE(m.insert("A.Example.", ec_a()));
  EXPECT_EQ(m.size(), 1u);
  auto e = m.lookup("a.example");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->name, "a.example");
  ASSERT_EQ(e->keys.size(), 1u);
  EXPECT_EQ(e->keys[0], ec_a());
  EXPECT_EQ(m.lookup("A.EXAMPLE."), e);  // lookups normalise too

  // Replace: the next lookup sees the new key; the old entry stays usable by its holder.
  ASSERT_TRUE(m.set("a.example", {ec_b()}));
  EXPECT_EQ(m.size(), 1u);
  auto e2 = m.lookup("a.example");
  ASSERT_NE(e2, nullptr);
  EXPECT_EQ(e2->keys[0], ec_b());
  EXPECT_EQ(e->keys[0], ec_a());
  EXPECT_NE(X509_get_subject_name(e->keys[0]->leaf.get()), nullptr);

  // insert adds a key of another kind and replaces one of the same kind.
  ASSERT_TRUE(m.insert("a.example", rsa_a()));
  auto e3 = m.lookup("a.example");
  ASSERT_EQ(e3->keys.size(), 2u);
  EXPECT_EQ(e3->find(tls::key_kind::ecdsa), ec_b().get());
  EXPECT_EQ(e3->find(tls::key_kind::rsa), rsa_a().get());
  ASSERT_TRUE(m.insert("a.example", ec_a()));
  auto e4 = m.lookup("a.example");
  ASSERT_EQ(e4->keys.size(), 2u);
  EXPECT_EQ(e4->find(tls::key_kind::ecdsa), ec_a().get());
  EXPECT_EQ(e4->find(tls::key_kind::rsa), rsa_a().get());

  auto removed = m.remove("a.example.");
  ASSERT_TRUE(removed);
  EXPECT_TRUE(*removed);
  EXPECT_EQ(m.lookup("a.example"), nullptr);
  EXPECT_EQ(m.size(), 0u);
  auto again = m.remove("a.example");
  ASSERT_TRUE(again);
  EXPECT_FALSE(*again);
  EXPECT_EQ(e4->find(tls::key_kind::rsa), rsa_a().get());  // holders keep their entry
}

TEST_F(sni_map_test, invalid_names_and_keys_rejected) {
  tls::sni_map m;
  EXPECT_EQ(m.insert("bad_name.example", ec_a()).error(), make_error_code(errc::invalid_name));
  EXPECT_EQ(m.insert("10.0.0.1", ec_a()).error(), make_error_code(errc::invalid_name));
  EXPECT_EQ(m.set("a.example", {}).error(), make_error_code(errc::invalid_argument));
  EXPECT_EQ(m.set("a.example", {nullptr}).error(), make_error_code(errc::invalid_argument));
  EXPECT_EQ(m.insert("a.example", nullptr).error(), make_error_code(errc::invalid_argument));
  EXPECT_FALSE(m.remove("bad..name"));
  EXPECT_EQ(m.size(), 0u);
  ASSERT_TRUE(m.insert("a.example", ec_a()));
  EXPECT_EQ(m.lookup("a.example/"), nullptr);
  EXPECT_EQ(m.lookup(""), nullptr);
  EXPECT_EQ(m.lookup(std::string(300, 'a')), nullptr);
  // A batch with one bad name changes nothing.
  std::vector<tls::sni_update> batch{{"c.example", {ec_a()}}, {"bad name", {ec_a()}}};
  EXPECT_EQ(m.apply(batch).error(), make_error_code(errc::invalid_name));
  EXPECT_EQ(m.lookup("c.example"), nullptr);
  EXPECT_EQ(m.size(), 1u);
}

TEST_F(sni_map_test, wildcard_fallback_one_level) {
  tls::sni_map m;
  ASSERT_TRUE(m.insert("*.b.example", ec_b()));
  ASSERT_TRUE(m.insert("exact.b.example", ec_a()));
  auto w = m.lookup("a.b.example");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->name, "*.b.example");
  EXPECT_EQ(m.lookup("Other.B.Example.")->name, "*.b.example");
  EXPECT_EQ(m.lookup("exact.b.example")->name, "exact.b.example");  // exact wins
  EXPECT_EQ(m.lookup("b.example"), nullptr);                          // the base is not covered
  EXPECT_EQ(m.lookup("x.a.b.example"), nullptr);                      // one level only
  EXPECT_EQ(m.lookup("a.c.example"), nullptr);
  bool seen = false;
  EXPECT_TRUE(m.visit("q.b.example", [&](const tls::sni_entry& e) { seen = e.name == "*.b.example"; }));
  EXPECT_TRUE(seen);
  EXPECT_FALSE(m.visit("nothing.example", [&](const tls::sni_entry&) { ADD_FAILURE(); }));
  ASSERT_TRUE(m.remove("*.b.example"));
  EXPECT_EQ(m.lookup("a.b.example"), nullptr);
}

TEST_F(sni_map_test, many_names_grow_and_shrink) {
  // Few shards and thousands of single writes: tables grow, and removal in the middle of
  // probe runs must keep every other name findable.
  tls::sni_map m(4);
  constexpr int n = 3000;
  for (int i = 0; i < n; ++i) ASSERT_TRUE(m.insert("host" + std::to_string(i) + ".example", i % 2 ? ec_a() : ec_b()));
  EXPECT_EQ(m.size(), static_cast<std::size_t>(n));
  for (int i = 0; i < n; i += 3) ASSERT_TRUE(*m.remove("host" + std::to_string(i) + ".example"));
  for (int i = 0; i < n; ++i) {
    auto e = m.lookup("host" + std::to_string(i) + ".example");
    if (i % 3 == 0) {
      EXPECT_EQ(e, nullptr) << i;
    } else {
      ASSERT_NE(e, nullptr) << i;
      EXPECT_EQ(e->keys[0], i % 2 ? ec_a() : ec_b());
    }
  }
  EXPECT_EQ(m.size(), static_cast<std::size_t>(n - (n + 2) / 3));
  for (int i = 0; i < n; ++i) (void)m.remove("host" + std::to_string(i) + ".example");
  EXPECT_EQ(m.size(), 0u);
  EXPECT_EQ(m.lookup("host1.example"), nullptr);
  m.synchronize();
  EXPECT_EQ(m.retired_tables(), 0u);
  EXPECT_GE(m.reclaimed_tables(), static_cast<std::uint64_t>(n));
}

// A name of `len` bytes: `c` repeated, a dot every 50 bytes, ending in `last`.
std::string name_of_length(std::size_t len, char c, char last) {
  std::string s(len, c);
  for (std::size_t i = 50; i + 1 < len; i += 51) s[i] = '.';
  s.back() = last;
  return s;
}

TEST_F(sni_map_test, names_of_every_length_are_told_apart) {
  // Lengths on both sides of what a slot keeps inline, up to the longest name, and pairs
  // that differ only in their last byte: only the whole name may match.
  tls::sni_map m(2);
  std::vector<std::string> names;
  for (std::size_t len = 2; len <= tls::max_name_length; ++len) {
    names.push_back(name_of_length(len, 'a', 'a'));
    names.push_back(name_of_length(len, 'a', 'z'));
  }
  for (std::size_t i = 0; i < names.size(); ++i) ASSERT_TRUE(m.insert(names[i], i % 3 ? ec_a() : ec_b())) << names[i];
  EXPECT_EQ(m.size(), names.size());
  for (std::size_t i = 0; i < names.size(); ++i) {
    auto e = m.lookup(names[i]);
    ASSERT_NE(e, nullptr) << names[i];
    EXPECT_EQ(e->name, names[i]);
    EXPECT_EQ(e->keys[0], i % 3 ? ec_a() : ec_b()) << names[i];
  }
  for (std::size_t i = 0; i < names.size(); i += 2) ASSERT_TRUE(*m.remove(names[i]));
  for (std::size_t i = 0; i < names.size(); ++i) {
    auto e = m.lookup(names[i]);
    if (i % 2 == 0) {
      EXPECT_EQ(e, nullptr) << names[i];
    } else {
      ASSERT_NE(e, nullptr) << names[i];
      EXPECT_EQ(e->name, names[i]);
    }
  }
  // One byte longer than the longest name is never looked up, and never found.
  EXPECT_EQ(m.lookup(name_of_length(tls::max_name_length + 1, 'a', 'z')), nullptr);
}

TEST_F(sni_map_test, visit_normalised_takes_the_name_as_given) {
  tls::sni_map m(4);
  ASSERT_TRUE(m.insert("exact.example.com", ec_a()));
  ASSERT_TRUE(m.insert("*.wild.example.com", ec_b()));
  auto name_seen = [&](std::string_view q) {
    std::string seen;
    m.visit_normalised(q, [&](const tls::sni_entry& e) noexcept { seen = e.name; });
    return seen;
  };
  EXPECT_EQ(name_seen("exact.example.com"), "exact.example.com");
  EXPECT_EQ(name_seen("a.wild.example.com"), "*.wild.example.com");
  EXPECT_EQ(name_seen("*.wild.example.com"), "*.wild.example.com");
  EXPECT_EQ(name_seen("a.b.wild.example.com"), "");  // one level only
  // Not in normalised form: visit() would fold these, visit_normalised does not.
  EXPECT_EQ(name_seen("EXACT.example.com"), "");
  EXPECT_EQ(name_seen("exact.example.com."), "");
  EXPECT_EQ(name_seen(""), "");
  EXPECT_EQ(name_seen(std::string(300, 'a') + ".wild.example.com"), "");
  EXPECT_TRUE(m.visit("EXACT.example.com.", [](const tls::sni_entry&) noexcept {}));
}

TEST_F(sni_map_test, batch_apply) {
  tls::sni_map m(16);
  std::vector<tls::sni_update> batch;
  for (int i = 0; i < 2000; ++i) batch.push_back({"n" + std::to_string(i) + ".example", {ec_a()}});
  batch.push_back({"n5.example", {ec_b()}});  // later update of the same name wins
  ASSERT_TRUE(m.apply(batch));
  EXPECT_EQ(m.size(), 2000u);
  EXPECT_EQ(m.lookup("n5.example")->keys[0], ec_b());
  EXPECT_EQ(m.lookup("n1999.example")->keys[0], ec_a());
  std::vector<tls::sni_update> removal;
  for (int i = 0; i < 2000; i += 2) removal.push_back({"n" + std::to_string(i) + ".example", {}});
  ASSERT_TRUE(m.apply(removal));
  EXPECT_EQ(m.size(), 1000u);
  EXPECT_EQ(m.lookup("n4.example"), nullptr);
  EXPECT_NE(m.lookup("n5.example"), nullptr);
}

TEST_F(sni_map_test, batch_apply_taking_the_updates) {
  tls::sni_map m(16);
  std::vector<tls::sni_update> batch;
  for (int i = 0; i < 2000; ++i) batch.push_back({"n" + std::to_string(i) + ".example", {ec_a()}});
  batch.push_back({"N5.Example.", {ec_b()}});                 // normalised, and the later update wins
  batch.push_back({"*.wild.example", {ec_b(), rsa_a()}});     // several keys move along
  batch.push_back({"n7.example", {}});                        // a removal in the same batch
  ASSERT_TRUE(m.apply(std::move(batch)));
  EXPECT_TRUE(batch.empty());
  EXPECT_EQ(m.size(), 2000u);
  EXPECT_EQ(m.lookup("n5.example")->name, "n5.example");
  EXPECT_EQ(m.lookup("n5.example")->keys[0], ec_b());
  EXPECT_EQ(m.lookup("n1999.example")->keys[0], ec_a());
  EXPECT_EQ(m.lookup("n7.example"), nullptr);
  auto w = m.lookup("x.wild.example");
  ASSERT_NE(w, nullptr);
  ASSERT_EQ(w->keys.size(), 2u);
  EXPECT_EQ(w->keys[1], rsa_a());
  std::vector<tls::sni_update> removal;
  for (int i = 0; i < 2000; i += 2) removal.push_back({"n" + std::to_string(i) + ".example", {}});
  ASSERT_TRUE(m.apply(std::move(removal)));
  EXPECT_EQ(m.size(), 1000u);
  EXPECT_EQ(m.lookup("n4.example"), nullptr);
  EXPECT_NE(m.lookup("n5.example"), nullptr);
}

TEST_F(sni_map_test, a_refused_batch_taken_by_move_changes_nothing_and_is_left_whole) {
  tls::sni_map m(4);
  ASSERT_TRUE(m.insert("kept.example", ec_a()));
  for (int bad = 0; bad < 2; ++bad) {
    SCOPED_TRACE(bad);
    std::vector<tls::sni_update> batch;
    for (int i = 0; i < 100; ++i) batch.push_back({"n" + std::to_string(i) + ".example", {ec_b()}});
    batch.push_back({"kept.example", {}});
    if (bad == 0)
      batch.push_back({"bad name.example", {ec_a()}});
    else
      batch.push_back({"null.example", {nullptr}});
    const auto r = m.apply(std::move(batch));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), make_error_code(bad == 0 ? errc::invalid_name : errc::invalid_argument));
    EXPECT_EQ(m.size(), 1u);
    EXPECT_EQ(m.lookup("n0.example"), nullptr);
    EXPECT_EQ(m.lookup("kept.example")->keys[0], ec_a());
    ASSERT_EQ(batch.size(), 102u);
    for (int i = 0; i < 100; ++i) {
      EXPECT_EQ(batch[static_cast<std::size_t>(i)].name, "n" + std::to_string(i) + ".example");
      ASSERT_EQ(batch[static_cast<std::size_t>(i)].keys.size(), 1u);
      EXPECT_EQ(batch[static_cast<std::size_t>(i)].keys[0], ec_b());
    }
  }
}

TEST_F(sni_map_test, tables_of_every_size_find_every_name_and_stay_at_most_half_empty) {
  // One shard, so each size is one table: sizes around the smallest table, whole pages
  // (from 64 KiB of slots) and huge pages (from 8193 names).
  for (std::size_t n : {1u, 3u, 4u, 5u, 63u, 511u, 512u, 513u, 1000u, 1023u, 1025u, 4096u, 8191u, 8192u, 8193u, 9000u,
                        16385u}) {
    SCOPED_TRACE(n);
    tls::sni_map m(1);
    std::vector<tls::sni_update> batch;
    for (std::size_t i = 0; i < n; ++i) batch.push_back({"h" + std::to_string(i) + ".example", {ec_a()}});
    ASSERT_TRUE(m.apply(std::move(batch)));
    ASSERT_EQ(m.size(), n);
    const std::size_t slots = tls::sni_map_test_access::slots(m);
    EXPECT_GE(slots, 2 * n);
    if (n > 8192)
      EXPECT_EQ(slots % 32768, 0u);  // whole huge pages
    else if (2 * n * 64 >= 65536)
      EXPECT_LT(slots, 2 * n + 64);  // rounded to a whole page only
    else
      EXPECT_EQ(slots, std::max<std::size_t>(8, 2 * n));
    // A write that replaces every name (a renewal of them all) adds none, so the table
    // keeps its size rather than doubling.
    for (std::size_t i = 0; i < n; ++i) batch.push_back({"h" + std::to_string(i) + ".example", {ec_b()}});
    ASSERT_TRUE(m.apply(std::move(batch)));
    EXPECT_EQ(tls::sni_map_test_access::slots(m), slots);
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(m.lookup("h" + std::to_string(i) + ".example")->keys[0], ec_b()) << i;
    for (std::size_t i = n; i < n + 200; ++i) ASSERT_EQ(m.lookup("h" + std::to_string(i) + ".example"), nullptr) << i;
    // Removals in the middle of probe runs keep the rest findable, wrapping around the end
    // of the table included.
    for (std::size_t i = 0; i < n; i += 3) batch.push_back({"h" + std::to_string(i) + ".example", {}});
    ASSERT_TRUE(m.apply(std::move(batch)));
    for (std::size_t i = 0; i < n; ++i)
      ASSERT_EQ(m.lookup("h" + std::to_string(i) + ".example") != nullptr, i % 3 != 0) << i;
  }
}

TEST_F(sni_map_test, retired_table_waits_for_reader_inside_lookup) {
  tls::sni_map m(1);
  ASSERT_TRUE(m.insert("a.example", ec_a()));
  m.synchronize();
  const auto before = m.reclaimed_tables();
  bool visited = m.visit("a.example", [&](const tls::sni_entry& e) {
    // A writer on another thread replaces the entry while this reader is inside.
    std::thread w([&] {
      ASSERT_TRUE(m.set("a.example", {ec_b()}));
      m.collect();
    });
    w.join();
    EXPECT_EQ(m.retired_tables(), 1u);  // the table this reader uses is not freed
    EXPECT_EQ(m.reclaimed_tables(), before);
    EXPECT_EQ(e.keys[0], ec_a());
    EXPECT_EQ(m.lookup("a.example")->keys[0], ec_b());  // nested lookup sees the new table
  });
  EXPECT_TRUE(visited);
  EXPECT_EQ(m.collect(), 1u);
  EXPECT_EQ(m.retired_tables(), 0u);
  EXPECT_EQ(m.reclaimed_tables(), before + 1);
}

TEST_F(sni_map_test, every_reader_holds_back_reclamation_owned_stripe_or_shared) {
  // More readers than there are owned stripes (64), all inside a visit at once: the later
  // ones read through the shared stripes. The table they all see is retired by a write and
  // must not be freed until the last of them has left, whichever kind it is.
  tls::sni_map m(1);
  ASSERT_TRUE(m.insert("a.example", ec_a()));
  m.synchronize();
  const auto before = m.reclaimed_tables();
  constexpr int readers = 80;
  std::atomic<int> inside{0}, left{0}, release_upto{0}, bad{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < readers; ++i)
    ts.emplace_back([&, i] {
      const bool found = m.visit("a.example", [&](const tls::sni_entry& e) {
        ++inside;
        while (release_upto.load() <= i) std::this_thread::yield();
        if (e.keys[0] != ec_a() || e.name != "a.example") ++bad;
      });
      if (!found) ++bad;
      ++left;
    });
  while (inside.load() < readers) std::this_thread::yield();
  ASSERT_TRUE(m.set("a.example", {ec_b()}));
  for (int i = 0; i < readers; ++i) {
    EXPECT_EQ(m.collect(), 0u) << "freed with " << readers - i << " readers inside";
    release_upto = i + 1;
    while (left.load() <= i) std::this_thread::yield();
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(m.collect(), 1u);
  EXPECT_EQ(m.reclaimed_tables(), before + 1);
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(m.lookup("a.example")->keys[0], ec_b());
}

TEST_F(sni_map_test, a_thread_whose_first_lookup_runs_as_it_ends_gives_its_stripe_back) {
  // A pthread key's destructor runs as its thread ends, after the thread's C++ thread_local
  // destructors: a lookup there is the thread's first and claims a reader stripe, which
  // must still be released, or 64 such threads would leave none to own.
  tls::sni_map m(1);
  ASSERT_TRUE(m.insert("a.example", ec_a()));
  static tls::sni_map* map_in_destructor;
  static std::atomic<int> found_in_destructor;
  map_in_destructor = &m;
  found_in_destructor = 0;
  pthread_key_t key;
  ASSERT_EQ(pthread_key_create(&key, [](void*) { found_in_destructor += map_in_destructor->lookup("a.example") != nullptr; }), 0);
  const int before = tls::sni_map_test_access::owned_stripes_claimed();
  constexpr int threads = 70;  // more than there are stripes to own
  for (int i = 0; i < threads; ++i) {
    std::thread([&] { ASSERT_EQ(pthread_setspecific(key, &key), 0); }).join();
    ASSERT_EQ(tls::sni_map_test_access::owned_stripes_claimed(), before) << "after thread " << i;
  }
  EXPECT_EQ(found_in_destructor.load(), threads);
  // A thread that reads while it runs gives its stripe back too.
  std::thread([&] { EXPECT_TRUE(m.lookup("a.example")); }).join();
  EXPECT_EQ(tls::sni_map_test_access::owned_stripes_claimed(), before);
  pthread_key_delete(key);
}

TEST_F(sni_map_test, concurrent_readers_while_writer_churns) {
  // One shard and a name that is always present: every write retires exactly one table.
  tls::sni_map m(1);
  ASSERT_TRUE(m.insert("stable.example", ec_a()));
  ASSERT_TRUE(m.insert("*.wild.example", ec_b()));
  m.synchronize();
  const auto reclaimed_before = m.reclaimed_tables();

  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> bad{0}, reads{0}, churn_seen{0};
  auto reader = [&] {
    std::uint64_t local = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      auto s = m.lookup("stable.example");
      if (!s || s->name != "stable.example" || s->keys.size() != 1 || s->keys[0] != ec_a()) ++bad;
      auto c = m.lookup("churn.example");
      if (c) {
        ++churn_seen;
        // A complete entry: its name, one key or two, every leaf readable.
        if (c->name != "churn.example" || c->keys.empty() || c->keys.size() > 2) ++bad;
        for (const auto& k : c->keys)
          if (!k || !k->leaf || X509_get_subject_name(k->leaf.get()) == nullptr) ++bad;
      }
      bool ok = m.visit("x.wild.example", [&](const tls::sni_entry& e) {
        if (e.name != "*.wild.example" || e.keys[0] != ec_b()) ++bad;
      });
      if (!ok) ++bad;
      ++local;
    }
    reads += local;
  };
  std::vector<std::thread> readers;
  for (int i = 0; i < 3; ++i) readers.emplace_back(reader);

  constexpr int rounds = 4000;
  std::uint64_t writes = 0;
  for (int i = 0; i < rounds; ++i) {
    switch (i % 4) {
      case 0: ASSERT_TRUE(m.set("churn.example", {ec_a()})); break;
      case 1: ASSERT_TRUE(m.insert("churn.example", rsa_a())); break;
      case 2: ASSERT_TRUE(m.set("churn.example", {ec_b(), rsa_a()})); break;
      case 3: ASSERT_TRUE(*m.remove("churn.example")); break;
    }
    ++writes;
    if (i % 64 == 0) std::this_thread::yield();
  }
  stop = true;
  for (auto& t : readers) t.join();
  m.synchronize();

  EXPECT_EQ(bad.load(), 0u);
  EXPECT_GT(reads.load(), 0u);
  EXPECT_EQ(m.retired_tables(), 0u);
  EXPECT_EQ(m.reclaimed_tables() - reclaimed_before, writes);
  EXPECT_EQ(m.size(), 2u);
}

}  // namespace

// A slot whose 64-bit hash matches is a hit only if its name does too: inline names (up to
// 39 bytes) are compared in the slot, longer ones with the entry's copy. The keyed hash
// makes such a collision impossible to find from outside, so the test forces one.
TEST_F(sni_map_test, a_full_hash_collision_is_told_apart_by_the_name) {
  const std::string long_label = "a-label-long-enough-to-pass-the-inline-name-limit";
  const std::pair<std::string, std::string> cases[] = {
      {"a.example", "b.example"},                                          // same length, inline
      {"aa.example", "b.example"},                                         // other length, inline
      {long_label + ".a.example", long_label + ".b.example"},              // compared in the entry
  };
  for (const auto& [stored, asked] : cases) {
    SCOPED_TRACE(asked);
    tls::sni_map map;
    tls::sni_map_test_access::put_under_hash_of(map, asked,
                                                std::make_shared<const tls::sni_entry>(tls::sni_entry{stored, {ec_a()}}));
    EXPECT_FALSE(map.lookup(asked));
    EXPECT_FALSE(map.visit(asked, [](const tls::sni_entry&) noexcept {}));
    // The real entry takes another slot despite the equal hash, and each lookup finds its own.
    ASSERT_TRUE(map.insert(asked, ec_b()));
    auto e = map.lookup(asked);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->name, asked);
    EXPECT_EQ(e->find(tls::key_kind::ecdsa), ec_b().get());
    EXPECT_EQ(map.size(), 2u);
    // Removing it leaves the other one with the same hash in place.
    auto removed = map.remove(asked);
    ASSERT_TRUE(removed);
    EXPECT_TRUE(*removed);
    EXPECT_EQ(map.size(), 1u);
    EXPECT_FALSE(map.lookup(asked));
    EXPECT_FALSE(map.visit(asked, [](const tls::sni_entry&) noexcept {}));
  }
}
