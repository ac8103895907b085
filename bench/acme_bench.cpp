// ACME core micro-benchmarks: ES256 JWS signing, order parsing, key authorization.
#include <benchmark/benchmark.h>

#include "letsencrypt/acme/jws.hpp"
#include "letsencrypt/acme/types.hpp"

namespace acme = letsencrypt::acme;

static void bm_jws_es256(benchmark::State& state) {
  auto key = std::move(acme::account_key::generate_p256()).value();
  std::string payload = R"({"identifiers":[{"type":"dns","value":"www.example.com"}]})";
  for (auto _ : state) {
    auto jws = acme::sign_jws(key, payload, {.nonce = "abcdefghijklmnop", .url = "https://ca/new-order", .kid = "https://ca/acct/1"});
    benchmark::DoNotOptimize(jws);
  }
}
BENCHMARK(bm_jws_es256);

static void bm_parse_order(benchmark::State& state) {
  std::string json = R"({"status":"pending","expires":"2016-01-20T14:09:07.99Z","identifiers":[{"type":"dns","value":"www.example.org"},{"type":"dns","value":"example.org"}],"authorizations":["https://example.com/acme/authz/PAniVnsZcis","https://example.com/acme/authz/r4HqLzrSrpI"],"finalize":"https://example.com/acme/order/TOlocE8rfgo/finalize"})";
  for (auto _ : state) {
    auto o = acme::parse_order(json);
    benchmark::DoNotOptimize(o);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * json.size()));
}
BENCHMARK(bm_parse_order);

static void bm_dns01_value(benchmark::State& state) {
  auto key = std::move(acme::account_key::generate_p256()).value();
  for (auto _ : state) {
    auto v = acme::dns01_txt_value(acme::key_authorization("evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA", key));
    benchmark::DoNotOptimize(v);
  }
}
BENCHMARK(bm_dns01_value);

BENCHMARK_MAIN();
