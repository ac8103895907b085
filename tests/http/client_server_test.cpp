#include <gtest/gtest.h>

#include "http/client.hpp"
#include "net_util.hpp"

using namespace http_test;
using letsencrypt::http::header;

namespace {

// Echoes the request back as a description, so tests see what reached the server.
io::task<http::response> echo(const http::request& r) {
  http::response resp;
  resp.status = r.target == "/missing" ? 404 : 200;
  resp.headers.push_back({"Content-Type", "text/plain"});
  resp.headers.push_back({"Link", "<a>;rel=\"one\""});
  resp.headers.push_back({"Link", "<b>;rel=\"two\""});
  resp.body = r.method + " " + r.target + " host=" + std::string(r.header_value("host")) +
              " ua=" + std::string(r.header_value("user-agent")) + " cl=" +
              std::string(r.header_value("content-length")) + " body=" + r.body;
  co_return resp;
}

http::limits short_limits(io::duration timeout = 2s) {
  http::limits l;
  l.timeout = timeout;
  return l;
}

}  // namespace

TEST(client_server, get_post_head_and_keep_alive_reuse) {
  io::ring r;
  test_server ts(echo);
  http::client c(http::plain_tcp_connector(), short_limits());
  r.run(io::when_all(ts.run(), [&]() -> io::task<void> {
    auto a = co_await c.fetch(std::string("GET"), ts.url("/one?x=1"));
    EXPECT_TRUE(a) << a.error().message();
    if (a) {
      EXPECT_EQ(a->status, 200);
      EXPECT_EQ(a->body, "GET /one?x=1 host=127.0.0.1:" + std::to_string(ts.port) + " ua=letsencrypt-cpp/0.1 cl= body=");
      EXPECT_EQ(a->header_values("link").size(), 2u);
      EXPECT_EQ(a->header_value("content-type"), "text/plain");
    }
    std::vector<header> jose{{"Content-Type", "application/jose+json"}};
    auto b = co_await c.fetch(std::string("POST"), ts.url("/two"), jose, std::string("{\"a\":1}"));
    EXPECT_TRUE(b);
    if (b) {
      EXPECT_EQ(b->body, "POST /two host=127.0.0.1:" + std::to_string(ts.port) + " ua=letsencrypt-cpp/0.1 cl=7 body={\"a\":1}");
    }
    auto h = co_await c.fetch(std::string("HEAD"), ts.url("/three"));
    EXPECT_TRUE(h);
    if (h) {
      EXPECT_EQ(h->status, 200);
      EXPECT_TRUE(h->body.empty());
      EXPECT_NE(h->header_value("content-length"), "0");
    }
    auto m = co_await c.fetch(std::string("GET"), ts.url("/missing"));
    EXPECT_TRUE(m);
    if (m) {
      EXPECT_EQ(m->status, 404);
    }
    auto e = co_await c.fetch(std::string("POST"), ts.url("/empty"));
    EXPECT_TRUE(e);
    if (e) {
      EXPECT_NE(e->body.find("cl=0 body="), std::string::npos);
    }
    co_await ts.shutdown();
  }()));
  EXPECT_EQ(c.connections_opened(), 1u);
  EXPECT_EQ(ts.accepted, 1);
  EXPECT_EQ(ts.srv.requests_served(), 5u);
}

TEST(client_server, connection_close_from_either_side_opens_new_connections) {
  io::ring r;
  test_server ts([](const http::request& req) -> io::task<http::response> {
    http::response resp;
    resp.status = 200;
    resp.body = "ok";
    resp.keep_alive = req.target != "/close";
    co_return resp;
  });
  http::client c(http::plain_tcp_connector(), short_limits());
  r.run(io::when_all(ts.run(), [&]() -> io::task<void> {
    for (int i = 0; i < 3; ++i) {
      auto a = co_await c.fetch(std::string("GET"), ts.url("/close"));
      EXPECT_TRUE(a);
      if (a) {
        EXPECT_EQ(a->body, "ok");
        EXPECT_EQ(a->header_value("connection"), "close");
        EXPECT_FALSE(a->keep_alive);
      }
    }
    // The client asking for close is honoured too.
    std::vector<header> close{{"Connection", "close"}};
    auto b = co_await c.fetch(std::string("GET"), ts.url("/"), close);
    EXPECT_TRUE(b);
    if (b) {
      EXPECT_EQ(b->header_value("connection"), "close");
    }
    auto d = co_await c.fetch(std::string("GET"), ts.url("/"));
    EXPECT_TRUE(d);
    auto e = co_await c.fetch(std::string("GET"), ts.url("/"));  // reuses d's connection
    EXPECT_TRUE(e);
    co_await ts.shutdown();
  }()));
  EXPECT_EQ(c.connections_opened(), 5u);
  EXPECT_EQ(ts.accepted, 5);
}

TEST(client_server, server_closes_idle_connection_and_client_retries_once) {
  io::ring r;
  http::server_config cfg;
  cfg.idle_timeout = 50ms;
  test_server ts(echo, cfg);
  http::client c(http::plain_tcp_connector(), short_limits());
  r.run(io::when_all(ts.run(), [&]() -> io::task<void> {
    auto a = co_await c.fetch(std::string("GET"), ts.url("/a"));
    EXPECT_TRUE(a);
    (void)co_await io::sleep_for(300ms);  // the server's idle timeout closes the connection
    auto b = co_await c.fetch(std::string("GET"), ts.url("/b"));
    EXPECT_TRUE(b) << b.error().message();
    if (b) {
      EXPECT_EQ(b->body.substr(0, 6), "GET /b");
    }
    co_await ts.shutdown();
  }()));
  EXPECT_EQ(c.connections_opened(), 2u);
  EXPECT_EQ(ts.accepted, 2);
}

TEST(client_server, pipelined_requests_answered_in_order) {
  io::ring r;
  test_server ts(echo);
  std::string got;
  r.run(io::when_all(ts.run(), [&]() -> io::task<void> {
    got = co_await raw_exchange(ts.port,
                                "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"
                                "POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
                                "HEAD /3 HTTP/1.1\r\nHost: x\r\n\r\n"
                                "GET /4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    co_await ts.shutdown();
  }()));
  EXPECT_EQ(count_of(got, "HTTP/1.1 200 OK\r\n"), 4) << got;
  auto p1 = got.find("GET /1"), p2 = got.find("POST /2"), p4 = got.find("GET /4");
  EXPECT_LT(p1, p2);
  EXPECT_LT(p2, p4);
  EXPECT_EQ(got.find("HEAD /3"), std::string::npos);  // HEAD gets no body
  EXPECT_EQ(count_of(got, "Connection: close"), 1);
}

TEST(client_server, server_rejects_bad_requests_with_status_and_close) {
  io::ring r;
  http::server_config cfg;
  cfg.lim.max_header_bytes = 512;
  cfg.lim.max_body_bytes = 64;
  test_server ts(echo, cfg);
  std::string bad, big_header, big_body, many;
  r.run(io::when_all(ts.run(), [&]() -> io::task<void> {
    bad = co_await raw_exchange(ts.port, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n");
    big_header = co_await raw_exchange(ts.port, "GET / HTTP/1.1\r\nX: " + std::string(1000, 'a') + "\r\n\r\n");
    big_body = co_await raw_exchange(ts.port, "POST / HTTP/1.1\r\nContent-Length: 1000\r\n\r\n");
    many = co_await raw_exchange(ts.port, "GET / HTTP/1.1\r\nA: 1\r\n\r\nGET / HT\x01TP/1.1\r\n\r\n");
    co_await ts.shutdown();
  }()));
  EXPECT_TRUE(bad.starts_with("HTTP/1.1 400 Bad Request\r\n")) << bad;
  EXPECT_NE(bad.find("Connection: close"), std::string::npos);
  EXPECT_TRUE(big_header.starts_with("HTTP/1.1 431 ")) << big_header;
  EXPECT_TRUE(big_body.starts_with("HTTP/1.1 413 ")) << big_body;
  // The good request is answered, then the malformed one gets 400.
  EXPECT_TRUE(many.starts_with("HTTP/1.1 200 OK\r\n")) << many;
  EXPECT_NE(many.find("HTTP/1.1 400 Bad Request"), std::string::npos) << many;
}

TEST(client_server, server_times_out_slow_requests_and_idle_connections) {
  io::ring r;
  http::server_config cfg;
  cfg.request_timeout = 100ms;
  cfg.idle_timeout = 100ms;
  test_server ts(echo, cfg);
  std::string slow, idle;
  r.run(io::when_all(ts.run(), [&]() -> io::task<void> {
    // A partial request that never finishes gets 408, then the connection ends.
    slow = co_await raw_exchange(ts.port, "GET / HTTP/1.1\r\nHost: x\r\n");
    // An idle connection is closed without a response.
    idle = co_await raw_exchange(ts.port, "");
    co_await ts.shutdown();
  }()));
  EXPECT_TRUE(slow.starts_with("HTTP/1.1 408 ")) << slow;
  EXPECT_EQ(idle, "");
}

// An HTTP/1.0 client keeps its connection only when the response says keep-alive: one that
// asked for it is told, one that did not is told the connection closes.
TEST(client_server, http10_keep_alive_is_acknowledged) {
  io::ring r;
  http::server_config cfg;
  cfg.idle_timeout = 200ms;
  test_server ts(echo, cfg);
  std::string kept, closed;
  r.run(io::when_all(ts.run(), [&]() -> io::task<void> {
    kept = co_await raw_exchange(ts.port, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    closed = co_await raw_exchange(ts.port, "GET / HTTP/1.0\r\n\r\n");
    co_await ts.shutdown();
  }()));
  EXPECT_NE(kept.find("\r\nConnection: keep-alive\r\n"), std::string::npos) << kept;
  EXPECT_NE(closed.find("\r\nConnection: close\r\n"), std::string::npos) << closed;
}

TEST(client_server, handler_exception_becomes_500) {
  io::ring r;
  test_server ts([](const http::request&) -> io::task<http::response> {
    throw std::runtime_error("boom");
    co_return http::response{};
  });
  http::client c(http::plain_tcp_connector(), short_limits());
  r.run(io::when_all(ts.run(), [&]() -> io::task<void> {
    auto a = co_await c.fetch(std::string("GET"), ts.url("/"));
    EXPECT_TRUE(a);
    if (a) {
      EXPECT_EQ(a->status, 500);
    }
    co_await ts.shutdown();
  }()));
}

TEST(client_server, handler_headers_cannot_inject_lines_or_framing) {
  io::ring r;
  test_server ts([](const http::request&) -> io::task<http::response> {
    http::response resp;
    resp.status = 200;
    resp.headers.push_back({"X-Bad", "a\r\nSet-Cookie: evil=1"});
    resp.headers.push_back({"Bad Name", "x"});
    resp.headers.push_back({"Content-Length", "999"});
    resp.headers.push_back({"X-Good", "fine"});
    resp.body = "body";
    co_return resp;
  });
  http::client c(http::plain_tcp_connector(), short_limits());
  r.run(io::when_all(ts.run(), [&]() -> io::task<void> {
    auto a = co_await c.fetch(std::string("GET"), ts.url("/"));
    EXPECT_TRUE(a) << a.error().message();
    if (a) {
      EXPECT_EQ(a->body, "body");
      EXPECT_EQ(a->header_value("set-cookie"), "");
      EXPECT_EQ(a->header_value("x-bad"), "");
      EXPECT_EQ(a->header_value("x-good"), "fine");
      EXPECT_EQ(a->header_value("content-length"), "4");
    }
    co_await ts.shutdown();
  }()));
}

TEST(client, rejects_bad_arguments_without_connecting) {
  io::ring r;
  int connects = 0;
  http::client c([&](const http::url&, io::clock::time_point) -> io::task<result<std::unique_ptr<io::byte_stream>>> {
    ++connects;
    co_return unexpected(make_error_code(errc::unsupported));
  });
  using bad_args = std::vector<std::tuple<std::string, std::string, std::vector<header>, std::string>>;
  const bad_args cases{
             {"GET", "ftp://x/", {}, ""},
             {"GET", "not a url", {}, ""},
             {"GE T", "http://x/", {}, ""},
             {"GET", "http://x/", {}, "body on GET"},
             {"HEAD", "http://x/", {}, "body on HEAD"},
             {"GET", "http://x/", {{"X", "a\r\nInjected: 1"}}, ""},
             {"GET", "http://x/", {{"Bad:Name", "v"}}, ""},
  };
  r.run([&]() -> io::task<void> {
    for (const auto& [m, u, h, b] : cases) {
      auto res = co_await c.fetch(m, u, h, b);
      EXPECT_FALSE(res) << m << " " << u;
      if (!res) {
        EXPECT_EQ(res.error(), errc::invalid_argument) << m << " " << u;
      }
    }
    auto https = co_await c.fetch(std::string("GET"), "https://example.com/");
    EXPECT_FALSE(https);
    if (!https) {
      EXPECT_EQ(https.error(), errc::unsupported);
    }
  }());
  EXPECT_EQ(connects, 1);
}

TEST(client, plain_connector_refuses_https) {
  io::ring r;
  http::client c(http::plain_tcp_connector(), short_limits());
  auto res = r.run(c.fetch(std::string("GET"), "https://127.0.0.1:1/"));
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error(), errc::unsupported);
}

TEST(client, connection_refused_is_an_error) {
  io::ring r;
  auto lfd = io::listen_tcp("127.0.0.1", 0);
  ASSERT_TRUE(lfd);
  auto port = *io::local_port(lfd->get());
  lfd->reset();  // nobody listens there any more
  http::client c(http::plain_tcp_connector(), short_limits());
  auto res = r.run(c.fetch(std::string("GET"), "http://127.0.0.1:" + std::to_string(port) + "/"));
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error(), std::error_code(ECONNREFUSED, std::system_category()));
}

// ---- hostile servers ----

namespace {

// Accepts one connection, reads the request head, then runs `act` on the socket.
template <class Act>
io::task<void> one_shot_server(int lfd, Act act) {
  auto c = co_await io::accept(lfd).timeout(5s);
  EXPECT_TRUE(c);
  if (!c) co_return;
  std::byte buf[4096];
  (void)co_await io::recv(c->get(), buf).timeout(5s);
  co_await act(c->get());
}

result<http::response> against(std::function<io::task<void>(int)> act, http::limits l = short_limits(),
                               std::string method = "GET") {
  io::ring r;
  auto lfd = io::listen_tcp("127.0.0.1", 0);
  EXPECT_TRUE(lfd);
  auto port = *io::local_port(lfd->get());
  http::client c(http::plain_tcp_connector(), l);
  auto [unused, res] = r.run(io::when_all(
      one_shot_server(lfd->get(), act), c.fetch(method, "http://127.0.0.1:" + std::to_string(port) + "/")));
  (void)unused;
  return std::move(res);
}

}  // namespace

TEST(hostile_server, huge_body_is_message_too_large) {
  http::limits l = short_limits();
  l.max_body_bytes = 64 * 1024;
  auto declared = against([](int fd) -> io::task<void> {
    (void)co_await send_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n");
  }, l);
  ASSERT_FALSE(declared);
  EXPECT_EQ(declared.error(), errc::message_too_large);
  auto streamed = against([](int fd) -> io::task<void> {
    (void)co_await send_all(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    std::string chunk = "1000\r\n" + std::string(0x1000, 'x') + "\r\n";
    for (int i = 0; i < 40; ++i)
      if (!co_await send_all(fd, chunk)) break;
  }, l);
  ASSERT_FALSE(streamed);
  EXPECT_EQ(streamed.error(), errc::message_too_large);
  auto headers = against([](int fd) -> io::task<void> {
    (void)co_await send_all(fd, "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < 2000; ++i)
      if (!co_await send_all(fd, "X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n")) break;
  }, l);
  ASSERT_FALSE(headers);
  EXPECT_EQ(headers.error(), errc::message_too_large);
}

TEST(hostile_server, garbage_is_protocol_error) {
  auto res = against([](int fd) -> io::task<void> {
    (void)co_await send_all(fd, "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n\r\n");
  });
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error(), errc::protocol_error);
  auto upgrade = against([](int fd) -> io::task<void> {
    (void)co_await send_all(fd, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n");
  });
  ASSERT_FALSE(upgrade);
  EXPECT_EQ(upgrade.error(), errc::protocol_error);
}

TEST(hostile_server, slow_server_hits_the_deadline) {
  auto res = against([](int fd) -> io::task<void> {
    // Trickles a header byte by byte, far slower than the client's deadline allows.
    for (char ch : std::string("HTTP/1.1 200 OK\r\nX: y\r\n\r\n")) {
      if (!co_await send_all(fd, std::string(1, ch))) break;
      if (!co_await io::sleep_for(100ms)) break;
    }
  }, short_limits(300ms));
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error(), errc::timed_out);
}

TEST(hostile_server, close_mid_body_is_closed) {
  auto res = against([](int fd) -> io::task<void> {
    (void)co_await send_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly a part");
  });
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error(), errc::closed);
  // A fresh connection closed before any byte is not retried.
  auto none = against([](int) -> io::task<void> { co_return; });
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error(), errc::closed);
}

TEST(hostile_server, interim_responses_are_skipped) {
  auto res = against([](int fd) -> io::task<void> {
    (void)co_await send_all(fd, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  });
  ASSERT_TRUE(res) << res.error().message();
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, "ok");
}

TEST(hostile_server, head_response_body_is_ignored_and_eof_body_is_read) {
  auto head = against([](int fd) -> io::task<void> {
    (void)co_await send_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n");
  }, short_limits(), "HEAD");
  ASSERT_TRUE(head) << head.error().message();
  EXPECT_EQ(head->header_value("content-length"), "5000");
  auto eof = against([](int fd) -> io::task<void> {
    (void)co_await send_all(fd, "HTTP/1.0 200 OK\r\n\r\nread until close");
  });
  ASSERT_TRUE(eof) << eof.error().message();
  EXPECT_EQ(eof->body, "read until close");
}

// ---- hang, cancel, must unwind ----

TEST(client_cancel, fetch_against_silent_server_unwinds_on_stop_and_on_deadline) {
  io::ring r;
  auto lfd = io::listen_tcp("127.0.0.1", 0);
  ASSERT_TRUE(lfd);
  auto port = *io::local_port(lfd->get());
  const std::string u = "http://127.0.0.1:" + std::to_string(port) + "/";
  // The kernel completes the handshakes from the backlog; nobody ever reads or answers.
  http::client c(http::plain_tcp_connector(), short_limits(60s));
  std::stop_source stop;
  auto started = io::clock::now();
  auto [res, unused] = r.run(io::when_all(c.fetch(std::string("GET"), u, {}, {}, stop.get_token()), [&]() -> io::task<void> {
    (void)co_await io::sleep_for(50ms);
    stop.request_stop();
  }()));
  (void)unused;
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error(), errc::cancelled);
  EXPECT_LT(io::clock::now() - started, 30s);  // unwound by the stop, not the 60 s deadline

  http::client d(http::plain_tcp_connector(), short_limits(100ms));
  auto res2 = r.run(d.fetch(std::string("GET"), u));
  ASSERT_FALSE(res2);
  EXPECT_EQ(res2.error(), errc::timed_out);

  // Already stopped: nothing is sent.
  auto res3 = r.run(c.fetch(std::string("GET"), u, {}, {}, stop.get_token()));
  ASSERT_FALSE(res3);
  EXPECT_EQ(res3.error(), errc::cancelled);
}

TEST(server_cancel, stop_unwinds_connections_blocked_in_reads) {
  io::ring r;
  http::server_config cfg;
  cfg.idle_timeout = 60s;
  cfg.request_timeout = 60s;
  test_server ts(echo, cfg);
  std::string partial, idle;
  r.run(io::when_all(ts.run(),
                     [&]() -> io::task<void> { partial = co_await raw_exchange(ts.port, "GET / HTTP/1.1\r\n"); }(),
                     [&]() -> io::task<void> { idle = co_await raw_exchange(ts.port, ""); }(),
                     [&]() -> io::task<void> {
                       while (ts.accepted < 2) (void)co_await io::sleep_for(5ms);
                       co_await ts.shutdown();
                     }()));
  EXPECT_EQ(ts.accepted, 2);
  EXPECT_EQ(partial, "");
  EXPECT_EQ(idle, "");
}
