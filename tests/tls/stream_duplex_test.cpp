// tls::stream full duplex over loopback: a read and a write at once on each end, with small
// socket buffers so both directions block; key updates answered while a write's send is in
// flight; the busy rules; a pending read and write cancelled together.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "letsencrypt/io/net.hpp"
#include "letsencrypt/io/scope.hpp"
#include "letsencrypt/tls/error.hpp"
#include "letsencrypt/tls/stream.hpp"
#include "test_certs.hpp"

using namespace letsencrypt;
using namespace std::chrono_literals;
using letsencrypt::testing::test_certs;

namespace {

io::clock::time_point in(io::duration d) { return io::clock::now() + d; }

// Byte k of stream `seed`: a pattern where a lost, repeated or reordered chunk shows.
std::byte pattern(std::size_t k, unsigned seed) { return std::byte((k * 131 + seed * 7 + (k >> 12)) & 0xff); }

// The operation failed, with `want`.
template <class R>
void expect_error(const R& r, std::error_code want) {
  EXPECT_FALSE(r);
  if (!r) {
    EXPECT_EQ(r.error(), want);
  }
}

void small_buffers(int fd) {
  int sz = 32 * 1024;
  ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
}

struct duplex_test : ::testing::Test {
  static inline test_certs* certs = nullptr;
  static inline letsencrypt::testing::issued_cert* leaf = nullptr;
  static void SetUpTestSuite() {
    certs = new test_certs();
    leaf = new letsencrypt::testing::issued_cert(certs->issue({"duplex.test"}));
  }
  static void TearDownTestSuite() {
    delete leaf;
    delete certs;
  }

  struct pair {
    std::unique_ptr<tls::stream> server, client;
  };
  // The server context with TLS 1.3 only (key updates are a TLS 1.3 message).
  static tls::ssl_ctx_ptr tls13_context() {
    auto ctx = test_certs::server_context(*leaf);
    SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION);
    return ctx;
  }
  // A connected, handshaken pair on the current ring (TLS 1.3).
  static io::task<pair> connect_pair(SSL_CTX* sctx) {
    pair p;
    auto lfd = io::listen_tcp("127.0.0.1", 0);
    EXPECT_TRUE(lfd);
    if (!lfd) co_return p;
    const auto port = *io::local_port(lfd->get());
    tls::client_config cc;
    cc.ca_pem = certs->ca_pem();
    cc.sni_override = "duplex.test";
    auto server_side = [&]() -> io::task<void> {
      auto c = co_await io::accept(lfd->get()).timeout(5s);
      EXPECT_TRUE(c);
      if (!c) co_return;
      small_buffers(c->get());
      auto s = tls::stream::server(std::move(*c), sctx);
      EXPECT_TRUE(s);
      if (!s) co_return;
      auto hs = co_await (*s)->handshake(in(5s));
      EXPECT_TRUE(hs) << hs.error().message();
      p.server = std::move(*s);
    };
    auto client_side = [&]() -> io::task<void> {
      auto s = co_await tls::connect("127.0.0.1", port, cc, in(5s));
      EXPECT_TRUE(s) << s.error().message();
      if (!s) co_return;
      small_buffers((*s)->fd());
      p.client = std::move(*s);
    };
    co_await io::when_all(server_side(), client_side());
    co_return p;
  }
};

// Writes `total` bytes of pattern `seed`; every `key_update_every` bytes (0: never) asks the
// peer for a key update first, so the peer's read must answer while its own write sends.
io::task<result<void>> pump_out(tls::stream& s, std::size_t total, unsigned seed, std::size_t key_update_every = 0) {
  std::vector<std::byte> chunk(48 * 1024);
  std::size_t sent = 0, next_update = key_update_every;
  while (sent < total) {
    if (key_update_every && sent >= next_update) {
      EXPECT_EQ(SSL_key_update(s.native(), SSL_KEY_UPDATE_REQUESTED), 1);
      next_update += key_update_every;
    }
    const std::size_t n = std::min(chunk.size(), total - sent);
    for (std::size_t i = 0; i < n; ++i) chunk[i] = pattern(sent + i, seed);
    auto r = co_await s.write_all(std::span(chunk).first(n), in(20s));
    if (!r) co_return r;
    sent += n;
  }
  co_return ok();
}

// Reads exactly `total` bytes and checks them against pattern `seed`.
io::task<result<std::size_t>> pump_in(tls::stream& s, std::size_t total, unsigned seed) {
  std::vector<std::byte> buf(16 * 1024);
  std::size_t got = 0;
  while (got < total) {
    auto n = co_await s.read_some(buf, in(20s));
    if (!n) co_return n;
    if (*n == 0) break;
    for (std::size_t i = 0; i < *n; ++i)
      if (buf[i] != pattern(got + i, seed)) co_return errc::corrupt;
    got += *n;
  }
  co_return got;
}

// Both ends write `total` bytes and read the other's at once: the server writes pattern
// `seed`, the client pattern `seed + 1`, asking for a key update every `key_update_every`
// bytes (0: never). Expects every byte to arrive, in order.
io::task<void> pump_both_ways(tls::stream& server, tls::stream& client, std::size_t total, unsigned seed,
                              std::size_t key_update_every = 0) {
  auto [a, b, c, d] = co_await io::when_all(pump_out(server, total, seed), pump_in(server, total, seed + 1),
                                             pump_out(client, total, seed + 1, key_update_every),
                                             pump_in(client, total, seed));
  EXPECT_TRUE(a) << a.error().message();
  EXPECT_TRUE(c) << c.error().message();
  EXPECT_TRUE(b) << b.error().message();
  EXPECT_TRUE(d) << d.error().message();
  if (b) {
    EXPECT_EQ(*b, total);
  }
  if (d) {
    EXPECT_EQ(*d, total);
  }
}

}  // namespace

TEST_F(duplex_test, both_ends_read_and_write_at_once_with_full_socket_buffers) {
  // 4 MiB each way through 32 KiB socket buffers: every write blocks until the peer reads, so
  // a half-duplex stream (or a read that waited for the write's send) would never finish.
  constexpr std::size_t total = 4 << 20;
  io::ring r;
  auto sctx = tls13_context();
  auto run = [&]() -> io::task<void> {
    auto p = co_await connect_pair(sctx.get());
    if (!p.server || !p.client) co_return;
    co_await pump_both_ways(*p.server, *p.client, total, 1);
  };
  r.run(run());
}

TEST_F(duplex_test, key_updates_are_answered_while_a_write_is_sending) {
  // The client asks for a key update every 256 KiB while the server streams to it: the
  // server's read answers each one while its write's send of earlier records is in flight.
  // Bytes moved under that send would fail the client's decryption or the pattern check.
  constexpr std::size_t total = 4 << 20;
  io::ring r;
  auto sctx = tls13_context();
  auto run = [&]() -> io::task<void> {
    auto p = co_await connect_pair(sctx.get());
    if (!p.server || !p.client) co_return;
    // Counts the KeyUpdate messages the server sends.
    int answers = 0;
    SSL_set_msg_callback(p.server->native(), [](int write_p, int, int content_type, const void* msg, std::size_t len,
                                                SSL*, void* arg) {
      if (write_p && content_type == SSL3_RT_HANDSHAKE && len > 0 &&
          static_cast<const unsigned char*>(msg)[0] == SSL3_MT_KEY_UPDATE)
        ++*static_cast<int*>(arg);
    });
    SSL_set_msg_callback_arg(p.server->native(), &answers);
    co_await pump_both_ways(*p.server, *p.client, total, 3, 256 * 1024);
    // One more byte from the server carries an answer OpenSSL may still hold for its next
    // write. The client asked 15 times (at each 256 KiB but the first): 15 answers.
    const std::string one = "!";
    EXPECT_TRUE(co_await p.server->write_all(std::as_bytes(std::span(one)), in(5s)));
    std::vector<std::byte> last(8);
    auto got_last = co_await p.client->read_some(last, in(5s));
    EXPECT_TRUE(got_last && *got_last == 1);
    EXPECT_EQ(answers, 15);
  };
  r.run(run());
}

TEST_F(duplex_test, a_write_behind_the_reads_send_keeps_its_own_deadline) {
  // The server's read answers a key update while its socket is full (the client reads
  // nothing), so the read's send waits, bound by the read's 60 s deadline. A write that
  // arrives meanwhile takes that send over and fails at its own 300 ms deadline; the read
  // goes back to reading and returns the client's byte.
  io::ring r;
  auto sctx = tls13_context();
  auto run = [&]() -> io::task<void> {
    auto p = co_await connect_pair(sctx.get());
    if (!p.server || !p.client) co_return;
    std::vector<std::byte> big(4 << 20, std::byte{5});
    expect_error(co_await p.server->write_all(big, in(200ms)), errc::timed_out);  // fills the socket
    EXPECT_EQ(SSL_key_update(p.client->native(), SSL_KEY_UPDATE_REQUESTED), 1);
    const std::string x = "x";
    EXPECT_TRUE(co_await p.client->write_all(std::as_bytes(std::span(x)), in(5s)));

    std::vector<std::byte> buf(16);
    auto reader = [&]() -> io::task<result<std::size_t>> { co_return co_await p.server->read_some(buf, in(60s)); };
    auto writer = [&]() -> io::task<result<void>> {
      (void)co_await io::sleep_for(50ms);
      const auto t0 = io::clock::now();
      auto w = co_await p.server->write_all(std::as_bytes(std::span(x)), in(300ms));
      EXPECT_LT(io::clock::now() - t0, 10s);  // its own deadline, not the read's 60 s
      co_return w;
    };
    auto [rd, wr] = co_await io::when_all(reader(), writer());
    expect_error(wr, errc::timed_out);
    EXPECT_TRUE(rd) << rd.error().message();
    if (rd) {
      EXPECT_EQ(*rd, 1u);
    }
  };
  const auto t0 = io::clock::now();
  r.run(run());
  EXPECT_LT(io::clock::now() - t0, 30s);
}

TEST_F(duplex_test, a_second_read_or_write_is_busy_and_shutdown_runs_beside_a_read) {
  io::ring r;
  auto sctx = test_certs::server_context(*leaf);
  auto run = [&]() -> io::task<void> {
    auto p = co_await connect_pair(sctx.get());
    if (!p.server || !p.client) co_return;
    std::vector<std::byte> buf(64), buf2(64);
    // A read waits for data; a second read is refused, a write and then a shutdown run.
    auto reader = [&]() -> io::task<result<std::size_t>> { co_return co_await p.server->read_some(buf, in(5s)); };
    auto others = [&]() -> io::task<void> {
      auto second = co_await p.server->read_some(buf2, in(5s));
      expect_error(second, errc::busy);
      const std::string hello = "from the server";
      EXPECT_TRUE(co_await p.server->write_all(std::as_bytes(std::span(hello)), in(5s)));
      EXPECT_TRUE(co_await p.server->shutdown(in(5s)));
      // The client got the data and the close_notify, and answers with data of its own.
      std::vector<std::byte> cbuf(64);
      auto n = co_await p.client->read_some(cbuf, in(5s));
      EXPECT_TRUE(n && *n == hello.size());
      auto end = co_await p.client->read_some(cbuf, in(5s));
      EXPECT_TRUE(end && *end == 0);
      const std::string reply = "late reply";
      EXPECT_TRUE(co_await p.client->write_all(std::as_bytes(std::span(reply)), in(5s)));
    };
    auto [got, unused] = co_await io::when_all(reader(), others());
    (void)unused;
    EXPECT_TRUE(got) << got.error().message();
    if (got) {
      EXPECT_EQ(std::string(reinterpret_cast<const char*>(buf.data()), *got), "late reply");
    }

    // Two writes at once: the second is refused while the first is blocked on a full socket.
    std::vector<std::byte> big(2 << 20, std::byte{1});
    auto first_write = [&]() -> io::task<result<void>> { co_return co_await p.client->write_all(big, in(300ms)); };
    auto second_write = [&]() -> io::task<result<void>> {
      co_return co_await p.client->write_all(std::span(big).first(10), in(1s));
    };
    auto [w1, w2] = co_await io::when_all(first_write(), second_write());
    expect_error(w1, errc::timed_out);  // nobody reads 2 MiB: it times out
    expect_error(w2, errc::busy);
  };
  r.run(run());
}

TEST_F(duplex_test, operations_before_the_handshake_stay_exclusive) {
  io::ring r;
  auto sctx = test_certs::server_context(*leaf);
  auto run = [&]() -> io::task<void> {
    auto lfd = io::listen_tcp("127.0.0.1", 0);
    EXPECT_TRUE(lfd);
    if (!lfd) co_return;
    auto peer = co_await io::connect_tcp("127.0.0.1", *io::local_port(lfd->get()), 5s);
    auto c = co_await io::accept(lfd->get()).timeout(5s);
    EXPECT_TRUE(peer && c);
    if (!peer || !c) co_return;
    auto s = std::move(tls::stream::server(std::move(*c), sctx.get())).value();
    std::vector<std::byte> buf(16);
    // A read before the handshake drives it; a write meanwhile is refused.
    auto reader = [&]() -> io::task<result<std::size_t>> { co_return co_await s->read_some(buf, in(200ms)); };
    auto writer = [&]() -> io::task<result<void>> { co_return co_await s->write_all(buf, in(200ms)); };
    auto [rd, wr] = co_await io::when_all(reader(), writer());
    expect_error(rd, errc::timed_out);  // the silent peer never says hello
    expect_error(wr, errc::busy);
  };
  r.run(run());
}

TEST_F(duplex_test, a_pending_read_and_write_hang_then_cancel_and_unwind) {
  io::ring r;
  auto sctx = test_certs::server_context(*leaf);
  auto run = [&]() -> io::task<void> {
    auto p = co_await connect_pair(sctx.get());
    if (!p.server || !p.client) co_return;
    std::stop_source stop;
    p.server->set_stop_token(stop.get_token());
    std::vector<std::byte> buf(64);
    std::vector<std::byte> big(4 << 20, std::byte{7});
    // The client neither reads nor writes: the server's read and write both hang.
    auto reader = [&]() -> io::task<result<std::size_t>> { co_return co_await p.server->read_some(buf, in(60s)); };
    auto writer = [&]() -> io::task<result<void>> { co_return co_await p.server->write_all(big, in(60s)); };
    auto canceller = [&]() -> io::task<void> {
      (void)co_await io::sleep_for(100ms);
      stop.request_stop();
    };
    const auto t0 = io::clock::now();
    auto [rd, wr, unused] = co_await io::when_all(reader(), writer(), canceller());
    (void)unused;
    EXPECT_LT(io::clock::now() - t0, 10s);
    expect_error(rd, errc::cancelled);
    expect_error(wr, errc::cancelled);
  };
  r.run(run());
}
