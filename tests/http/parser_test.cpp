#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "http/parser.hpp"
#include "http/url.hpp"

using namespace letsencrypt;
using namespace letsencrypt::http;

namespace {

// Feeds `wire` in pieces of at most `step` bytes and collects every complete request.
result<std::vector<request>> parse_requests(std::string_view wire, std::size_t step, const limits& l = {}) {
  request_parser p(l);
  std::vector<request> out;
  std::size_t pos = 0;
  while (pos < wire.size()) {
    std::string_view chunk = wire.substr(pos, std::min(step, wire.size() - pos));
    while (!chunk.empty()) {
      auto used = p.feed(chunk);
      if (!used) return used.error();
      chunk.remove_prefix(*used);
      pos += *used;
      if (p.done()) out.push_back(p.take());
    }
  }
  if (p.started()) return make_error_code(errc::closed);
  return out;
}

result<response> parse_response(std::string_view wire, std::size_t step, bool head = false, const limits& l = {}) {
  response_parser p(l);
  p.expect_no_body(head);
  std::size_t pos = 0;
  while (pos < wire.size() && !p.done()) {
    std::string_view chunk = wire.substr(pos, std::min(step, wire.size() - pos));
    auto used = p.feed(chunk);
    if (!used) return used.error();
    pos += *used;
  }
  if (!p.done()) {
    auto r = p.finish();
    if (!r) return r.error();
  }
  return p.take();
}

const std::string acme_response =
    "HTTP/1.1 201 Created\r\n"
    "Server: nginx\r\n"
    "Content-Type: application/json\r\n"
    "Link: <https://acme.example/dir>;rel=\"index\"\r\n"
    "Link: <https://acme.example/acct/1/orders>;rel=\"up\"\r\n"
    "Location: https://acme.example/order/42\r\n"
    "Replay-Nonce: oFvnlFP1wIhRlYS2jTaXbA\r\n"
    "Content-Length: 28\r\n"
    "\r\n"
    "{\"status\": \"pending\", \"x\":1}";

}  // namespace

TEST(parser, simple_get_request) {
  auto rs = parse_requests("GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nX-Thing:  v  \r\n\r\n", 1000);
  ASSERT_TRUE(rs) << rs.error().message();
  ASSERT_EQ(rs->size(), 1u);
  const auto& r = (*rs)[0];
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.target, "/a?b=c");
  EXPECT_EQ(r.header_value("HOST"), "example.com");
  EXPECT_EQ(r.header_value("x-thing"), "v");
  EXPECT_EQ(r.header_value("absent"), "");
  EXPECT_TRUE(r.body.empty());
  EXPECT_TRUE(r.keep_alive);
}

TEST(parser, keep_alive_follows_version_and_connection_header) {
  auto a = parse_requests("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 100);
  ASSERT_TRUE(a);
  EXPECT_FALSE((*a)[0].keep_alive);
  auto b = parse_requests("GET / HTTP/1.0\r\n\r\n", 100);
  ASSERT_TRUE(b);
  EXPECT_FALSE((*b)[0].keep_alive);
  auto c = parse_requests("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 100);
  ASSERT_TRUE(c);
  EXPECT_TRUE((*c)[0].keep_alive);
}

TEST(parser, content_length_and_chunked_request_bodies) {
  auto a = parse_requests("POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", 3);
  ASSERT_TRUE(a);
  EXPECT_EQ((*a)[0].body, "hello");
  auto b = parse_requests(
      "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: t\r\n\r\n", 4);
  ASSERT_TRUE(b) << b.error().message();
  EXPECT_EQ((*b)[0].body, "hello world");
}

// Trailer fields come after the header section and its checks: they are read and dropped,
// never merged into the headers a handler sees (RFC 9110 6.5.1).
TEST(parser, trailer_fields_are_not_headers) {
  const std::string wire =
      "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
      "Bad Name: x\r\nContent-Length: 99\r\nHost: evil.test\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n";
  for (std::size_t step : {std::size_t{1}, std::size_t{7}, wire.size()}) {
    auto r = parse_requests(wire, step);
    ASSERT_TRUE(r) << r.error().message();
    ASSERT_EQ(r->size(), 1u);
    const request& q = (*r)[0];
    EXPECT_EQ(q.body, "hello");
    EXPECT_EQ(q.header_values("host"), std::vector<std::string_view>{"a.test"});
    EXPECT_EQ(q.header_value("content-length"), "");
    EXPECT_EQ(q.header_value("x-forwarded-for"), "");
    for (const auto& h : q.headers) EXPECT_TRUE(is_token(h.name)) << h.name;
  }
}

// Debian's http_parser is built lenient: it takes any byte where chunked framing needs CR LF
// or LF, and never looks into chunk extensions. Such messages are refused, whatever the
// split, so that this server and a strict proxy in front of it see the same boundaries.
TEST(parser, malformed_chunked_framing_is_refused) {
  const std::string bad[] = {
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXY0\r\n\r\n",          // no CR LF after the data
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\nX0\r\n\r\n",         // LF X after the data
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\rXhello\r\n0\r\n\r\n",         // CR X after the size
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;a\nXX\r\nhello\r\n0\r\n\r\n",  // bare LF in an extension
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\rX",           // CR X ends the trailers
      "GET / HTTP/1.1\r\nHost: a\r\n\rX",                                                     // CR X ends the headers
  };
  for (const auto& w : bad)
    for (std::size_t step : {std::size_t{1}, std::size_t{3}, w.size()}) {
      auto r = parse_requests(w, step);
      EXPECT_FALSE(r && !r->empty()) << step << ": " << w;
    }
  // Well-formed framing with extensions and trailers still parses at every split.
  const std::string good =
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b;c\r\nhello\r\n6\r\n world\r\n0\r\nT: t\r\n\r\n"
      "GET /next HTTP/1.1\r\nHost: a\r\n\r\n";
  for (std::size_t step = 1; step <= good.size(); ++step) {
    auto r = parse_requests(good, step);
    ASSERT_TRUE(r) << step << ": " << r.error().message();
    ASSERT_EQ(r->size(), 2u) << step;
    EXPECT_EQ((*r)[0].body, "hello world") << step;
    EXPECT_EQ((*r)[1].target, "/next") << step;
  }
  // A chunked response from a CA is held to the same framing.
  EXPECT_FALSE(parse_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX0\r\n\r\n", 4));
  auto ok = parse_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", 4);
  ASSERT_TRUE(ok) << ok.error().message();
  EXPECT_EQ(ok->body, "ok");
}

TEST(parser, pipelined_requests_stay_separate_at_every_split) {
  const std::string wire =
      "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
      "POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
      "PUT /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n"
      "GET /4 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
  for (std::size_t step = 1; step <= wire.size(); ++step) {
    auto rs = parse_requests(wire, step);
    ASSERT_TRUE(rs) << "step " << step << ": " << rs.error().message();
    ASSERT_EQ(rs->size(), 4u) << "step " << step;
    EXPECT_EQ((*rs)[0].target, "/1");
    EXPECT_EQ((*rs)[1].method, "POST");
    EXPECT_EQ((*rs)[1].body, "abc");
    EXPECT_EQ((*rs)[2].method, "PUT");
    EXPECT_EQ((*rs)[2].body, "xy");
    EXPECT_EQ((*rs)[3].target, "/4");
    EXPECT_FALSE((*rs)[3].keep_alive);
  }
}

TEST(parser, split_in_two_at_every_byte_boundary) {
  const std::string wire = "POST /p?q HTTP/1.1\r\nHost: h\r\nA: 1\r\nContent-Length: 4\r\n\r\nbody";
  for (std::size_t cut = 0; cut <= wire.size(); ++cut) {
    request_parser p;
    auto u1 = p.feed(std::string_view(wire).substr(0, cut));
    ASSERT_TRUE(u1);
    ASSERT_EQ(*u1, cut);
    auto u2 = p.feed(std::string_view(wire).substr(cut));
    ASSERT_TRUE(u2);
    ASSERT_TRUE(p.done()) << cut;
    auto r = p.take();
    EXPECT_EQ(r.target, "/p?q");
    EXPECT_EQ(r.header_value("a"), "1");
    EXPECT_EQ(r.body, "body");
  }
}

TEST(parser, acme_response_with_repeated_link_headers) {
  for (std::size_t step : {1u, 7u, 4096u}) {
    auto r = parse_response(acme_response, step);
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(r->status, 201);
    EXPECT_EQ(r->header_value("replay-nonce"), "oFvnlFP1wIhRlYS2jTaXbA");
    auto links = r->header_values("link");
    ASSERT_EQ(links.size(), 2u);
    EXPECT_EQ(links[1], "<https://acme.example/acct/1/orders>;rel=\"up\"");
    EXPECT_EQ(r->body, "{\"status\": \"pending\", \"x\":1}");
    EXPECT_TRUE(r->keep_alive);
  }
}

TEST(parser, chunked_response_and_eof_delimited_response) {
  auto a = parse_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 2);
  ASSERT_TRUE(a) << a.error().message();
  EXPECT_EQ(a->body, "abc");
  auto b = parse_response("HTTP/1.1 200 OK\r\n\r\nuntil the end", 5);
  ASSERT_TRUE(b) << b.error().message();
  EXPECT_EQ(b->body, "until the end");
  EXPECT_FALSE(b->keep_alive);
}

TEST(parser, response_to_head_has_no_body) {
  response_parser p;
  p.expect_no_body(true);
  std::string wire = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
  auto used = p.feed(wire);
  ASSERT_TRUE(used);
  ASSERT_TRUE(p.done());
  auto r = p.take();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header_value("content-length"), "1000");
  EXPECT_TRUE(r.body.empty());
  // The next response starts right after the header section.
  EXPECT_EQ(wire.substr(*used, 8), "HTTP/1.1");
  auto used2 = p.feed(std::string_view(wire).substr(*used));
  ASSERT_TRUE(used2);
  ASSERT_TRUE(p.done());
  EXPECT_EQ(p.take().status, 204);
}

TEST(parser, no_body_statuses) {
  auto r = parse_response("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", 100);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 304);
  EXPECT_TRUE(r->body.empty());
}

struct bad_case {
  const char* name;
  std::string wire;
  errc expected;
  parse_failure failure;
};

TEST(parser, malformed_and_oversize_requests_fail_clearly) {
  limits l;
  l.max_header_bytes = 256;
  l.max_body_bytes = 16;
  l.max_headers = 5;
  const std::vector<bad_case> cases = {
      {"not http", "HELLO WORLD\r\n\r\n", errc::protocol_error, parse_failure::malformed},
      {"binary", std::string("\x16\x03\x01\x00\xa5\x01\x00\x00", 8), errc::protocol_error, parse_failure::malformed},
      {"bad version", "GET / HTTP/9\r\n\r\n", errc::protocol_error, parse_failure::malformed},
      {"space in header name", "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", errc::protocol_error, parse_failure::malformed},
      {"bare CR in value", "GET / HTTP/1.1\r\nA: x\ry\r\n\r\n", errc::protocol_error, parse_failure::malformed},
      {"bad content-length", "POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", errc::protocol_error,
       parse_failure::malformed},
      {"two content-lengths", "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
       errc::protocol_error, parse_failure::malformed},
      {"bad chunk size", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", errc::protocol_error,
       parse_failure::malformed},
      {"long header", "GET / HTTP/1.1\r\nA: " + std::string(300, 'x') + "\r\n\r\n", errc::message_too_large,
       parse_failure::headers_too_large},
      {"long target", "GET /" + std::string(300, 'x') + " HTTP/1.1\r\n\r\n", errc::message_too_large,
       parse_failure::headers_too_large},
      {"blank line flood", std::string(400, '\n'), errc::message_too_large, parse_failure::headers_too_large},
      {"too many headers", "GET / HTTP/1.1\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\nF: 1\r\n\r\n",
       errc::message_too_large, parse_failure::too_many_headers},
      {"declared body too large", "POST / HTTP/1.1\r\nContent-Length: 17\r\n\r\n", errc::message_too_large,
       parse_failure::body_too_large},
      {"chunked body too large", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n1\r\nx\r\n",
       errc::message_too_large, parse_failure::body_too_large},
  };
  for (const auto& c : cases) {
    for (std::size_t step : {std::size_t(1), std::size_t(3), c.wire.size()}) {
      request_parser p(l);
      std::string_view rest = c.wire;
      result<std::size_t> r = std::size_t{0};
      while (!rest.empty()) {
        r = p.feed(rest.substr(0, std::min(step, rest.size())));
        if (!r || p.done()) break;
        rest.remove_prefix(*r);
      }
      ASSERT_FALSE(r) << c.name << " step " << step;
      EXPECT_EQ(r.error(), c.expected) << c.name << " step " << step << ": " << p.error_detail();
      EXPECT_EQ(p.failure(), c.failure) << c.name;
      EXPECT_FALSE(p.error_detail().empty()) << c.name;
      // The error sticks until reset.
      EXPECT_FALSE(p.feed("GET / HTTP/1.1\r\n\r\n"));
      p.reset();
      EXPECT_TRUE(p.feed("GET / HTTP/1.1\r\n\r\n"));
      EXPECT_TRUE(p.done());
    }
  }
}

TEST(parser, response_truncations_are_reported_as_closed) {
  for (std::string wire : {std::string(""), std::string("HTTP/1.1 200 OK\r\nContent-Le"),
                           std::string("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"),
                           std::string("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")}) {
    auto r = parse_response(wire, 4);
    ASSERT_FALSE(r) << wire;
    EXPECT_EQ(r.error(), errc::closed) << wire;
  }
}

TEST(parser, response_body_limit) {
  limits l;
  l.max_body_bytes = 10;
  auto a = parse_response("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n01234567890", 100, false, l);
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error(), errc::message_too_large);
  auto b = parse_response("HTTP/1.1 200 OK\r\n\r\n" + std::string(100, 'x'), 7, false, l);
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error(), errc::message_too_large);
  // A HEAD response may announce any length.
  auto c = parse_response("HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n", 100, true, l);
  ASSERT_TRUE(c);
}

TEST(url, parses_http_and_https_urls) {
  auto a = parse_url("https://Acme-V02.api.letsencrypt.org/directory");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->scheme, "https");
  EXPECT_EQ(a->host, "acme-v02.api.letsencrypt.org");
  EXPECT_EQ(a->port, 443);
  EXPECT_EQ(a->target, "/directory");
  EXPECT_EQ(origin(*a), "https://acme-v02.api.letsencrypt.org");

  auto b = parse_url("HTTP://127.0.0.1:14000/a/b?x=1&y=2#frag");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->scheme, "http");
  EXPECT_EQ(b->port, 14000);
  EXPECT_EQ(b->target, "/a/b?x=1&y=2");
  EXPECT_EQ(authority(*b), "127.0.0.1:14000");

  auto c = parse_url("http://[::1]:8080");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->host, "::1");
  EXPECT_EQ(c->port, 8080);
  EXPECT_EQ(c->target, "/");
  EXPECT_EQ(authority(*c), "[::1]:8080");

  auto d = parse_url("http://example.com?q");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->target, "/?q");
}

TEST(url, rejects_what_is_not_an_absolute_http_url) {
  for (const char* s : {"", "/relative", "ftp://example.com/", "https://", "http://user:pw@example.com/",
                        "http://example.com:0/", "http://example.com:65536/", "http://exa mple.com/",
                        "https://example.com:port/", "http://[::1/", "example.com"}) {
    auto u = parse_url(s);
    EXPECT_FALSE(u) << s;
    if (!u) {
      EXPECT_EQ(u.error(), errc::invalid_argument) << s;
    }
  }
}
