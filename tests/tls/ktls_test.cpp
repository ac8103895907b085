// Kernel TLS's write side without a kernel that has it: the parameters a server stream would
// hand the kernel are used here to make records the way the kernel makes them (RFC 8446,
// 5.2 and 5.3), and the client's OpenSSL must read them. A loopback stream checks the rest:
// with the kernel's TLS where it has one, in user space where it has none.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "letsencrypt/io/net.hpp"
#include "letsencrypt/io/scope.hpp"
#include "letsencrypt/tls/engine.hpp"
#include "letsencrypt/tls/error.hpp"
#include "letsencrypt/tls/stream.hpp"
#include "test_certs.hpp"
#include "tls/ktls.hpp"

using namespace letsencrypt;
using namespace letsencrypt::tls;
using namespace std::chrono_literals;
using letsencrypt::testing::test_certs;

namespace {

constexpr const char* host = "ktls.test";

struct connection {
  std::unique_ptr<engine> client, server;
};

void shuttle(engine& from, engine& to) {
  auto out = from.pending_output();
  if (out.empty()) return;
  std::vector<std::byte> bytes(out.begin(), out.end());
  from.consume_output(bytes.size());
  to.feed(bytes);
  to.keep_input();
}

// A client of `cctx` at exactly `version` (offering only `suite` when given) connected in
// memory to a server engine of `sctx`; the client has read the tickets that follow.
connection connect(SSL_CTX* cctx, SSL_CTX* sctx, int version, const char* suite = nullptr) {
  connection c;
  ssl_ptr ssl(SSL_new(cctx));
  EXPECT_TRUE(ssl);
  if (!ssl) return c;
  SSL_set_tlsext_host_name(ssl.get(), host);
  SSL_set1_host(ssl.get(), host);
  SSL_set_min_proto_version(ssl.get(), version);
  SSL_set_max_proto_version(ssl.get(), version);
  if (suite) {
    EXPECT_EQ(SSL_set_ciphersuites(ssl.get(), suite), 1);
  }
  auto client = engine::create(std::move(ssl), role::client);
  auto server = engine::create(sctx, role::server);
  EXPECT_TRUE(client && server);
  if (!client || !server) return c;
  c.client = std::move(*client);
  c.server = std::move(*server);
  for (int i = 0; i < 10 && !(c.client->handshake_done() && c.server->handshake_done()); ++i) {
    (void)c.client->handshake();
    shuttle(*c.client, *c.server);
    (void)c.server->handshake();
    shuttle(*c.server, *c.client);
  }
  EXPECT_TRUE(c.client->handshake_done());
  EXPECT_TRUE(c.server->handshake_done());
  std::byte buf[16];
  EXPECT_EQ(c.client->read(buf).state, status::want_input);  // the tickets, then nothing
  return c;
}

// A TLS 1.3 record of inner content type `type` holding `plaintext`, sealed with `p`'s key
// and IV at sequence number `seq`, as the kernel seals it.
std::vector<std::byte> kernel_record(const detail::ktls_tx_params& p, std::uint64_t seq, std::string_view plaintext,
                                     unsigned char type = 23) {
  tls_crypto_info info{};
  std::memcpy(&info, p.info.data(), sizeof info);
  EXPECT_EQ(info.version, TLS_1_3_VERSION);
  std::vector<unsigned char> key;
  unsigned char iv[12] = {};
  const EVP_CIPHER* cipher = nullptr;
  if (info.cipher_type == TLS_CIPHER_AES_GCM_128 || info.cipher_type == TLS_CIPHER_AES_GCM_256) {
    const bool aes128 = info.cipher_type == TLS_CIPHER_AES_GCM_128;
    tls12_crypto_info_aes_gcm_256 i{};  // the 128-bit layout is the same with a shorter key
    std::memcpy(&i, p.info.data(), p.size);
    EXPECT_EQ(p.size, aes128 ? sizeof(tls12_crypto_info_aes_gcm_128) : sizeof i);
    const std::size_t key_size = aes128 ? 16 : 32;
    const unsigned char* k = aes128 ? reinterpret_cast<const tls12_crypto_info_aes_gcm_128*>(&i)->key : i.key;
    const unsigned char* salt = aes128 ? reinterpret_cast<const tls12_crypto_info_aes_gcm_128*>(&i)->salt : i.salt;
    const unsigned char* rest = aes128 ? reinterpret_cast<const tls12_crypto_info_aes_gcm_128*>(&i)->iv : i.iv;
    key.assign(k, k + key_size);
    std::memcpy(iv, salt, 4);
    std::memcpy(iv + 4, rest, 8);
    cipher = aes128 ? EVP_aes_128_gcm() : EVP_aes_256_gcm();
  } else {
    EXPECT_EQ(info.cipher_type, TLS_CIPHER_CHACHA20_POLY1305);
    tls12_crypto_info_chacha20_poly1305 i{};
    EXPECT_EQ(p.size, sizeof i);
    std::memcpy(&i, p.info.data(), sizeof i);
    key.assign(i.key, i.key + sizeof i.key);
    std::memcpy(iv, i.iv, 12);
    cipher = EVP_chacha20_poly1305();
  }
  for (int b = 0; b < 8; ++b) iv[4 + b] ^= static_cast<unsigned char>(seq >> (56 - 8 * b));

  std::vector<unsigned char> inner(plaintext.begin(), plaintext.end());
  inner.push_back(type);
  const std::size_t len = inner.size() + 16;
  const unsigned char header[5] = {0x17, 0x03, 0x03, static_cast<unsigned char>(len >> 8),
                                   static_cast<unsigned char>(len)};
  std::vector<unsigned char> out(header, header + 5);
  out.resize(5 + len);
  std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> ctx(EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free);
  int n = 0;
  EXPECT_EQ(EVP_EncryptInit_ex(ctx.get(), cipher, nullptr, key.data(), iv), 1);
  EXPECT_EQ(EVP_EncryptUpdate(ctx.get(), nullptr, &n, header, 5), 1);
  EXPECT_EQ(EVP_EncryptUpdate(ctx.get(), out.data() + 5, &n, inner.data(), static_cast<int>(inner.size())), 1);
  EXPECT_EQ(EVP_EncryptFinal_ex(ctx.get(), out.data() + 5 + n, &n), 1);
  EXPECT_EQ(EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_GET_TAG, 16, out.data() + 5 + inner.size()), 1);
  std::vector<std::byte> record(out.size());
  std::memcpy(record.data(), out.data(), out.size());
  return record;
}

std::uint64_t rec_seq_of(const detail::ktls_tx_params& p) {
  // rec_seq is the last 8 bytes of each of the three layouts.
  std::uint64_t v = 0;
  for (std::size_t i = p.size - 8; i < p.size; ++i) v = v << 8 | p.info[i];
  return v;
}

// What the client reads from `record`: the plaintext, or "<closed>" / "<error>".
std::string client_reads(engine& client, const std::vector<std::byte>& record) {
  client.feed(record);
  client.keep_input();
  std::byte buf[256];
  auto r = client.read(buf);
  if (r.state == status::done) return std::string(reinterpret_cast<const char*>(buf), r.bytes);
  if (r.state == status::closed) return "<closed>";
  return "<error>";
}

// Accepts one connection on `lfd` and runs a server stream's handshake on it; null, with a
// test failure, when either fails.
io::task<std::unique_ptr<tls::stream>> accept_server(int lfd, SSL_CTX* sctx, io::clock::time_point deadline) {
  auto fd = co_await io::accept(lfd).timeout(5s);
  EXPECT_TRUE(fd);
  if (!fd) co_return nullptr;
  auto s = tls::stream::server(std::move(*fd), sctx);
  EXPECT_TRUE(s);
  if (!s) co_return nullptr;
  auto hs = co_await (*s)->handshake(deadline);
  EXPECT_TRUE(hs) << hs.error().message();
  if (!hs) co_return nullptr;
  co_return std::move(*s);
}

struct ktls_test : ::testing::Test {
  test_certs certs;
  letsencrypt::testing::issued_cert leaf = certs.issue({host});
  ssl_ctx_ptr cctx = certs.client_context();

  ssl_ctx_ptr server_context(int tickets = 1, int min_version = TLS1_2_VERSION) {
    auto ctx = test_certs::library_server_context(leaf);
    SSL_CTX_set_num_tickets(ctx.get(), static_cast<std::size_t>(tickets));
    SSL_CTX_set_min_proto_version(ctx.get(), min_version);
    EXPECT_TRUE(detail::keep_write_secrets(ctx.get()));
    return ctx;
  }

  // Runs `body(listener, port)` on a ring with a loopback listener.
  template <class Body>
  static void on_loopback(Body body) {
    io::ring r;
    auto run = [&]() -> io::task<void> {
      auto lfd = io::listen_tcp("127.0.0.1", 0);
      EXPECT_TRUE(lfd);
      if (!lfd) co_return;
      co_await body(lfd->get(), *io::local_port(lfd->get()));
    };
    r.run(run());
  }
};

}  // namespace

TEST_F(ktls_test, records_made_with_the_write_parameters_are_read_by_the_client_for_each_suite) {
  auto sctx = server_context();
  const std::pair<const char*, int> suites[] = {{"TLS_AES_128_GCM_SHA256", TLS_CIPHER_AES_GCM_128},
                                                {"TLS_AES_256_GCM_SHA384", TLS_CIPHER_AES_GCM_256},
                                                {"TLS_CHACHA20_POLY1305_SHA256", TLS_CIPHER_CHACHA20_POLY1305}};
  for (auto [suite, cipher_type] : suites) {
    SCOPED_TRACE(suite);
    auto c = connect(cctx.get(), sctx.get(), TLS1_3_VERSION, suite);
    ASSERT_TRUE(c.server);
    auto p = detail::take_ktls_tx(c.server->native(), c.server->records_written());
    ASSERT_TRUE(p);
    tls_crypto_info info{};
    std::memcpy(&info, p->info.data(), sizeof info);
    EXPECT_EQ(info.cipher_type, cipher_type);
    EXPECT_EQ(rec_seq_of(*p), 1u);  // the one ticket went under the application key
    EXPECT_EQ(client_reads(*c.client, kernel_record(*p, 1, "hello from the kernel")), "hello from the kernel");
    EXPECT_EQ(client_reads(*c.client, kernel_record(*p, 2, "and a second record")), "and a second record");
    // The close_notify a stream sends through the kernel: an alert record, warning level.
    EXPECT_EQ(client_reads(*c.client, kernel_record(*p, 3, std::string_view("\x01\x00", 2), 21)), "<closed>");
  }
}

TEST_F(ktls_test, the_sequence_number_counts_the_records_sent_under_the_new_key) {
  for (int tickets : {0, 1, 3}) {
    SCOPED_TRACE(tickets);
    auto sctx = server_context(tickets);
    auto c = connect(cctx.get(), sctx.get(), TLS1_3_VERSION);
    ASSERT_TRUE(c.server);
    auto p = detail::take_ktls_tx(c.server->native(), c.server->records_written());
    ASSERT_TRUE(p);
    EXPECT_EQ(rec_seq_of(*p), static_cast<std::uint64_t>(tickets));
    EXPECT_EQ(client_reads(*c.client, kernel_record(*p, rec_seq_of(*p), "next")), "next");
  }
  // One off either way is refused, so the count above is what makes the records readable.
  for (std::uint64_t off : {0u, 2u}) {
    auto sctx = server_context(1);
    auto c = connect(cctx.get(), sctx.get(), TLS1_3_VERSION);
    ASSERT_TRUE(c.server);
    auto p = detail::take_ktls_tx(c.server->native(), c.server->records_written());
    ASSERT_TRUE(p);
    EXPECT_EQ(client_reads(*c.client, kernel_record(*p, off, "misnumbered")), "<error>");
  }
}

TEST_F(ktls_test, nothing_is_handed_over_for_tls12_a_key_logging_context_or_a_second_take) {
  {
    auto sctx = server_context();
    auto c = connect(cctx.get(), sctx.get(), TLS1_2_VERSION);
    ASSERT_TRUE(c.server);
    EXPECT_FALSE(detail::take_ktls_tx(c.server->native(), c.server->records_written()));
  }
  {
    auto sctx = server_context();
    auto c = connect(cctx.get(), sctx.get(), TLS1_3_VERSION);
    ASSERT_TRUE(c.server);
    EXPECT_TRUE(detail::take_ktls_tx(c.server->native(), c.server->records_written()));
    // Taken means gone: the secret is not kept for the connection's life.
    EXPECT_FALSE(detail::take_ktls_tx(c.server->native(), c.server->records_written()));
  }
  {
    // A context whose owner logs keys is left alone, and its connections keep nothing.
    auto sctx = test_certs::library_server_context(leaf);
    static int logged = 0;
    SSL_CTX_set_keylog_callback(sctx.get(), [](const SSL*, const char*) { ++logged; });
    EXPECT_FALSE(detail::keep_write_secrets(sctx.get()));
    auto c = connect(cctx.get(), sctx.get(), TLS1_3_VERSION);
    ASSERT_TRUE(c.server);
    EXPECT_FALSE(detail::take_ktls_tx(c.server->native(), c.server->records_written()));
    EXPECT_GT(logged, 0);
  }
  {
    auto sctx = test_certs::library_server_context(leaf);  // keeps nothing
    auto c = connect(cctx.get(), sctx.get(), TLS1_3_VERSION);
    ASSERT_TRUE(c.server);
    EXPECT_FALSE(detail::take_ktls_tx(c.server->native(), c.server->records_written()));
  }
}

TEST_F(ktls_test, a_stream_sends_through_the_kernel_where_it_has_tls_and_in_user_space_where_not) {
  auto sctx = server_context(1, TLS1_3_VERSION);
  on_loopback([&](int lfd, std::uint16_t port) -> io::task<void> {
    tls::client_config cc;
    cc.ca_pem = certs.ca_pem();
    cc.sni_override = host;
    auto server_side = [&]() -> io::task<void> {
      auto s = co_await accept_server(lfd, sctx.get(), io::clock::now() + 5s);
      if (!s) co_return;
      // This kernel's answer decides the path; either way the secret is gone after it.
      EXPECT_EQ(s->ktls_active(), tls::ktls_available());
      EXPECT_FALSE(detail::take_ktls_tx(s->native(), s->tls_engine().records_written()));
      const std::string msg = "served with ktls_active=" + std::to_string(s->ktls_active());
      auto w = co_await s->write_all(std::as_bytes(std::span(msg)), io::clock::now() + 5s);
      EXPECT_TRUE(w) << w.error().message();
      std::byte buf[64];
      auto n = co_await s->read_some(buf, io::clock::now() + 5s);
      EXPECT_TRUE(n) << n.error().message();
      if (n) {
        EXPECT_EQ(std::string(reinterpret_cast<const char*>(buf), *n), "thanks");
      }
      auto sd = co_await s->shutdown(io::clock::now() + 5s);
      EXPECT_TRUE(sd) << sd.error().message();
    };
    auto client_side = [&]() -> io::task<void> {
      auto s = co_await tls::connect("127.0.0.1", port, cc, io::clock::now() + 5s);
      EXPECT_TRUE(s) << s.error().message();
      if (!s) co_return;
      std::string got;
      std::byte buf[64];
      while (got.size() < std::string_view("served with ktls_active=0").size()) {
        auto n = co_await (*s)->read_some(buf, io::clock::now() + 5s);
        EXPECT_TRUE(n) << n.error().message();
        if (!n || *n == 0) break;
        got.append(reinterpret_cast<const char*>(buf), *n);
      }
      EXPECT_EQ(got, "served with ktls_active=" + std::to_string(tls::ktls_available() ? 1 : 0));
      const std::string thanks = "thanks";
      auto w = co_await (*s)->write_all(std::as_bytes(std::span(thanks)), io::clock::now() + 5s);
      EXPECT_TRUE(w) << w.error().message();
      // The server's close_notify, from the kernel or from OpenSSL, ends the stream cleanly.
      auto n = co_await (*s)->read_some(buf, io::clock::now() + 5s);
      EXPECT_TRUE(n) << n.error().message();
      if (n) {
        EXPECT_EQ(*n, 0u);
      }
    };
    co_await io::when_all(server_side(), client_side());
  });
}

namespace {

std::optional<detail::ktls_tx_params> attached;  // what the stand-in kernel was given

bool stand_in_kernel(int, const detail::ktls_tx_params& p) {
  attached.emplace(p);
  return true;
}

struct stand_in_scope {
  stand_in_scope() {
    attached.reset();
    detail::set_ktls_attach_for_testing(&stand_in_kernel);
  }
  ~stand_in_scope() {
    detail::set_ktls_attach_for_testing(nullptr);
    attached.reset();
  }
};

}  // namespace

TEST_F(ktls_test, on_the_kernel_path_a_stream_sends_plaintext_refuses_to_answer_a_key_update_and_closes_with_an_alert) {
  // The kernel is a stand-in that accepts the parameters, so the stream's sends reach the
  // client as plaintext; the client seals them with those parameters, as the kernel would,
  // and its OpenSSL must read them.
  stand_in_scope kernel;
  auto sctx = server_context(1, TLS1_3_VERSION);
  on_loopback([&](int lfd, std::uint16_t port) -> io::task<void> {
    const auto deadline = io::clock::now() + 10s;
    auto server_side = [&]() -> io::task<void> {
      auto s = co_await accept_server(lfd, sctx.get(), deadline);
      if (!s) co_return;
      EXPECT_TRUE(s->ktls_active());
      std::byte buf[64];
      auto n = co_await s->read_some(buf, deadline);  // reads stay with OpenSSL
      EXPECT_TRUE(n) << n.error().message();
      if (n) {
        EXPECT_EQ(std::string(reinterpret_cast<const char*>(buf), *n), "go");
      }
      const std::string hello = "hello through the kernel";
      auto w = co_await s->write_all(std::as_bytes(std::span(hello)), deadline);
      EXPECT_TRUE(w) << w.error().message();
      // The client asks for a key update and sends on under its new key: the data is read;
      // the answer OpenSSL owes would carry a stale key, so what follows is refused.
      n = co_await s->read_some(buf, deadline);
      EXPECT_TRUE(n) << n.error().message();
      if (n) {
        EXPECT_EQ(std::string(reinterpret_cast<const char*>(buf), *n), "more");
      }
      n = co_await s->read_some(buf, deadline);
      EXPECT_FALSE(n);
      if (!n) {
        EXPECT_EQ(n.error(), std::error_code(tls::tls_errc::ktls_cannot_answer));
      }
      // No data may go before the answer, so writes fail too.
      w = co_await s->write_all(std::as_bytes(std::span(hello)), deadline);
      EXPECT_FALSE(w);
      if (!w) {
        EXPECT_EQ(w.error(), std::error_code(tls::tls_errc::ktls_cannot_answer));
      }
      auto sd = co_await s->shutdown(deadline);
      EXPECT_TRUE(sd) << sd.error().message();
    };
    auto client_side = [&]() -> io::task<void> {
      auto fd = co_await io::connect_tcp("127.0.0.1", port, 5s);
      EXPECT_TRUE(fd);
      if (!fd) co_return;
      ssl_ptr ssl(SSL_new(cctx.get()));
      SSL_set_tlsext_host_name(ssl.get(), host);
      SSL_set1_host(ssl.get(), host);
      SSL* cssl = ssl.get();
      auto made = engine::create(std::move(ssl), role::client);
      EXPECT_TRUE(made);
      if (!made) co_return;
      engine& e = **made;
      std::vector<std::byte> rb(32 * 1024);
      auto send_output = [&]() -> io::task<bool> {
        while (!e.pending_output().empty()) {
          auto n = co_await io::send_some(fd->get(), e.pending_output(), deadline);
          if (!n) co_return false;
          e.consume_output(*n);
        }
        co_return true;
      };
      // Raw bytes from the socket, fed to the engine unless `raw` takes them.
      auto receive = [&](std::vector<std::byte>* raw = nullptr) -> io::task<bool> {
        auto n = co_await io::recv_some(fd->get(), rb, deadline);
        if (!n || *n == 0) co_return false;
        if (raw) {
          raw->insert(raw->end(), rb.begin(), rb.begin() + static_cast<std::ptrdiff_t>(*n));
        } else {
          e.feed(std::span(rb).first(*n));
          e.keep_input();
        }
        co_return true;
      };
      while (!e.handshake_done()) {
        (void)e.handshake();
        if (!co_await send_output()) co_return;
        if (e.handshake_done()) break;
        if (!co_await receive()) co_return;
      }
      // The ticket comes from OpenSSL, before the switch; then nothing is left over.
      std::byte buf[256];
      while (!SSL_SESSION_has_ticket(SSL_get_session(cssl))) {
        if (!co_await receive()) co_return;
        EXPECT_EQ(e.read(buf).state, status::want_input);
      }
      EXPECT_EQ(e.input_pending(), 0u);
      EXPECT_TRUE(attached);
      if (!attached) co_return;
      const std::uint64_t seq = rec_seq_of(*attached);
      EXPECT_EQ(seq, 1u);

      EXPECT_EQ(e.write(std::as_bytes(std::span("go", 2))).state, status::done);
      if (!co_await send_output()) co_return;
      const std::string hello = "hello through the kernel";
      std::vector<std::byte> raw;
      while (raw.size() < hello.size())
        if (!co_await receive(&raw)) co_return;
      EXPECT_EQ(std::string(reinterpret_cast<const char*>(raw.data()), raw.size()), hello);
      EXPECT_EQ(client_reads(e, kernel_record(*attached, seq, hello)), hello);

      EXPECT_EQ(SSL_key_update(cssl, SSL_KEY_UPDATE_REQUESTED), 1);
      EXPECT_EQ(e.write(std::as_bytes(std::span("more", 4))).state, status::done);
      if (!co_await send_output()) co_return;
      // Next comes the close_notify's body, for the kernel to seal as an alert, and nothing
      // of OpenSSL's (its key update would come first).
      raw.clear();
      while (raw.size() < 2)
        if (!co_await receive(&raw)) break;
      EXPECT_EQ(raw.size(), 2u);
      if (raw.size() != 2) co_return;
      EXPECT_EQ(raw[0], std::byte{1});
      EXPECT_EQ(raw[1], std::byte{0});
      EXPECT_EQ(client_reads(e, kernel_record(*attached, seq + 1, std::string_view("\x01\x00", 2), 21)), "<closed>");
      raw.clear();
      EXPECT_FALSE(co_await receive(&raw));  // then the FIN
    };
    co_await io::when_all(server_side(), client_side());
  });
}
