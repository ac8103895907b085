#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/utsname.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>

#include "letsencrypt/io/net.hpp"
#include "letsencrypt/io/scope.hpp"
#include "letsencrypt/tls/acceptor.hpp"
#include "letsencrypt/tls/error.hpp"
#include "letsencrypt/tls/stream.hpp"
#include "letsencrypt/tls/tickets.hpp"
#include "test_certs.hpp"

using namespace letsencrypt;
using namespace std::chrono_literals;
using letsencrypt::testing::key_kind;
using letsencrypt::testing::test_certs;

namespace {

std::pair<int, std::string> run_cmd(const std::string& cmd) {
  std::string out;
  FILE* f = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!f) return {-1, ""};
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  int rc = ::pclose(f);
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, out};
}

io::clock::time_point in(io::duration d) { return io::clock::now() + d; }

io::task<void> echo_handler(tls::stream& s) {
  std::vector<std::byte> buf(16384);
  for (;;) {
    auto n = co_await s.read_some(buf, in(10s));
    if (!n || *n == 0) break;
    if (!co_await s.write_all(std::span(buf).first(*n), in(10s))) break;
  }
}

io::task<void> greeting_handler(tls::stream& s) {
  std::string msg = "hello from acceptor\n";
  auto r = co_await s.write_all(std::as_bytes(std::span(msg)), in(5s));
  (void)r;
}

io::task<void> http_handler(tls::stream& s) {
  std::string req;
  std::vector<std::byte> buf(4096);
  while (req.find("\r\n\r\n") == std::string::npos) {
    auto n = co_await s.read_some(buf, in(5s));
    if (!n || *n == 0) co_return;
    req.append(reinterpret_cast<const char*>(buf.data()), *n);
  }
  std::string body = "ok " + std::string(s.server_name()) + "\n";
  std::string resp = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) +
                     "\r\nConnection: close\r\n\r\n" + body;
  auto r = co_await s.write_all(std::as_bytes(std::span(resp)), in(5s));
  (void)r;
}

// A real ClientHello from a client engine.
std::vector<std::byte> client_hello(SSL_CTX* cctx) {
  auto c = std::move(tls::engine::create(cctx, tls::role::client)).value();
  (void)c->handshake();
  auto o = c->pending_output();
  return {o.begin(), o.end()};
}

// A blocking loopback socket with a receive timeout, for raw misbehaving clients.
io::unique_fd raw_connect(std::uint16_t port) {
  io::unique_fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  timeval tv{10, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

template <class Pred>
bool wait_until(Pred p, io::duration limit = 10s) {
  auto end = io::clock::now() + limit;
  while (io::clock::now() < end) {
    if (p()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return p();
}

// One client of the echo test: connects, echoes ~100 kB, closes. Takes everything by value so
// the coroutine frame refers to nothing that could go away first.
io::task<std::string> echo_client(std::uint16_t port, tls::client_config cc, X509* expect, int id) {
  auto s = co_await tls::connect("127.0.0.1", port, cc, in(10s));
  EXPECT_TRUE(s) << s.error().message();
  if (!s) co_return "";
  EXPECT_EQ((*s)->alpn_selected(), "http/1.1");
  EXPECT_EQ(X509_cmp((*s)->peer_certificate(), expect), 0);
  std::string msg(100000 + id, '\0');
  for (std::size_t k = 0; k < msg.size(); ++k) msg[k] = char('A' + (k + id) % 50);
  EXPECT_TRUE(co_await (*s)->write_all(std::as_bytes(std::span(msg)), in(10s)));
  std::string got;
  std::vector<std::byte> buf(8192);
  while (got.size() < msg.size()) {
    auto n = co_await (*s)->read_some(buf, in(10s));
    EXPECT_TRUE(n) << n.error().message();
    if (!n || *n == 0) break;
    got.append(reinterpret_cast<const char*>(buf.data()), *n);
  }
  EXPECT_TRUE(co_await (*s)->shutdown(in(5s)));
  // The server answers our close_notify with its own.
  auto end = co_await (*s)->read_some(buf, in(5s));
  EXPECT_TRUE(end && *end == 0) << (end ? "data" : end.error().message());
  co_return got == msg ? "ok" : "mismatch";
}

struct acceptor_test : ::testing::Test {
  static inline test_certs* certs = nullptr;
  static inline letsencrypt::testing::issued_cert* leaf = nullptr;
  static inline std::filesystem::path ca_file;
  static void SetUpTestSuite() {
    certs = new test_certs();
    leaf = new letsencrypt::testing::issued_cert(certs->issue({"srv.test", "*.wild.test", "127.0.0.1"}));
    ca_file = certs->write_ca();
  }
  static void TearDownTestSuite() {
    delete leaf;
    delete certs;
    leaf = nullptr;
    certs = nullptr;
  }
  tls::acceptor_config config() {
    tls::acceptor_config c;
    c.host = "127.0.0.1";
    c.port = 0;
    return c;
  }
  tls::client_config client() {
    tls::client_config c;
    c.ca_pem = certs->ca_pem();
    return c;
  }
  // One client handshake to 127.0.0.1:port that must succeed, then close_notify.
  void handshake_and_close(std::uint16_t port) {
    io::ring r;
    auto run = [&]() -> io::task<void> {
      auto s = co_await tls::connect("127.0.0.1", port, client(), in(10s));
      EXPECT_TRUE(s) << s.error().message();
      if (s) {
        EXPECT_TRUE(co_await (*s)->shutdown(in(5s)));
      }
    };
    r.run(run());
  }
};

}  // namespace

TEST(ktls, detection_is_cached_and_matches_kernel) {
  bool a = tls::ktls_available();
  EXPECT_EQ(a, tls::ktls_available());
  utsname u{};
  ::uname(&u);
  bool module_present = std::filesystem::exists("/sys/module/tls") ||
                        std::filesystem::exists(std::string("/lib/modules/") + u.release + "/kernel/net/tls");
  if (!module_present) {
    EXPECT_FALSE(a) << "no tls module in this kernel, yet the probe says kTLS works";
  }
}

TEST_F(acceptor_test, stream_client_echo_over_loopback_with_and_without_pool) {
  for (std::uint16_t pool : {std::uint16_t(0), std::uint16_t(32)}) {
    SCOPED_TRACE(pool);
    io::shard_group shards(2);
    auto sctx = test_certs::server_context(*leaf);
    SSL_CTX_set_alpn_select_cb(
        sctx.get(),
        [](SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned inlen,
           void*) -> int {
          unsigned char* o = nullptr;
          static const unsigned char mine[] = "\x08http/1.1";
          if (SSL_select_next_proto(&o, outlen, mine, sizeof mine - 1, in, inlen) != OPENSSL_NPN_NEGOTIATED)
            return SSL_TLSEXT_ERR_NOACK;
          *out = o;
          return SSL_TLSEXT_ERR_OK;
        },
        nullptr);
    auto cfg = config();
    cfg.pool_buffers = pool;
    tls::acceptor acc(shards, sctx.get(), cfg, echo_handler);
    ASSERT_TRUE(acc.start());
    ASSERT_NE(acc.port(), 0);

    io::ring r;
    auto cc = client();
    cc.alpn = {"h2", "http/1.1"};
    cc.sni_override = "x.wild.test";
    auto run = [&]() -> io::task<void> {
      std::vector<io::task<std::string>> clients;
      for (int i = 0; i < 4; ++i) {
        clients.push_back(echo_client(acc.port(), cc, leaf->cert.get(), i));
      }
      auto results = co_await io::when_all(std::move(clients));
      for (auto& x : results) EXPECT_EQ(x, "ok");
    };
    r.run(run());
    EXPECT_TRUE(wait_until([&] { return acc.stats().active == 0; }));
    acc.stop();
    auto st = acc.stats();
    EXPECT_EQ(st.accepted, 4u);
    EXPECT_EQ(st.handshakes_ok, 4u);
  }
}

TEST_F(acceptor_test, client_rejects_wrong_name_and_unknown_ca) {
  io::shard_group shards(1);
  auto sctx = test_certs::server_context(*leaf);
  tls::acceptor acc(shards, sctx.get(), config(), echo_handler);
  ASSERT_TRUE(acc.start());
  io::ring r;
  auto run = [&]() -> io::task<void> {
    auto cc = client();
    cc.sni_override = "other.test";
    auto s = co_await tls::connect("127.0.0.1", acc.port(), cc, in(10s));
    EXPECT_FALSE(s);
    if (!s) {
      EXPECT_EQ(s.error(), tls::tls_errc::certificate_verify_failed) << s.error().message();
    }

    test_certs other;
    tls::client_config oc;
    oc.ca_pem = other.ca_pem();
    auto s2 = co_await tls::connect("127.0.0.1", acc.port(), oc, in(10s));
    EXPECT_FALSE(s2);
    if (!s2) {
      EXPECT_EQ(s2.error(), tls::tls_errc::certificate_verify_failed);
    }

    // The address itself is in the certificate as an IP SAN.
    auto s3 = co_await tls::connect("127.0.0.1", acc.port(), client(), in(10s));
    EXPECT_TRUE(s3) << s3.error().message();
    if (s3) {
      EXPECT_TRUE(co_await (*s3)->shutdown(in(5s)));
    }

    tls::client_config bad;
    bad.ca_pem = "not a pem";
    auto s4 = co_await tls::connect("127.0.0.1", acc.port(), bad, in(10s));
    EXPECT_FALSE(s4);
    if (!s4) {
      EXPECT_EQ(s4.error(), tls::tls_errc::bad_pem);
    }
  };
  r.run(run());
  EXPECT_TRUE(wait_until([&] { return acc.stats().handshake_alert == 2; })) << acc.stats().handshake_alert;
}

TEST_F(acceptor_test, openssl_s_client_gets_the_certificate_ecdsa_and_rsa) {
  for (auto kind : {key_kind::ec_p256, key_kind::rsa2048}) {
    auto cert = certs->issue({"srv.test"}, kind);
    io::shard_group shards(2);
    auto sctx = test_certs::server_context(cert);
    tls::acceptor acc(shards, sctx.get(), config(), greeting_handler);
    ASSERT_TRUE(acc.start());
    auto [rc, out] = run_cmd("timeout 20 openssl s_client -connect 127.0.0.1:" + std::to_string(acc.port()) +
                             " -servername srv.test -verify_hostname srv.test -verify_return_error -CAfile " +
                             ca_file.string() + " -ign_eof </dev/null");
    EXPECT_EQ(rc, 0) << out;
    EXPECT_NE(out.find("hello from acceptor"), std::string::npos) << out;
    EXPECT_NE(out.find("Verify return code: 0 (ok)"), std::string::npos) << out;
    EXPECT_NE(out.find("CN = srv.test"), std::string::npos) << out;
    EXPECT_NE(out.find(kind == key_kind::rsa2048 ? "RSA" : "ECDSA"), std::string::npos) << out;
    acc.stop();
    EXPECT_EQ(acc.stats().handshakes_ok, 1u);
  }
}

TEST_F(acceptor_test, curl_fetches_over_https) {
  io::shard_group shards(2);
  auto sctx = test_certs::server_context(*leaf);
  tls::acceptor acc(shards, sctx.get(), config(), http_handler);
  ASSERT_TRUE(acc.start());
  auto p = std::to_string(acc.port());
  for (std::string name : {"srv.test", "deep.wild.test"}) {
    auto [rc, out] = run_cmd("curl -sS --max-time 20 --resolve " + name + ":" + p + ":127.0.0.1 --cacert " +
                             ca_file.string() + " https://" + name + ":" + p + "/");
    EXPECT_EQ(rc, 0) << out;
    EXPECT_EQ(out, "ok " + name + "\n");
  }
  // A name the certificate does not cover: curl refuses.
  auto [rc, out] = run_cmd("curl -sS --max-time 20 --resolve nope.test:" + p + ":127.0.0.1 --cacert " +
                           ca_file.string() + " https://nope.test:" + p + "/");
  EXPECT_NE(rc, 0) << out;
  EXPECT_NE(out.find("nope.test"), std::string::npos) << out;
  acc.stop();
  // curl checks the name after OpenSSL's handshake, so the server may count that one as done.
  EXPECT_EQ(acc.stats().accepted, 3u);
  EXPECT_GE(acc.stats().handshakes_ok, 2u);
}

TEST_F(acceptor_test, s_client_resumes_with_session_ticket) {
  io::shard_group shards(2);
  auto sctx = test_certs::server_context(*leaf);
  tls::ticket_keys keys;
  ASSERT_TRUE(keys.install(sctx.get()));
  tls::acceptor acc(shards, sctx.get(), config(), greeting_handler);
  ASSERT_TRUE(acc.start());
  auto sess = certs->dir() / "session.pem";
  std::string base = "timeout 20 openssl s_client -connect 127.0.0.1:" + std::to_string(acc.port()) +
                     " -servername srv.test -CAfile " + ca_file.string() + " -ign_eof ";
  auto [rc1, out1] = run_cmd(base + "-sess_out " + sess.string() + " </dev/null");
  EXPECT_EQ(rc1, 0) << out1;
  EXPECT_NE(out1.find("New, TLSv1.3"), std::string::npos) << out1;
  auto [rc2, out2] = run_cmd(base + "-sess_in " + sess.string() + " </dev/null");
  EXPECT_EQ(rc2, 0) << out2;
  EXPECT_NE(out2.find("Reused, TLSv1.3"), std::string::npos) << out2;
  // After one rotation the old ticket still works; after two it does not.
  ASSERT_TRUE(keys.rotate());
  auto [rc3, out3] = run_cmd(base + "-sess_in " + sess.string() + " </dev/null");
  EXPECT_NE(out3.find("Reused, TLSv1.3"), std::string::npos) << out3;
  ASSERT_TRUE(keys.rotate());
  auto [rc4, out4] = run_cmd(base + "-sess_in " + sess.string() + " </dev/null");
  EXPECT_NE(out4.find("New, TLSv1.3"), std::string::npos) << out4;
  acc.stop();
  EXPECT_EQ(acc.stats().handshakes_ok, 4u);
}

TEST_F(acceptor_test, half_client_hello_then_silence_is_dropped_at_deadline) {
  io::shard_group shards(1);
  auto sctx = test_certs::server_context(*leaf);
  auto cfg = config();
  cfg.handshake_timeout = 300ms;
  tls::acceptor acc(shards, sctx.get(), cfg, echo_handler);
  ASSERT_TRUE(acc.start());
  auto cctx = certs->client_context();
  auto hello = client_hello(cctx.get());
  auto fd = raw_connect(acc.port());
  ASSERT_EQ(::send(fd.get(), hello.data(), hello.size() / 2, MSG_NOSIGNAL), ssize_t(hello.size() / 2));
  char c;
  // The server closes the connection: recv ends (0 or reset) instead of hitting our 10 s limit.
  ssize_t n = ::recv(fd.get(), &c, 1, 0);
  EXPECT_TRUE(n == 0 || (n < 0 && errno == ECONNRESET)) << n << " errno " << errno;
  EXPECT_TRUE(wait_until([&] { return acc.stats().handshake_timeouts == 1; }));
  // A silent client that sends nothing at all is dropped the same way.
  auto fd2 = raw_connect(acc.port());
  n = ::recv(fd2.get(), &c, 1, 0);
  EXPECT_TRUE(n == 0 || (n < 0 && errno == ECONNRESET)) << n << " errno " << errno;
  EXPECT_TRUE(wait_until([&] { return acc.stats().handshake_timeouts == 2; }));
  // Garbage instead of TLS fails at once as a protocol error.
  auto fd3 = raw_connect(acc.port());
  std::string http = "GET / HTTP/1.1\r\nHost: srv.test\r\n\r\n";
  ASSERT_GT(::send(fd3.get(), http.data(), http.size(), MSG_NOSIGNAL), 0);
  n = ::recv(fd3.get(), &c, 1, 0);
  EXPECT_TRUE(wait_until([&] { return acc.stats().handshake_protocol == 1; }));
  acc.stop();
  EXPECT_EQ(acc.stats().handshakes_ok, 0u);
  EXPECT_EQ(acc.stats().active, 0u);
}

TEST_F(acceptor_test, stop_with_idle_connections_and_pending_handshakes_completes) {
  io::shard_group shards(2);
  auto sctx = test_certs::server_context(*leaf);
  auto cfg = config();
  cfg.handshake_timeout = 60s;  // only stop() can end the pending handshakes
  tls::acceptor acc(shards, sctx.get(), cfg, echo_handler);
  ASSERT_TRUE(acc.start());
  // Raw sockets that never send: handshakes pending in the acceptor.
  std::vector<io::unique_fd> silent;
  for (int i = 0; i < 3; ++i) silent.push_back(raw_connect(acc.port()));
  // TLS clients that finish the handshake and then wait for data that never comes.
  std::atomic<int> ended{0};
  std::thread clients([&] {
    io::ring r;
    auto one = [&]() -> io::task<void> {
      auto s = co_await tls::connect("127.0.0.1", acc.port(), client(), in(10s));
      EXPECT_TRUE(s) << s.error().message();
      if (!s) co_return;
      std::vector<std::byte> buf(100);
      auto n = co_await (*s)->read_some(buf, in(30s));
      // Stopped mid-read the server closes without close_notify, or sends it: never data.
      EXPECT_TRUE(!n || *n == 0);
      ended.fetch_add(1);
    };
    std::vector<io::task<void>> v;
    for (int i = 0; i < 4; ++i) v.push_back(one());
    r.run(io::when_all(std::move(v)));
  });
  EXPECT_TRUE(wait_until([&] { return acc.stats().handshakes_ok == 4 && acc.stats().accepted == 7; }));
  EXPECT_EQ(acc.stats().active, 7u);
  acc.stop();
  auto st = acc.stats();
  EXPECT_EQ(st.active, 0u);
  EXPECT_EQ(st.handshake_cancelled, 3u);
  clients.join();
  EXPECT_EQ(ended.load(), 4);
  // The listener is closed: new connections are refused.
  io::unique_fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(acc.port());
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_NE(::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  acc.stop();  // idempotent
}

TEST_F(acceptor_test, shard_group_stop_ends_the_acceptor) {
  auto shards = std::make_unique<io::shard_group>(2);
  auto sctx = test_certs::server_context(*leaf);
  tls::acceptor acc(*shards, sctx.get(), config(), echo_handler);
  ASSERT_TRUE(acc.start());
  auto fd = raw_connect(acc.port());
  EXPECT_TRUE(wait_until([&] { return acc.stats().active == 1; }));
  shards->stop();
  EXPECT_EQ(acc.stats().active, 0u);
  EXPECT_EQ(acc.stats().handshake_cancelled, 1u);
  acc.stop();  // the shards are gone: returns at once
}

TEST_F(acceptor_test, stream_handshake_and_read_cancel_unwind) {
  io::ring r;
  auto lfd = io::listen_tcp("127.0.0.1", 0);
  ASSERT_TRUE(lfd);
  auto port = *io::local_port(lfd->get());
  auto sctx = test_certs::server_context(*leaf);
  auto run = [&]() -> io::task<void> {
    // A peer that connects and stays silent.
    auto peer = co_await io::connect_tcp("127.0.0.1", port, 5s);
    EXPECT_TRUE(peer);
    auto c = co_await io::accept(lfd->get()).timeout(5s);
    EXPECT_TRUE(c);
    if (!c || !peer) co_return;
    auto s = std::move(tls::stream::server(std::move(*c), sctx.get())).value();
    std::stop_source stop;
    s->set_stop_token(stop.get_token());
    auto canceller = [&]() -> io::task<void> {
      auto slept = co_await io::sleep_for(50ms);
      (void)slept;
      stop.request_stop();
    };
    auto hs = [&]() -> io::task<result<void>> { co_return co_await s->handshake(in(60s)); };
    auto [res, unused] = co_await io::when_all(hs(), canceller());
    (void)unused;
    EXPECT_FALSE(res);
    if (!res) {
      EXPECT_EQ(res.error(), errc::cancelled);
    }
    // Already stopped: the next operation fails at once.
    std::vector<std::byte> buf(10);
    auto rd = co_await s->read_some(buf, in(60s));
    EXPECT_FALSE(rd);
  };
  r.run(run());

  // A deadline ends a handshake the same way, as timed_out.
  auto run2 = [&]() -> io::task<void> {
    auto peer = co_await io::connect_tcp("127.0.0.1", port, 5s);
    auto c = co_await io::accept(lfd->get()).timeout(5s);
    EXPECT_TRUE(c && peer);
    if (!c || !peer) co_return;
    auto s = std::move(tls::stream::server(std::move(*c), sctx.get())).value();
    auto res = co_await s->handshake(in(100ms));
    EXPECT_FALSE(res);
    if (!res) {
      EXPECT_EQ(res.error(), errc::timed_out);
    }
  };
  r.run(run2());
}

namespace {

// A server context with no certificate of its own: its ClientHello callback asks for a retry
// until a handler has marked the connection (mark()), then serves the leaf.
struct retrying_server {
  static inline const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  X509* cert;
  EVP_PKEY* key;
  tls::ssl_ctx_ptr ctx{SSL_CTX_new(TLS_server_method())};

  retrying_server(X509* c, EVP_PKEY* k) : cert(c), key(k) {
    SSL_CTX_set_client_hello_cb(
        ctx.get(),
        [](SSL* ssl, int*, void* arg) -> int {
          if (!SSL_get_ex_data(ssl, index)) return SSL_CLIENT_HELLO_RETRY;
          auto* self = static_cast<retrying_server*>(arg);
          SSL_use_certificate(ssl, self->cert);
          SSL_use_PrivateKey(ssl, self->key);
          return SSL_CLIENT_HELLO_SUCCESS;
        },
        this);
  }
  void mark(SSL* ssl) { SSL_set_ex_data(ssl, index, this); }
};

}  // namespace

TEST_F(acceptor_test, client_hello_retry_runs_the_handler_then_completes) {
  // The handler, running as a task on the shard, lets the retried ClientHello through.
  retrying_server srv(leaf->cert.get(), leaf->key.get());
  std::atomic<int> retries{0};
  io::shard_group shards(1);
  auto cfg = config();
  cfg.on_client_hello_retry = [&](SSL* ssl, std::stop_token) -> io::task<void> {
    retries.fetch_add(1);
    (void)co_await io::sleep_for(20ms);  // as if loading the certificate
    srv.mark(ssl);
  };
  tls::acceptor acc(shards, srv.ctx.get(), cfg, echo_handler);
  ASSERT_TRUE(acc.start());
  handshake_and_close(acc.port());
  // TLS 1.3: the client is done before the server has read its Finished.
  EXPECT_TRUE(wait_until([&] { return acc.stats().handshakes_ok == 1; }));
  EXPECT_EQ(retries.load(), 1);
  acc.stop();
  EXPECT_EQ(acc.stats().handshakes_ok, 1u);
}

TEST_F(acceptor_test, client_hello_retry_that_never_settles_fails_the_handshake_at_once) {
  // The callback keeps asking and the handler answers at once: the handshake ends with
  // no_certificate after a few rounds instead of spinning on the shard until its deadline.
  retrying_server srv(leaf->cert.get(), leaf->key.get());
  std::atomic<int> retries{0};
  io::shard_group shards(1);
  auto cfg = config();
  cfg.handshake_timeout = 60s;
  cfg.on_client_hello_retry = [&](SSL*, std::stop_token) -> io::task<void> {
    retries.fetch_add(1);
    co_return;
  };
  tls::acceptor acc(shards, srv.ctx.get(), cfg, echo_handler);
  ASSERT_TRUE(acc.start());
  io::ring r;
  auto started = std::chrono::steady_clock::now();
  auto s = r.run(tls::connect("127.0.0.1", acc.port(), client(), in(10s)));
  EXPECT_FALSE(s);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
  EXPECT_TRUE(wait_until([&] { return acc.stats().handshake_no_certificate == 1; }));
  EXPECT_GE(retries.load(), 1);
  EXPECT_LE(retries.load(), 4);
  acc.stop();
}

TEST_F(acceptor_test, client_hello_retry_wait_does_not_count_against_the_handshake_timeout) {
  // A certificate that takes longer to obtain than the handshake timeout (a slow issuance)
  // still reaches the client that asked for it.
  retrying_server srv(leaf->cert.get(), leaf->key.get());
  io::shard_group shards(1);
  auto cfg = config();
  cfg.handshake_timeout = 1s;
  cfg.on_client_hello_retry = [&](SSL* ssl, std::stop_token) -> io::task<void> {
    (void)co_await io::sleep_for(2500ms);
    srv.mark(ssl);
  };
  tls::acceptor acc(shards, srv.ctx.get(), cfg, echo_handler);
  ASSERT_TRUE(acc.start());
  handshake_and_close(acc.port());
  EXPECT_TRUE(wait_until([&] { return acc.stats().handshakes_ok == 1; }));
  acc.stop();
  EXPECT_EQ(acc.stats().handshake_timeouts, 0u);
}
