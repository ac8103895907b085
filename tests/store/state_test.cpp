#include <gtest/gtest.h>

#include "../no_input.hpp"
#include "fixtures.hpp"
#include "letsencrypt/store/state.hpp"

using namespace letsencrypt;
using namespace letsencrypt::store;
using namespace std::chrono_literals;

namespace {

cert_record fake_cert(std::vector<std::string> names, std::string tag) {
  cert_record c;
  c.names = std::move(names);
  c.chain_pem = "chain-" + tag;
  c.key_pem = "key-" + tag;
  c.not_after = unix_seconds(1'800'000'000s);
  return c;
}

// Quotes a string as Go's encoding/json does (including its HTML-safe escapes).
std::string go_quote(std::string_view s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': o += "\\\""; break;
      case '\\': o += "\\\\"; break;
      case '\n': o += "\\n"; break;
      case '\r': o += "\\r"; break;
      case '\t': o += "\\t"; break;
      case '<': o += "\\u003c"; break;
      case '>': o += "\\u003e"; break;
      case '&': o += "\\u0026"; break;
      default:
        if (c < 0x20) {
          char b[8];
          std::snprintf(b, sizeof b, "\\u%04x", c);
          o += b;
        } else {
          o += static_cast<char>(c);
        }
    }
  }
  return o + "\"";
}

}  // namespace

TEST(state, cert_covers_several_names_and_is_shared) {
  state s;
  ASSERT_TRUE(s.apply(fake_cert({"a.example", "b.example"}, "1")));
  ASSERT_EQ(s.certs.size(), 2u);
  EXPECT_EQ(s.certs["a.example"], s.certs["b.example"]);
  EXPECT_EQ(s.live_records(), 1u);
  // A later certificate for b only: a keeps the old one, now holding only "a.example".
  ASSERT_TRUE(s.apply(fake_cert({"b.example"}, "2")));
  EXPECT_EQ(s.certs["a.example"]->chain_pem, "chain-1");
  EXPECT_EQ(s.certs["a.example"]->names, std::vector<std::string>{"a.example"});
  EXPECT_EQ(s.certs["b.example"]->chain_pem, "chain-2");
  EXPECT_EQ(s.live_records(), 2u);
  ASSERT_TRUE(s.apply(remove_record{{"a.example"}}));
  EXPECT_EQ(s.certs.count("a.example"), 0u);
  EXPECT_EQ(s.live_records(), 1u);
  EXPECT_EQ(s.distinct_certs().size(), 1u);
}

TEST(state, meaningless_records_are_refused_and_change_nothing) {
  state s;
  ASSERT_TRUE(s.apply(fake_cert({"a.example"}, "1")));
  state before = s;
  EXPECT_EQ(s.apply(cert_record{}).error(), make_error_code(errc::invalid_argument));
  EXPECT_FALSE(s.apply(fake_cert({"a.example", "a.example"}, "x")));
  EXPECT_FALSE(s.apply(fake_cert({""}, "x")));
  EXPECT_FALSE(s.apply(remove_record{}));
  EXPECT_FALSE(s.apply(rate_limit_record{"", 1, {}}));
  EXPECT_FALSE(s.apply(rate_limit_record{"b", std::numeric_limits<double>::quiet_NaN(), {}}));
  EXPECT_TRUE(s == before);
}

TEST(state, snapshot_rebuilds_the_same_state) {
  state s;
  ASSERT_TRUE(s.apply(account_record{"k", "u", {"mailto:x@y"}, true}));
  ASSERT_TRUE(s.apply(hosts_record{std::vector<std::string>{"a.example"}}));
  ASSERT_TRUE(s.apply(fake_cert({"a.example", "b.example", "c.example"}, "1")));
  ASSERT_TRUE(s.apply(fake_cert({"b.example"}, "2")));
  ASSERT_TRUE(s.apply(rate_limit_record{"ca", 3.5, unix_millis(5ms)}));
  state t;
  for (auto& r : s.snapshot()) ASSERT_TRUE(t.apply(r));
  EXPECT_TRUE(s == t);
  EXPECT_EQ(s.snapshot().size(), s.live_records());
}

TEST(marshal, round_trips_and_escapes) {
  state s;
  ASSERT_TRUE(s.apply(account_record{"key \"q\" \\ \n\t\x01 é", "https://ca/acct/1", {"mailto:a@b"}, true}));
  ASSERT_TRUE(s.apply(hosts_record{std::vector<std::string>{"a.example", "b.example"}}));
  auto real = store_test::cert_record_for({"a.example", "b.example"});
  ASSERT_TRUE(s.apply(real));
  ASSERT_TRUE(s.apply(rate_limit_record{"new-host", 0.1 + 0.2, unix_millis(1'700'000'000'001ms)}));
  std::string js = marshal(s);
  EXPECT_EQ(js.find(real.key_pem), std::string::npos);  // newlines are escaped
  unmarshal_report rep;
  auto back = unmarshal(js, &rep);
  ASSERT_TRUE(back) << rep.message;
  EXPECT_EQ(rep.format, json_format::native);
  EXPECT_TRUE(*back == s);
  EXPECT_EQ(back->rate_limits["new-host"].tokens, 0.1 + 0.2);  // exact double
  EXPECT_EQ(marshal(*back), js);
}

TEST(marshal, empty_state_and_null_hosts) {
  state s;
  auto back = unmarshal(marshal(s));
  ASSERT_TRUE(back);
  EXPECT_TRUE(back->empty());
  EXPECT_FALSE(back->hosts.has_value());
  ASSERT_TRUE(s.apply(hosts_record{std::vector<std::string>{}}));
  back = unmarshal(marshal(s));
  ASSERT_TRUE(back);
  ASSERT_TRUE(back->hosts.has_value());
  EXPECT_TRUE(back->hosts->empty());
}

TEST(unmarshal, bad_input_gets_clear_errors) {
  unmarshal_report rep;
  EXPECT_EQ(unmarshal("not json", &rep).error(), make_error_code(errc::protocol_error));
  EXPECT_FALSE(rep.message.empty());
  EXPECT_FALSE(unmarshal("[1,2]", &rep));
  EXPECT_FALSE(unmarshal(R"({"format":"other"})", &rep));
  EXPECT_FALSE(unmarshal(R"({"format":"letsencrypt-state-1","certs":[{"names":[]}]})", &rep));
  EXPECT_NE(rep.message.find("certs[0]"), std::string::npos) << rep.message;
  EXPECT_FALSE(unmarshal(R"({"format":"letsencrypt-state-1","hosts":[1]})", &rep));
  EXPECT_FALSE(unmarshal(R"({"format":"letsencrypt-state-1","bogus":1})", &rep));
  EXPECT_FALSE(unmarshal(R"({"Certs":{"a.example":{"Cert":"garbage","Key":"k"}}})", &rep));
  EXPECT_NE(rep.message.find("a.example"), std::string::npos) << rep.message;
  EXPECT_FALSE(unmarshal(R"({"Reg":"x"})", &rep));
}

TEST(unmarshal, imports_a_go_cache_file) {
  // The exact layout of rsc.io/letsencrypt's state, written by json.MarshalIndent(&state, "", "\t"):
  // Email, Reg (lego's RegistrationResource: Body{contact, agreement,...}, URI, NewAuthzURL,
  // TosURL), Key (SEC1 "EC PRIVATE KEY", P-384), Hosts, Certs{host:{Cert, Key}}.
  const std::string acct_key = store_test::make_key_pem("P-384", true);
  ASSERT_NE(acct_key.find("BEGIN EC PRIVATE KEY"), std::string::npos);
  auto c1 = store_test::make_cert({"example.org"}, 90);
  auto c2 = store_test::make_cert({"www.example.org"}, 30);
  const std::string tos = "https://letsencrypt.org/documents/LE-SA-v1.0.1-July-27-2015.pdf";
  std::string js = "{\n\t\"Email\": " + go_quote("admin@example.org") +
      ",\n\t\"Reg\": {\n\t\t\"Body\": {\n\t\t\t\"resource\": \"reg\",\n\t\t\t\"id\": 1234,\n"
      "\t\t\t\"key\": {\n\t\t\t\t\"kty\": \"EC\",\n\t\t\t\t\"crv\": \"P-384\",\n\t\t\t\t\"x\": \"abc\",\n\t\t\t\t\"y\": \"def\"\n\t\t\t},\n"
      "\t\t\t\"contact\": [\n\t\t\t\t\"mailto:admin@example.org\"\n\t\t\t],\n"
      "\t\t\t\"agreement\": " + go_quote(tos) + "\n\t\t},\n"
      "\t\t\"URI\": \"https://acme-v01.api.letsencrypt.org/acme/reg/1234\",\n"
      "\t\t\"NewAuthzURL\": \"https://acme-v01.api.letsencrypt.org/acme/new-authz\",\n"
      "\t\t\"TosURL\": " + go_quote(tos) + "\n\t},\n"
      "\t\"Key\": " + go_quote(acct_key) + ",\n"
      "\t\"Hosts\": [\n\t\t\"example.org\",\n\t\t\"www.example.org\"\n\t],\n"
      "\t\"Certs\": {\n"
      "\t\t\"example.org\": {\n\t\t\t\"Cert\": " + go_quote(c1.chain_pem) + ",\n\t\t\t\"Key\": " + go_quote(c1.key_pem) + "\n\t\t},\n"
      "\t\t\"www.example.org\": {\n\t\t\t\"Cert\": " + go_quote(c2.chain_pem) + ",\n\t\t\t\"Key\": " + go_quote(c2.key_pem) + "\n\t\t}\n"
      "\t}\n}";
  unmarshal_report rep;
  auto st = unmarshal(js, &rep);
  ASSERT_TRUE(st) << rep.message;
  EXPECT_EQ(rep.format, json_format::go_cache);
  ASSERT_TRUE(st->account);
  EXPECT_EQ(st->account->key_pem, acct_key);
  EXPECT_EQ(st->account->url, "https://acme-v01.api.letsencrypt.org/acme/reg/1234");
  EXPECT_EQ(st->account->contact, std::vector<std::string>{"mailto:admin@example.org"});
  EXPECT_TRUE(st->account->tos_agreed);
  ASSERT_TRUE(st->hosts);
  EXPECT_EQ(*st->hosts, (std::vector<std::string>{"example.org", "www.example.org"}));
  ASSERT_EQ(st->certs.size(), 2u);
  EXPECT_EQ(st->certs["example.org"]->chain_pem, c1.chain_pem);
  EXPECT_EQ(st->certs["example.org"]->key_pem, c1.key_pem);
  EXPECT_EQ(st->certs["example.org"]->not_after.time_since_epoch().count(), c1.not_after);
  EXPECT_EQ(st->certs["www.example.org"]->not_after.time_since_epoch().count(), c2.not_after);
  // The imported state survives our own format.
  auto again = unmarshal(marshal(*st));
  ASSERT_TRUE(again);
  EXPECT_TRUE(*again == *st);
}

TEST(unmarshal, go_zero_manager_and_newer_lego_field_names) {
  // Marshal of a zero Go Manager.
  auto z = unmarshal(R"({"Email":"","Reg":null,"Key":"","Hosts":null,"Certs":null})");
  ASSERT_TRUE(z);
  EXPECT_TRUE(z->empty());
  // lego later tagged RegistrationResource with lower-case names; unregistered: no agreement.
  auto st = unmarshal(R"({"Email":"a@b","Reg":{"body":{"contact":[]},"uri":"https://ca/r/9"},"Key":"K"})");
  ASSERT_TRUE(st);
  ASSERT_TRUE(st->account);
  EXPECT_EQ(st->account->url, "https://ca/r/9");
  EXPECT_FALSE(st->account->tos_agreed);
  EXPECT_EQ(st->account->contact, std::vector<std::string>{"mailto:a@b"});
}

TEST(pem, not_after_of_garbage_is_an_error) {
  EXPECT_FALSE(pem_not_after(""));
  EXPECT_FALSE(pem_not_after("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"));
}

// A stored certificate whose PEM headers say it is encrypted is an error at once, not a
// passphrase prompt that keeps the thread waiting for input.
TEST(pem, not_after_never_asks_for_a_passphrase) {
  const auto cp = store_test::make_cert({"prompt.test"});
  ASSERT_TRUE(pem_not_after(cp.chain_pem));
  const std::string headed = letsencrypt::testing::with_encryption_headers(cp.chain_pem);
  EXPECT_EQ(letsencrypt::testing::run_without_input([&] { return !pem_not_after(headed); }),
            letsencrypt::testing::outcome::answered_true);
}
