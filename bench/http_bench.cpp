// HTTP parse throughput: a typical ACME response and a typical request.
#include <benchmark/benchmark.h>

#include <string>

#include "http/parser.hpp"

using namespace letsencrypt::http;

namespace {

const std::string acme_response =
    "HTTP/1.1 201 Created\r\n"
    "Server: nginx\r\n"
    "Date: Sun, 29 Nov 2026 12:00:00 GMT\r\n"
    "Content-Type: application/json\r\n"
    "Content-Length: 412\r\n"
    "Connection: keep-alive\r\n"
    "Cache-Control: public, max-age=0, no-cache\r\n"
    "Link: <https://acme-v02.api.letsencrypt.org/directory>;rel=\"index\"\r\n"
    "Location: https://acme-v02.api.letsencrypt.org/acme/order/123456789/987654321\r\n"
    "Replay-Nonce: 5J2kV-8Qb0-8p7oYyVbK3s5c4nDk6xUoQ0W9y1b2c3d4e5f6g7h\r\n"
    "X-Frame-Options: DENY\r\n"
    "Strict-Transport-Security: max-age=604800\r\n"
    "\r\n" +
    std::string(
        "{\"status\":\"pending\",\"expires\":\"2026-12-06T12:00:00Z\",\"identifiers\":[{\"type\":\"dns\",\"value\":"
        "\"www.example.com\"}],\"authorizations\":[\"https://acme-v02.api.letsencrypt.org/acme/authz-v3/1234567\"],"
        "\"finalize\":\"https://acme-v02.api.letsencrypt.org/acme/finalize/123456789/987654321\"}");

std::string fix_length(std::string s) {
  auto body = s.substr(s.find("\r\n\r\n") + 4);
  auto at = s.find("Content-Length: ") + 16;
  auto end = s.find("\r\n", at);
  return s.replace(at, end - at, std::to_string(body.size()));
}

const std::string typical_request =
    "GET /.well-known/acme-challenge/LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0 HTTP/1.1\r\n"
    "Host: www.example.com\r\n"
    "User-Agent: Mozilla/5.0 (compatible; Let's Encrypt validation server; +https://www.letsencrypt.org)\r\n"
    "Accept: */*\r\n"
    "Accept-Encoding: gzip\r\n"
    "Connection: close\r\n"
    "\r\n";

void bm_parse_acme_response(benchmark::State& state) {
  const std::string wire = fix_length(acme_response);
  response_parser p;
  for (auto _ : state) {
    auto used = p.feed(wire);
    if (!used || !p.done()) state.SkipWithError("parse failed");
    auto r = p.take();
    benchmark::DoNotOptimize(r);
  }
  state.SetBytesProcessed(std::int64_t(state.iterations()) * std::int64_t(wire.size()));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(bm_parse_acme_response);

void bm_parse_request(benchmark::State& state) {
  request_parser p;
  for (auto _ : state) {
    auto used = p.feed(typical_request);
    if (!used || !p.done()) state.SkipWithError("parse failed");
    auto r = p.take();
    benchmark::DoNotOptimize(r);
  }
  state.SetBytesProcessed(std::int64_t(state.iterations()) * std::int64_t(typical_request.size()));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(bm_parse_request);

// The same request arriving in 16-byte pieces, as from a slow connection.
void bm_parse_request_split(benchmark::State& state) {
  request_parser p;
  std::string_view wire = typical_request;
  for (auto _ : state) {
    for (std::size_t at = 0; at < wire.size(); at += 16) {
      auto used = p.feed(wire.substr(at, 16));
      if (!used) state.SkipWithError("parse failed");
    }
    if (!p.done()) state.SkipWithError("parse failed");
    auto r = p.take();
    benchmark::DoNotOptimize(r);
  }
  state.SetBytesProcessed(std::int64_t(state.iterations()) * std::int64_t(wire.size()));
}
BENCHMARK(bm_parse_request_split);

}  // namespace

BENCHMARK_MAIN();
