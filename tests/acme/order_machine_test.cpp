// order_machine in memory: every step of an issuance, the CA's hostile or inconsistent
// replies, failures at each step, and a randomized driver checking that every presented
// challenge is cleaned up exactly once and that the machine always ends.
#include "acme/order_machine.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "letsencrypt/acme/jws.hpp"
#include "test_certs.hpp"

namespace letsencrypt::acme {
namespace {

using k = order_step::kind;
const std::string thumbprint = "THUMB_print-0123456789abcdefghijklmnopq";

// The CA's side of one issuance, as plain data the test edits before driving the machine.
struct scripted_ca {
  std::vector<std::string> names;  // the identifiers the order lists (as the CA spells them)
  status order_status = status::pending;
  std::map<std::string, authorization> authzs;  // by URL
  status ready_status = status::ready;          // what polling the order says before finalize
  status finalize_status = status::processing;  // the finalize reply
  status valid_status = status::valid;          // polling after finalize
  bool certificate_url = true;
  std::vector<std::string> certified_names;     // SANs of the downloaded leaf (names when empty)
  bool certify_other_key = false;
  std::vector<std::string> alternates;          // alternate URLs; "bad" ones are for another key
  std::set<std::string> settle_invalid;         // authorization URLs that end invalid
  std::map<k, error> fail_at;                   // the first time a step comes, it fails so
  std::set<std::string> present_fails;          // identifiers whose present() fails
  // Called before each step is answered (after next() says what it is).
  std::function<void(order_machine&, k)> before_step;
  testing::test_certs ca{"order machine test CA"};

  order make_order() const {
    order o;
    o.url = "https://ca.test/order/1";
    o.status = order_status;
    for (const auto& n : names) o.identifiers.push_back({"dns", n});
    for (const auto& [url, a] : authzs) o.authorizations.push_back(url);
    o.finalize = "https://ca.test/order/1/finalize";
    return o;
  }
  void add_authz(const std::string& name, std::vector<std::pair<std::string, std::string>> challenges,
                 status st = status::pending) {
    authorization a;
    a.url = "https://ca.test/authz/" + std::to_string(authzs.size());
    a.wildcard = name.starts_with("*.");
    a.identifier = {"dns", a.wildcard ? name.substr(2) : name};
    a.status = st;
    for (auto& [type, token] : challenges)
      a.challenges.push_back({type, a.url + "/" + type, token, status::pending, {}, {}});
    authzs[a.url] = a;
  }
};

struct trace {
  std::vector<k> steps;
  std::vector<std::string> presented;  // challenge URLs present() was called for, in order
  std::vector<std::string> cleaned;
  std::vector<challenge_info> infos;
  std::vector<std::string> csr_names;
};

// Drives the machine as client::obtain() does, with the scripted CA behind every step.
// Returns the final step kind (done or failed).
k drive(order_machine& m, scripted_ca& ca, trace& t, std::optional<issued_certificate>* out = nullptr) {
  EVP_PKEY* csr_key = nullptr;
  std::string csr_key_holder;
  for (int guard = 0; guard < 1000; ++guard) {
    if (ca.before_step) ca.before_step(m, m.next().what);
    const order_step s = m.next();
    t.steps.push_back(s.what);
    if (auto f = ca.fail_at.find(s.what); f != ca.fail_at.end()) {
      error e = f->second;
      ca.fail_at.erase(f);
      switch (s.what) {
        case k::new_order: m.on_new_order(unexpected(e)); continue;
        case k::fetch_authorization: m.on_authorization(unexpected(e)); continue;
        case k::present:
          t.presented.push_back(s.challenge->url);
          m.on_presented(unexpected(e));
          continue;
        case k::respond: m.on_responded(unexpected(e)); continue;
        case k::wait_authorization: m.on_authorization_settled(unexpected(e)); continue;
        case k::wait_ready:
        case k::finalize:
        case k::wait_valid: m.on_order(unexpected(e)); continue;
        case k::make_csr: m.on_csr(unexpected(e)); continue;
        case k::download: m.on_download(unexpected(e), {}); continue;
        case k::download_alternate: m.on_alternate(unexpected(e)); continue;
        default: break;
      }
    }
    switch (s.what) {
      case k::new_order: m.on_new_order(ca.make_order()); break;
      case k::fetch_authorization: m.on_authorization(ca.authzs.at(std::string(s.url))); break;
      case k::present:
        t.infos.push_back(*s.challenge);
        t.presented.push_back(s.challenge->url);
        if (ca.present_fails.count(s.challenge->identifier.value)) {
          m.on_presented(unexpected(error(letsencrypt::errc::not_allowed)));
        } else {
          m.on_presented({});
        }
        break;
      case k::respond: {
        challenge c;
        c.type = s.challenge->type;
        c.url = std::string(s.url);
        c.status = status::processing;
        m.on_responded(c);
        break;
      }
      case k::wait_authorization: {
        authorization a = ca.authzs.at(std::string(s.url));
        a.status = ca.settle_invalid.count(a.url) ? status::invalid : status::valid;
        if (a.status == status::invalid)
          for (auto& c : a.challenges)
            if (c.url == s.challenge->url) c.error = problem{"urn:ietf:params:acme:error:unauthorized", "no", 403, {}};
        m.on_authorization_settled(a);
        break;
      }
      case k::cleanup:
        t.cleaned.push_back(s.challenge->url);
        m.on_cleaned_up();
        break;
      case k::wait_ready: {
        order o = ca.make_order();
        o.status = ca.ready_status;
        if (o.status == status::invalid) o.error = problem{"urn:ietf:params:acme:error:caa", "caa", 403, {}};
        m.on_order(o);
        break;
      }
      case k::make_csr: {
        t.csr_names.assign(m.csr_names().begin(), m.csr_names().end());
        auto r = make_csr(m.csr_names());
        if (!r) return k::failed;
        csr_key = r->key.get();
        m.on_csr(std::move(r).value());
        break;
      }
      case k::finalize:
      case k::wait_valid: {
        order o = ca.make_order();
        o.status = s.what == k::finalize ? ca.finalize_status : ca.valid_status;
        if (o.status == status::valid && ca.certificate_url) o.certificate = "https://ca.test/cert/1";
        m.on_order(o);
        break;
      }
      case k::download: {
        auto names = ca.certified_names.empty() ? ca.names : ca.certified_names;
        testing::issue_options io;
        if (!ca.certify_other_key) io.key = csr_key;
        auto leaf = ca.ca.issue(names, io);
        m.on_download(certificate_chain{leaf.chain_pem, std::string(s.url)}, ca.alternates);
        break;
      }
      case k::download_alternate: {
        testing::issue_options io;
        if (s.url.find("bad") == std::string_view::npos) io.key = csr_key;
        auto leaf = ca.ca.issue(ca.names, io);
        m.on_alternate(certificate_chain{leaf.chain_pem, std::string(s.url)});
        break;
      }
      case k::done:
        if (out) *out = m.take_certificate();
        return k::done;
      case k::failed: return k::failed;
    }
  }
  ADD_FAILURE() << "the machine did not end";
  return k::failed;
}

order_machine make_machine(std::vector<std::string> names,
                           std::vector<std::string> types = {"tls-alpn-01", "http-01", "dns-01"}) {
  return order_machine(std::move(names), std::move(types), thumbprint, 4);
}

const std::string token_a = "tokenAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const std::string token_b = "tokenBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB-_";

TEST(order_machine, issues_with_preferred_challenges_presenting_all_before_answering) {
  scripted_ca ca;
  ca.names = {"a.test", "*.b.test"};
  ca.add_authz("a.test", {{"http-01", token_a}, {"tls-alpn-01", token_a}});
  ca.add_authz("*.b.test", {{"dns-01", token_b}});
  ca.alternates = {"https://ca.test/cert/1/alt-good", "https://ca.test/cert/1/alt-bad"};
  auto m = make_machine(ca.names);
  trace t;
  std::optional<issued_certificate> cert;
  ASSERT_EQ(drive(m, ca, t, &cert), k::done) << m.failure().message();

  const std::vector<k> expected = {k::new_order, k::fetch_authorization, k::fetch_authorization, k::present,
                                   k::present, k::respond, k::respond, k::wait_authorization,
                                   k::wait_authorization, k::cleanup, k::cleanup, k::wait_ready,
                                   k::make_csr, k::finalize, k::wait_valid, k::download,
                                   k::download_alternate, k::download_alternate, k::done};
  EXPECT_EQ(t.steps, expected);
  ASSERT_EQ(t.infos.size(), 2u);
  EXPECT_EQ(t.infos[0].type, "tls-alpn-01");  // preferred over http-01
  EXPECT_EQ(t.infos[0].key_authorization, token_a + "." + thumbprint);
  EXPECT_EQ(t.infos[1].type, "dns-01");
  EXPECT_TRUE(t.infos[1].wildcard);
  EXPECT_EQ(t.infos[1].identifier.value, "b.test");
  EXPECT_EQ(t.infos[1].dns_txt_name, "_acme-challenge.b.test");
  EXPECT_EQ(t.infos[1].dns_txt_value, dns01_txt_value(token_b + "." + thumbprint));
  EXPECT_EQ(t.presented, t.cleaned);
  EXPECT_EQ(t.csr_names, ca.names);

  ASSERT_TRUE(cert);
  // The key handed out is the one the leaf certifies.
  auto key = tls::load_private_key_pem(cert->key_pem);
  auto chain = tls::load_certificate_chain_pem(cert->chain.pem);
  ASSERT_TRUE(key && chain && !chain->empty());
  EXPECT_EQ(X509_check_private_key(chain->front().get(), key->get()), 1);
  ASSERT_EQ(cert->alternates.size(), 1u);  // the one for another key was dropped
  EXPECT_EQ(cert->alternates[0].url, "https://ca.test/cert/1/alt-good");
  EXPECT_EQ(cert->order.url, "https://ca.test/order/1");
  EXPECT_EQ(cert->order.status, status::valid);
}

TEST(order_machine, valid_authorizations_are_not_solved_and_a_ready_order_is_finalized_at_once) {
  scripted_ca ca;
  ca.names = {"a.test", "c.test"};
  ca.add_authz("a.test", {{"http-01", token_a}}, status::valid);
  ca.add_authz("c.test", {{"http-01", token_b}});
  auto m = make_machine(ca.names);
  trace t;
  ASSERT_EQ(drive(m, ca, t), k::done) << m.failure().message();
  ASSERT_EQ(t.infos.size(), 1u);
  EXPECT_EQ(t.infos[0].identifier.value, "c.test");

  scripted_ca ready;
  ready.names = {"a.test"};
  ready.order_status = status::ready;
  ready.add_authz("a.test", {{"http-01", token_a}}, status::valid);
  ready.finalize_status = status::valid;
  auto m2 = make_machine(ready.names);
  trace t2;
  ASSERT_EQ(drive(m2, ready, t2), k::done) << m2.failure().message();
  const std::vector<k> expected = {k::new_order, k::make_csr, k::finalize, k::download, k::done};
  EXPECT_EQ(t2.steps, expected);
}

TEST(order_machine, names_compare_without_case_or_trailing_dot) {
  scripted_ca ca;
  ca.names = {"A.Test."};
  ca.add_authz("a.TEST", {{"http-01", token_a}});
  ca.certified_names = {"a.test"};
  auto m = make_machine({"a.test"});
  trace t;
  EXPECT_EQ(drive(m, ca, t), k::done) << m.failure().message();
}

TEST(order_machine, an_order_for_other_names_is_refused_before_anything_is_presented) {
  for (auto names : std::vector<std::vector<std::string>>{{"a.test", "evil.test"}, {"evil.test"}, {}}) {
    scripted_ca ca;
    ca.names = names;
    ca.add_authz("a.test", {{"http-01", token_a}});
    auto m = make_machine({"a.test"});
    trace t;
    ASSERT_EQ(drive(m, ca, t), k::failed);
    EXPECT_EQ(m.failure().code, errc::bad_response);
    EXPECT_TRUE(t.presented.empty());
  }
}

TEST(order_machine, repeated_and_case_variant_names_are_one_identifier) {
  scripted_ca ca;
  ca.names = {"a.test"};
  ca.add_authz("a.test", {{"http-01", token_a}});
  auto m = make_machine({"a.test", "A.Test", "a.test."});
  EXPECT_EQ(m.names(), std::vector<std::string>{"a.test"});
  trace t;
  EXPECT_EQ(drive(m, ca, t), k::done) << m.failure().message();
  EXPECT_EQ(t.csr_names, std::vector<std::string>{"a.test"});
}

TEST(order_machine, more_authorizations_than_identifiers_or_one_twice_is_refused) {
  for (int variant = 0; variant < 2; ++variant) {
    scripted_ca ca;
    ca.names = {"a.test", "b.test"};
    ca.add_authz("a.test", {{"http-01", token_a}});
    ca.add_authz("b.test", {{"http-01", token_b}});
    if (variant == 0) ca.add_authz("a.test", {{"http-01", token_a}});
    auto m = make_machine(ca.names);
    if (variant == 1) {
      // The same authorization listed twice.
      auto o = ca.make_order();
      o.authorizations = {o.authorizations[0], o.authorizations[0]};
      m.on_new_order(o);
    } else {
      m.on_new_order(ca.make_order());
    }
    EXPECT_EQ(m.next().what, k::failed) << variant;
    EXPECT_EQ(m.failure().code, errc::bad_response);
  }
}

// Two distinct authorizations for one name, none for the other: the order could never become
// ready, so it is refused before anything is presented, case and trailing dot aside.
TEST(order_machine, two_authorizations_for_one_name_are_refused) {
  for (std::string second : std::vector<std::string>{"a.test", "A.TEST."}) {
    scripted_ca ca;
    ca.names = {"a.test", "b.test"};
    ca.add_authz("a.test", {{"http-01", token_a}});
    ca.add_authz(second, {{"http-01", token_b}});
    auto m = make_machine(ca.names);
    trace t;
    ASSERT_EQ(drive(m, ca, t), k::failed) << second;
    EXPECT_EQ(m.failure().code, errc::bad_response) << second;
    EXPECT_TRUE(t.presented.empty()) << second;
  }
  // A name and its wildcard are two identifiers, each with its own authorization.
  scripted_ca ca;
  ca.names = {"a.test", "*.a.test"};
  ca.add_authz("a.test", {{"http-01", token_a}});
  ca.add_authz("*.a.test", {{"dns-01", token_b}});
  auto m = make_machine(ca.names);
  trace t;
  EXPECT_EQ(drive(m, ca, t), k::done) << m.failure().message();
}

TEST(order_machine, an_authorization_for_an_unrequested_name_is_refused) {
  for (std::string name : std::vector<std::string>{"evil.test", "*.a.test", "b.a.test"}) {
    scripted_ca ca;
    ca.names = {"a.test"};
    ca.add_authz(name, {{"http-01", token_a}});
    auto m = make_machine({"a.test"});
    trace t;
    ASSERT_EQ(drive(m, ca, t), k::failed) << name;
    EXPECT_EQ(m.failure().code, errc::bad_response) << name;
    EXPECT_TRUE(t.presented.empty());
  }
}

TEST(order_machine, hostile_tokens_are_refused) {
  for (const std::string& token : std::vector<std::string>{"", "../../etc/passwd", "a/b", "abc=", "a b", "a\nb", "tok%2e%2e", std::string(257, 'a'),
                            std::string("a\0b", 3)}) {
    scripted_ca ca;
    ca.names = {"a.test"};
    ca.add_authz("a.test", {{"http-01", token}});
    auto m = make_machine({"a.test"});
    trace t;
    ASSERT_EQ(drive(m, ca, t), k::failed);
    EXPECT_EQ(m.failure().code, errc::bad_response);
    EXPECT_TRUE(t.infos.empty());
  }
  EXPECT_TRUE(valid_challenge_token(std::string(256, 'a')));
  EXPECT_TRUE(valid_challenge_token("Az09-_"));
}

TEST(order_machine, no_enabled_challenge_type) {
  scripted_ca ca;
  ca.names = {"a.test"};
  ca.add_authz("a.test", {{"dns-01", token_a}, {"unknown-01", token_a}});
  auto m = make_machine({"a.test"}, {"http-01", "tls-alpn-01"});
  trace t;
  ASSERT_EQ(drive(m, ca, t), k::failed);
  EXPECT_EQ(m.failure().code, errc::no_supported_challenge);
}

TEST(order_machine, a_failed_present_is_cleaned_up_with_what_was_presented_before_it) {
  scripted_ca ca;
  ca.names = {"a.test", "b.test", "c.test"};
  ca.add_authz("a.test", {{"http-01", token_a}});
  ca.add_authz("b.test", {{"http-01", token_b}});
  ca.add_authz("c.test", {{"http-01", token_a}});
  ca.present_fails = {"b.test"};
  auto m = make_machine(ca.names);
  trace t;
  ASSERT_EQ(drive(m, ca, t), k::failed);
  EXPECT_EQ(m.failure().code, letsencrypt::errc::not_allowed);
  // Nothing is presented after the failure; the one that failed is cleaned up too.
  EXPECT_EQ(t.presented, (std::vector<std::string>{"https://ca.test/authz/0/http-01", "https://ca.test/authz/1/http-01"}));
  EXPECT_EQ(t.cleaned, t.presented);
  EXPECT_EQ(t.steps.back(), k::failed);
}

TEST(order_machine, an_invalid_authorization_carries_the_challenge_problem_after_cleanup) {
  scripted_ca ca;
  ca.names = {"a.test", "b.test"};
  ca.add_authz("a.test", {{"http-01", token_a}});
  ca.add_authz("b.test", {{"http-01", token_b}});
  ca.settle_invalid = {"https://ca.test/authz/1"};
  auto m = make_machine(ca.names);
  trace t;
  ASSERT_EQ(drive(m, ca, t), k::failed);
  EXPECT_EQ(m.failure().code, errc::order_invalid);
  ASSERT_TRUE(m.failure().problem);
  EXPECT_EQ(m.failure().problem->type, "urn:ietf:params:acme:error:unauthorized");
  EXPECT_EQ(classify(m.failure()), action::restart_order);
  EXPECT_EQ(t.cleaned.size(), 2u);
}

TEST(order_machine, an_invalid_authorization_from_the_start_is_order_invalid) {
  scripted_ca ca;
  ca.names = {"a.test"};
  ca.add_authz("a.test", {{"http-01", token_a}}, status::invalid);
  auto m = make_machine(ca.names);
  trace t;
  ASSERT_EQ(drive(m, ca, t), k::failed);
  EXPECT_EQ(m.failure().code, errc::order_invalid);
}

TEST(order_machine, orders_finalized_elsewhere_or_dead_are_refused) {
  for (status st : {status::valid, status::processing, status::invalid, status::unknown}) {
    scripted_ca ca;
    ca.names = {"a.test"};
    ca.order_status = st;
    ca.add_authz("a.test", {{"http-01", token_a}}, status::valid);
    auto m = make_machine(ca.names);
    trace t;
    ASSERT_EQ(drive(m, ca, t), k::failed);
    EXPECT_EQ(m.failure().code, errc::order_invalid);
    EXPECT_EQ(t.steps.size(), 2u);
  }
  // A pending order without authorizations could never become ready.
  scripted_ca empty;
  empty.names = {"a.test"};
  auto m = make_machine(empty.names);
  trace t;
  ASSERT_EQ(drive(m, empty, t), k::failed);
  EXPECT_EQ(m.failure().code, errc::bad_response);
}

TEST(order_machine, the_order_failing_after_challenges_has_the_orders_problem) {
  for (status st : {status::invalid, status::valid}) {
    scripted_ca ca;
    ca.names = {"a.test"};
    ca.add_authz("a.test", {{"http-01", token_a}});
    ca.ready_status = st;
    auto m = make_machine(ca.names);
    trace t;
    ASSERT_EQ(drive(m, ca, t), k::failed);
    EXPECT_EQ(m.failure().code, errc::order_invalid);
    EXPECT_EQ(m.failure().problem.has_value(), st == status::invalid);
    EXPECT_EQ(t.cleaned.size(), 1u);
  }
}

TEST(order_machine, finalize_outcomes) {
  struct tc {
    status finalize, valid;
    bool url;
    std::error_code want;
  };
  for (const auto& c : {tc{status::valid, status::valid, false, errc::bad_response},
                        tc{status::processing, status::invalid, true, errc::order_invalid},
                        tc{status::processing, status::ready, true, errc::order_invalid},
                        tc{status::invalid, status::valid, true, errc::order_invalid},
                        tc{status::ready, status::valid, true, {}}}) {
    scripted_ca ca;
    ca.names = {"a.test"};
    ca.add_authz("a.test", {{"http-01", token_a}});
    ca.finalize_status = c.finalize;
    ca.valid_status = c.valid;
    ca.certificate_url = c.url;
    auto m = make_machine(ca.names);
    trace t;
    const k end = drive(m, ca, t);
    if (!c.want) {
      EXPECT_EQ(end, k::done) << m.failure().message();
    } else {
      ASSERT_EQ(end, k::failed);
      EXPECT_EQ(m.failure().code, c.want);
    }
  }
}

TEST(order_machine, a_certificate_for_another_key_or_missing_a_name_is_refused) {
  {
    scripted_ca ca;
    ca.names = {"a.test"};
    ca.add_authz("a.test", {{"http-01", token_a}});
    ca.certify_other_key = true;
    auto m = make_machine(ca.names);
    trace t;
    ASSERT_EQ(drive(m, ca, t), k::failed);
    EXPECT_EQ(m.failure().code, errc::bad_response);
  }
  {
    scripted_ca ca;
    ca.names = {"a.test", "b.test"};
    ca.add_authz("a.test", {{"http-01", token_a}});
    ca.add_authz("b.test", {{"http-01", token_b}});
    ca.certified_names = {"a.test", "other.test"};
    auto m = make_machine(ca.names);
    trace t;
    ASSERT_EQ(drive(m, ca, t), k::failed);
    EXPECT_EQ(m.failure().code, errc::bad_response);
  }
}

TEST(order_machine, an_error_at_any_step_ends_it_with_that_error_and_cleans_up) {
  const error transport(letsencrypt::errc::timed_out);
  for (k step : {k::new_order, k::fetch_authorization, k::present, k::respond, k::wait_authorization, k::wait_ready,
                 k::make_csr, k::finalize, k::wait_valid, k::download}) {
    scripted_ca ca;
    ca.names = {"a.test", "b.test"};
    ca.add_authz("a.test", {{"http-01", token_a}});
    ca.add_authz("b.test", {{"http-01", token_b}});
    ca.fail_at[step] = transport;
    auto m = make_machine(ca.names);
    trace t;
    ASSERT_EQ(drive(m, ca, t), k::failed) << static_cast<int>(step);
    EXPECT_EQ(m.failure().code, letsencrypt::errc::timed_out);
    EXPECT_EQ(t.cleaned, t.presented) << static_cast<int>(step);
  }
  // A failed alternate is left out; the issuance stands.
  scripted_ca ca;
  ca.names = {"a.test"};
  ca.add_authz("a.test", {{"http-01", token_a}});
  ca.alternates = {"https://ca.test/alt/1", "https://ca.test/alt/2"};
  ca.fail_at[k::download_alternate] = transport;
  auto m = make_machine(ca.names);
  trace t;
  std::optional<issued_certificate> cert;
  ASSERT_EQ(drive(m, ca, t, &cert), k::done);
  ASSERT_TRUE(cert);
  EXPECT_EQ(cert->alternates.size(), 1u);
}

TEST(order_machine, a_wildcard_is_certified_only_by_the_wildcard_itself) {
  scripted_ca ca;
  ca.names = {"*.b.test"};
  ca.add_authz("*.b.test", {{"dns-01", token_a}});
  ca.certified_names = {"x.b.test"};
  auto m = make_machine(ca.names);
  trace t;
  ASSERT_EQ(drive(m, ca, t), k::failed);
  EXPECT_EQ(m.failure().code, errc::bad_response);
}

TEST(order_machine, abort_cleans_up_what_was_presented_then_fails) {
  scripted_ca ca;
  ca.names = {"a.test", "b.test"};
  ca.add_authz("a.test", {{"http-01", token_a}});
  ca.add_authz("b.test", {{"http-01", token_b}});
  auto m = make_machine(ca.names);
  m.on_new_order(ca.make_order());
  for (const auto& [url, a] : ca.authzs) m.on_authorization(a);
  ASSERT_EQ(m.next().what, k::present);
  m.on_presented({});
  ASSERT_EQ(m.next().what, k::present);
  m.on_presented({});
  ASSERT_EQ(m.next().what, k::respond);
  m.abort(error(errc::order_timeout));
  std::vector<std::string> cleaned;
  while (m.next().what == k::cleanup) {
    cleaned.push_back(m.next().challenge->url);
    m.abort(error(errc::bad_response));  // a second abort changes nothing
    m.on_cleaned_up();
  }
  EXPECT_EQ(cleaned.size(), 2u);
  EXPECT_EQ(m.next().what, k::failed);
  EXPECT_EQ(m.failure().code, errc::order_timeout);
  m.abort(error(errc::bad_response));
  EXPECT_EQ(m.failure().code, errc::order_timeout);
}

TEST(order_machine, abort_keeps_an_issued_certificate) {
  scripted_ca ca;
  ca.names = {"a.test"};
  ca.add_authz("a.test", {{"http-01", token_a}});
  ca.alternates = {"https://ca.test/alt/1", "https://ca.test/alt/2"};
  int aborts = 0;
  ca.before_step = [&](order_machine& m, k what) {
    if (what == k::download || what == k::download_alternate) {
      ++aborts;
      m.abort(error(errc::order_timeout));
    }
  };
  auto m = make_machine(ca.names);
  trace t;
  std::optional<issued_certificate> cert;
  ASSERT_EQ(drive(m, ca, t, &cert), k::done) << m.failure().message();
  ASSERT_TRUE(cert);
  EXPECT_FALSE(cert->chain.pem.empty());
  EXPECT_TRUE(cert->alternates.empty());  // the abort during alternates ended it there
  EXPECT_EQ(aborts, 2);                   // at the download (ignored) and the first alternate
}

TEST(order_machine, a_reply_to_the_wrong_step_ends_it) {
  auto m = make_machine({"a.test"});
  m.on_csr(unexpected(error(errc::key_error)));  // the step is new_order
  EXPECT_EQ(m.next().what, k::failed);
  EXPECT_EQ(m.failure().code, letsencrypt::errc::invalid_argument);

  auto none = make_machine({});
  EXPECT_EQ(none.next().what, k::failed);

  // During cleanup (or with challenges presented) it still cleans up every one first.
  scripted_ca ca;
  ca.names = {"a.test", "b.test"};
  ca.add_authz("a.test", {{"http-01", token_a}});
  ca.add_authz("b.test", {{"http-01", token_b}});
  for (bool in_cleanup : {false, true}) {
    auto m2 = make_machine(ca.names);
    m2.on_new_order(ca.make_order());
    for (const auto& [url, a] : ca.authzs) m2.on_authorization(a);
    m2.on_presented({});
    m2.on_presented({});
    if (in_cleanup) {
      m2.on_responded(unexpected(error(errc::server_internal)));
      ASSERT_EQ(m2.next().what, k::cleanup);
      m2.on_cleaned_up();
      ASSERT_EQ(m2.next().what, k::cleanup);
    }
    m2.on_csr(unexpected(error(errc::key_error)));  // not the step asked for
    int cleanups = 0;
    while (m2.next().what == k::cleanup) {
      ++cleanups;
      m2.on_cleaned_up();
    }
    EXPECT_EQ(cleanups, in_cleanup ? 1 : 2);
    EXPECT_EQ(m2.next().what, k::failed);
    // The first failure stays the one reported.
    if (in_cleanup) {
      EXPECT_EQ(m2.failure().code, errc::server_internal);
    } else {
      EXPECT_EQ(m2.failure().code, letsencrypt::errc::invalid_argument);
    }
  }
}

// Random replies at every step: the machine ends within a bounded number of steps, cleans up
// every challenge present() was called for exactly once (and only those), and never
// presents after a failure began.
TEST(order_machine, random_replies_always_end_and_clean_up) {
  std::mt19937 rng(20261129);
  const status statuses[] = {status::unknown, status::pending,    status::ready,   status::processing,
                             status::valid,   status::invalid,    status::expired, status::deactivated};
  auto pick_status = [&] { return statuses[rng() % std::size(statuses)]; };
  testing::test_certs certs("random CA");
  const auto leaf = certs.issue({"a.test", "b.test"});
  int deepest = 0, runs_presenting = 0;
  for (int run = 0; run < 3000; ++run) {
    order_machine m({"a.test", "b.test"}, {"http-01", "dns-01"}, thumbprint, 2);
    std::multiset<std::string> live;
    std::size_t presents = 0, cleanups = 0;
    bool ended = false;
    int steps_seen = 0;
    for (int i = 0; i < 200 && !ended; ++i) {
      const order_step s = m.next();
      ++steps_seen;
      const bool err = rng() % 8 == 0;
      auto random_order = [&] {
        order o;
        o.url = "https://ca.test/o";
        o.status = pick_status();
        // Mostly plausible replies, so that runs reach the later steps too.
        const bool plausible = rng() % 5 != 0;
        if (plausible) o.status = rng() % 2 ? (rng() % 2 ? status::pending : status::ready) : pick_status();
        for (const char* n : {"a.test", "b.test", "c.test"})
          if (plausible ? n[0] != 'c' : rng() % 5 != 0) o.identifiers.push_back({"dns", n});
        for (int a = 0, n = static_cast<int>(rng() % (plausible ? 2 : 4)) + (plausible ? 1 : 0); a < n; ++a) o.authorizations.push_back("https://ca.test/z" + std::to_string(a));
        if (rng() % 6) o.finalize = "https://ca.test/f";
        if (rng() % 3) o.certificate = "https://ca.test/c";
        return o;
      };
      // `plausible_name`: what a CA would answer (each authorization of an order is for
      // another of its names).
      auto random_authz = [&](const char* plausible_name) {
        authorization a;
        if (rng() % 5 != 0) {
          a.identifier = {"dns", plausible_name};
          a.status = rng() % 4 ? status::pending : status::valid;
          a.challenges.push_back({"http-01", "https://ca.test/ch/http", token_a, status::pending, {}, {}});
          return a;
        }
        a.identifier = {rng() % 10 ? "dns" : "ip", rng() % 2 ? "a.test" : (rng() % 2 ? "b.test" : "x.test")};
        a.wildcard = rng() % 10 == 0;
        a.status = rng() % 3 ? status::pending : pick_status();
        for (const char* type : {"http-01", "dns-01", "tls-alpn-01"})
          if (rng() % 2) a.challenges.push_back({type, std::string("https://ca.test/ch/") + type, rng() % 10 ? token_a : "../x", pick_status(), {}, {}});
        return a;
      };
      switch (s.what) {
        case k::new_order:
          if (err) m.on_new_order(unexpected(error(errc::rate_limited)));
          else m.on_new_order(random_order());
          break;
        case k::fetch_authorization:
          if (err) m.on_authorization(unexpected(error(errc::server_internal)));
          else m.on_authorization(random_authz(s.url.ends_with("z0") ? "a.test" : "b.test"));
          break;
        case k::present:
          ASSERT_NE(s.challenge, nullptr);
          ASSERT_EQ(cleanups, 0u) << "present after cleanup began";
          ++presents;
          live.insert(s.challenge->url + "#" + s.challenge->identifier.value);
          if (err)
            m.on_presented(unexpected(error(letsencrypt::errc::not_allowed)));
          else
            m.on_presented({});
          break;
        case k::respond:
          if (err) m.on_responded(unexpected(error(errc::bad_nonce)));
          else m.on_responded(challenge{"http-01", std::string(s.url), token_a, pick_status(), {}, {}});
          break;
        case k::wait_authorization:
          if (err) m.on_authorization_settled(unexpected(error(errc::order_timeout)));
          else m.on_authorization_settled(random_authz(rng() % 2 ? "a.test" : "b.test"));
          break;
        case k::cleanup: {
          ASSERT_NE(s.challenge, nullptr);
          auto it = live.find(s.challenge->url + "#" + s.challenge->identifier.value);
          ASSERT_NE(it, live.end()) << "cleanup of a challenge that was not presented";
          live.erase(it);
          ++cleanups;
          m.on_cleaned_up();
          break;
        }
        case k::wait_ready:
        case k::finalize:
        case k::wait_valid:
          if (err) m.on_order(unexpected(error(errc::order_not_ready)));
          else m.on_order(random_order());
          break;
        case k::make_csr:
          if (err) m.on_csr(unexpected(error(errc::key_error)));
          else m.on_csr(make_csr(m.csr_names()).value());
          break;
        case k::download:
          m.on_download(certificate_chain{leaf.chain_pem, "u"}, {"https://ca.test/alt"});
          break;
        case k::download_alternate:
          m.on_alternate(unexpected(error(errc::server_internal)));
          break;
        case k::done:
        case k::failed:
          ended = true;
          break;
      }
    }
    ASSERT_TRUE(ended) << "run " << run;
    deepest = std::max(deepest, steps_seen);
    if (presents) ++runs_presenting;
    EXPECT_TRUE(live.empty()) << "run " << run;
    EXPECT_EQ(presents, cleanups);
    // The leaf above is for another key: no random run may succeed with it.
    EXPECT_EQ(m.next().what, k::failed);
    EXPECT_TRUE(m.failure().code) << "run " << run;
  }
  // The replies must have driven runs through the challenge steps, not only the first one.
  EXPECT_GT(runs_presenting, 300);
  EXPECT_GE(deepest, 12);
}

}  // namespace
}  // namespace letsencrypt::acme
