// Parsers of CA responses (RFC examples as data files), problem classification, Retry-After,
// and a fuzz-style sweep: random and mutated JSON into every parser must give a value or a
// clean error, never a crash.
#include <gtest/gtest.h>

#include <random>

#include "letsencrypt/acme/client.hpp"
#include "letsencrypt/acme/types.hpp"
#include "test_util.hpp"

namespace acme = letsencrypt::acme;
using acme_test::data_file;

TEST(parse, rfc8555_directory_with_ari_and_profiles) {
  auto d = acme::parse_directory(data_file("rfc8555_directory.json"));
  ASSERT_TRUE(d) << d.error().message();
  EXPECT_EQ(d->new_nonce, "https://example.com/acme/new-nonce");
  EXPECT_EQ(d->new_account, "https://example.com/acme/new-account");
  EXPECT_EQ(d->new_order, "https://example.com/acme/new-order");
  EXPECT_EQ(d->revoke_cert, "https://example.com/acme/revoke-cert");
  EXPECT_EQ(d->key_change, "https://example.com/acme/key-change");
  EXPECT_EQ(d->renewal_info, "https://example.com/acme/renewal-info");
  EXPECT_EQ(d->terms_of_service, "https://example.com/acme/terms/2017-5-30");
  EXPECT_EQ(d->caa_identities, std::vector<std::string>{"example.com"});
  EXPECT_FALSE(d->external_account_required);
  EXPECT_TRUE(d->has_profile("classic"));
  EXPECT_TRUE(d->has_profile("tlsserver"));
  EXPECT_FALSE(d->has_profile("nope"));
}

TEST(parse, rfc8555_order_authz_problem_and_ari) {
  auto o = acme::parse_order(data_file("rfc8555_order.json"));
  ASSERT_TRUE(o);
  EXPECT_EQ(o->status, acme::status::valid);
  ASSERT_EQ(o->identifiers.size(), 2u);
  EXPECT_EQ(o->identifiers[1].value, "example.org");
  EXPECT_EQ(o->authorizations.size(), 2u);
  EXPECT_EQ(o->certificate, "https://example.com/acme/cert/mAt3xBGaobw");
  auto a = acme::parse_authorization(data_file("rfc8555_authz.json"));
  ASSERT_TRUE(a);
  EXPECT_EQ(a->identifier.value, "www.example.org");
  ASSERT_EQ(a->challenges.size(), 1u);
  EXPECT_EQ(a->challenges[0].type, "http-01");
  EXPECT_EQ(a->challenges[0].token, "DGyRejmCefe7v4NfDGDKfA");
  EXPECT_EQ(a->challenges[0].status, acme::status::valid);
  auto p = acme::parse_problem(data_file("rfc8555_problem.json"));
  ASSERT_TRUE(p);
  EXPECT_EQ(acme::problem_code(p->type), acme::errc::malformed);
  ASSERT_EQ(p->subproblems.size(), 2u);
  ASSERT_TRUE(p->subproblems[1].id);
  EXPECT_EQ(p->subproblems[1].id->value, "example.net");
  EXPECT_EQ(acme::problem_code(p->subproblems[1].type), acme::errc::rejected_identifier);
  auto ri = acme::parse_renewal_info(data_file("rfc9773_renewal_info.json"));
  ASSERT_TRUE(ri);
  EXPECT_EQ(ri->window_end - ri->window_start, std::chrono::hours(24));
  EXPECT_EQ(ri->explanation_url, "https://acme.example.com/docs/ari");
}

TEST(parse, defensive_against_missing_and_wrong_types) {
  EXPECT_FALSE(acme::parse_directory("{}"));
  EXPECT_FALSE(acme::parse_directory(R"({"newNonce":1,"newAccount":"a","newOrder":"b"})"));
  EXPECT_FALSE(acme::parse_directory(R"({"newNonce":"n","newAccount":"a","newOrder":"b","meta":[]})"));
  EXPECT_TRUE(acme::parse_directory(R"({"newNonce":"n","newAccount":"a","newOrder":"b","meta":null})"));
  EXPECT_FALSE(acme::parse_order(R"({"status":"valid","finalize":"f"})"));  // valid without certificate
  EXPECT_FALSE(acme::parse_order(R"({"status":"bogus","finalize":"f"})"));
  EXPECT_FALSE(acme::parse_order(R"({"status":"pending","finalize":"f","identifiers":{}})"));
  EXPECT_FALSE(acme::parse_order(R"({"status":"pending","finalize":"f","authorizations":[1]})"));
  EXPECT_FALSE(acme::parse_authorization(R"({"status":"pending","identifier":{"type":"dns"}})"));
  EXPECT_FALSE(acme::parse_authorization(R"({"status":"pending","identifier":{"type":"dns","value":"x"},"challenges":[{"type":"http-01"}]})"));
  EXPECT_FALSE(acme::parse_problem(R"({"status":"400"})"));
  EXPECT_FALSE(acme::parse_renewal_info(R"({"suggestedWindow":{"start":"2025-01-03T00:00:00Z","end":"2025-01-02T00:00:00Z"}})"));
  // RFC 9773 4.2: an end equal to the start is as malformed as one before it.
  EXPECT_FALSE(acme::parse_renewal_info(R"({"suggestedWindow":{"start":"2025-01-02T00:00:00Z","end":"2025-01-02T00:00:00Z"}})"));
  EXPECT_TRUE(acme::parse_renewal_info(R"({"suggestedWindow":{"start":"2025-01-02T00:00:00Z","end":"2025-01-02T00:00:01Z"}})"));
  EXPECT_FALSE(acme::parse_account("[]"));
  EXPECT_FALSE(acme::parse_account(""));
  EXPECT_FALSE(acme::parse_account("{\"status\":\"valid\""));
  auto big = acme::parse_account(std::string(acme::max_json_bytes + 1, ' '));
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error(), letsencrypt::errc::message_too_large);
  std::string deep(5000, '[');
  EXPECT_FALSE(acme::parse_account(deep + std::string(5000, ']')));
  auto err = acme::parse_order("{");
  ASSERT_FALSE(err);
  EXPECT_EQ(err.error(), acme::errc::bad_response);
  EXPECT_EQ(err.error().message(), "invalid response from the CA");
}

TEST(parse, rfc3339_forms) {
  using namespace std::chrono;
  auto base = acme::parse_rfc3339("2025-01-02T03:04:05Z");
  ASSERT_TRUE(base);
  EXPECT_EQ(duration_cast<seconds>(base->time_since_epoch()).count(), 1735787045);
  EXPECT_EQ(*acme::parse_rfc3339("2025-01-02T05:04:05+02:00"), *base);
  EXPECT_EQ(*acme::parse_rfc3339("2025-01-02T03:04:05.5Z") - *base, milliseconds(500));
  for (const char* bad : {"", "2025-01-02", "2025-13-02T03:04:05Z", "2025-01-02T03:04:05", "2025-01-02T03:04:05Zx",
                          "2025-01-02T03:04:05+0200", "2025-01-02T03:04:05.Z",
                          "9999-12-31T23:59:59Z", "1900-01-01T00:00:00Z"})
    EXPECT_FALSE(acme::parse_rfc3339(bad)) << bad;
}

TEST(problem, classification) {
  auto make = [](std::string_view type, int status = 400) {
    acme::http_response r;
    r.status = status;
    r.headers.emplace_back("Content-Type", "application/problem+json");
    r.body = "{\"type\":\"urn:ietf:params:acme:error:" + std::string(type) + "\",\"detail\":\"d\\nx\"}";
    return acme::error_from_response(r);
  };
  EXPECT_EQ(acme::classify(make("badNonce")), acme::action::retry_call);
  EXPECT_EQ(acme::classify(make("serverInternal", 500)), acme::action::retry_call);
  EXPECT_EQ(acme::classify(make("rateLimited", 429)), acme::action::retry_call);
  EXPECT_EQ(acme::classify(make("orderNotReady", 403)), acme::action::restart_order);
  EXPECT_EQ(acme::classify(make("incorrectResponse")), acme::action::restart_order);
  for (auto t : {"unauthorized", "rejectedIdentifier", "malformed", "accountDoesNotExist", "badCSR", "caa",
                 "externalAccountRequired", "badSignatureAlgorithm"})
    EXPECT_EQ(acme::classify(make(t)), acme::action::stop) << t;
  auto e = make("caa");
  EXPECT_EQ(e.code, acme::errc::caa);
  EXPECT_EQ(e.message().find('\n'), std::string::npos);
  EXPECT_NE(e.message().find("urn:ietf:params:acme:error:caa"), std::string::npos);
  EXPECT_EQ(std::string(e.code.category().name()), "acme");
  // No problem document: the status decides.
  acme::http_response plain;
  plain.status = 503;
  plain.body = "<html>down</html>";
  plain.headers.emplace_back("Retry-After", "120");
  auto pe = acme::error_from_response(plain);
  EXPECT_EQ(pe.code, acme::errc::http_status);
  EXPECT_EQ(acme::classify(pe), acme::action::retry_call);
  EXPECT_EQ(pe.retry_after, std::chrono::seconds(120));
  plain.status = 404;
  EXPECT_EQ(acme::classify(acme::error_from_response(plain)), acme::action::stop);
  // A problem document of no ACME type (a proxy's about:blank) is classified as its bare
  // status would be: 429, 408 and 5xx are transient, the rest stop.
  for (int status : {429, 408, 500, 503, 400, 403, 404}) {
    acme::http_response generic;
    generic.status = status;
    generic.headers.emplace_back("Content-Type", "application/problem+json");
    generic.body = R"({"type":"about:blank","title":"x","status":)" + std::to_string(status) + "}";
    const auto generic_error = acme::error_from_response(generic);
    EXPECT_EQ(generic_error.code, acme::errc::unknown_problem) << status;
    EXPECT_EQ(acme::classify(generic_error), status >= 500 || status == 429 || status == 408 ? acme::action::retry_call
                                                                                 : acme::action::stop)
        << status;
  }
  EXPECT_EQ(acme::classify(acme::error(letsencrypt::errc::timed_out)), acme::action::retry_call);
  EXPECT_EQ(acme::classify(acme::error(std::error_code(ECONNREFUSED, std::system_category()))), acme::action::retry_call);
  EXPECT_EQ(acme::classify(acme::error(letsencrypt::errc::cancelled)), acme::action::stop);
}

TEST(problem, retry_after_forms) {
  using namespace std::chrono;
  auto now = system_clock::from_time_t(784111777);  // Sun, 06 Nov 1994 08:49:37 GMT
  EXPECT_EQ(acme::parse_retry_after("120", now), seconds(120));
  EXPECT_EQ(acme::parse_retry_after(" 0 ", now), seconds(0));
  EXPECT_EQ(acme::parse_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", now), seconds(60));
  EXPECT_EQ(acme::parse_retry_after("Sun, 06 Nov 1994 08:40:37 GMT", now), seconds(0));
  EXPECT_EQ(acme::parse_retry_after("99999999999999999999", now), seconds(86400));
  for (const char* bad : {"", "-1", "1.5", "soon", "Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 06 Foo 1994 08:49:37 GMT",
                          "Fri, 31 Dec 9999 23:59:59 GMT"})
    EXPECT_FALSE(acme::parse_retry_after(bad, now)) << bad;
}

TEST(links, alternate_targets) {
  acme::http_response r;
  r.headers.emplace_back("Link", "<https://ca/cert/1/1>;rel=\"alternate\"");
  r.headers.emplace_back("link", "<https://ca/dir>; rel=\"index\", <https://ca/cert/1/2>; rel=alternate");
  r.headers.emplace_back("Link", "<https://ca/x>; rel=\"up alternate\"");
  EXPECT_EQ(acme::link_targets(r, "alternate"),
            (std::vector<std::string>{"https://ca/cert/1/1", "https://ca/cert/1/2", "https://ca/x"}));
  EXPECT_EQ(acme::link_targets(r, "index"), std::vector<std::string>{"https://ca/dir"});
  r.headers.emplace_back("Link", "<<<>>>;;rel=");
  EXPECT_NO_FATAL_FAILURE(acme::link_targets(r, "alternate"));
}

namespace {

// Feeds `input` to every parser; each must return (value or error) without crashing.
int feed_all(std::string_view input) {
  int ok = 0;
  ok += acme::parse_directory(input).has_value();
  ok += acme::parse_account(input).has_value();
  ok += acme::parse_order(input).has_value();
  ok += acme::parse_authorization(input).has_value();
  ok += acme::parse_challenge(input).has_value();
  ok += acme::parse_renewal_info(input).has_value();
  ok += acme::parse_problem(input).has_value();
  acme::http_response r;
  r.status = 400;
  r.body = std::string(input);
  r.headers.emplace_back("Retry-After", std::string(input.substr(0, 40)));
  r.headers.emplace_back("Link", std::string(input.substr(0, 200)));
  (void)acme::error_from_response(r).message();
  (void)acme::link_targets(r, "alternate");
  (void)acme::parse_rfc3339(input.substr(0, 40));
  (void)acme::base64url_decode(input);
  return ok;
}

}  // namespace

TEST(fuzz, mutated_ca_responses_never_crash) {
  std::vector<std::string> seeds = {data_file("rfc8555_directory.json"), data_file("rfc8555_order.json"),
                                    data_file("rfc8555_authz.json"),     data_file("rfc8555_problem.json"),
                                    data_file("rfc9773_renewal_info.json")};
  for (const auto& s : seeds) ASSERT_GE(feed_all(s), 1) << s;
  std::mt19937 rng(12345);
  const std::string alphabet = "{}[]\":,0123456789.-+eEtruefalsnl \\u\n\x01\xff\xc3\xa9";
  int parsed = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    std::string s = seeds[rng() % seeds.size()];
    int edits = 1 + static_cast<int>(rng() % 8);
    for (int e = 0; e < edits && !s.empty(); ++e) {
      std::size_t pos = rng() % s.size();
      switch (rng() % 5) {
        case 0: s[pos] = alphabet[rng() % alphabet.size()]; break;
        case 1: s.erase(pos, 1 + rng() % 16); break;
        case 2: s.insert(pos, 1, alphabet[rng() % alphabet.size()]); break;
        case 3: s.insert(pos, s.substr(rng() % s.size(), rng() % 64)); break;
        case 4: s.resize(pos); break;
      }
    }
    parsed += feed_all(s);
  }
  // Random bytes too.
  for (int iter = 0; iter < 2000; ++iter) {
    std::string s(rng() % 300, '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    feed_all(s);
  }
  EXPECT_GT(parsed, 0);  // some mutations stay valid, so the sweep exercises both paths
}
