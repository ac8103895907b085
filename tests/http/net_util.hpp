// Loopback helpers for the HTTP tests: a test server on the current ring and raw sockets.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "http/server.hpp"
#include "http/stream.hpp"
#include "letsencrypt/io/net.hpp"
#include "letsencrypt/io/scope.hpp"

namespace http_test {

using namespace letsencrypt;
using namespace std::chrono_literals;

/// http::server behind a multishot acceptor on the calling ring; run() until shutdown().
struct test_server {
  explicit test_server(http::handler h, http::server_config c = {})
      : lfd(*io::listen_tcp("127.0.0.1", 0)), port(*io::local_port(lfd.get())), acc(lfd.get()),
        srv(std::move(h), c) {}

  io::unique_fd lfd;
  std::uint16_t port;
  io::multishot_acceptor acc;
  http::server srv;
  std::stop_source stop;
  int accepted = 0;

  io::task<void> run() {
    io::task_scope conns;
    for (;;) {
      auto c = co_await acc.next();
      if (!c) break;
      ++accepted;
      conns.spawn(serve_one(std::move(*c)));
    }
    stop.request_stop();
    co_await conns.join();
  }
  io::task<void> serve_one(io::unique_fd fd) {
    http::stoppable_tcp_stream s(std::move(fd), stop.get_token());
    co_await srv.serve(s, stop.get_token());
  }
  io::task<void> shutdown() { co_await acc.stop(); }
  std::string url(std::string_view path = "/") const {
    return "http://127.0.0.1:" + std::to_string(port) + std::string(path);
  }
};

inline io::task<result<void>> send_all(int fd, std::string_view data) {
  auto b = std::as_bytes(std::span(data.data(), data.size()));
  while (!b.empty()) {
    LE_CO_TRY(n, co_await io::send(fd, b).timeout(5s));
    b = b.subspan(n);
  }
  co_return ok();
}

/// Reads until the peer closes (or 5 s pass).
inline io::task<std::string> read_to_end(int fd) {
  std::string got;
  std::byte buf[4096];
  for (;;) {
    auto n = co_await io::recv(fd, buf).timeout(5s);
    if (!n || *n == 0) break;
    got.append(reinterpret_cast<const char*>(buf), *n);
  }
  co_return got;
}

/// Connects, sends `data`, and returns everything received until the server closes.
inline io::task<std::string> raw_exchange(std::uint16_t port, std::string data, bool half_close = false) {
  auto fd = co_await io::connect_tcp("127.0.0.1", port, 5s);
  EXPECT_TRUE(fd);
  if (!fd) co_return "";
  auto s = co_await send_all(fd->get(), data);
  EXPECT_TRUE(s);
  if (half_close) ::shutdown(fd->get(), SHUT_WR);
  co_return co_await read_to_end(fd->get());
}

inline int count_of(std::string_view hay, std::string_view needle) {
  int n = 0;
  for (auto p = hay.find(needle); p != std::string_view::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

}  // namespace http_test
