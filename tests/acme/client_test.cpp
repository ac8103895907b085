// acme::client against the in-memory fake CA: the whole order flow, badNonce retries, EAB,
// key rollover, revocation, ARI, profiles, error classification and cancellation.
#include <gtest/gtest.h>
#include <openssl/x509_vfy.h>

#include <thread>

#include "fake_ca.hpp"
#include "letsencrypt/acme/client.hpp"
#include "letsencrypt/io/net.hpp"
#include "letsencrypt/io/ring.hpp"
#include "letsencrypt/io/scope.hpp"

namespace acme = letsencrypt::acme;
namespace io = letsencrypt::io;
using acme_test::fake_ca;

namespace {

struct recording_solver final : acme::challenge_solver {
  fake_ca* ca;
  int presents = 0, cleanups = 0;
  bool fail_present = false;
  std::vector<acme::challenge_info> seen;
  explicit recording_solver(fake_ca* c) : ca(c) {}
  io::task<letsencrypt::result<void>> present(const acme::challenge_info& c) override {
    ++presents;
    seen.push_back(c);
    if (fail_present) co_return letsencrypt::errc::not_allowed;
    ca->presented[c.type + ":" + c.token] = c.key_authorization;
    co_return letsencrypt::ok();
  }
  io::task<letsencrypt::result<void>> cleanup(const acme::challenge_info& c) override {
    ++cleanups;
    ca->presented.erase(c.type + ":" + c.token);
    co_return letsencrypt::ok();
  }
};

acme::client_options options_for(fake_ca& ca) {
  acme::client_options o;
  o.directory_url = ca.directory_url();
  o.fetch = ca.fetch();
  o.poll_initial = std::chrono::milliseconds(1);
  o.poll_max = std::chrono::milliseconds(5);
  o.order_timeout = std::chrono::seconds(20);
  return o;
}

acme::account_key new_key() { return std::move(acme::account_key::generate_p256()).value(); }

acme::account_options agree() {
  acme::account_options a;
  a.contact = {"mailto:admin@example.com"};
  a.accept_terms = [](std::string_view) { return true; };
  return a;
}

template <class T>
T run(io::task<T> t) {
  io::ring r;
  return r.run(std::move(t));
}

// Registers a new account, then obtains a certificate for a.example.com by http-01 with
// `solver`. A failed registration is returned as the result.
acme::acme_result<acme::issued_certificate> obtain_one_name(recording_solver& solver, acme::client_options opts) {
  acme::client c(std::move(opts), new_key());
  return run([&]() -> io::task<acme::acme_result<acme::issued_certificate>> {
    auto acct = co_await c.register_account(agree());
    if (!acct) co_return letsencrypt::unexpected(acct.error());
    acme::order_request req;
    req.names = {"a.example.com"};
    req.solvers["http-01"] = &solver;
    co_return co_await c.obtain(req);
  }());
}

// True when the chain's leaf verifies against `root_pem` and names every name.
bool chain_verifies(const std::string& chain_pem, const std::string& root_pem) {
  auto blocks = acme::split_pem_chain(chain_pem);
  if (blocks.empty()) return false;
  auto load = [](const std::string& pem) {
    BIO* b = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
    X509* x = PEM_read_bio_X509(b, nullptr, nullptr, nullptr);
    BIO_free(b);
    return x;
  };
  X509* leaf = load(blocks[0]);
  X509* root = load(root_pem);
  X509_STORE* store = X509_STORE_new();
  X509_STORE_add_cert(store, root);
  STACK_OF(X509)* untrusted = sk_X509_new_null();
  for (std::size_t i = 1; i < blocks.size(); ++i) sk_X509_push(untrusted, load(blocks[i]));
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  X509_STORE_CTX_init(ctx, store, leaf, untrusted);
  bool ok = X509_verify_cert(ctx) == 1;
  X509_STORE_CTX_free(ctx);
  sk_X509_pop_free(untrusted, X509_free);
  X509_STORE_free(store);
  X509_free(root);
  X509_free(leaf);
  return ok;
}

}  // namespace

TEST(acme_client, full_issuance_for_two_names) {
  fake_ca ca;
  recording_solver solver(&ca);
  acme::client c(options_for(ca), new_key());
  auto res = run([&]() -> io::task<acme::acme_result<acme::issued_certificate>> {
    auto acct = co_await c.register_account(agree());
    if (!acct) co_return letsencrypt::unexpected(acct.error());
    acme::order_request req;
    req.names = {"a.example.com", "b.example.com"};
    req.solvers["http-01"] = &solver;
    co_return co_await c.obtain(req);
  }());
  ASSERT_TRUE(res) << res.error().message();
  EXPECT_TRUE(chain_verifies(res->chain.pem, ca.ca_pem()));
  EXPECT_EQ(res->alternates.size(), 1u);
  EXPECT_NE(res->key_pem.find("PRIVATE KEY"), std::string::npos);
  EXPECT_EQ(res->order.status, acme::status::valid);
  EXPECT_EQ(solver.presents, 2);
  EXPECT_EQ(solver.cleanups, 2);
  EXPECT_TRUE(ca.presented.empty());
  EXPECT_FALSE(c.account_url().empty());
  for (const auto& s : solver.seen) EXPECT_EQ(s.type, "http-01");
}

TEST(acme_client, challenge_preference_and_wildcard_dns01) {
  fake_ca ca;
  recording_solver http(&ca), tls(&ca), dns(&ca);
  auto opts = options_for(ca);
  acme::client c(opts, new_key());
  auto res = run([&]() -> io::task<acme::acme_result<acme::issued_certificate>> {
    auto acct = co_await c.register_account(agree());
    if (!acct) co_return letsencrypt::unexpected(acct.error());
    acme::order_request req;
    req.names = {"*.example.com", "x.example.com"};
    req.solvers = {{"http-01", &http}, {"tls-alpn-01", &tls}, {"dns-01", &dns}};
    co_return co_await c.obtain(req);
  }());
  ASSERT_TRUE(res) << res.error().message();
  ASSERT_EQ(dns.seen.size(), 1u);
  EXPECT_TRUE(dns.seen[0].wildcard);
  EXPECT_EQ(dns.seen[0].identifier.value, "example.com");
  EXPECT_EQ(dns.seen[0].dns_txt_name, "_acme-challenge.example.com");
  EXPECT_EQ(dns.seen[0].dns_txt_value, acme::dns01_txt_value(dns.seen[0].key_authorization));
  ASSERT_EQ(tls.seen.size(), 1u);  // tls-alpn-01 is preferred over http-01 by default
  EXPECT_EQ(http.presents, 0);
}

TEST(acme_client, bad_nonces_are_retried_with_fresh_nonces) {
  fake_ca ca;
  recording_solver solver(&ca);
  acme::client c(options_for(ca), new_key());
  ca.reject_nonces = 3;
  auto acct = run(c.register_account(agree()));
  ASSERT_TRUE(acct) << acct.error().message();
  EXPECT_EQ(c.bad_nonces_seen(), 3u);
  ca.reject_nonces = 100;
  auto again = run(c.fetch_account());
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, acme::errc::too_many_bad_nonces);
  EXPECT_EQ(acme::classify(again.error()), acme::action::retry_call);
  EXPECT_EQ(ca.bad_nonces_sent, 3 + 5);
}

TEST(acme_client, terms_declined_and_eab) {
  fake_ca ca;
  ca.eab_required = true;
  ca.eab_keys["kid-7"] = "0123456789abcdef0123456789abcdef";
  {
    acme::client c(options_for(ca), new_key());
    auto a = agree();
    a.accept_terms = [&](std::string_view url) {
      EXPECT_EQ(url, ca.tos);
      return false;
    };
    auto r = run(c.register_account(a));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, acme::errc::terms_not_accepted);
  }
  {
    acme::client c(options_for(ca), new_key());
    auto r = run(c.register_account(agree()));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, acme::errc::eab_required);
  }
  {
    acme::client c(options_for(ca), new_key());
    auto a = agree();
    a.eab_kid = "kid-7";
    a.eab_hmac_key = acme::base64url("wrong key wrong key wrong key!!!");
    auto r = run(c.register_account(a));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, acme::errc::unauthorized);
    EXPECT_EQ(acme::classify(r.error()), acme::action::stop);
    a.eab_hmac_key = acme::base64url(ca.eab_keys["kid-7"]);
    auto ok = run(c.register_account(a));
    ASSERT_TRUE(ok) << ok.error().message();
    EXPECT_EQ(ok->status, acme::status::valid);
  }
}

TEST(acme_client, find_existing_account_by_key) {
  fake_ca ca;
  auto key = new_key();
  auto pem = *key.private_pem();
  {
    acme::client c(options_for(ca), std::move(key));
    auto missing = run(c.find_account());
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, acme::errc::account_does_not_exist);
    ASSERT_TRUE(run(c.register_account(agree())));
  }
  acme::client again(options_for(ca), std::move(acme::account_key::from_pem(pem)).value());
  auto found = run(again.find_account());
  ASSERT_TRUE(found) << found.error().message();
  EXPECT_FALSE(found->url.empty());
  EXPECT_EQ(found->contact, std::vector<std::string>{"mailto:admin@example.com"});
  auto updated = run(again.update_contact({"mailto:new@example.com"}));
  ASSERT_TRUE(updated);
  EXPECT_EQ(updated->contact, std::vector<std::string>{"mailto:new@example.com"});
}

TEST(acme_client, key_rollover_then_old_key_is_unknown) {
  fake_ca ca;
  acme::client c(options_for(ca), new_key());
  ASSERT_TRUE(run(c.register_account(agree())));
  std::string url = c.account_url();
  auto old_pem = *c.key().private_pem();
  ASSERT_TRUE(run(c.change_key(new_key())));
  auto acct = run(c.fetch_account());
  ASSERT_TRUE(acct) << acct.error().message();
  acme::client old(options_for(ca), std::move(acme::account_key::from_pem(old_pem)).value());
  EXPECT_FALSE(run(old.find_account()));
  acme::client fresh(options_for(ca), std::move(acme::account_key::from_pem(*c.key().private_pem())).value());
  auto found = run(fresh.find_account());
  ASSERT_TRUE(found);
  EXPECT_EQ(found->url, url);
}

TEST(acme_client, deactivated_account_is_refused) {
  fake_ca ca;
  acme::client c(options_for(ca), new_key());
  ASSERT_TRUE(run(c.register_account(agree())));
  auto d = run(c.deactivate_account());
  ASSERT_TRUE(d);
  EXPECT_EQ(d->status, acme::status::deactivated);
  auto after = run(c.fetch_account());
  ASSERT_FALSE(after);
  EXPECT_EQ(after.error().code, acme::errc::unauthorized);
}

TEST(acme_client, failed_validation_restarts_order_and_cleans_up) {
  fake_ca ca;
  ca.fail_validation = true;
  recording_solver solver(&ca);
  auto res = obtain_one_name(solver, options_for(ca));
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error().code, acme::errc::order_invalid);
  ASSERT_TRUE(res.error().problem);
  EXPECT_EQ(res.error().problem->type, "urn:ietf:params:acme:error:incorrectResponse");
  EXPECT_EQ(acme::classify(res.error()), acme::action::restart_order);
  EXPECT_EQ(solver.cleanups, solver.presents);
  EXPECT_NE(res.error().message().find("wrong key authorization"), std::string::npos);
}

TEST(acme_client, names_go_to_the_ca_in_lower_case_without_repeats_or_trailing_dot) {
  fake_ca ca;
  recording_solver solver(&ca);
  acme::client c(options_for(ca), new_key());
  ASSERT_TRUE(run(c.register_account(agree())));
  acme::order_request req;
  req.names = {"A.Example.com", "a.example.com.", "b.example.com", "a.example.com"};
  req.solvers["http-01"] = &solver;
  auto r = run(c.obtain(req));
  ASSERT_TRUE(r) << r.error().message();
  ASSERT_FALSE(ca.order_payloads.empty());
  EXPECT_EQ(ca.order_payloads.back(),
            R"({"identifiers":[{"type":"dns","value":"a.example.com"},{"type":"dns","value":"b.example.com"}]})");
  EXPECT_EQ(solver.presents, 2);
}

TEST(acme_client, solver_failure_and_missing_solver) {
  fake_ca ca;
  recording_solver solver(&ca);
  solver.fail_present = true;
  acme::client c(options_for(ca), new_key());
  ASSERT_TRUE(run(c.register_account(agree())));
  acme::order_request req;
  req.names = {"a.example.com", "b.example.com"};
  req.solvers["http-01"] = &solver;
  auto r = run(c.obtain(req));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, letsencrypt::errc::not_allowed);
  // The first present failed: nothing more is presented, and the failed one is cleaned up
  // (it may have done part of its work).
  EXPECT_EQ(solver.presents, 1);
  EXPECT_EQ(solver.cleanups, 1);
  req.names = {"*.example.com"};  // wildcards offer dns-01 only
  auto none = run(c.obtain(req));
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, acme::errc::no_supported_challenge);
}

TEST(acme_client, rate_limit_carries_retry_after_and_rejected_identifier_stops) {
  fake_ca ca;
  ca.rate_limit_orders = 1;
  recording_solver solver(&ca);
  acme::client c(options_for(ca), new_key());
  ASSERT_TRUE(run(c.register_account(agree())));
  acme::order_request req;
  req.names = {"a.example.com"};
  req.solvers["http-01"] = &solver;
  auto r = run(c.obtain(req));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, acme::errc::rate_limited);
  ASSERT_TRUE(r.error().retry_after);
  EXPECT_EQ(r.error().retry_after->count(), 7);
  EXPECT_EQ(r.error().http_status, 429);
  EXPECT_EQ(acme::classify(r.error()), acme::action::retry_call);
  req.names = {"a.invalid"};
  auto rej = run(c.obtain(req));
  ASSERT_FALSE(rej);
  EXPECT_EQ(rej.error().code, acme::errc::rejected_identifier);
  EXPECT_EQ(acme::classify(rej.error()), acme::action::stop);
}

TEST(acme_client, profiles_replaces_renewal_info_and_revocation) {
  fake_ca ca;
  ca.profiles = {"shortlived", "classic"};
  recording_solver solver(&ca);
  acme::client c(options_for(ca), new_key());
  ASSERT_TRUE(run(c.register_account(agree())));
  acme::order_request req;
  req.names = {"a.example.com"};
  req.profile = "shortlived";
  req.solvers["http-01"] = &solver;
  auto first = run(c.obtain(req));
  ASSERT_TRUE(first) << first.error().message();
  EXPECT_EQ(first->order.profile, "shortlived");
  auto ri = run(c.get_renewal_info(first->chain.pem));
  ASSERT_TRUE(ri) << ri.error().message();
  EXPECT_LT(ri->window_start, ri->window_end);
  EXPECT_EQ(ri->explanation_url, "https://ca.test/why");
  EXPECT_EQ(ri->retry_after.count(), 21600);
  req.replaces = *acme::ari_certificate_id(first->chain.pem);
  req.profile = "unadvertised";  // not in the directory: not sent
  auto second = run(c.obtain(req));
  ASSERT_TRUE(second) << second.error().message();
  EXPECT_EQ(second->order.replaces, req.replaces);
  EXPECT_EQ(second->order.profile, "");
  EXPECT_EQ(ca.order_payloads.back().find("unadvertised"), std::string::npos);
  // Revoke the first by account key, the second by its own key.
  ASSERT_TRUE(run(c.revoke(first->chain.pem, acme::revocation_reason::superseded)));
  auto twice = run(c.revoke(first->chain.pem));
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error().code, acme::errc::already_revoked);
  auto cert_key = acme::account_key::from_pem(second->key_pem);
  ASSERT_TRUE(cert_key);
  acme::client anon(options_for(ca), new_key());
  auto wrong = run(anon.revoke_with_certificate_key(second->chain.pem, *std::move(acme::account_key::generate_p256())));
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code, acme::errc::unauthorized);
  ASSERT_TRUE(run(anon.revoke_with_certificate_key(second->chain.pem, *cert_key, acme::revocation_reason::key_compromise)));
  EXPECT_EQ(ca.revoked_serials.size(), 2u);
}

TEST(acme_client, no_renewal_info_endpoint_is_unsupported) {
  fake_ca ca;
  ca.renewal_info = false;
  acme::client c(options_for(ca), new_key());
  auto r = run(c.get_renewal_info("whatever"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, letsencrypt::errc::unsupported);
}

TEST(acme_client, renewal_info_by_id_refuses_what_is_not_an_identifier) {
  fake_ca ca;
  acme::client c(options_for(ca), new_key());
  for (std::string bad : {std::string(), std::string("../../new-order"), std::string("a/b.c"), std::string("a.b?x=1"),
                          std::string("a b.c"), std::string(600, 'a'), std::string("."), std::string(".."),
                          std::string("abc"), std::string("a.b.c"), std::string(".b"), std::string("a.")}) {
    auto r = run(c.get_renewal_info_by_id(bad));
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, letsencrypt::errc::invalid_argument) << bad;
  }
}

TEST(acme_client, garbage_responses_are_clean_errors) {
  fake_ca ca;
  acme::client c(options_for(ca), new_key());
  ASSERT_TRUE(run(c.register_account(agree())));
  ca.leave_invalid_json_at = "/acct/";
  auto r = run(c.fetch_account());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, acme::errc::bad_response);
  ca.leave_invalid_json_at = "/dir";
  acme::client d(options_for(ca), new_key());
  auto dir = run(d.get_directory());
  ASSERT_FALSE(dir);
  EXPECT_EQ(dir.error().code, acme::errc::bad_response);
}

// RFC 8555 7.4: finalize may answer "processing" with Retry-After; the client waits that
// long before it polls the order, rather than polling at its own short interval.
TEST(acme_client, finalize_retry_after_is_honoured) {
  fake_ca ca;
  ca.finalize_retry_after = 1;
  recording_solver solver(&ca);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = obtain_one_name(solver, options_for(ca));  // polls every 1-5 ms on its own
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1));
  EXPECT_EQ(ca.early_order_polls, 0);
  EXPECT_EQ(r->order.status, acme::status::valid);
  EXPECT_TRUE(chain_verifies(r->chain.pem, ca.ca_pem()));
}

// A Retry-After that runs past the order's deadline ends the issuance at once.
TEST(acme_client, finalize_retry_after_past_the_deadline_times_out) {
  fake_ca ca;
  ca.finalize_retry_after = 30;
  recording_solver solver(&ca);
  auto opts = options_for(ca);
  opts.order_timeout = std::chrono::seconds(5);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = obtain_one_name(solver, opts);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, acme::errc::order_timeout);
  ASSERT_TRUE(r.error().retry_after);
  EXPECT_EQ(r.error().retry_after->count(), 30);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(4));
  EXPECT_EQ(ca.early_order_polls, 0);
}

TEST(acme_client, order_deadline_bounds_polling) {
  fake_ca ca;
  ca.pending_polls = 1000000;
  recording_solver solver(&ca);
  auto opts = options_for(ca);
  // Long enough for the steps before polling (order, authorization, present) on a loaded
  // machine, so the challenge is presented and must be cleaned up.
  opts.order_timeout = std::chrono::seconds(1);
  auto r = obtain_one_name(solver, opts);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, acme::errc::order_timeout);
  EXPECT_EQ(solver.presents, 1);
  EXPECT_EQ(solver.cleanups, 1);
}

// The fake CA says Retry-After: 0 while an authorization is pending. That does not shorten
// the client's own backoff: polled back to back, this second would take thousands of polls.
TEST(acme_client, retry_after_zero_does_not_shorten_polling) {
  fake_ca ca;
  ca.pending_polls = 1000000;
  recording_solver solver(&ca);
  auto opts = options_for(ca);
  opts.poll_initial = std::chrono::milliseconds(50);
  opts.poll_max = std::chrono::milliseconds(200);
  opts.order_timeout = std::chrono::seconds(1);
  auto r = obtain_one_name(solver, opts);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, acme::errc::order_timeout);
  // Account, order, authorization, challenge: about ten requests; then 50, 100, 200, 200 ms...
  EXPECT_LE(ca.requests, 30);
}

// A certificate the CA issued is not given up for a download that fails for a passing reason:
// the download is tried again, up to three times in all.
TEST(acme_client, a_busy_certificate_download_is_tried_again) {
  fake_ca ca;
  ca.busy_cert_downloads = 2;
  recording_solver solver(&ca);
  auto r = obtain_one_name(solver, options_for(ca));
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(ca.busy_cert_downloads, 0);
  EXPECT_TRUE(chain_verifies(r->chain.pem, ca.ca_pem()));
  // Busy beyond that: the issuance ends with the CA's transient error after three attempts.
  fake_ca busy;
  busy.busy_cert_downloads = 5;
  recording_solver solver2(&busy);
  auto failed = obtain_one_name(solver2, options_for(busy));
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().http_status, 503);
  EXPECT_EQ(acme::classify(failed.error()), acme::action::retry_call);
  EXPECT_EQ(busy.busy_cert_downloads, 2);
}

// Hang, cancel, must unwind: a request that never answers and a poll that never ends both
// return cancelled once the stop source fires.
TEST(acme_client, cancel_unwinds_hung_request_and_polling) {
  for (bool hang_request : {true, false}) {
    fake_ca ca;
    recording_solver solver(&ca);
    std::stop_source stop;
    auto opts = options_for(ca);
    opts.stop = stop.get_token();
    opts.order_timeout = std::chrono::hours(1);
    acme::client c(opts, new_key());
    ASSERT_TRUE(run(c.register_account(agree())));
    if (hang_request) ca.hang = true;
    else ca.pending_polls = 1000000;
    io::ring r;
    auto res = r.run([&]() -> io::task<acme::acme_result<acme::issued_certificate>> {
      acme::acme_result<acme::issued_certificate> out = letsencrypt::unexpected(acme::error(letsencrypt::errc::invalid_argument));
      auto canceller = [&]() -> io::task<void> {
        (void)co_await io::sleep_for(std::chrono::milliseconds(50));
        stop.request_stop();
      };
      auto work = [&]() -> io::task<void> {
        acme::order_request req;
        req.names = {"a.example.com"};
        req.solvers["http-01"] = &solver;
        out = co_await c.obtain(req);
      };
      std::vector<io::task<void>> both;
      both.push_back(work());
      both.push_back(canceller());
      (void)co_await io::when_all(std::move(both));
      co_return std::move(out);
    }());
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error().code, letsencrypt::errc::cancelled) << res.error().message();
    EXPECT_EQ(solver.cleanups, solver.presents);
  }
}

// The real transport over loopback TCP: a server that accepts the connection (kernel
// backlog) but never answers. A stop must end the pending read at once; without a stop,
// the request deadline must.
TEST(acme_client_transport, hung_server_cancel_and_deadline) {
  auto listener = io::listen_tcp("127.0.0.1", 0);
  ASSERT_TRUE(listener);
  auto port = io::local_port(listener->get());
  ASSERT_TRUE(port);
  std::string url = "http://127.0.0.1:" + std::to_string(*port) + "/dir";
  {
    std::stop_source stop;
    acme::client_options o;
    o.directory_url = url;
    o.stop = stop.get_token();
    o.request_timeout = std::chrono::seconds(30);
    acme::client c(o, new_key());
    io::ring r;
    auto started = io::clock::now();
    auto res = r.run([&]() -> io::task<acme::acme_result<acme::directory>> {
      acme::acme_result<acme::directory> out = letsencrypt::unexpected(acme::error(letsencrypt::errc::invalid_argument));
      auto canceller = [&]() -> io::task<void> {
        (void)co_await io::sleep_for(std::chrono::milliseconds(50));
        stop.request_stop();
      };
      auto work = [&]() -> io::task<void> { out = co_await c.get_directory(); };
      std::vector<io::task<void>> both;
      both.push_back(work());
      both.push_back(canceller());
      (void)co_await io::when_all(std::move(both));
      co_return std::move(out);
    }());
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error().code, letsencrypt::errc::cancelled) << res.error().message();
    EXPECT_LT(io::clock::now() - started, std::chrono::seconds(20));  // not the 30 s deadline
  }
  {
    acme::client_options o;
    o.directory_url = url;
    o.request_timeout = std::chrono::milliseconds(100);
    acme::client c(o, new_key());
    auto res = run(c.get_directory());
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error().code, letsencrypt::errc::timed_out) << res.error().message();
    EXPECT_EQ(acme::classify(res.error()), acme::action::retry_call);
  }
  {
    // A closed port: a connection error, classified as worth retrying.
    acme::client_options o;
    o.directory_url = "http://127.0.0.1:1/dir";
    o.request_timeout = std::chrono::seconds(2);
    acme::client c(o, new_key());
    auto res = run(c.get_directory());
    ASSERT_FALSE(res);
    EXPECT_EQ(acme::classify(res.error()), acme::action::retry_call) << res.error().message();
  }
}
