#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <sys/socket.h>

#include "letsencrypt/io/net.hpp"
#include "letsencrypt/io/ops.hpp"
#include "letsencrypt/io/scope.hpp"

using namespace letsencrypt;
using namespace std::chrono_literals;

namespace {

io::task<result<void>> send_all(int fd, std::span<const std::byte> data) {
  while (!data.empty()) {
    LE_CO_TRY(n, co_await io::send(fd, data).timeout(5s));
    data = data.subspan(n);
  }
  co_return ok();
}

// Echoes until the peer closes.
io::task<void> echo_conn(io::unique_fd fd) {
  std::byte buf[4096];
  for (;;) {
    auto n = co_await io::recv(fd.get(), buf).timeout(5s);
    if (!n || *n == 0) break;
    if (!co_await send_all(fd.get(), std::span(buf, *n))) break;
  }
  co_await io::close(std::move(fd));
}

io::task<std::string> echo_client(std::uint16_t port, std::string msg) {
  auto fd = co_await io::connect_tcp("127.0.0.1", port, 5s);
  EXPECT_TRUE(fd) << fd.error().message();
  if (!fd) co_return "";
  auto s = co_await send_all(fd->get(), std::as_bytes(std::span(msg)));
  EXPECT_TRUE(s);
  ::shutdown(fd->get(), SHUT_WR);
  std::string got;
  std::byte buf[4096];
  for (;;) {
    auto n = co_await io::recv(fd->get(), buf).timeout(5s);
    if (!n || *n == 0) break;
    got.append(reinterpret_cast<const char*>(buf), *n);
  }
  co_return got;
}

// Waits on acc.next() while acc.stop() runs 10 ms later; next()'s result.
result<io::unique_fd> next_until_stopped(io::ring& r, io::multishot_acceptor& acc) {
  auto waiter = [&]() -> io::task<result<io::unique_fd>> { co_return co_await acc.next(); };
  auto stopper = [&]() -> io::task<void> {
    co_await io::sleep_for(10ms);
    co_await acc.stop();
  };
  auto [res, unused] = r.run(io::when_all(waiter(), stopper()));
  (void)unused;
  return std::move(res);
}

}  // namespace

TEST(net, echo_over_accept_recv_send) {
  io::ring r;
  auto lfd = io::listen_tcp("127.0.0.1", 0);
  ASSERT_TRUE(lfd);
  auto port = *io::local_port(lfd->get());
  auto server = [&]() -> io::task<void> {
    auto c = co_await io::accept(lfd->get()).timeout(5s);
    EXPECT_TRUE(c);
    if (c) co_await echo_conn(std::move(*c));
  };
  std::string big(1 << 20, 'x');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = char('a' + i % 26);
  auto [unused, got] = r.run(io::when_all(server(), echo_client(port, big)));
  (void)unused;
  EXPECT_EQ(got, big);
}

TEST(net, multishot_accept_serves_many_clients) {
  io::ring r;
  auto lfd = io::listen_tcp("127.0.0.1", 0);
  ASSERT_TRUE(lfd);
  auto port = *io::local_port(lfd->get());
  constexpr int clients = 200;
  io::multishot_acceptor acc(lfd->get());
  auto server = [&]() -> io::task<void> {
    io::task_scope conns;
    for (int i = 0; i < clients; ++i) {
      auto c = co_await acc.next();
      EXPECT_TRUE(c) << c.error().message();
      if (!c) break;
      conns.spawn(echo_conn(std::move(*c)));
    }
    co_await acc.stop();
    co_await conns.join();
  };
  auto all_clients = [&]() -> io::task<int> {
    std::vector<io::task<std::string>> ts;
    for (int i = 0; i < clients; ++i) ts.push_back(echo_client(port, "client " + std::to_string(i)));
    auto got = co_await io::when_all(std::move(ts));
    int good = 0;
    for (int i = 0; i < clients; ++i) good += got[i] == "client " + std::to_string(i);
    co_return good;
  };
  auto [unused, good] = r.run(io::when_all(server(), all_clients()));
  (void)unused;
  EXPECT_EQ(good, clients);
  EXPECT_GE(acc.accepted(), std::uint64_t(clients));
}

TEST(net, multishot_accept_stop_unwinds_pending_next) {
  io::ring r;
  auto lfd = io::listen_tcp("127.0.0.1", 0);
  ASSERT_TRUE(lfd);
  io::multishot_acceptor acc(lfd->get());
  auto res = next_until_stopped(r, acc);
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error(), errc::cancelled);
}

// Stopping ends the listening itself, not just our use of it: with a copy of the descriptor
// still open (as a forked child or a late-freed kernel request would hold), new connections
// are refused and the port can be bound again without SO_REUSEPORT.
TEST(net, multishot_accept_stop_frees_the_port_while_a_copy_is_open) {
  io::ring r;
  auto lfd = io::listen_tcp("127.0.0.1", 0);
  ASSERT_TRUE(lfd);
  const auto port = *io::local_port(lfd->get());
  io::unique_fd copy(::dup(lfd->get()));
  ASSERT_TRUE(copy);
  io::multishot_acceptor acc(lfd->get());
  (void)next_until_stopped(r, acc);
  lfd->reset();
  auto res = r.run(io::connect_tcp("127.0.0.1", port, 2s));
  ASSERT_FALSE(res) << "a stopped listener still completed a connection";
  EXPECT_EQ(res.error(), std::errc::connection_refused);
  auto again = io::listen_tcp("127.0.0.1", port);
  EXPECT_TRUE(again) << again.error().message();
}

TEST(net, connect_refused_is_an_error_not_a_hang) {
  io::ring r;
  // Bind a port, then close it, so nothing listens there.
  std::uint16_t port;
  {
    auto l = io::listen_tcp("127.0.0.1", 0);
    ASSERT_TRUE(l);
    port = *io::local_port(l->get());
  }
  auto res = r.run(io::connect_tcp("127.0.0.1", port, 2s));
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error(), std::errc::connection_refused);
}

TEST(net, resolve_localhost_off_the_ring_thread) {
  io::ring r;
  auto res = r.run(io::resolve("localhost", 443));
  ASSERT_TRUE(res) << res.error().message();
  EXPECT_FALSE(res->empty());
  auto bad = r.run(io::resolve("name.invalid", 443));
  EXPECT_FALSE(bad);
}

TEST(net, send_zc_delivers_large_buffers_and_completes_after_notification) {
  io::ring r;
  auto lfd = io::listen_tcp("127.0.0.1", 0);
  ASSERT_TRUE(lfd);
  auto port = *io::local_port(lfd->get());
  std::vector<std::byte> big(4 << 20);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = std::byte(i * 7);
  auto sender = [&]() -> io::task<bool> {
    auto fd = co_await io::connect_tcp("127.0.0.1", port, 5s);
    if (!fd) co_return false;
    std::span<const std::byte> rest(big);
    while (!rest.empty()) {
      // Resumes only after the kernel's notification: the buffer is free to reuse then.
      auto n = co_await io::send_zc(fd->get(), rest).timeout(5s);
      if (!n) {
        ADD_FAILURE() << n.error().message();
        co_return false;
      }
      rest = rest.subspan(*n);
    }
    co_return true;
  };
  auto receiver = [&]() -> io::task<std::vector<std::byte>> {
    std::vector<std::byte> got;
    auto c = co_await io::accept(lfd->get()).timeout(5s);
    if (!c) co_return got;
    std::vector<std::byte> buf(65536);
    while (got.size() < big.size()) {
      auto n = co_await io::recv(c->get(), buf).timeout(5s);
      if (!n || *n == 0) break;
      got.insert(got.end(), buf.begin(), buf.begin() + std::ptrdiff_t(*n));
    }
    co_return got;
  };
  auto [sent, got] = r.run(io::when_all(sender(), receiver()));
  EXPECT_TRUE(sent);
  EXPECT_TRUE(got == big);
}

TEST(net, listen_rejects_non_numeric_host) {
  auto l = io::listen_tcp("not-an-address", 0);
  ASSERT_FALSE(l);
  EXPECT_EQ(l.error(), errc::invalid_argument);
}

// A peer that half-closes (FIN) and then never reads: the socket polls "ready" (POLLRDHUP)
// while its window stays shut. send_some must end at its deadline, without spinning the
// ring and without leaving a send blocked in a kernel worker; recv_some sees the FIN as 0.
TEST(net, send_some_to_a_half_closed_peer_that_never_reads_ends_at_its_deadline) {
  io::ring r;
  auto lfd = io::listen_tcp("127.0.0.1", 0);
  ASSERT_TRUE(lfd);
  auto port = *io::local_port(lfd->get());
  auto run = [&]() -> io::task<void> {
    auto peer = co_await io::connect_tcp("127.0.0.1", port, 5s);
    auto c = co_await io::accept(lfd->get()).timeout(5s);
    EXPECT_TRUE(peer && c);
    if (!peer || !c) co_return;
    int sz = 16 * 1024;
    ::setsockopt(c->get(), SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    ::setsockopt(peer->get(), SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    ::shutdown(peer->get(), SHUT_WR);
    std::byte one[1];
    auto eof = co_await io::recv_some(c->get(), one, io::clock::now() + 5s);
    EXPECT_TRUE(eof && *eof == 0);

    std::vector<std::byte> chunk(64 * 1024, std::byte{'z'});
    const auto t0 = io::clock::now();
    const auto deadline = t0 + 300ms;
    std::size_t sent = 0;
    result<std::size_t> last = std::size_t{0};
    for (int i = 0; i < 10000 && last; ++i) {
      last = co_await io::send_some(c->get(), chunk, deadline);
      if (last) sent += *last;
    }
    EXPECT_FALSE(last);
    if (!last) {
      EXPECT_EQ(last.error(), errc::timed_out);
    }
    EXPECT_GT(sent, 0u);
    EXPECT_LT(io::clock::now() - t0, 5s);  // liveness, not speed: it ended
    // Stopping ends a wait the same way.
    std::stop_source stop;
    auto stopper = [&]() -> io::task<void> {
      (void)co_await io::sleep_for(50ms);
      stop.request_stop();
    };
    auto sender = [&]() -> io::task<result<std::size_t>> {
      co_return co_await io::send_some(c->get(), chunk, io::clock::now() + 60s, stop.get_token());
    };
    auto [stopped, unused] = co_await io::when_all(sender(), stopper());
    (void)unused;
    EXPECT_FALSE(stopped);
    if (!stopped) {
      EXPECT_EQ(stopped.error(), errc::cancelled);
    }
  };
  r.run(run());
}
