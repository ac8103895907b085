#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/rand.h>

#include <random>
#include <string>

#include "letsencrypt/tls/engine.hpp"
#include "letsencrypt/tls/error.hpp"
#include "test_certs.hpp"

using namespace letsencrypt;
using namespace letsencrypt::tls;
using letsencrypt::testing::key_kind;
using letsencrypt::testing::test_certs;

namespace {

// One direction of an in-memory wire: what `from` wrote, lent to `to` until it is consumed.
struct wire {
  std::vector<std::byte> store;
  std::size_t moved = 0;
  void deliver(engine& from, engine& to) {
    auto out = from.pending_output();
    if (out.empty()) return;
    to.keep_input();  // the old store is about to be overwritten
    store.assign(out.begin(), out.end());
    moved += out.size();
    from.consume_output(out.size());
    to.feed(store);
  }
};

struct pair_fixture {
  std::unique_ptr<engine> client, server;
  wire c2s, s2c;

  pair_fixture(SSL_CTX* cctx, SSL_CTX* sctx, const char* host) {
    ssl_ptr cs(SSL_new(cctx));
    if (host) {
      SSL_set_tlsext_host_name(cs.get(), host);
      SSL_set1_host(cs.get(), host);
    }
    client = std::move(engine::create(std::move(cs), role::client)).value();
    server = std::move(engine::create(sctx, role::server)).value();
  }

  // Runs both handshakes to the end; returns the final statuses.
  std::pair<status, status> handshake() {
    status c = status::want_input, s = status::want_input;
    for (int i = 0; i < 50; ++i) {
      if (c != status::done && c != status::error) c = client->handshake().state;
      c2s.deliver(*client, *server);
      if (s != status::done && s != status::error) s = server->handshake().state;
      s2c.deliver(*server, *client);
      if (c == status::have_output) c = status::want_input;
      if (s == status::have_output) s = status::want_input;
      bool c_end = c == status::done || c == status::error;
      bool s_end = s == status::done || s == status::error;
      if (c_end && s_end) break;
      if (c == status::error && s == status::want_input && client->pending_output().empty() &&
          server->input_pending() == 0 && i > 5)
        break;
      if (s == status::error && c == status::want_input && server->pending_output().empty() &&
          client->input_pending() == 0 && i > 5)
        break;
    }
    return {c, s};
  }

  // Sends `msg` from a to b and reads it all back on b.
  std::string transfer(engine& a, engine& b, wire& w, const std::string& msg) {
    auto wr = a.write(std::as_bytes(std::span(msg)));
    EXPECT_EQ(wr.state, status::done);
    EXPECT_EQ(wr.bytes, msg.size());
    std::string got;
    std::vector<std::byte> buf(4096);
    for (int i = 0; i < 10000 && got.size() < msg.size(); ++i) {
      w.deliver(a, b);
      auto r = b.read(buf);
      if (r.state == status::done) {
        got.append(reinterpret_cast<const char*>(buf.data()), r.bytes);
      } else if (r.state != status::want_input && r.state != status::have_output) {
        ADD_FAILURE() << "read status " << int(r.state) << " " << b.error().message();
        break;
      }
    }
    return got;
  }
};

struct engine_test : ::testing::Test {
  static inline test_certs* certs = nullptr;
  static void SetUpTestSuite() { certs = new test_certs(); }
  static void TearDownTestSuite() {
    delete certs;
    certs = nullptr;
  }
};

}  // namespace

TEST_F(engine_test, handshake_and_data_both_ways_ecdsa_and_rsa) {
  for (auto kind : {key_kind::ec_p256, key_kind::rsa2048}) {
    auto leaf = certs->issue({"a.test", "*.b.test"}, kind);
    auto sctx = test_certs::server_context(leaf);
    auto cctx = certs->client_context();
    for (const char* host : {"a.test", "x.b.test"}) {
      pair_fixture p(cctx.get(), sctx.get(), host);
      auto [c, s] = p.handshake();
      ASSERT_EQ(c, status::done) << p.client->error().message();
      ASSERT_EQ(s, status::done) << p.server->error().message();
      EXPECT_TRUE(p.client->handshake_done());
      EXPECT_EQ(p.client->verify_result(), X509_V_OK);
      X509* peer = SSL_get0_peer_certificate(p.client->native());
      ASSERT_NE(peer, nullptr);
      EXPECT_EQ(X509_cmp(peer, leaf.cert.get()), 0);
      EXPECT_EQ(p.transfer(*p.client, *p.server, p.c2s, "ping from client"), "ping from client");
      EXPECT_EQ(p.transfer(*p.server, *p.client, p.s2c, "pong from server"), "pong from server");
    }
  }
}

TEST_F(engine_test, large_transfer_and_byte_by_byte_feed) {
  auto leaf = certs->issue({"big.test"});
  auto sctx = test_certs::server_context(leaf);
  auto cctx = certs->client_context();
  pair_fixture p(cctx.get(), sctx.get(), "big.test");
  auto [c, s] = p.handshake();
  ASSERT_EQ(c, status::done);
  ASSERT_EQ(s, status::done);
  std::string big(1 << 20, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = char('a' + (i * 7) % 26);
  EXPECT_EQ(p.transfer(*p.client, *p.server, p.c2s, big), big);

  // Ciphertext delivered one byte at a time, each byte lent from a one-byte buffer.
  std::string msg = "one byte at a time";
  ASSERT_EQ(p.server->write(std::as_bytes(std::span(msg))).state, status::done);
  auto ct = p.server->pending_output();
  std::vector<std::byte> cipher(ct.begin(), ct.end());
  p.server->consume_output(cipher.size());
  std::string got;
  std::byte one[1];
  std::byte buf[256];
  for (std::byte b : cipher) {
    one[0] = b;
    p.client->feed(std::span(one));
    auto r = p.client->read(buf);
    if (r.state == status::done) got.append(reinterpret_cast<char*>(buf), r.bytes);
    else ASSERT_EQ(r.state, status::want_input);
    p.client->keep_input();
  }
  EXPECT_EQ(got, msg);
}

TEST_F(engine_test, lent_output_stays_put_while_later_writes_queue_behind_it) {
  auto leaf = certs->issue({"lend.test"});
  auto sctx = test_certs::server_context(leaf);
  auto cctx = certs->client_context();
  pair_fixture p(cctx.get(), sctx.get(), "lend.test");
  auto [c, s] = p.handshake();
  ASSERT_EQ(c, status::done);
  ASSERT_EQ(s, status::done);
  // Drain the tickets the server sent after its handshake.
  std::vector<std::byte> buf(1 << 16);
  p.s2c.deliver(*p.server, *p.client);
  (void)p.client->read(buf);

  const std::string first(40000, 'f'), second(300000, 's');
  ASSERT_EQ(p.server->write(std::as_bytes(std::span(first))).state, status::done);
  auto lent = p.server->lend_output();
  const std::vector<std::byte> lent_copy(lent.begin(), lent.end());
  const std::byte* where = lent.data();
  // A large write while the first bytes are "in flight" would reallocate a plain buffer.
  ASSERT_EQ(p.server->write(std::as_bytes(std::span(second))).state, status::done);
  auto still = p.server->pending_output();
  EXPECT_EQ(still.data(), where);
  ASSERT_EQ(still.size(), lent_copy.size());
  EXPECT_TRUE(std::equal(still.begin(), still.end(), lent_copy.begin()));
  // Sent in two parts; then the queued bytes become the pending output, in order.
  p.server->consume_output(1000);
  EXPECT_EQ(p.server->pending_output().size(), lent_copy.size() - 1000);
  p.server->consume_output(lent_copy.size() - 1000);
  EXPECT_GT(p.server->pending_output().size(), second.size());
  std::vector<std::byte> wire_bytes(lent_copy);
  auto rest = p.server->pending_output();
  wire_bytes.insert(wire_bytes.end(), rest.begin(), rest.end());
  p.server->consume_output(rest.size());
  EXPECT_TRUE(p.server->pending_output().empty());
  // The client decrypts both messages from the concatenation, in order.
  p.client->feed(wire_bytes);
  std::string got;
  for (int i = 0; i < 1000 && got.size() < first.size() + second.size(); ++i) {
    auto r = p.client->read(buf);
    if (r.state != status::done) break;
    got.append(reinterpret_cast<const char*>(buf.data()), r.bytes);
  }
  EXPECT_EQ(got, first + second);
}

TEST_F(engine_test, close_notify_reaches_peer_as_closed) {
  auto leaf = certs->issue({"close.test"});
  auto sctx = test_certs::server_context(leaf);
  auto cctx = certs->client_context();
  pair_fixture p(cctx.get(), sctx.get(), "close.test");
  auto [c, s] = p.handshake();
  ASSERT_EQ(c, status::done);
  ASSERT_EQ(s, status::done);
  EXPECT_EQ(p.client->shutdown().state, status::have_output);
  p.c2s.deliver(*p.client, *p.server);
  EXPECT_EQ(p.client->shutdown().state, status::done);
  std::byte buf[64];
  op_result r{status::error};
  for (int i = 0; i < 5; ++i) {
    r = p.server->read(buf);
    if (r.state != status::have_output) break;
    p.s2c.deliver(*p.server, *p.client);
  }
  EXPECT_EQ(r.state, status::closed);
}

TEST_F(engine_test, eof_without_close_notify_is_unexpected_eof) {
  auto leaf = certs->issue({"eof.test"});
  auto sctx = test_certs::server_context(leaf);
  auto cctx = certs->client_context();
  pair_fixture p(cctx.get(), sctx.get(), "eof.test");
  auto [c, s] = p.handshake();
  ASSERT_EQ(s, status::done);
  p.server->feed_eof();
  std::byte buf[64];
  auto r = p.server->read(buf);
  // Session tickets the client has not read may be pending on the server: ignore them.
  EXPECT_EQ(r.state, status::error);
  EXPECT_EQ(p.server->error(), tls_errc::unexpected_eof) << p.server->error().message();
}

TEST_F(engine_test, corrupted_record_is_an_error) {
  auto leaf = certs->issue({"corrupt.test"});
  auto sctx = test_certs::server_context(leaf);
  auto cctx = certs->client_context();
  pair_fixture p(cctx.get(), sctx.get(), "corrupt.test");
  auto [c, s] = p.handshake();
  ASSERT_EQ(c, status::done);
  ASSERT_EQ(s, status::done);
  std::string msg = "this record will be damaged in flight";
  ASSERT_EQ(p.client->write(std::as_bytes(std::span(msg))).state, status::done);
  auto ct = p.client->pending_output();
  std::vector<std::byte> cipher(ct.begin(), ct.end());
  p.client->consume_output(cipher.size());
  cipher[cipher.size() - 3] ^= std::byte{0x40};  // inside the AEAD tag
  p.server->feed(cipher);
  std::byte buf[256];
  auto r = p.server->read(buf);
  EXPECT_EQ(r.state, status::error);
  EXPECT_EQ(classify(p.server->error()), tls_errc::protocol_error) << p.server->error().message();
  EXPECT_NE(p.server->error().message().find("bad record mac"), std::string::npos) << p.server->error().message();
  EXPECT_FALSE(p.server->pending_output().empty()) << "an alert is queued for the peer";
  // A failed engine stays failed.
  EXPECT_EQ(p.server->read(buf).state, status::error);
  EXPECT_EQ(p.server->shutdown().state, status::error);
}

TEST_F(engine_test, wrong_host_name_fails_verification_and_peer_sees_alert) {
  auto leaf = certs->issue({"right.test"});
  auto sctx = test_certs::server_context(leaf);
  auto cctx = certs->client_context();
  pair_fixture p(cctx.get(), sctx.get(), "wrong.test");
  auto [c, s] = p.handshake();
  EXPECT_EQ(c, status::error);
  EXPECT_EQ(p.client->error(), tls_errc::certificate_verify_failed) << p.client->error().message();
  EXPECT_EQ(p.client->verify_result(), X509_V_ERR_HOSTNAME_MISMATCH);
  // The client queued an alert; once delivered the server fails with alert_received.
  p.c2s.deliver(*p.client, *p.server);
  auto r = p.server->handshake();
  EXPECT_EQ(r.state, status::error);
  EXPECT_EQ(p.server->error(), tls_errc::alert_received) << p.server->error().message();
  EXPECT_GT(p.server->peer_alert(), 0);
}

TEST_F(engine_test, untrusted_certificate_fails_verification) {
  auto leaf = test_certs::self_signed({"self.test"});
  auto sctx = test_certs::server_context(leaf);
  auto cctx = certs->client_context();
  pair_fixture p(cctx.get(), sctx.get(), "self.test");
  auto [c, s] = p.handshake();
  EXPECT_EQ(c, status::error);
  EXPECT_EQ(p.client->error(), tls_errc::certificate_verify_failed);
  EXPECT_NE(p.client->verify_result(), X509_V_OK);
}

TEST_F(engine_test, garbage_client_hello_is_an_error_not_a_crash) {
  auto leaf = certs->issue({"garbage.test"});
  auto sctx = test_certs::server_context(leaf);
  std::mt19937 rng(12345);
  // Plain HTTP, random bytes, and a real ClientHello with random bytes flipped.
  std::vector<std::vector<std::byte>> inputs;
  std::string http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  inputs.emplace_back(reinterpret_cast<const std::byte*>(http.data()),
                      reinterpret_cast<const std::byte*>(http.data()) + http.size());
  for (int i = 0; i < 50; ++i) {
    std::vector<std::byte> v(1 + rng() % 600);
    for (auto& b : v) b = std::byte(rng());
    inputs.push_back(std::move(v));
  }
  auto cctx = certs->client_context();
  std::vector<std::byte> hello;
  {
    auto c = std::move(engine::create(cctx.get(), role::client)).value();
    ASSERT_EQ(c->handshake().state, status::have_output);
    auto o = c->pending_output();
    hello.assign(o.begin(), o.end());
  }
  for (int i = 0; i < 200; ++i) {
    auto v = hello;
    int flips = 1 + int(rng() % 4);
    for (int f = 0; f < flips; ++f) v[5 + rng() % (v.size() - 5)] ^= std::byte(1 + rng() % 255);
    inputs.push_back(std::move(v));
  }
  int errors = 0;
  for (auto& in : inputs) {
    auto s = std::move(engine::create(sctx.get(), role::server)).value();
    s->feed(in);
    auto r = s->handshake();
    if (r.state == status::want_input || r.state == status::have_output) {
      // Not enough to decide yet: the transport ends, so the engine must fail, not wait.
      s->keep_input();
      s->consume_output(s->pending_output().size());
      s->feed_eof();
      r = s->handshake();
    }
    EXPECT_EQ(r.state, status::error);
    if (r.state == status::error) {
      ++errors;
      EXPECT_TRUE(s->error());
      EXPECT_FALSE(s->error().message().empty());
    }
  }
  EXPECT_EQ(errors, int(inputs.size()));
  EXPECT_EQ(ERR_peek_error(), 0u) << "the error queue is left clean";
}

TEST_F(engine_test, half_a_client_hello_then_eof_is_unexpected_eof) {
  auto leaf = certs->issue({"half.test"});
  auto sctx = test_certs::server_context(leaf);
  auto cctx = certs->client_context();
  auto c = std::move(engine::create(cctx.get(), role::client)).value();
  ASSERT_EQ(c->handshake().state, status::have_output);
  auto o = c->pending_output();
  std::vector<std::byte> half(o.begin(), o.begin() + o.size() / 2);
  auto s = std::move(engine::create(sctx.get(), role::server)).value();
  s->feed(half);
  EXPECT_EQ(s->handshake().state, status::want_input);
  EXPECT_EQ(s->input_pending(), 0u);
  s->feed_eof();
  EXPECT_EQ(s->handshake().state, status::error);
  EXPECT_EQ(s->error(), tls_errc::unexpected_eof) << s->error().message();
}

TEST_F(engine_test, client_hello_retry_reports_want_certificate) {
  auto leaf = certs->issue({"late.test"});
  // A server context with no certificate: the callback asks for a retry once, then installs
  // the certificate on the SSL (what an SNI resolver does after loading it).
  ssl_ctx_ptr sctx(SSL_CTX_new(TLS_server_method()));
  struct state {
    int calls = 0;
    bool ready = false;
    X509* cert;
    EVP_PKEY* key;
  } st{0, false, leaf.cert.get(), leaf.key.get()};
  SSL_CTX_set_client_hello_cb(
      sctx.get(),
      [](SSL* ssl, int*, void* arg) -> int {
        auto* s = static_cast<state*>(arg);
        ++s->calls;
        if (!s->ready) return SSL_CLIENT_HELLO_RETRY;
        SSL_use_certificate(ssl, s->cert);
        SSL_use_PrivateKey(ssl, s->key);
        return SSL_CLIENT_HELLO_SUCCESS;
      },
      &st);
  auto cctx = certs->client_context();
  pair_fixture p(cctx.get(), sctx.get(), "late.test");
  EXPECT_EQ(p.client->handshake().state, status::have_output);
  p.c2s.deliver(*p.client, *p.server);
  EXPECT_EQ(p.server->handshake().state, status::want_certificate);
  EXPECT_EQ(p.server->handshake().state, status::want_certificate);  // still waiting
  st.ready = true;
  auto [c, s] = p.handshake();
  EXPECT_EQ(c, status::done) << p.client->error().message();
  EXPECT_EQ(s, status::done) << p.server->error().message();
  EXPECT_EQ(st.calls, 3);
}

TEST_F(engine_test, no_certificate_fails_cleanly) {
  ssl_ctx_ptr sctx(SSL_CTX_new(TLS_server_method()));
  auto cctx = certs->client_context();
  pair_fixture p(cctx.get(), sctx.get(), "none.test");
  auto [c, s] = p.handshake();
  EXPECT_EQ(s, status::error);
  EXPECT_NE(p.server->error().message().find("SSL routines"), std::string::npos) << p.server->error().message();
  EXPECT_EQ(c, status::error);
  EXPECT_EQ(p.client->error(), tls_errc::alert_received) << p.client->error().message();
}
