// The Manager against a real ACME CA (Pebble on loopback) and real TLS clients.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <simdjson.h>

#include "acme/transport.hpp"
#include "letsencrypt/acme/types.hpp"
#include "letsencrypt/manager.hpp"
#include "letsencrypt/store/replay.hpp"
#include "manager/test_access.hpp"
#include "pebble_fixture.hpp"
#include "test_certs.hpp"

using namespace letsencrypt;
using namespace std::chrono_literals;

namespace {

struct probe_result {
  bool ok = false;
  std::string error;
  std::string subject_cn;
  std::string serial;
  std::string cipher;
};

std::string serial_of(X509* x) {
  BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), nullptr);
  char* hex = BN_bn2hex(bn);
  std::string s = hex;
  OPENSSL_free(hex);
  BN_free(bn);
  return s;
}

// A blocking TLS 1.3 client handshake to 127.0.0.1:port with SNI `name`, verifying the chain
// against `root_pem` and the host name.
probe_result probe(std::uint16_t port, const std::string& name, const std::string& root_pem,
                   int max_version = 0) {
  probe_result out;
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (max_version) SSL_CTX_set_max_proto_version(ctx, max_version);
  BIO* bio = BIO_new_mem_buf(root_pem.data(), int(root_pem.size()));
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  while (X509* c = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) {
    X509_STORE_add_cert(store, c);
    X509_free(c);
  }
  BIO_free(bio);
  ERR_clear_error();
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{30, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  SSL* ssl = nullptr;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    out.error = "connect failed";
  } else {
    ssl = SSL_new(ctx);
    SSL_set_tlsext_host_name(ssl, name.c_str());
    SSL_set1_host(ssl, name.c_str());
    SSL_set_fd(ssl, fd);
    if (SSL_connect(ssl) == 1) {
      X509* peer = SSL_get1_peer_certificate(ssl);
      char cn[256] = {};
      X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof cn);
      out.subject_cn = cn;
      out.serial = serial_of(peer);
      out.cipher = SSL_get_cipher_name(ssl);
      out.ok = SSL_get_verify_result(ssl) == X509_V_OK;
      if (!out.ok) out.error = X509_verify_cert_error_string(SSL_get_verify_result(ssl));
      X509_free(peer);
      SSL_shutdown(ssl);
    } else {
      char buf[256];
      ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
      out.error = buf;
    }
  }
  if (ssl) SSL_free(ssl);
  ::close(fd);
  SSL_CTX_free(ctx);
  return out;
}

// Text as a JSON string body (the Go cache's PEM fields).
std::string json_escape(const std::string& s) {
  std::string o;
  for (char ch : s) {
    if (ch == '\n') o += "\\n";
    else if (ch == '"') o += "\\\"";
    else o += ch;
  }
  return o;
}

class manager_pebble : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!test::pebble_ca::installed()) GTEST_SKIP() << "pebble not installed: apt-get install pebble";
    dir_ = std::filesystem::temp_directory_path() / ("le-manager-" + std::to_string(::getpid()) + "-" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void start_ca(test::pebble_ca::options o = {}) {
    auto ca = test::pebble_ca::start(o);
    ASSERT_TRUE(ca) << ca.error().message();
    ca_ = std::move(*ca);
  }

  config make_config() const {
    config c;
    c.directory_url = ca_->directory_url();
    c.ca_root_pem = ca_->https_ca_pem();
    c.listen_host = "127.0.0.1";
    c.https_port = ca_->tls_port();
    c.http_port = ca_->http_port();
    c.shards = 2;
    c.log = [](log_level, std::string_view line) { std::fprintf(stderr, "  [manager] %.*s\n", int(line.size()), line.data()); };
    return c;
  }

  static io::task<http::response> hello(const http::request&) {
    http::response r;
    r.status = 200;
    r.body = "Hello, TLS!\n";
    co_return r;
  }

  std::string cache() const { return (dir_ / "letsencrypt.cache").string(); }

  std::filesystem::path dir_;
  std::unique_ptr<test::pebble_ca> ca_;
};

TEST_F(manager_pebble, issues_on_demand_then_serves_from_journal_with_the_ca_down) {
  start_ca();
  std::string serial;
  {
    manager m(make_config());
    ASSERT_TRUE(m.cache_file(cache()));
    ASSERT_TRUE(m.set_hosts({"demo.test"}));
    ASSERT_TRUE(m.start(hello, true));
    auto p = probe(m.https_port(), "demo.test", ca_->issuing_root_pem());
    ASSERT_TRUE(p.ok) << p.error;
    EXPECT_EQ(p.subject_cn, "demo.test");
    serial = p.serial;
    EXPECT_EQ(m.stats().orders, 1u);
    EXPECT_TRUE(m.registered());
  }
  // Restart with the CA gone: the journal alone serves the same certificate, no order.
  auto root = ca_->issuing_root_pem();
  auto cfg = make_config();
  ca_->stop();
  manager m(cfg);
  ASSERT_TRUE(m.cache_file(cache()));
  ASSERT_TRUE(m.start(hello, true));
  auto p = probe(m.https_port(), "demo.test", root);
  ASSERT_TRUE(p.ok) << p.error;
  EXPECT_EQ(p.serial, serial);
  EXPECT_EQ(m.stats().orders, 0u);
  EXPECT_EQ(m.stats().loaded_from_cache, 1u);
}

TEST_F(manager_pebble, two_names_issued_concurrently) {
  start_ca();
  manager m(make_config());
  ASSERT_TRUE(m.start(hello, true));
  probe_result a, b;
  std::thread ta([&] { a = probe(m.https_port(), "a.test", ca_->issuing_root_pem()); });
  std::thread tb([&] { b = probe(m.https_port(), "b.test", ca_->issuing_root_pem()); });
  ta.join();
  tb.join();
  ASSERT_TRUE(a.ok) << a.error;
  ASSERT_TRUE(b.ok) << b.error;
  EXPECT_EQ(a.subject_cn, "a.test");
  EXPECT_EQ(b.subject_cn, "b.test");
  EXPECT_EQ(m.stats().orders, 2u);
}

TEST_F(manager_pebble, thundering_herd_of_handshakes_makes_exactly_one_order) {
  start_ca();
  manager m(make_config());
  ASSERT_TRUE(m.start(hello, false));
  constexpr int n = 100;
  std::vector<probe_result> res(n);
  std::vector<std::thread> ts;
  for (int i = 0; i < n; ++i) ts.emplace_back([&, i] { res[i] = probe(m.https_port(), "herd.test", ca_->issuing_root_pem()); });
  for (auto& t : ts) t.join();
  int ok = 0;
  std::set<std::string> serials;
  for (auto& r : res) {
    ok += r.ok;
    serials.insert(r.serial);
  }
  EXPECT_EQ(ok, n);
  EXPECT_EQ(serials.size(), 1u);
  EXPECT_EQ(m.stats().orders, 1u);
}

TEST_F(manager_pebble, names_outside_the_allowlist_get_no_order) {
  start_ca();
  manager m(make_config());
  ASSERT_TRUE(m.set_hosts({"allowed.test"}));
  m.set_host_policy([](std::string_view h) { return h != "vetoed.allowed.test"; });
  ASSERT_TRUE(m.start(hello, false));
  auto p = probe(m.https_port(), "evil.test", ca_->issuing_root_pem());
  EXPECT_FALSE(p.ok);
  auto r = m.cert_sync("evil.test");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::not_allowed);
  EXPECT_EQ(m.stats().orders, 0u);
  EXPECT_FALSE(m.registered());  // not even an account was made
  EXPECT_TRUE(m.cert_sync("allowed.test"));
  EXPECT_EQ(m.stats().orders, 1u);
}

TEST_F(manager_pebble, new_name_rate_limit_stops_a_flood_of_random_names) {
  start_ca();
  auto cfg = make_config();
  cfg.new_names = {std::chrono::hours(3), 2};
  manager m(cfg);
  ASSERT_TRUE(m.start(hello, false));
  int ok = 0;
  std::string failures;  // which probe failed and how, should the count ever be off
  for (int i = 0; i < 10; ++i) {
    auto p = probe(m.https_port(), "flood" + std::to_string(i) + ".test", ca_->issuing_root_pem());
    ok += p.ok;
    if (!p.ok) failures += " flood" + std::to_string(i) + ": " + p.error + ";";
  }
  EXPECT_EQ(ok, 2) << failures;
  EXPECT_EQ(m.stats().orders, 2u);
  auto r = m.cert_sync("flood-late.test");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::rate_limited);
}

TEST_F(manager_pebble, renewal_replaces_the_served_certificate_without_failed_handshakes) {
  test::pebble_ca::options o;
  // Renewal starts at 2/3 of the lifetime: 16 s, leaving 8 s for it to finish before the
  // certificate the load is checking expires.
  o.certificate_validity_seconds = 24;
  start_ca(o);
  manager m(make_config());
  ASSERT_TRUE(m.cache_file(cache()));
  ASSERT_TRUE(m.start(hello, false));
  auto first = probe(m.https_port(), "renew.test", ca_->issuing_root_pem());
  ASSERT_TRUE(first.ok) << first.error;
  std::atomic<bool> done{false};
  std::atomic<int> failures{0}, handshakes{0};
  std::string last_error;
  std::thread load([&] {
    while (!done) {
      auto p = probe(m.https_port(), "renew.test", ca_->issuing_root_pem());
      ++handshakes;
      if (!p.ok) {
        ++failures;
        last_error = p.error;
      }
      std::this_thread::sleep_for(20ms);
    }
  });
  std::string now_serial = first.serial;
  for (int i = 0; i < 600 && now_serial == first.serial; ++i) {
    std::this_thread::sleep_for(100ms);
    auto p = probe(m.https_port(), "renew.test", ca_->issuing_root_pem());
    if (p.ok) now_serial = p.serial;
  }
  done = true;
  load.join();
  EXPECT_NE(now_serial, first.serial) << "no renewal within 60 s";
  EXPECT_GE(m.stats().renewed, 1u);
  EXPECT_EQ(failures.load(), 0) << last_error;
  EXPECT_GT(handshakes.load(), 20);
  // The renewed certificate is in the journal.
  EXPECT_NE(m.marshal().find("renew.test"), std::string::npos);
}

// Pebble has no ARI: this responder sits in front of it as the manager's transport. Its
// directory is Pebble's plus renewalInfo; it answers renewalInfo from a table the test fills
// (404 for an unknown certificate), records which certificates were asked about and the
// newOrder payloads, and passes everything else to Pebble unchanged.
struct ari_front {
  acme::http_fetch pebble;
  std::string directory_url;
  std::string ari_base = "https://ari.invalid/renewal-info/";
  std::mutex mu;
  std::string new_order_url;
  std::map<std::string, std::string> windows;  // RFC 9773 id -> renewalInfo body
  std::set<std::string> asked;
  std::vector<std::string> new_order_payloads;

  static io::task<letsencrypt::result<acme::http_response>> handle(ari_front* self, acme::http_request req,
                                                                   std::stop_token stop) {
    if (req.method == "GET" && req.url.starts_with(self->ari_base)) {
      const std::string id = req.url.substr(self->ari_base.size());
      acme::http_response out;
      {
        std::lock_guard lk(self->mu);
        self->asked.insert(id);
        auto it = self->windows.find(id);
        out.status = it != self->windows.end() ? 200 : 404;
        out.body = it != self->windows.end() ? it->second
                                             : R"({"type":"urn:ietf:params:acme:error:malformed","detail":"unknown"})";
      }
      out.headers.emplace_back("Content-Type", out.status == 200 ? "application/json" : "application/problem+json");
      out.headers.emplace_back("Retry-After", "1");
      co_return out;
    }
    if (req.method == "POST") {
      std::lock_guard lk(self->mu);
      if (req.url == self->new_order_url) {
        simdjson::dom::parser p;
        simdjson::padded_string ps(req.body);
        std::string_view payload;
        if (p.parse(ps)["payload"].get_string().get(payload) == simdjson::SUCCESS)
          self->new_order_payloads.push_back(acme::base64url_decode(payload).value_or(""));
      }
    }
    const bool directory = req.method == "GET" && req.url == self->directory_url;
    auto r = co_await self->pebble(std::move(req), std::move(stop));
    if (directory && r && r->status == 200) {
      if (auto d = acme::parse_directory(r->body)) {
        std::lock_guard lk(self->mu);
        self->new_order_url = d->new_order;
      }
      const auto end = r->body.rfind('}');
      if (end != std::string::npos) r->body.insert(end, ",\"renewalInfo\":\"" + self->ari_base + "\"");
    }
    co_return r;
  }
};

// RFC 9773: the CA moves a served certificate's renewal window into the past (as before a
// mass revocation); the manager, asking every Retry-After, sees it, renews at once with
// "replaces" naming the old certificate, and serves the new one.
TEST_F(manager_pebble, ari_window_moved_by_the_ca_renews_at_once_with_replaces) {
  start_ca();
  config c = make_config();
  c.ari_poll_interval = 1s;
  manager m(c);
  ari_front front;
  acme::client_options po;
  po.directory_url = ca_->directory_url();
  po.ca_pem = ca_->https_ca_pem();
  front.pebble = acme::make_default_fetch(po);
  front.directory_url = ca_->directory_url();
  manager_test_access::set_acme_fetch(
      m, [&front](acme::http_request r, std::stop_token st) { return ari_front::handle(&front, std::move(r), std::move(st)); });
  ASSERT_TRUE(m.cache_file(cache()));
  ASSERT_TRUE(m.start(hello, false));

  auto first = probe(m.https_port(), "ari.test", ca_->issuing_root_pem());
  ASSERT_TRUE(first.ok) << first.error;
  // The window of the new certificate was asked for at issuance (and was unknown).
  std::string id;
  {
    std::lock_guard lk(front.mu);
    ASSERT_EQ(front.asked.size(), 1u);
    id = *front.asked.begin();
    ASSERT_EQ(front.new_order_payloads.size(), 1u);
    EXPECT_EQ(front.new_order_payloads[0].find("replaces"), std::string::npos);
    front.windows[id] = R"({"suggestedWindow":{"start":"2020-01-01T00:00:00Z","end":"2020-01-02T00:00:00Z"},)"
                        R"("explanationURL":"https://ari.invalid/incident"})";
  }
  std::string now_serial = first.serial;
  for (int i = 0; i < 300 && now_serial == first.serial; ++i) {
    std::this_thread::sleep_for(100ms);
    auto p = probe(m.https_port(), "ari.test", ca_->issuing_root_pem());
    if (p.ok) now_serial = p.serial;
  }
  EXPECT_NE(now_serial, first.serial) << "no renewal within 30 s of the window moving";
  auto st = m.stats();
  EXPECT_GE(st.ari_polls, 1u);
  EXPECT_GE(st.ari_moves, 1u);
  EXPECT_EQ(st.renewed, 1u);
  std::string renewed_id;
  {
    std::lock_guard lk(front.mu);
    ASSERT_GE(front.new_order_payloads.size(), 2u);
    EXPECT_NE(front.new_order_payloads[1].find("\"replaces\":\"" + id + "\""), std::string::npos)
        << front.new_order_payloads[1];
    for (const auto& a : front.asked)
      if (a != id) renewed_id = a;
    ASSERT_FALSE(renewed_id.empty());
    // A window in the future for the renewed certificate: rescheduled, not renewed, and
    // kept in the journal.
    front.windows[renewed_id] = R"({"suggestedWindow":{"start":"2031-01-01T00:00:00Z","end":"2031-01-02T00:00:00Z"}})";
  }
  for (int i = 0; i < 100 && m.stats().ari_moves < 2; ++i) std::this_thread::sleep_for(100ms);
  EXPECT_EQ(m.stats().ari_moves, 2u);
  std::this_thread::sleep_for(1500ms);  // at least one more poll of an unchanged window
  EXPECT_EQ(m.stats().ari_moves, 2u);
  EXPECT_EQ(m.stats().renewed, 1u);
  EXPECT_EQ(probe(m.https_port(), "ari.test", ca_->issuing_root_pem()).serial, now_serial);
  m.stop();

  std::ifstream f(cache(), std::ios::binary);
  std::string image((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto rr = store::replay(std::as_bytes(std::span(image)));
  ASSERT_FALSE(rr.error) << rr.message;
  auto it = rr.state.certs.find("ari.test");
  ASSERT_NE(it, rr.state.certs.end());
  EXPECT_EQ(it->second->ari_cert_id, renewed_id);
  EXPECT_EQ(it->second->ari_start.time_since_epoch(), std::chrono::seconds(1924992000));  // 2031-01-01
  EXPECT_EQ(it->second->ari_end.time_since_epoch(), std::chrono::seconds(1925078400));
}

TEST_F(manager_pebble, go_cache_import_then_serving_its_certificate) {
  start_ca();
  letsencrypt::testing::test_certs certs("Go test CA");
  auto issued = certs.issue({"go.test"});
  std::string json = "{\"Email\":\"admin@go.test\",\"Reg\":null,\"Key\":\"\",\"Hosts\":[\"go.test\"],\"Certs\":{\"go.test\":{\"Cert\":\"" +
                     json_escape(issued.chain_pem) + "\",\"Key\":\"" + json_escape(issued.key_pem) + "\"}}}";
  manager m(make_config());
  ASSERT_TRUE(m.cache_file(cache()));
  auto r = m.unmarshal(json);
  ASSERT_TRUE(r) << r.error().message();
  ASSERT_TRUE(m.start(hello, false));
  auto ca_pem = certs.ca_pem();
  auto p = probe(m.https_port(), "go.test", ca_pem);
  ASSERT_TRUE(p.ok) << p.error;
  EXPECT_EQ(p.serial, serial_of(issued.cert.get()));
  EXPECT_EQ(m.stats().orders, 0u);
  // The allowlist came along: other names are refused without an order.
  EXPECT_EQ(m.cert_sync("other.test").error(), errc::not_allowed);
}

// Cached certificates are loaded without parsing and parsed by the first handshake for
// their name: each name gets its own certificate, and a cached certificate whose key is not
// its own fails that name's handshakes (an alert), not the others' and not the manager, and
// is replaced by a renewal started at once.
TEST_F(manager_pebble, cached_certificates_are_parsed_on_use_within_the_limit_and_a_broken_one_stays_contained) {
  start_ca();
  letsencrypt::testing::test_certs certs("cache test CA");
  std::vector<letsencrypt::testing::issued_cert> issued;
  std::string json = "{\"Email\":\"\",\"Reg\":null,\"Key\":\"\",\"Certs\":{";
  for (int i = 0; i < 50; ++i) {
    issued.push_back(certs.issue({"c" + std::to_string(i) + ".cache.test"}));
    if (i) json += ",";
    json += "\"c" + std::to_string(i) + ".cache.test\":{\"Cert\":\"" + json_escape(issued.back().chain_pem) + "\",\"Key\":\"" +
            json_escape(issued.back().key_pem) + "\"}";
  }
  // A record under a name the SNI map refuses: left out alone, not with the whole cache.
  json += ",\"not a host name\":{\"Cert\":\"" + json_escape(issued[0].chain_pem) + "\",\"Key\":\"" +
          json_escape(issued[0].key_pem) + "\"}";
  json += "}}";
  // c7 gets c8's key: the pair does not match.
  auto c8key = json_escape(issued[8].key_pem);
  auto c7key = json_escape(issued[7].key_pem);
  json.replace(json.find(c7key), c7key.size(), c8key);

  // Two parsed at once: names asked for again after others are parsed anew.
  auto cfg = make_config();
  cfg.parsed_certificates_limit = 2;
  manager m(std::move(cfg));
  ASSERT_TRUE(m.cache_file(cache()));
  ASSERT_TRUE(m.unmarshal(json));
  EXPECT_EQ(m.stats().certificates, 50u);
  EXPECT_EQ(m.stats().loaded_from_cache, 51u);
  ASSERT_TRUE(m.start(hello, false));
  for (int i : {0, 49, 8, 7, 8, 0, 1, 2, 3, 49, 0}) {
    auto p = probe(m.https_port(), "c" + std::to_string(i) + ".cache.test", certs.ca_pem());
    if (i == 7) {
      EXPECT_FALSE(p.ok);
      EXPECT_FALSE(p.error.empty());
    } else {
      ASSERT_TRUE(p.ok) << i << ": " << p.error;
      EXPECT_EQ(p.serial, serial_of(issued[static_cast<std::size_t>(i)].cert.get())) << i;
    }
  }
  // Nine parses into two places (7's fails and is not kept): seven displaced another.
  EXPECT_EQ(m.stats().parsed_evictions, 7u);
  // The broken one is renewed from the CA (Pebble) and then served.
  probe_result healed;
  for (int i = 0; i < 300 && !healed.ok; ++i) {
    std::this_thread::sleep_for(100ms);
    healed = probe(m.https_port(), "c7.cache.test", ca_->issuing_root_pem());
  }
  EXPECT_TRUE(healed.ok) << healed.error;
  EXPECT_EQ(m.stats().renewed, 1u);
  EXPECT_EQ(m.stats().orders, 1u);
}

// A cached certificate already past its renewal point is renewed right after loading, not
// when the renewal loop happens to wake up.
TEST_F(manager_pebble, cached_certificate_past_its_renewal_point_is_renewed_at_once) {
  start_ca();
  letsencrypt::testing::test_certs certs("old CA");
  letsencrypt::testing::issue_options o;
  o.not_before = -20h;
  o.not_after = 4h;  // 2/3 of the lifetime was 4 hours ago
  auto old = certs.issue({"due.test"}, o);
  manager m(make_config());
  ASSERT_TRUE(m.cache_file(cache()));
  ASSERT_TRUE(m.start(hello, false));
  ASSERT_TRUE(m.unmarshal("{\"Email\":\"\",\"Reg\":null,\"Key\":\"\",\"Certs\":{\"due.test\":{\"Cert\":\"" +
                          json_escape(old.chain_pem) + "\",\"Key\":\"" + json_escape(old.key_pem) + "\"}}}"));
  probe_result now;
  for (int i = 0; i < 300 && !now.ok; ++i) {
    std::this_thread::sleep_for(100ms);
    now = probe(m.https_port(), "due.test", ca_->issuing_root_pem());
  }
  EXPECT_TRUE(now.ok) << "not renewed within 30 s: " << now.error;
  EXPECT_EQ(m.stats().renewed, 1u);
}

// A cached certificate for two names (the library's own state format keeps such), past its
// renewal point: each name is renewed once, the second one too, and the old certificate is
// then held for neither. Renewing only the first name over and over was the failure.
TEST_F(manager_pebble, a_cached_certificate_for_two_names_renews_each_name_once) {
  start_ca();
  letsencrypt::testing::test_certs certs("old CA");
  letsencrypt::testing::issue_options o;
  o.not_before = -20h;
  o.not_after = 4h;
  auto old = certs.issue({"a.test", "b.test"}, o);
  manager m(make_config());
  ASSERT_TRUE(m.start(hello, false));
  ASSERT_TRUE(m.unmarshal(R"({"format":"letsencrypt-state-1","certs":[{"names":["a.test","b.test"],"chain":")" +
                          json_escape(old.chain_pem) + "\",\"key\":\"" + json_escape(old.key_pem) + "\"}]}"));
  for (int i = 0; i < 600 && m.stats().renewed < 2; ++i) std::this_thread::sleep_for(100ms);
  std::this_thread::sleep_for(3s);  // time enough for more orders, were any still coming
  EXPECT_EQ(m.stats().renewed, 2u);
  EXPECT_EQ(m.stats().orders, 2u);
  EXPECT_EQ(m.marshal().find(json_escape(old.chain_pem)), std::string::npos) << "b.test kept the old certificate";
  for (const char* name : {"a.test", "b.test"})
    EXPECT_TRUE(probe(m.https_port(), name, ca_->issuing_root_pem()).ok) << name;
}

// The HTTPS server uses the library's TLS defaults; configure_tls adjusts them: TLS 1.3
// only with AES-256 first is what clients then get; a hook that fails stops start().
TEST_F(manager_pebble, configure_tls_adjusts_the_server_context) {
  start_ca();
  {
    config c = make_config();
    c.configure_tls = [](ssl_ctx_st*) { return false; };
    manager m(c);
    EXPECT_EQ(m.start(hello, false).error(), errc::invalid_argument);
  }
  {
    // Without it, the library's order: AES-128 first although the client prefers AES-256.
    manager m(make_config());
    ASSERT_TRUE(m.start(hello, false));
    auto p = probe(m.https_port(), "default.test", ca_->issuing_root_pem());
    ASSERT_TRUE(p.ok) << p.error;
    EXPECT_EQ(p.cipher, "TLS_AES_128_GCM_SHA256");
  }
  config c = make_config();
  c.configure_tls = [](ssl_ctx_st* ctx) {
    return SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) == 1 &&
           SSL_CTX_set_ciphersuites(ctx, "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256") == 1;
  };
  manager m(c);
  ASSERT_TRUE(m.start(hello, false));
  auto p = probe(m.https_port(), "tls13.test", ca_->issuing_root_pem());
  ASSERT_TRUE(p.ok) << p.error;
  EXPECT_EQ(p.cipher, "TLS_AES_256_GCM_SHA384");
  auto old = probe(m.https_port(), "tls13.test", ca_->issuing_root_pem(), TLS1_2_VERSION);
  EXPECT_FALSE(old.ok);
}

TEST_F(manager_pebble, watch_fires_after_issuance_and_for_existing_state) {
  start_ca();
  manager m(make_config());
  std::atomic<int> fired{0};
  m.watch([&] { ++fired; });
  EXPECT_EQ(fired.load(), 0);  // nothing recorded yet
  ASSERT_TRUE(m.start(hello, false));
  ASSERT_TRUE(m.cert_sync("watched.test"));
  EXPECT_GE(fired.load(), 1);
  std::atomic<int> late{0};
  m.watch([&] { ++late; });
  EXPECT_EQ(late.load(), 1);  // told at once: state exists
}

// A CA that accepts connections and never answers, and a one-shard manager using it with a
// handshake for a new name suspended on the issuance that hangs there.
struct hung_issuance {
  int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
  std::unique_ptr<manager> m;
  probe_result p;
  std::thread client;

  void start() {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ASSERT_EQ(::listen(lfd, 16), 0);
    socklen_t len = sizeof a;
    ::getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len);
    config c;
    c.directory_url = "https://127.0.0.1:" + std::to_string(ntohs(a.sin_port)) + "/dir";
    c.listen_host = "127.0.0.1";
    c.https_port = 0;
    c.shards = 1;
    c.log = [](log_level, std::string_view) {};
    m = std::make_unique<manager>(c);
    auto hello = [](const http::request&) -> io::task<http::response> { co_return http::response{}; };
    ASSERT_TRUE(m->start(hello, false));
    client = std::thread([this, port = m->https_port()] { p = probe(port, "hang.test", ""); });
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the handshake is suspended
    EXPECT_EQ(m->stats().orders, 0u);  // still fetching the directory
  }
  ~hung_issuance() {
    if (client.joinable()) client.join();
    ::close(lfd);
  }
};

// Hang, cancel, must unwind: destroying the manager ends the hung issuance and the handshake
// waiting on it promptly.
TEST(manager_unwind, destroying_the_manager_ends_an_issuance_hung_on_a_silent_ca) {
  hung_issuance h;
  ASSERT_NO_FATAL_FAILURE(h.start());
  auto start = std::chrono::steady_clock::now();
  h.m.reset();
  auto took = std::chrono::steady_clock::now() - start;
  h.client.join();
  EXPECT_FALSE(h.p.ok);
  EXPECT_LT(took, std::chrono::seconds(5));
}

// Hang, cancel, must unwind: stopping the server while the issuance still hangs ends the
// handshake waiting on it at once; the issuance itself is the manager's and ends with it.
TEST(manager_unwind, stopping_the_server_ends_a_handshake_waiting_on_a_hung_issuance) {
  hung_issuance h;
  ASSERT_NO_FATAL_FAILURE(h.start());
  auto start = std::chrono::steady_clock::now();
  h.m->stop();
  auto took = std::chrono::steady_clock::now() - start;
  h.client.join();
  EXPECT_FALSE(h.p.ok);
  EXPECT_LT(took, std::chrono::seconds(5));
  EXPECT_EQ(h.m->https_port(), 0);
  start = std::chrono::steady_clock::now();
  h.m.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

// A cached certificate due for renewal arrives for a name whose issuance is already running
// (here: hung on a silent CA). The renewal loop leaves the name to that issuance and sleeps;
// it used to look again at once, without suspending, and kept the control shard's thread
// busy for good, so that nothing else on it ran and the manager could not be destroyed.
TEST(manager_unwind, a_due_name_whose_issuance_is_running_is_left_to_it) {
  hung_issuance h;
  ASSERT_NO_FATAL_FAILURE(h.start());
  letsencrypt::testing::test_certs certs("old CA");
  letsencrypt::testing::issue_options o;
  o.not_before = -20h;
  o.not_after = 4h;
  auto old = certs.issue({"hang.test"}, o);
  ASSERT_TRUE(h.m->unmarshal(R"({"format":"letsencrypt-state-1","certs":[{"names":["hang.test"],"chain":")" +
                             json_escape(old.chain_pem) + "\",\"key\":\"" + json_escape(old.key_pem) + "\"}]}"));
  std::this_thread::sleep_for(200ms);
  // Every thread of the process waits now: the issuance on the CA, the loop on its timer.
  timespec t0{}, t1{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
  std::this_thread::sleep_for(1s);
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
  const double busy = double(t1.tv_sec - t0.tv_sec) + double(t1.tv_nsec - t0.tv_nsec) / 1e9;
  EXPECT_LT(busy, 0.5) << "a thread kept running while the manager had nothing to do";
  const auto start = std::chrono::steady_clock::now();
  h.m.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST_F(manager_pebble, install_into_a_plain_blocking_openssl_server) {
  start_ca();
  auto cfg = make_config();
  cfg.challenges = {challenge_type::tls_alpn_01};
  manager m(cfg);
  ASSERT_TRUE(m.set_hosts({"embed.test"}));
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  m.install(ctx);
  // An ordinary blocking server on the port the CA validates: a thread per connection. Like
  // any blocking socket server it ignores SIGPIPE (the CA's validator hangs up early).
  ::signal(SIGPIPE, SIG_IGN);
  int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(ca_->tls_port());
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(lfd, 16), 0);
  std::atomic<bool> stop{false};
  std::atomic<int> suspended{0};
  std::vector<std::thread> conns;
  std::thread acceptor([&] {
    while (!stop) {
      int fd = ::accept(lfd, nullptr, nullptr);
      if (fd < 0) break;
      conns.emplace_back([&, fd] {
        SSL* ssl = SSL_new(ctx);
        SSL_set_fd(ssl, fd);
        for (;;) {
          int rc = SSL_accept(ssl);
          if (rc == 1) {
            SSL_shutdown(ssl);
            break;
          }
          if (SSL_get_error(ssl, rc) != SSL_ERROR_WANT_CLIENT_HELLO_CB) break;
          ++suspended;
          (void)m.cert_sync(std::string(manager::pending_name(ssl)));
        }
        SSL_free(ssl);
        ::close(fd);
      });
    }
  });
  auto p = probe(ca_->tls_port(), "embed.test", ca_->issuing_root_pem());
  EXPECT_TRUE(p.ok) << p.error;
  EXPECT_EQ(p.subject_cn, "embed.test");
  EXPECT_GE(suspended.load(), 1);
  EXPECT_EQ(m.stats().orders, 1u);
  stop = true;
  ::shutdown(lfd, SHUT_RDWR);
  acceptor.join();
  for (auto& t : conns) t.join();
  ::close(lfd);
  SSL_CTX_free(ctx);
}

}  // namespace
