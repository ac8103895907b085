#include <gtest/gtest.h>

#include <cstdio>
#include <future>
#include <thread>

#include "http/client.hpp"
#include "http/handlers.hpp"
#include "http/parser.hpp"
#include "net_util.hpp"

using namespace http_test;

namespace {

http::request make_request(std::string method, std::string target, std::vector<http::header> headers) {
  http::request r;
  r.method = std::move(method);
  r.target = std::move(target);
  r.headers = std::move(headers);
  return r;
}

http::response call(const http::handler& h, const http::request& r) {
  io::ring ring;
  return ring.run(h(r));
}

const std::string token = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0";
const std::string key_auth = token + ".9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI";

bool allow_a_com(std::string_view h) { return h == "a.com" || h == "127.0.0.1" || h == "::1"; }

}  // namespace

TEST(http01, token_store_validates_and_answers) {
  http::acme_http01_tokens t;
  EXPECT_TRUE(t.set(token, key_auth));
  EXPECT_EQ(t.size(), 1u);
  EXPECT_EQ(t.set("bad token", "bad token.x").error(), errc::invalid_argument);
  EXPECT_EQ(t.set("a/b", "a/b.x").error(), errc::invalid_argument);
  EXPECT_EQ(t.set(std::string(129, 'a'), std::string(129, 'a') + ".x").error(), errc::invalid_argument);
  EXPECT_EQ(t.set("", ".x").error(), errc::invalid_argument);
  EXPECT_EQ(t.set("abc", "other.thumb").error(), errc::invalid_argument);
  EXPECT_EQ(t.set("abc", "abc.thumb\r\nX: y").error(), errc::invalid_argument);
  EXPECT_TRUE(t.set(std::string(128, 'a'), std::string(128, 'a') + ".x"));

  auto h = t.as_handler();
  auto ok = call(h, make_request("GET", "/.well-known/acme-challenge/" + token, {}));
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.body, key_auth);
  EXPECT_EQ(ok.header_value("content-type"), "text/plain");
  EXPECT_EQ(call(h, make_request("HEAD", "/.well-known/acme-challenge/" + token, {})).status, 200);
  EXPECT_EQ(call(h, make_request("GET", "/.well-known/acme-challenge/unknown", {})).status, 404);
  EXPECT_EQ(call(h, make_request("GET", "/.well-known/acme-challenge/", {})).status, 404);
  EXPECT_EQ(call(h, make_request("GET", "/.well-known/acme-challenge/" + token + "/x", {})).status, 404);
  EXPECT_EQ(call(h, make_request("GET", "/.well-known/acme-challenge/" + token + "?q", {})).status, 404);
  EXPECT_EQ(call(h, make_request("POST", "/.well-known/acme-challenge/" + token, {})).status, 405);
  EXPECT_EQ(call(h, make_request("GET", "/", {})).status, 404);
  t.remove(token);
  EXPECT_EQ(call(h, make_request("GET", "/.well-known/acme-challenge/" + token, {})).status, 404);
}

TEST(http01, token_store_is_thread_safe) {
  http::acme_http01_tokens t;
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&t, i] {
      for (int j = 0; j < 2000; ++j) {
        std::string tok = "t" + std::to_string(i) + "_" + std::to_string(j % 50);
        EXPECT_TRUE(t.set(tok, tok + ".k"));
        auto got = t.get(tok);
        if (got) {
          EXPECT_EQ(*got, tok + ".k");
        }
        if (j % 3 == 0) t.remove(tok);
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_LE(t.size(), 200u);
}

TEST(host_header, valid_and_invalid_values) {
  EXPECT_EQ(http::parse_host_header("Example.COM"), "example.com");
  EXPECT_EQ(http::parse_host_header("example.com:8080"), "example.com");
  EXPECT_EQ(http::parse_host_header("example.com."), "example.com");
  EXPECT_EQ(http::parse_host_header("127.0.0.1:80"), "127.0.0.1");
  EXPECT_EQ(http::parse_host_header("[::1]:80"), "::1");
  EXPECT_EQ(http::parse_host_header("[2001:DB8::1]"), "2001:db8::1");
  EXPECT_EQ(http::parse_host_header("xn--bcher-kva.example"), "xn--bcher-kva.example");
  for (const char* bad : {"", "exa mple.com", "a.com\r\nX: y", "a.com/evil", "evil.com@a.com", "a.com:port",
                          "a.com:99999", "a.com:", "-a.com", "a-.com", "a..com", ".a.com", "[::1", "[::1]x",
                          "[zz::1]", "::1", "a.com:80:80", "a_b.com", "bücher.example", "a.com#x", "a.com\\x"}) {
    EXPECT_EQ(http::parse_host_header(bad), std::nullopt) << bad;
  }
  EXPECT_EQ(http::parse_host_header(std::string(64, 'a') + ".com"), std::nullopt);
  EXPECT_TRUE(http::parse_host_header(std::string(63, 'a') + ".com"));
}

TEST(redirect, redirects_allowed_hosts_and_refuses_the_rest) {
  auto h = http::redirect_to_https(allow_a_com);
  auto r1 = call(h, make_request("GET", "/path?q=1", {{"Host", "A.com:80"}}));
  EXPECT_EQ(r1.status, 301);
  EXPECT_EQ(r1.header_value("location"), "https://a.com/path?q=1");
  auto r2 = call(h, make_request("POST", "/form", {{"Host", "a.com"}}));
  EXPECT_EQ(r2.status, 308);
  EXPECT_EQ(r2.header_value("location"), "https://a.com/form");
  auto r3 = call(http::redirect_to_https(allow_a_com, 8443), make_request("GET", "/", {{"Host", "[::1]:8080"}}));
  EXPECT_EQ(r3.status, 301);
  EXPECT_EQ(r3.header_value("location"), "https://[::1]:8443/");

  // Open-redirect attempts.
  auto evil = call(h, make_request("GET", "/", {{"Host", "evil.com"}}));
  EXPECT_EQ(evil.status, 404);
  EXPECT_EQ(evil.header_value("location"), "");
  auto slashes = call(h, make_request("GET", "//evil.com/x", {{"Host", "a.com"}}));
  EXPECT_EQ(slashes.status, 301);
  EXPECT_EQ(slashes.header_value("location"), "https://a.com//evil.com/x");  // still on a.com
  auto absolute = call(h, make_request("GET", "http://evil.com/", {{"Host", "a.com"}}));
  EXPECT_EQ(absolute.status, 400);
  auto at = call(h, make_request("GET", "@evil.com", {{"Host", "a.com"}}));
  EXPECT_EQ(at.status, 400);
  auto star = call(h, make_request("OPTIONS", "*", {{"Host", "a.com"}}));
  EXPECT_EQ(star.status, 400);
  auto crlf = call(h, make_request("GET", "/a\r\nSet-Cookie: x=1", {{"Host", "a.com"}}));
  EXPECT_EQ(crlf.status, 400);
  auto high = call(h, make_request("GET", "/\xc3\xa9", {{"Host", "a.com"}}));
  EXPECT_EQ(high.status, 400);
  auto no_host = call(h, make_request("GET", "/", {}));
  EXPECT_EQ(no_host.status, 400);
  auto two_hosts = call(h, make_request("GET", "/", {{"Host", "a.com"}, {"Host", "evil.com"}}));
  EXPECT_EQ(two_hosts.status, 400);
  auto injected = call(h, make_request("GET", "/", {{"Host", "a.com\r\nX: y"}}));
  EXPECT_EQ(injected.status, 400);
  auto userinfo = call(h, make_request("GET", "/", {{"Host", "evil.com@a.com"}}));
  EXPECT_EQ(userinfo.status, 400);
  auto no_policy = call(http::redirect_to_https(nullptr), make_request("GET", "/", {{"Host", "a.com"}}));
  EXPECT_EQ(no_policy.status, 404);
}

// An HTTP/1.1 request whose only Host is in a chunked body's trailer has no Host header: 400,
// not a redirect chosen by the trailer.
TEST(redirect, a_host_in_a_trailer_is_not_a_host_header) {
  http::request_parser p;
  const std::string wire = "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nHost: a.com\r\n\r\n";
  auto used = p.feed(wire);
  ASSERT_TRUE(used) << used.error().message();
  ASSERT_TRUE(p.done());
  auto r = call(http::redirect_to_https(allow_a_com), p.take());
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.header_value("location"), "");
}

TEST(redirect, host_header_with_crlf_cannot_reach_the_handler) {
  // On the wire a CR LF inside Host ends the header: "X: y" becomes a header of its own, so
  // the Host the handler sees is plain "a.com".
  io::ring r;
  http::acme_http01_tokens tokens;
  test_server ts(http::acme_redirect_handler(tokens, allow_a_com));
  std::string got;
  r.run(io::when_all(ts.run(), [&]() -> io::task<void> {
    got = co_await raw_exchange(ts.port, std::string("GET /x HTTP/1.1\r\nHost: a.com\r\nX: y\r\nConnection: close\r\n\r\n"));
    co_await ts.shutdown();
  }()));
  EXPECT_TRUE(got.starts_with("HTTP/1.1 301 ")) << got;
  EXPECT_NE(got.find("\r\nLocation: https://a.com/x\r\n"), std::string::npos) << got;
  EXPECT_EQ(got.find("\r\nX: y"), std::string::npos) << got;
}

TEST(redirect, composition_answers_http01_first) {
  http::acme_http01_tokens tokens;
  ASSERT_TRUE(tokens.set(token, key_auth));
  auto h = http::acme_redirect_handler(tokens, allow_a_com, 443);
  // The CA validates by a host that need not be in the redirect policy.
  auto c = call(h, make_request("GET", "/.well-known/acme-challenge/" + token, {{"Host", "new.example"}}));
  EXPECT_EQ(c.status, 200);
  EXPECT_EQ(c.body, key_auth);
  auto unknown = call(h, make_request("GET", "/.well-known/acme-challenge/nope", {{"Host", "a.com"}}));
  EXPECT_EQ(unknown.status, 404);
  auto other = call(h, make_request("GET", "/index.html", {{"Host", "a.com"}}));
  EXPECT_EQ(other.status, 301);
  EXPECT_EQ(other.header_value("location"), "https://a.com/index.html");
}

// ---- serve_http on a shard group, driven by curl ----

namespace {

std::string run_curl(const std::string& args) {
  std::string cmd = "curl -sS -i --max-time 5 " + args + " 2>&1";
  std::string out;
  FILE* f = ::popen(cmd.c_str(), "r");
  if (!f) return "popen failed";
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  ::pclose(f);
  return out;
}

}  // namespace

TEST(serve_http, curl_gets_http01_answers_and_redirects) {
  io::shard_group g(2);
  http::acme_http01_tokens tokens;
  ASSERT_TRUE(tokens.set(token, key_auth));
  auto svc = http::serve_http(g, "127.0.0.1", 0, http::acme_redirect_handler(tokens, allow_a_com, 8443));
  ASSERT_TRUE(svc) << svc.error().message();
  const std::string base = "http://127.0.0.1:" + std::to_string((*svc)->port());
  ASSERT_NE((*svc)->port(), 0);

  auto challenge = run_curl(base + "/.well-known/acme-challenge/" + token);
  EXPECT_TRUE(challenge.starts_with("HTTP/1.1 200 OK")) << challenge;
  EXPECT_TRUE(challenge.ends_with("\r\n\r\n" + key_auth)) << challenge;

  auto redirect = run_curl("-H 'Host: a.com' '" + base + "/some/page?x=1'");
  EXPECT_TRUE(redirect.starts_with("HTTP/1.1 301 Moved Permanently")) << redirect;
  EXPECT_NE(redirect.find("Location: https://a.com:8443/some/page?x=1\r\n"), std::string::npos) << redirect;

  auto evil = run_curl("-H 'Host: evil.com' " + base + "/");
  EXPECT_TRUE(evil.starts_with("HTTP/1.1 404 ")) << evil;
  EXPECT_EQ(evil.find("Location:"), std::string::npos) << evil;

  // Several requests on one curl connection (keep-alive), and many connections.
  auto two = run_curl(base + "/.well-known/acme-challenge/" + token + " " + base + "/.well-known/acme-challenge/x");
  EXPECT_EQ(count_of(two, "HTTP/1.1 "), 2) << two;
  for (int i = 0; i < 10; ++i) {
    auto again = run_curl(base + "/.well-known/acme-challenge/" + token);
    EXPECT_TRUE(again.starts_with("HTTP/1.1 200 OK")) << again;
  }
  EXPECT_GE((*svc)->connections(), 12u);
  (*svc)->stop();
  auto refused = run_curl(base + "/");
  EXPECT_NE(refused.find("Failed to connect"), std::string::npos) << refused;
}

TEST(serve_http, stop_unwinds_open_connections) {
  io::shard_group g(2);
  http::server_config cfg;
  cfg.idle_timeout = 60s;
  cfg.request_timeout = 60s;
  auto svc = http::serve_http(g, "127.0.0.1", 0, http::redirect_to_https(allow_a_com), cfg);
  ASSERT_TRUE(svc);
  const auto port = (*svc)->port();
  // Clients on their own ring: two idle connections and one half-sent request.
  std::promise<void> connected;
  std::thread client([&] {
    io::ring r;
    auto conn = [&](std::string data) -> io::task<std::string> {
      auto fd = co_await io::connect_tcp("127.0.0.1", port, 5s);
      EXPECT_TRUE(fd);
      if (!fd) co_return "";
      (void)co_await send_all(fd->get(), data);
      co_return co_await read_to_end(fd->get());
    };
    std::vector<io::task<std::string>> ts;
    ts.push_back(conn(""));
    ts.push_back(conn(""));
    ts.push_back(conn(std::string("GET / HTTP/1.1\r\nHo")));
    auto all = [&]() -> io::task<std::vector<std::string>> {
      auto t = io::when_all(std::move(ts));
      co_return co_await std::move(t);
    };
    auto signal = [&]() -> io::task<void> {
      (void)co_await io::sleep_for(100ms);
      connected.set_value();
    };
    auto [got, unused] = r.run(io::when_all(all(), signal()));
    (void)unused;
    for (auto& s : got) EXPECT_EQ(s, "");
  });
  connected.get_future().wait();
  // The shard counts a connection when it takes it from the accept queue, which a loaded
  // machine may delay past the client's 100 ms.
  for (auto until = std::chrono::steady_clock::now() + 10s;
       (*svc)->connections() < 3 && std::chrono::steady_clock::now() < until;)
    std::this_thread::sleep_for(5ms);
  auto t0 = std::chrono::steady_clock::now();
  (*svc)->stop();  // must not wait for the 60 s timeouts
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
  EXPECT_EQ((*svc)->connections(), 3u);
  client.join();
}

TEST(serve_http, stopping_the_group_first_also_unwinds) {
  auto g = std::make_unique<io::shard_group>(2);
  auto svc = http::serve_http(*g, "127.0.0.1", 0, http::redirect_to_https(allow_a_com));
  ASSERT_TRUE(svc);
  g->stop();
  (*svc)->stop();  // returns at once: the accept loops already ended
  SUCCEED();
}

TEST(serve_http, port_in_use_is_an_error) {
  io::shard_group g(1);
  auto a = http::serve_http(g, "127.0.0.1", 0, http::redirect_to_https(allow_a_com));
  ASSERT_TRUE(a);
  auto b = http::serve_http(g, "127.0.0.1", (*a)->port(), http::redirect_to_https(allow_a_com));
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error(), std::error_code(EADDRINUSE, std::system_category()));
}
