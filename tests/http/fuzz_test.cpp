// Random and mutated bytes into both parsers: never a crash or a hang, never more consumed
// than given, and the same outcome however the input is split.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "http/parser.hpp"

using namespace letsencrypt;
using namespace letsencrypt::http;

namespace {

// What a parse produced, in a comparable form.
struct outcome {
  std::vector<std::string> messages;
  std::error_code error;
  bool operator==(const outcome&) const = default;
};

std::string describe(const request& r) {
  std::string s = r.method + " " + r.target + (r.keep_alive ? " ka" : " close");
  for (const auto& h : r.headers) s += "|" + h.name + "=" + h.value;
  return s + "|body=" + r.body;
}
std::string describe(const response& r) {
  std::string s = std::to_string(r.status) + (r.keep_alive ? " ka" : " close");
  for (const auto& h : r.headers) s += "|" + h.name + "=" + h.value;
  return s + "|body=" + r.body;
}

template <class Parser>
outcome run(const std::string& in, const std::vector<std::size_t>& cuts, const limits& l) {
  Parser p(l);
  outcome o;
  std::size_t pos = 0;
  std::size_t cut_i = 0;
  while (pos < in.size()) {
    std::size_t end = cut_i < cuts.size() ? std::min(in.size(), std::max(pos + 1, cuts[cut_i++])) : in.size();
    std::string_view piece(in.data() + pos, end - pos);
    while (!piece.empty()) {
      auto used = p.feed(piece);
      if (!used) {
        o.error = used.error();
        return o;
      }
      EXPECT_LE(*used, piece.size());
      if (*used == 0 && !p.done()) {
        ADD_FAILURE() << "no progress";
        return o;
      }
      piece.remove_prefix(*used);
      pos += *used;
      if (p.done()) o.messages.push_back(describe(p.take()));
    }
  }
  if (auto f = p.finish(); !f) {
    if (p.started()) o.error = f.error();
  } else if (p.done()) {
    o.messages.push_back(describe(p.take()));
  }
  return o;
}

const std::vector<std::string> request_seeds = {
    "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "POST /new-order HTTP/1.1\r\nHost: acme\r\nContent-Type: application/jose+json\r\nContent-Length: 11\r\n\r\n{\"a\":\"b\"}\r\n",
    "PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwiki\r\n5;x=y\r\npedia\r\n0\r\nT: 1\r\n\r\nGET /y HTTP/1.0\r\n\r\n",
    "HEAD /.well-known/acme-challenge/abc HTTP/1.1\r\nHost: example.com:80\r\nConnection: close\r\n\r\n",
};
const std::vector<std::string> response_seeds = {
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nReplay-Nonce: abc\r\n\r\nok",
    "HTTP/1.1 201 Created\r\nLink: <a>;rel=\"up\"\r\nLink: <b>;rel=\"index\"\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "HTTP/1.0 200 OK\r\n\r\nto the end",
    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
};

std::string mutate(std::string s, std::mt19937& rng) {
  static const char interesting[] = {'\r', '\n', ':', ' ', '\t', '\0', '0', 'f', ';', '\x7f', '\xff', 'H', '/'};
  int edits = 1 + int(rng() % 6);
  for (int i = 0; i < edits; ++i) {
    if (s.empty()) s.push_back('G');
    std::size_t at = rng() % s.size();
    switch (rng() % 6) {
      case 0: s[at] = char(rng()); break;
      case 1: s[at] = interesting[rng() % sizeof interesting]; break;
      case 2: s.erase(at, 1 + rng() % 8); break;
      case 3: s.insert(at, 1, interesting[rng() % sizeof interesting]); break;
      case 4: s.insert(at, s.substr(rng() % s.size(), rng() % 16)); break;
      case 5: s.insert(at, std::string(rng() % 40, char('0' + rng() % 10))); break;
    }
  }
  return s;
}

template <class Parser>
void check(const std::string& in, std::mt19937& rng, const limits& l) {
  outcome whole = run<Parser>(in, {}, l);
  std::vector<std::size_t> cuts;
  for (std::size_t i = 0, n = 1 + rng() % 6; i < n && !in.empty(); ++i) cuts.push_back(rng() % (in.size() + 1));
  std::sort(cuts.begin(), cuts.end());
  outcome split = run<Parser>(in, cuts, l);
  EXPECT_EQ(whole.error, split.error) << testing::PrintToString(in);
  EXPECT_EQ(whole.messages, split.messages) << testing::PrintToString(in);
  std::vector<std::size_t> bytewise;
  for (std::size_t i = 1; i < in.size(); ++i) bytewise.push_back(i);
  outcome single = run<Parser>(in, bytewise, l);
  EXPECT_EQ(whole, single) << testing::PrintToString(in);
}

}  // namespace

TEST(parser_fuzz, mutated_messages_parse_the_same_however_split) {
  std::mt19937 rng(20261129);
  limits l;
  l.max_header_bytes = 200;
  l.max_body_bytes = 64;
  l.max_headers = 6;
  int errors = 0, successes = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string req = mutate(request_seeds[rng() % request_seeds.size()], rng);
    std::string resp = mutate(response_seeds[rng() % response_seeds.size()], rng);
    check<request_parser>(req, rng, l);
    check<response_parser>(resp, rng, l);
    auto o = run<request_parser>(req, {}, l);
    (o.error ? errors : successes)++;
  }
  // The mutations exercise both the accepting and the rejecting paths.
  EXPECT_GT(errors, 100);
  EXPECT_GT(successes, 100);
}

TEST(parser_fuzz, random_bytes_never_crash) {
  std::mt19937 rng(7);
  for (int i = 0; i < 2000; ++i) {
    std::string in(rng() % 300, '\0');
    for (auto& c : in) c = char(rng());
    if (i % 2) in = (i % 4 == 1 ? "HTTP/1.1 200 OK\r\n" : "GET / HTTP/1.1\r\n") + in;
    check<request_parser>(in, rng, limits{});
    check<response_parser>(in, rng, limits{});
  }
}

TEST(parser_limits, header_budget_is_exact) {
  limits l;
  const std::string head = "GET / HTTP/1.1\r\nA: 1234\r\n\r\n";
  l.max_header_bytes = head.size();
  request_parser p(l);
  auto ok = p.feed(head);
  ASSERT_TRUE(ok);
  EXPECT_TRUE(p.done());
  l.max_header_bytes = head.size() - 1;
  request_parser q(l);
  auto too_big = q.feed(head);
  ASSERT_FALSE(too_big);
  EXPECT_EQ(too_big.error(), errc::message_too_large);
  EXPECT_EQ(q.failure(), parse_failure::headers_too_large);
}
