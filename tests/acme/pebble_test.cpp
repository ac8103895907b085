// acme::client against a real Pebble CA on loopback: accounts, issuance by http-01,
// tls-alpn-01 and dns-01 (wildcard), badNonce storms, EAB, key rollover, revocation, and
// ARI/profiles through an in-process responder that extends Pebble's directory.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <simdjson.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include "acme/transport.hpp"
#include "letsencrypt/acme/client.hpp"
#include "letsencrypt/io/ring.hpp"
#include "letsencrypt/tls/challenge_cert.hpp"
#include "pebble_fixture.hpp"
#include "test_util.hpp"

namespace acme = letsencrypt::acme;
namespace io = letsencrypt::io;
using letsencrypt::test::pebble_ca;

namespace {

#define SKIP_WITHOUT_PEBBLE()                                                                  \
  do {                                                                                         \
    if (!pebble_ca::installed()) GTEST_SKIP() << "pebble not installed: apt-get install pebble"; \
  } while (0)

std::unique_ptr<pebble_ca> start_pebble(pebble_ca::options o = {}) {
  auto r = pebble_ca::start(std::move(o));
  EXPECT_TRUE(r) << (r ? "" : r.error().message());
  return r ? std::move(r).value() : nullptr;
}

template <class T>
T run(io::task<T> t) {
  io::ring r;
  return r.run(std::move(t));
}

int listen_on(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 64) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Accepts connections on a blocking thread until stopped; `serve` handles one connection.
class loop_server {
 public:
  loop_server(std::uint16_t port, std::function<void(int)> serve) : fd_(listen_on(port)), serve_(std::move(serve)) {
    if (fd_ >= 0) thread_ = std::thread([this] { loop(); });
  }
  ~loop_server() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) ::close(fd_);
  }
  bool ok() const { return fd_ >= 0; }
  int connections() const { return connections_; }

 private:
  void loop() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      timeval tv{2, 0};
      ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      ::setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
      ++connections_;
      serve_(c);
      ::close(c);
    }
  }
  int fd_;
  std::function<void(int)> serve_;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::thread thread_;
};

// http-01: answers GET /.well-known/acme-challenge/<token> from a table.
struct http01_solver final : acme::challenge_solver {
  std::mutex mu;
  std::map<std::string, std::string> tokens;
  int presents = 0, cleanups = 0;
  loop_server server;
  explicit http01_solver(std::uint16_t port) : server(port, [this](int c) { serve(c); }) {}
  void serve(int c) {
    std::string req;
    char buf[2048];
    while (req.find("\r\n\r\n") == std::string::npos && req.size() < 16384) {
      ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) return;
      req.append(buf, static_cast<std::size_t>(n));
    }
    std::string prefix = "GET /.well-known/acme-challenge/";
    std::string body, status = "404 Not Found";
    if (req.starts_with(prefix)) {
      std::string token = req.substr(prefix.size(), req.find(' ', prefix.size()) - prefix.size());
      std::lock_guard lk(mu);
      if (auto it = tokens.find(token); it != tokens.end()) {
        body = it->second;
        status = "200 OK";
      }
    }
    std::string resp = "HTTP/1.1 " + status + "\r\nContent-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) +
                       "\r\nConnection: close\r\n\r\n" + body;
    (void)::send(c, resp.data(), resp.size(), MSG_NOSIGNAL);
  }
  io::task<letsencrypt::result<void>> present(const acme::challenge_info& c) override {
    std::lock_guard lk(mu);
    ++presents;
    tokens[c.token] = c.key_authorization;
    co_return letsencrypt::ok();
  }
  io::task<letsencrypt::result<void>> cleanup(const acme::challenge_info& c) override {
    std::lock_guard lk(mu);
    ++cleanups;
    tokens.erase(c.token);
    co_return letsencrypt::ok();
  }
};

// tls-alpn-01: a minimal blocking OpenSSL server that picks the RFC 8737 certificate by SNI.
struct tls_alpn01_solver final : acme::challenge_solver {
  std::mutex mu;
  std::map<std::string, letsencrypt::tls::certified_key> certs;
  int presents = 0, handshakes = 0;
  SSL_CTX* ctx = nullptr;
  std::unique_ptr<loop_server> server;

  explicit tls_alpn01_solver(std::uint16_t port) {
    // The blocking server writes with OpenSSL's socket BIO (no MSG_NOSIGNAL): a validator
    // that hangs up first must not kill the test process.
    ::signal(SIGPIPE, SIG_IGN);
    ctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_alpn_select_cb(
        ctx,
        [](SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned inlen, void*) {
          static const unsigned char proto[] = "\x0a" "acme-tls/1";
          if (SSL_select_next_proto(const_cast<unsigned char**>(out), outlen, proto, 11, in, inlen) == OPENSSL_NPN_NEGOTIATED)
            return SSL_TLSEXT_ERR_OK;
          return SSL_TLSEXT_ERR_ALERT_FATAL;
        },
        nullptr);
    SSL_CTX_set_tlsext_servername_callback(ctx, +[](SSL* ssl, int*, void* arg) -> int {
      auto* self = static_cast<tls_alpn01_solver*>(arg);
      const char* sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
      if (!sni) return SSL_TLSEXT_ERR_ALERT_FATAL;
      std::lock_guard lk(self->mu);
      auto it = self->certs.find(sni);
      if (it == self->certs.end()) return SSL_TLSEXT_ERR_ALERT_FATAL;
      SSL_use_certificate(ssl, it->second.leaf.get());
      SSL_use_PrivateKey(ssl, it->second.key.get());
      return SSL_TLSEXT_ERR_OK;
    });
    SSL_CTX_set_tlsext_servername_arg(ctx, this);
    server = std::make_unique<loop_server>(port, [this](int c) { serve(c); });
  }
  ~tls_alpn01_solver() override {
    server.reset();
    SSL_CTX_free(ctx);
  }
  void serve(int c) {
    SSL* ssl = SSL_new(ctx);
    SSL_set_fd(ssl, c);
    if (SSL_accept(ssl) == 1) {
      ++handshakes;
      SSL_shutdown(ssl);
    }
    SSL_free(ssl);
    ERR_clear_error();
  }
  io::task<letsencrypt::result<void>> present(const acme::challenge_info& c) override {
    auto ck = letsencrypt::tls::make_tls_alpn01_certificate(c.identifier.value, c.key_authorization);
    if (!ck) co_return ck.error();
    std::lock_guard lk(mu);
    ++presents;
    certs[c.identifier.value] = std::move(ck).value();
    co_return letsencrypt::ok();
  }
  io::task<letsencrypt::result<void>> cleanup(const acme::challenge_info& c) override {
    std::lock_guard lk(mu);
    certs.erase(c.identifier.value);
    co_return letsencrypt::ok();
  }
};

// dns-01 through the fixture's mock DNS.
struct dns01_solver final : acme::challenge_solver {
  pebble_ca* ca;
  int presents = 0;
  explicit dns01_solver(pebble_ca* c) : ca(c) {}
  io::task<letsencrypt::result<void>> present(const acme::challenge_info& c) override {
    ++presents;
    auto r = ca->set_txt(c.dns_txt_name, c.dns_txt_value);
    if (!r) co_return r.error().code;
    co_return letsencrypt::ok();
  }
  io::task<letsencrypt::result<void>> cleanup(const acme::challenge_info& c) override {
    (void)ca->clear_txt(c.dns_txt_name);
    co_return letsencrypt::ok();
  }
};

acme::client_options options_for(const pebble_ca& ca) {
  acme::client_options o;
  o.directory_url = ca.directory_url();
  o.ca_pem = ca.https_ca_pem();
  o.order_timeout = std::chrono::seconds(60);
  o.request_timeout = std::chrono::seconds(10);
  return o;
}

acme::account_key new_key() { return std::move(acme::account_key::generate_p256()).value(); }

acme::account_options agree() {
  acme::account_options a;
  a.contact = {"mailto:admin@example.com"};
  a.accept_terms = [](std::string_view) { return true; };
  return a;
}

X509* load_pem(const std::string& pem) {
  BIO* b = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* x = PEM_read_bio_X509(b, nullptr, nullptr, nullptr);
  BIO_free(b);
  return x;
}

// The chain's leaf verifies against `root_pem` (X509_verify_cert with the chain's other
// certificates as untrusted intermediates) for every name in `names`.
::testing::AssertionResult chain_verifies(const std::string& chain_pem, const std::string& root_pem,
                                          const std::vector<std::string>& names) {
  auto blocks = acme::split_pem_chain(chain_pem);
  if (blocks.size() < 2) return ::testing::AssertionFailure() << "chain has " << blocks.size() << " certificates";
  X509* leaf = load_pem(blocks[0]);
  X509* root = load_pem(root_pem);
  X509_STORE* store = X509_STORE_new();
  X509_STORE_add_cert(store, root);
  STACK_OF(X509)* untrusted = sk_X509_new_null();
  for (std::size_t i = 1; i < blocks.size(); ++i) sk_X509_push(untrusted, load_pem(blocks[i]));
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  X509_STORE_CTX_init(ctx, store, leaf, untrusted);
  bool ok = X509_verify_cert(ctx) == 1;
  std::string why = ok ? "" : X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx));
  std::string missing;
  for (const auto& n : names)
    if (X509_check_host(leaf, n.c_str(), n.size(), 0, nullptr) != 1) missing += n + " ";
  X509_STORE_CTX_free(ctx);
  sk_X509_pop_free(untrusted, X509_free);
  X509_STORE_free(store);
  X509_free(root);
  X509_free(leaf);
  if (!ok) return ::testing::AssertionFailure() << "verify: " << why;
  if (!missing.empty()) return ::testing::AssertionFailure() << "names not covered: " << missing;
  return ::testing::AssertionSuccess();
}

acme::acme_result<acme::issued_certificate> issue(acme::client& c, std::vector<std::string> names,
                                                  std::map<std::string, acme::challenge_solver*, std::less<>> solvers,
                                                  bool register_first = true) {
  return run([&]() -> io::task<acme::acme_result<acme::issued_certificate>> {
    if (register_first) {
      auto acct = co_await c.register_account(agree());
      if (!acct) co_return letsencrypt::unexpected(acct.error());
    }
    acme::order_request req;
    req.names = std::move(names);
    req.solvers = std::move(solvers);
    co_return co_await c.obtain(req);
  }());
}

// Serves an extended directory and renewalInfo itself, records newOrder payloads, and
// passes everything else to Pebble through the real transport.
struct extending_responder {
  acme::http_fetch pebble;
  std::string directory_url = "https://ari.invalid/dir";
  std::string ari_base = "https://ari.invalid/renewal-info/";
  std::string directory_json;
  std::string new_order_url;
  std::map<std::string, std::string> known_ids;  // RFC 9773 id -> renewalInfo body
  std::vector<std::string> new_order_payloads;

  static io::task<letsencrypt::result<acme::http_response>> handle(extending_responder* self, acme::http_request req,
                                                                   std::stop_token stop) {
    if (req.method == "GET" && req.url == self->directory_url) {
      acme::http_response out;
      out.status = 200;
      out.body = self->directory_json;
      out.headers.emplace_back("Content-Type", "application/json");
      co_return out;
    }
    if (req.method == "GET" && req.url.starts_with(self->ari_base)) {
      acme::http_response out;
      auto it = self->known_ids.find(req.url.substr(self->ari_base.size()));
      bool found = it != self->known_ids.end();
      out.status = found ? 200 : 404;
      out.body = found ? it->second : "{\"type\":\"urn:ietf:params:acme:error:malformed\",\"detail\":\"unknown id\"}";
      out.headers.emplace_back("Content-Type", found ? "application/json" : "application/problem+json");
      out.headers.emplace_back("Retry-After", "3600");
      co_return out;
    }
    if (req.method == "POST" && req.url == self->new_order_url) {
      simdjson::dom::parser p;
      simdjson::padded_string ps(req.body);
      std::string_view payload;
      if (p.parse(ps)["payload"].get_string().get(payload) == simdjson::SUCCESS)
        self->new_order_payloads.push_back(acme::base64url_decode(payload).value_or(""));
    }
    co_return co_await self->pebble(std::move(req), std::move(stop));
  }
};

}  // namespace

TEST(acme_pebble, account_creation_and_lookup_by_key) {
  SKIP_WITHOUT_PEBBLE();
  auto ca = start_pebble();
  ASSERT_TRUE(ca);
  auto key = new_key();
  std::string pem = *key.private_pem();
  std::string url;
  {
    acme::client c(options_for(*ca), std::move(key));
    auto missing = run(c.find_account());
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, acme::errc::account_does_not_exist) << missing.error().message();
    std::string tos_seen;
    auto opts = agree();
    opts.accept_terms = [&](std::string_view tos) {
      tos_seen = tos;
      return true;
    };
    auto acct = run(c.register_account(opts));
    ASSERT_TRUE(acct) << acct.error().message();
    EXPECT_EQ(acct->status, acme::status::valid);
    EXPECT_FALSE(tos_seen.empty());
    url = acct->url;
  }
  acme::client again(options_for(*ca), std::move(acme::account_key::from_pem(pem)).value());
  auto found = run(again.find_account());
  ASSERT_TRUE(found) << found.error().message();
  EXPECT_EQ(found->url, url);
  auto fetched = run(again.fetch_account());
  ASSERT_TRUE(fetched) << fetched.error().message();
  EXPECT_EQ(fetched->status, acme::status::valid);
}

TEST(acme_pebble, http01_issuance_for_two_names) {
  SKIP_WITHOUT_PEBBLE();
  auto ca = start_pebble();
  ASSERT_TRUE(ca);
  http01_solver solver(ca->http_port());
  ASSERT_TRUE(solver.server.ok());
  acme::client c(options_for(*ca), new_key());
  std::vector<std::string> names = {"one.example.com", "two.example.com"};
  auto res = issue(c, names, {{"http-01", &solver}});
  ASSERT_TRUE(res) << res.error().message();
  EXPECT_TRUE(chain_verifies(res->chain.pem, ca->issuing_root_pem(), names));
  EXPECT_GE(solver.server.connections(), 1);
  EXPECT_EQ(solver.presents, solver.cleanups);
  EXPECT_TRUE(acme::account_key::from_pem(res->key_pem));
}

TEST(acme_pebble, tls_alpn01_issuance) {
  SKIP_WITHOUT_PEBBLE();
  auto ca = start_pebble();
  ASSERT_TRUE(ca);
  tls_alpn01_solver solver(ca->tls_port());
  ASSERT_TRUE(solver.server->ok());
  acme::client c(options_for(*ca), new_key());
  std::vector<std::string> names = {"alpn.example.com"};
  auto res = issue(c, names, {{"tls-alpn-01", &solver}});
  ASSERT_TRUE(res) << res.error().message();
  EXPECT_TRUE(chain_verifies(res->chain.pem, ca->issuing_root_pem(), names));
  EXPECT_GE(solver.handshakes, 1);
}

TEST(acme_pebble, dns01_wildcard_issuance) {
  SKIP_WITHOUT_PEBBLE();
  auto ca = start_pebble();
  ASSERT_TRUE(ca);
  dns01_solver solver(ca.get());
  acme::client c(options_for(*ca), new_key());
  std::vector<std::string> names = {"*.wild.example.com", "wild.example.com"};
  auto res = issue(c, names, {{"dns-01", &solver}});
  ASSERT_TRUE(res) << res.error().message();
  EXPECT_TRUE(chain_verifies(res->chain.pem, ca->issuing_root_pem(), {"x.wild.example.com", "wild.example.com"}));
  EXPECT_GE(solver.presents, 1);
}

TEST(acme_pebble, issuance_survives_half_the_nonces_rejected) {
  SKIP_WITHOUT_PEBBLE();
  pebble_ca::options o;
  o.nonce_reject_percent = 50;
  auto ca = start_pebble(o);
  ASSERT_TRUE(ca);
  http01_solver solver(ca->http_port());
  auto opts = options_for(*ca);
  opts.bad_nonce_attempts = 30;  // 0.5^30: a failure would be a bug, not bad luck
  acme::client c(opts, new_key());
  // One issuance signs about ten requests, so it meets no rejection once in a thousand
  // runs: issue again until one was rejected (0.5^30 after three).
  for (int i = 0; i < 3 && (i == 0 || c.bad_nonces_seen() == 0); ++i) {
    std::vector<std::string> names = {"nonce" + std::to_string(i) + ".example.com"};
    auto res = issue(c, names, {{"http-01", &solver}});
    ASSERT_TRUE(res) << res.error().message();
    EXPECT_TRUE(chain_verifies(res->chain.pem, ca->issuing_root_pem(), names));
  }
  EXPECT_GT(c.bad_nonces_seen(), 0u);
}

TEST(acme_pebble, external_account_binding_required) {
  SKIP_WITHOUT_PEBBLE();
  pebble_ca::options o;
  o.eab_required = true;
  std::string mac = acme::base64url(std::string("zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"));
  o.eab_keys["kid-1"] = mac;
  auto ca = start_pebble(o);
  ASSERT_TRUE(ca);
  acme::client c(options_for(*ca), new_key());
  auto none = run(c.register_account(agree()));
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, acme::errc::eab_required);
  auto opts = agree();
  opts.eab_kid = "kid-1";
  opts.eab_hmac_key = acme::base64url(std::string("not the right key at all, sorry!"));
  auto wrong = run(c.register_account(opts));
  ASSERT_FALSE(wrong);
  EXPECT_EQ(acme::classify(wrong.error()), acme::action::stop) << wrong.error().message();
  opts.eab_hmac_key = mac;
  auto ok = run(c.register_account(opts));
  ASSERT_TRUE(ok) << ok.error().message();
  EXPECT_EQ(ok->status, acme::status::valid);
}

TEST(acme_pebble, key_rollover) {
  SKIP_WITHOUT_PEBBLE();
  auto ca = start_pebble();
  ASSERT_TRUE(ca);
  acme::client c(options_for(*ca), new_key());
  ASSERT_TRUE(run(c.register_account(agree())));
  std::string url = c.account_url();
  std::string old_pem = *c.key().private_pem();
  auto rolled = run(c.change_key(new_key()));
  ASSERT_TRUE(rolled) << rolled.error().message();
  auto acct = run(c.fetch_account());
  ASSERT_TRUE(acct) << acct.error().message();
  acme::client old(options_for(*ca), std::move(acme::account_key::from_pem(old_pem)).value());
  auto gone = run(old.find_account());
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, acme::errc::account_does_not_exist) << gone.error().message();
  acme::client fresh(options_for(*ca), std::move(acme::account_key::from_pem(*c.key().private_pem())).value());
  auto found = run(fresh.find_account());
  ASSERT_TRUE(found) << found.error().message();
  EXPECT_EQ(found->url, url);
  auto deact = run(fresh.deactivate_account());
  ASSERT_TRUE(deact) << deact.error().message();
  EXPECT_EQ(deact->status, acme::status::deactivated);
}

TEST(acme_pebble, revocation_by_account_key_and_by_certificate_key) {
  SKIP_WITHOUT_PEBBLE();
  auto ca = start_pebble();
  ASSERT_TRUE(ca);
  http01_solver solver(ca->http_port());
  acme::client c(options_for(*ca), new_key());
  auto first = issue(c, {"revoke1.example.com"}, {{"http-01", &solver}});
  ASSERT_TRUE(first) << first.error().message();
  auto second = issue(c, {"revoke2.example.com"}, {{"http-01", &solver}}, false);
  ASSERT_TRUE(second) << second.error().message();
  auto r1 = run(c.revoke(first->chain.pem, acme::revocation_reason::superseded));
  ASSERT_TRUE(r1) << r1.error().message();
  auto again = run(c.revoke(first->chain.pem));
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, acme::errc::already_revoked) << again.error().message();
  auto cert_key = acme::account_key::from_pem(second->key_pem);
  ASSERT_TRUE(cert_key);
  acme::client anon(options_for(*ca), new_key());
  auto r2 = run(anon.revoke_with_certificate_key(second->chain.pem, *cert_key, acme::revocation_reason::key_compromise));
  ASSERT_TRUE(r2) << r2.error().message();
}

// ARI and profiles: Pebble 2.4 has neither, so an in-process responder in front of the
// same transport serves a directory that adds renewalInfo and meta.profiles, answers
// renewalInfo for certificates Pebble issued, and records newOrder payloads before
// passing everything else to Pebble unchanged.
TEST(acme_pebble, ari_and_profiles_through_extending_responder) {
  SKIP_WITHOUT_PEBBLE();
  auto ca = start_pebble();
  ASSERT_TRUE(ca);
  http01_solver solver(ca->http_port());
  auto opts = options_for(*ca);
  extending_responder ext;
  ext.pebble = acme::make_default_fetch(opts);
  // The extended directory: Pebble's, plus renewalInfo and profiles.
  auto dir_json = run([&]() -> io::task<letsencrypt::result<acme::http_response>> {
    acme::http_request req{"GET", ca->directory_url(), {}, {}};
    co_return co_await ext.pebble(std::move(req), {});
  }());
  ASSERT_TRUE(dir_json);
  auto pebble_dir = acme::parse_directory(dir_json->body);
  ASSERT_TRUE(pebble_dir);
  ext.new_order_url = pebble_dir->new_order;
  ext.directory_json = "{\"newNonce\":\"" + pebble_dir->new_nonce + "\",\"newAccount\":\"" + pebble_dir->new_account +
                       "\",\"newOrder\":\"" + pebble_dir->new_order + "\",\"revokeCert\":\"" + pebble_dir->revoke_cert +
                       "\",\"keyChange\":\"" + pebble_dir->key_change + "\",\"renewalInfo\":\"" + ext.ari_base +
                       "\",\"meta\":{\"termsOfService\":\"" + pebble_dir->terms_of_service +
                       "\",\"profiles\":{\"classic\":\"default\",\"shortlived\":\"6 days\"}}}";
  opts.fetch = [&ext](acme::http_request r, std::stop_token st) { return extending_responder::handle(&ext, std::move(r), std::move(st)); };
  opts.directory_url = ext.directory_url;
  const std::string& ari_base = ext.ari_base;
  auto& known_ids = ext.known_ids;
  auto& new_order_payloads = ext.new_order_payloads;
  acme::client c(opts, new_key());
  auto dir = run(c.get_directory());
  ASSERT_TRUE(dir) << dir.error().message();
  EXPECT_TRUE(dir->has_profile("shortlived"));
  EXPECT_EQ(dir->renewal_info, ari_base);

  auto first = run([&]() -> io::task<acme::acme_result<acme::issued_certificate>> {
    auto acct = co_await c.register_account(agree());
    if (!acct) co_return letsencrypt::unexpected(acct.error());
    acme::order_request req;
    req.names = {"ari.example.com"};
    req.profile = "shortlived";
    req.solvers["http-01"] = &solver;
    co_return co_await c.obtain(req);
  }());
  ASSERT_TRUE(first) << first.error().message();
  ASSERT_EQ(new_order_payloads.size(), 1u);
  EXPECT_NE(new_order_payloads[0].find("\"profile\":\"shortlived\""), std::string::npos) << new_order_payloads[0];

  // The RFC 9773 identifier, computed independently with the openssl CLI.
  std::string path = std::string(::testing::TempDir()) + "ari_cert_" + std::to_string(::getpid()) + ".pem";
  std::ofstream(path) << acme::split_pem_chain(first->chain.pem).at(0);
  std::string serial_hex = acme_test::run("openssl x509 -in " + path + " -noout -serial | cut -d= -f2 | tr -d '\\n'");
  std::string aki_hex = acme_test::run("openssl x509 -in " + path +
                                       " -noout -ext authorityKeyIdentifier | grep -v Authority | sed 's/keyid://' | tr -d ' :\\n'");
  ::unlink(path.c_str());
  ASSERT_FALSE(serial_hex.empty());
  ASSERT_FALSE(aki_hex.empty());
  std::string serial = acme_test::hex_decode(serial_hex.size() % 2 ? "0" + serial_hex : serial_hex);
  if (static_cast<unsigned char>(serial[0]) & 0x80) serial.insert(0, 1, '\0');
  std::string cert_id = acme::base64url(acme_test::hex_decode(aki_hex)) + "." + acme::base64url(serial);
  EXPECT_EQ(*acme::ari_certificate_id(first->chain.pem), cert_id);
  known_ids[cert_id] = R"({"suggestedWindow":{"start":"2031-01-01T00:00:00Z","end":"2031-01-02T00:00:00Z"},"explanationURL":"https://ari.invalid/why"})";

  auto ri = run(c.get_renewal_info(first->chain.pem));
  ASSERT_TRUE(ri) << ri.error().message();
  EXPECT_EQ(ri->window_end - ri->window_start, std::chrono::hours(24));
  EXPECT_EQ(ri->retry_after, std::chrono::seconds(3600));

  // The renewal names the certificate it replaces.
  auto second = run([&]() -> io::task<acme::acme_result<acme::issued_certificate>> {
    acme::order_request req;
    req.names = {"ari.example.com"};
    req.replaces = cert_id;
    req.solvers["http-01"] = &solver;
    co_return co_await c.obtain(req);
  }());
  ASSERT_TRUE(second) << second.error().message();
  ASSERT_EQ(new_order_payloads.size(), 2u);
  EXPECT_NE(new_order_payloads[1].find("\"replaces\":\"" + cert_id + "\""), std::string::npos) << new_order_payloads[1];
  EXPECT_TRUE(chain_verifies(second->chain.pem, ca->issuing_root_pem(), {"ari.example.com"}));
}
