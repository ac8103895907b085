// Kernel TLS's write side without a kernel that has it: the parameters a server stream would
// hand the kernel are used here to make records the way the kernel makes them (TLS 1.3 and
// 1.2), and the client's OpenSSL must read them. Loopback streams check the rest: with the
// kernel's TLS where it has one, in user space where it has none, and on the kernel path
// with a stand-in for the kernel's setsockopt.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include <cstring>
#include <functional>
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
  ssl_session_ptr session;  // the client's, to resume
  bool reused = false;
};

void shuttle(engine& from, engine& to) {
  auto out = from.pending_output();
  if (out.empty()) return;
  std::vector<std::byte> bytes(out.begin(), out.end());
  from.consume_output(bytes.size());
  to.feed(bytes);
  to.keep_input();
}

// A client of `cctx` at exactly `version` (offering only `suite` when given: a TLS 1.3 suite
// or a TLS 1.2 cipher; resuming `resume` when given) connected in memory to a server engine
// of `sctx`; the client has read what followed the handshake (TLS 1.3's tickets).
connection connect(SSL_CTX* cctx, SSL_CTX* sctx, int version, const char* suite = nullptr,
                   SSL_SESSION* resume = nullptr, const std::function<void(SSL*)>& prepare = {}) {
  connection c;
  ssl_ptr ssl(SSL_new(cctx));
  EXPECT_TRUE(ssl);
  if (!ssl) return c;
  SSL_set_tlsext_host_name(ssl.get(), host);
  SSL_set1_host(ssl.get(), host);
  SSL_set_min_proto_version(ssl.get(), version);
  SSL_set_max_proto_version(ssl.get(), version);
  if (suite) {
    const int set = version == TLS1_3_VERSION ? SSL_set_ciphersuites(ssl.get(), suite)
                                              : SSL_set_cipher_list(ssl.get(), suite);
    EXPECT_EQ(set, 1);
  }
  if (resume) {
    EXPECT_EQ(SSL_set_session(ssl.get(), resume), 1);
  }
  if (prepare) prepare(ssl.get());
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
  c.session.reset(SSL_get1_session(c.client->native()));
  c.reused = SSL_session_reused(c.client->native()) == 1;
  return c;
}

std::uint64_t rec_seq_of(const detail::ktls_tx_params& p) {
  // rec_seq is the last 8 bytes of each of the three layouts.
  std::uint64_t v = 0;
  for (std::size_t i = p.size - 8; i < p.size; ++i) v = v << 8 | p.info[i];
  return v;
}

// A record of content type `type` holding `plaintext`, sealed with `p` at sequence number
// `seq` as the kernel seals it. TLS 1.3 (RFC 8446, 5.2): the type inside, the nonce the IV
// XOR the sequence number, the header as additional data. TLS 1.2 (RFC 5246, 6.2.3.3; RFC
// 7905): the sequence number, type, version and length as additional data; AES-GCM's nonce
// the salt and an explicit part the kernel starts at `iv` and counts up from `rec_seq`,
// sent before the ciphertext; ChaCha20's the IV XOR the sequence number.
std::vector<std::byte> kernel_record(const detail::ktls_tx_params& p, std::uint64_t seq, std::string_view plaintext,
                                     unsigned char type = 23) {
  tls_crypto_info info{};
  std::memcpy(&info, p.info.data(), sizeof info);
  const bool tls13 = info.version == TLS_1_3_VERSION;
  EXPECT_TRUE(tls13 || info.version == TLS_1_2_VERSION);
  std::vector<unsigned char> key;
  unsigned char nonce[12] = {};
  const EVP_CIPHER* cipher = nullptr;
  bool explicit_nonce = false;
  if (info.cipher_type == TLS_CIPHER_AES_GCM_128 || info.cipher_type == TLS_CIPHER_AES_GCM_256) {
    const bool aes128 = info.cipher_type == TLS_CIPHER_AES_GCM_128;
    tls12_crypto_info_aes_gcm_256 i{};  // the 128-bit layout is the same with a shorter key
    std::memcpy(&i, p.info.data(), p.size);
    EXPECT_EQ(p.size, aes128 ? sizeof(tls12_crypto_info_aes_gcm_128) : sizeof i);
    const auto* i128 = reinterpret_cast<const tls12_crypto_info_aes_gcm_128*>(&i);
    const unsigned char* k = aes128 ? i128->key : i.key;
    key.assign(k, k + (aes128 ? 16 : 32));
    std::memcpy(nonce, aes128 ? i128->salt : i.salt, 4);
    std::memcpy(nonce + 4, aes128 ? i128->iv : i.iv, 8);
    cipher = aes128 ? EVP_aes_128_gcm() : EVP_aes_256_gcm();
    explicit_nonce = !tls13;
  } else {
    EXPECT_EQ(info.cipher_type, TLS_CIPHER_CHACHA20_POLY1305);
    tls12_crypto_info_chacha20_poly1305 i{};
    EXPECT_EQ(p.size, sizeof i);
    std::memcpy(&i, p.info.data(), sizeof i);
    key.assign(i.key, i.key + sizeof i.key);
    std::memcpy(nonce, i.iv, 12);
    cipher = EVP_chacha20_poly1305();
  }
  unsigned char seq_bytes[8];
  for (int b = 0; b < 8; ++b) seq_bytes[b] = static_cast<unsigned char>(seq >> (56 - 8 * b));
  if (explicit_nonce) {
    std::uint64_t e = 0;
    for (int b = 0; b < 8; ++b) e = e << 8 | nonce[4 + b];
    e += seq - rec_seq_of(p);
    for (int b = 0; b < 8; ++b) nonce[4 + b] = static_cast<unsigned char>(e >> (56 - 8 * b));
  } else {
    for (int b = 0; b < 8; ++b) nonce[4 + b] ^= seq_bytes[b];
  }

  std::vector<unsigned char> in(plaintext.begin(), plaintext.end());
  if (tls13) in.push_back(type);
  const std::size_t len = (explicit_nonce ? 8 : 0) + in.size() + 16;
  const unsigned char header[5] = {static_cast<unsigned char>(tls13 ? 23 : type), 0x03, 0x03,
                                   static_cast<unsigned char>(len >> 8), static_cast<unsigned char>(len)};
  std::vector<unsigned char> aad;
  if (tls13) {
    aad.assign(header, header + 5);
  } else {
    aad.assign(seq_bytes, seq_bytes + 8);
    aad.insert(aad.end(), {type, 0x03, 0x03, static_cast<unsigned char>(in.size() >> 8),
                           static_cast<unsigned char>(in.size())});
  }
  std::vector<unsigned char> out(header, header + 5);
  if (explicit_nonce) out.insert(out.end(), nonce + 4, nonce + 12);
  const std::size_t body = out.size();
  out.resize(5 + len);
  std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> ctx(EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free);
  int n = 0;
  EXPECT_EQ(EVP_EncryptInit_ex(ctx.get(), cipher, nullptr, key.data(), nonce), 1);
  EXPECT_EQ(EVP_EncryptUpdate(ctx.get(), nullptr, &n, aad.data(), static_cast<int>(aad.size())), 1);
  EXPECT_EQ(EVP_EncryptUpdate(ctx.get(), out.data() + body, &n, in.data(), static_cast<int>(in.size())), 1);
  EXPECT_EQ(EVP_EncryptFinal_ex(ctx.get(), out.data() + body + n, &n), 1);
  EXPECT_EQ(EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_GET_TAG, 16, out.data() + body + in.size()), 1);
  std::vector<std::byte> record(out.size());
  std::memcpy(record.data(), out.data(), out.size());
  return record;
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
  struct suite_case {
    int version;
    const char* suite;
    int cipher_type;
  };
  const suite_case cases[] = {
      {TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256", TLS_CIPHER_AES_GCM_128},
      {TLS1_3_VERSION, "TLS_AES_256_GCM_SHA384", TLS_CIPHER_AES_GCM_256},
      {TLS1_3_VERSION, "TLS_CHACHA20_POLY1305_SHA256", TLS_CIPHER_CHACHA20_POLY1305},
      {TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256", TLS_CIPHER_AES_GCM_128},
      {TLS1_2_VERSION, "ECDHE-ECDSA-AES256-GCM-SHA384", TLS_CIPHER_AES_GCM_256},
      {TLS1_2_VERSION, "ECDHE-ECDSA-CHACHA20-POLY1305", TLS_CIPHER_CHACHA20_POLY1305},
  };
  for (const auto& k : cases) {
    SCOPED_TRACE(k.suite);
    auto c = connect(cctx.get(), sctx.get(), k.version, k.suite);
    ASSERT_TRUE(c.server);
    auto p = detail::take_ktls_tx(*c.server);
    ASSERT_TRUE(p);
    tls_crypto_info info{};
    std::memcpy(&info, p->info.data(), sizeof info);
    EXPECT_EQ(info.cipher_type, k.cipher_type);
    EXPECT_EQ(info.version, k.version == TLS1_3_VERSION ? TLS_1_3_VERSION : TLS_1_2_VERSION);
    // TLS 1.3: the one ticket went under the application key. TLS 1.2: the Finished went
    // after the ChangeCipherSpec (the ticket before it).
    EXPECT_EQ(rec_seq_of(*p), 1u);
    EXPECT_EQ(client_reads(*c.client, kernel_record(*p, 1, "hello from the kernel")), "hello from the kernel");
    EXPECT_EQ(client_reads(*c.client, kernel_record(*p, 2, "and a second record")), "and a second record");
    // The close_notify a stream sends through the kernel: an alert record, warning level.
    EXPECT_EQ(client_reads(*c.client, kernel_record(*p, 3, std::string_view("\x01\x00", 2), 21)), "<closed>");
  }
}

TEST_F(ktls_test, tls12_aes_gcm_explicit_nonces_start_at_random) {
  // OpenSSL's own explicit nonces start at a random value it keeps; the kernel's must not
  // start where OpenSSL's are, so they start at another random value.
  auto sctx = server_context();
  std::vector<std::uint64_t> starts;
  for (int i = 0; i < 3; ++i) {
    auto c = connect(cctx.get(), sctx.get(), TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256");
    ASSERT_TRUE(c.server);
    auto p = detail::take_ktls_tx(*c.server);
    ASSERT_TRUE(p);
    tls12_crypto_info_aes_gcm_128 info{};
    std::memcpy(&info, p->info.data(), sizeof info);
    std::uint64_t v = 0;
    for (unsigned char b : info.iv) v = v << 8 | b;
    starts.push_back(v);
  }
  EXPECT_NE(starts[0], starts[1]);
  EXPECT_NE(starts[1], starts[2]);
  EXPECT_NE(starts[0], 1u);  // not the sequence number, as a counter from 0 would be
}

TEST_F(ktls_test, the_sequence_number_counts_the_records_sent_under_the_new_key) {
  for (int tickets : {0, 1, 3}) {
    SCOPED_TRACE(tickets);
    auto sctx = server_context(tickets);
    auto c = connect(cctx.get(), sctx.get(), TLS1_3_VERSION);
    ASSERT_TRUE(c.server);
    auto p = detail::take_ktls_tx(*c.server);
    ASSERT_TRUE(p);
    EXPECT_EQ(rec_seq_of(*p), static_cast<std::uint64_t>(tickets));
    EXPECT_EQ(client_reads(*c.client, kernel_record(*p, rec_seq_of(*p), "next")), "next");
  }
  // Resumed, each version: TLS 1.3 sends its ticket after the Finished as before; in TLS 1.2
  // the server's ChangeCipherSpec and Finished come first, then the client's.
  for (int version : {TLS1_3_VERSION, TLS1_2_VERSION}) {
    SCOPED_TRACE(version);
    auto sctx = server_context();
    auto first = connect(cctx.get(), sctx.get(), version);
    ASSERT_TRUE(first.session);
    auto c = connect(cctx.get(), sctx.get(), version, nullptr, first.session.get());
    ASSERT_TRUE(c.server);
    EXPECT_TRUE(c.reused);
    auto p = detail::take_ktls_tx(*c.server);
    ASSERT_TRUE(p);
    EXPECT_EQ(rec_seq_of(*p), 1u);
    EXPECT_EQ(client_reads(*c.client, kernel_record(*p, 1, "resumed")), "resumed");
  }
  // A HelloRetryRequest adds records before the key changes, none after: the client offers
  // a key share for X448 only, which this server does not take.
  {
    auto sctx = server_context();
    auto plain = connect(cctx.get(), sctx.get(), TLS1_3_VERSION);
    auto c = connect(cctx.get(), sctx.get(), TLS1_3_VERSION, nullptr, nullptr,
                     [](SSL* ssl) { EXPECT_EQ(SSL_set1_groups_list(ssl, "X448:X25519"), 1); });
    ASSERT_TRUE(c.server && plain.server);
    EXPECT_GT(c.server->records_written(), plain.server->records_written());  // the retry request
    auto p = detail::take_ktls_tx(*c.server);
    ASSERT_TRUE(p);
    EXPECT_EQ(rec_seq_of(*p), 1u);
    EXPECT_EQ(client_reads(*c.client, kernel_record(*p, 1, "after a retry")), "after a retry");
  }
  // One off either way is refused, so the count above is what makes the records readable.
  for (int version : {TLS1_3_VERSION, TLS1_2_VERSION}) {
    for (std::uint64_t off : {0u, 2u}) {
      auto sctx = server_context(1);
      auto c = connect(cctx.get(), sctx.get(), version);
      ASSERT_TRUE(c.server);
      auto p = detail::take_ktls_tx(*c.server);
      ASSERT_TRUE(p);
      EXPECT_EQ(client_reads(*c.client, kernel_record(*p, off, "misnumbered")), "<error>");
    }
  }
}

TEST_F(ktls_test, nothing_is_handed_over_for_small_records_a_key_logging_context_or_a_second_take) {
  for (int version : {TLS1_3_VERSION, TLS1_2_VERSION}) {
    auto sctx = server_context();
    auto c = connect(cctx.get(), sctx.get(), version);
    ASSERT_TRUE(c.server);
    EXPECT_TRUE(detail::take_ktls_tx(*c.server));
    // Taken means gone: the secret is not kept for the connection's life.
    EXPECT_FALSE(detail::take_ktls_tx(*c.server));
  }
  {
    // A client that asked for small records: the kernel writes only full-size ones.
    auto sctx = server_context();
    auto c = connect(cctx.get(), sctx.get(), TLS1_3_VERSION, nullptr, nullptr, [](SSL* ssl) {
      EXPECT_EQ(SSL_set_tlsext_max_fragment_length(ssl, TLSEXT_max_fragment_length_1024), 1);
    });
    ASSERT_TRUE(c.server);
    EXPECT_EQ(SSL_SESSION_get_max_fragment_length(SSL_get_session(c.server->native())),
              TLSEXT_max_fragment_length_1024);
    EXPECT_FALSE(detail::take_ktls_tx(*c.server));
  }
  {
    // A context whose owner logs keys is left alone, and its connections keep nothing.
    auto sctx = test_certs::library_server_context(leaf);
    static int logged = 0;
    SSL_CTX_set_keylog_callback(sctx.get(), [](const SSL*, const char*) { ++logged; });
    EXPECT_FALSE(detail::keep_write_secrets(sctx.get()));
    auto c = connect(cctx.get(), sctx.get(), TLS1_3_VERSION);
    ASSERT_TRUE(c.server);
    EXPECT_FALSE(detail::take_ktls_tx(*c.server));
    EXPECT_GT(logged, 0);
  }
  {
    auto sctx = test_certs::library_server_context(leaf);  // keeps nothing
    auto c = connect(cctx.get(), sctx.get(), TLS1_3_VERSION);
    ASSERT_TRUE(c.server);
    EXPECT_FALSE(detail::take_ktls_tx(*c.server));
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
      // This kernel's answer decides the path (a kernel with the tls module may still refuse
      // a version or cipher); either way the secret is gone after it.
      if (!tls::ktls_available()) {
        EXPECT_FALSE(s->ktls_active());
      }
      EXPECT_FALSE(detail::take_ktls_tx(s->tls_engine()));
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
      EXPECT_TRUE(got == "served with ktls_active=1" || got == "served with ktls_active=0") << got;
      if (!tls::ktls_available()) {
        EXPECT_EQ(got, "served with ktls_active=0");
      }
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

// A TLS client over a plain socket whose bytes the test sees: its engine's records go out
// as they are, and what arrives goes to the engine or, where the server's kernel path sends
// plaintext, to the test.
struct raw_client {
  io::unique_fd fd;
  std::unique_ptr<engine> e;
  SSL* ssl = nullptr;
  io::clock::time_point deadline;
  std::vector<std::byte> rb = std::vector<std::byte>(32 * 1024);

  io::task<bool> send_output() {
    while (!e->pending_output().empty()) {
      auto n = co_await io::send_some(fd.get(), e->pending_output(), deadline);
      if (!n) co_return false;
      e->consume_output(*n);
    }
    co_return true;
  }
  // What arrives next, fed to the engine unless `raw` takes it; false at the end or an error.
  io::task<bool> receive(std::vector<std::byte>* raw = nullptr) {
    auto n = co_await io::recv_some(fd.get(), rb, deadline);
    if (!n || *n == 0) co_return false;
    if (raw) {
      raw->insert(raw->end(), rb.begin(), rb.begin() + static_cast<std::ptrdiff_t>(*n));
    } else {
      e->feed(std::span(rb).first(*n));
      e->keep_input();
    }
    co_return true;
  }
  // The next `n` bytes as they arrive (fewer at the end of the stream).
  io::task<std::vector<std::byte>> receive_raw(std::size_t n) {
    std::vector<std::byte> raw;
    while (raw.size() < n)
      if (!co_await receive(&raw)) break;
    co_return raw;
  }
  // Connects to `port`, runs the handshake and reads the ticket, which OpenSSL sends before
  // the server's switch; null, with a test failure, when any of that fails.
  static io::task<std::unique_ptr<raw_client>> connect(std::uint16_t port, SSL_CTX* cctx,
                                                       io::clock::time_point deadline) {
    auto c = std::make_unique<raw_client>();
    c->deadline = deadline;
    auto fd = co_await io::connect_tcp("127.0.0.1", port, 5s);
    EXPECT_TRUE(fd);
    if (!fd) co_return nullptr;
    c->fd = std::move(*fd);
    ssl_ptr ssl(SSL_new(cctx));
    SSL_set_tlsext_host_name(ssl.get(), host);
    SSL_set1_host(ssl.get(), host);
    c->ssl = ssl.get();
    auto made = engine::create(std::move(ssl), role::client);
    EXPECT_TRUE(made);
    if (!made) co_return nullptr;
    c->e = std::move(*made);
    while (!c->e->handshake_done()) {
      (void)c->e->handshake();
      if (!co_await c->send_output()) co_return nullptr;
      if (c->e->handshake_done()) break;
      if (!co_await c->receive()) co_return nullptr;
    }
    std::byte buf[256];
    while (!SSL_SESSION_has_ticket(SSL_get_session(c->ssl))) {
      if (!co_await c->receive()) co_return nullptr;
      EXPECT_EQ(c->e->read(buf).state, status::want_input);
    }
    EXPECT_EQ(c->e->input_pending(), 0u);
    co_return c;
  }
};

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

// Runs `server(stream, deadline)` on a server stream that took the kernel path (with a
// stand-in for the kernel) and, at once, `client(raw_client)` on a raw client connected to
// it.
template <class Server, class Client>
void on_kernel_path(ktls_test& t, Server server, Client client) {
  stand_in_scope kernel;
  auto sctx = t.server_context(1, TLS1_3_VERSION);
  ktls_test::on_loopback([&](int lfd, std::uint16_t port) -> io::task<void> {
    const auto deadline = io::clock::now() + 10s;
    auto server_side = [&]() -> io::task<void> {
      auto s = co_await accept_server(lfd, sctx.get(), deadline);
      if (!s) co_return;
      EXPECT_TRUE(s->ktls_active());
      co_await server(s.get(), deadline);
    };
    auto client_side = [&]() -> io::task<void> {
      auto c = co_await raw_client::connect(port, t.cctx.get(), deadline);
      if (!c) co_return;
      co_await client(c.get());
    };
    co_await io::when_all(server_side(), client_side());
  });
}

}  // namespace

TEST_F(ktls_test, on_the_kernel_path_a_stream_sends_plaintext_refuses_to_answer_a_key_update_and_closes_with_an_alert) {
  // The kernel is a stand-in that accepts the parameters, so the stream's sends reach the
  // client as plaintext; the client seals them with those parameters, as the kernel would,
  // and its OpenSSL must read them.
  on_kernel_path(
      *this,
      [&](tls::stream* s, io::clock::time_point deadline) -> io::task<void> {
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
      },
      [&](raw_client* c) -> io::task<void> {
        EXPECT_TRUE(attached);
        if (!attached) co_return;
        const std::uint64_t seq = rec_seq_of(*attached);
        EXPECT_EQ(seq, 1u);

        EXPECT_EQ(c->e->write(std::as_bytes(std::span("go", 2))).state, status::done);
        if (!co_await c->send_output()) co_return;
        const std::string hello = "hello through the kernel";
        auto raw = co_await c->receive_raw(hello.size());
        EXPECT_EQ(std::string(reinterpret_cast<const char*>(raw.data()), raw.size()), hello);
        EXPECT_EQ(client_reads(*c->e, kernel_record(*attached, seq, hello)), hello);

        EXPECT_EQ(SSL_key_update(c->ssl, SSL_KEY_UPDATE_REQUESTED), 1);
        EXPECT_EQ(c->e->write(std::as_bytes(std::span("more", 4))).state, status::done);
        if (!co_await c->send_output()) co_return;
        // Next comes the close_notify's body, for the kernel to seal as an alert, and nothing
        // of OpenSSL's (its key update would come first).
        raw = co_await c->receive_raw(2);
        EXPECT_EQ(raw.size(), 2u);
        if (raw.size() != 2) co_return;
        EXPECT_EQ(raw[0], std::byte{1});
        EXPECT_EQ(raw[1], std::byte{0});
        EXPECT_EQ(client_reads(*c->e, kernel_record(*attached, seq + 1, std::string_view("\x01\x00", 2), 21)),
                  "<closed>");
        EXPECT_TRUE((co_await c->receive_raw(1)).empty());  // then the FIN, as the server's stream closes
      });
}

TEST_F(ktls_test, on_the_kernel_path_a_record_openssl_would_send_stops_the_stream_and_is_not_sent) {
  on_kernel_path(
      *this,
      [&](tls::stream* s, io::clock::time_point deadline) -> io::task<void> {
        // A key update asked of the SSL itself: OpenSSL writes it at the next handshake step,
        // under its stale write state, so the stream refuses to send it, and then any data.
        EXPECT_EQ(SSL_key_update(s->native(), SSL_KEY_UPDATE_NOT_REQUESTED), 1);
        auto hs = co_await s->handshake(deadline);
        EXPECT_FALSE(hs);
        if (!hs) {
          EXPECT_EQ(hs.error(), std::error_code(tls::tls_errc::ktls_cannot_answer));
        }
        const std::string late = "late";
        auto w = co_await s->write_all(std::as_bytes(std::span(late)), deadline);
        EXPECT_FALSE(w);
        std::byte buf[64];
        auto n = co_await s->read_some(buf, deadline);
        EXPECT_FALSE(n);
        // close_notify still goes: an alert record is not data.
        auto sd = co_await s->shutdown(deadline);
        EXPECT_TRUE(sd) << sd.error().message();
      },
      [&](raw_client* c) -> io::task<void> {
        auto raw = co_await c->receive_raw(3);
        EXPECT_EQ(raw.size(), 2u);  // the close_notify's body, then the end: nothing else
        if (raw.size() == 2) {
          EXPECT_EQ(client_reads(*c->e, kernel_record(*attached, 1, std::string_view("\x01\x00", 2), 21)), "<closed>");
        }
      });
}

TEST_F(ktls_test, on_the_kernel_path_a_stream_whose_tls_failed_sends_no_data_and_no_close_notify) {
  on_kernel_path(
      *this,
      [&](tls::stream* s, io::clock::time_point deadline) -> io::task<void> {
        // The client's record is corrupt: the read fails, and after it no data and no
        // close_notify go out, as in user space.
        std::byte buf[64];
        auto n = co_await s->read_some(buf, deadline);
        EXPECT_FALSE(n);
        const std::string late = "late";
        auto w = co_await s->write_all(std::as_bytes(std::span(late)), deadline);
        EXPECT_FALSE(w);
        auto sd = co_await s->shutdown(deadline);
        EXPECT_TRUE(sd) << sd.error().message();
      },
      [&](raw_client* c) -> io::task<void> {
        EXPECT_EQ(c->e->write(std::as_bytes(std::span("corrupt me", 10))).state, status::done);
        auto out = c->e->pending_output();
        std::vector<std::byte> record(out.begin(), out.end());
        c->e->consume_output(record.size());
        record.back() ^= std::byte{1};  // the tag
        auto sent = co_await io::send_some(c->fd.get(), record, c->deadline);
        EXPECT_TRUE(sent && *sent == record.size());
        // Nothing arrives before the server's stream closes: no data, no alert.
        EXPECT_TRUE((co_await c->receive_raw(1)).empty());
      });
}
