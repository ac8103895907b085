// SNI map lookups (hits, misses, wildcard hits) at 1k, 100k and 1M names on 1 and 2
// threads, with allocations per lookup, the memory each loaded certificate costs, and the
// cost of installing the chosen certificate on a connection at 1 and 100k certificates.
#include <benchmark/benchmark.h>
#include <malloc.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <x86intrin.h>
#endif

#include <algorithm>
#include <chrono>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <new>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "letsencrypt/tls/handles.hpp"
#include "letsencrypt/tls/sni_map.hpp"
#include "bench_certs.hpp"

using namespace letsencrypt;
using bench::ca;
using bench::fail;
using bench::leaf_shape;
using bench::mint;

// ---- allocation counting: every operator new on this thread --------------------------------

namespace {
thread_local std::uint64_t thread_allocs = 0;
}

[[gnu::noinline]] void* operator new(std::size_t n) {
  ++thread_allocs;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void* operator new(std::size_t n, std::align_val_t a) {
  ++thread_allocs;
  const std::size_t al = static_cast<std::size_t>(a);
  if (void* p = std::aligned_alloc(al, (n + al - 1) / al * al)) return p;
  throw std::bad_alloc();
}
// Not inlined: GCC 12 would otherwise pair inlined malloc/free calls and warn of a mismatch.
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace {

std::string host(std::size_t i) { return "host" + std::to_string(i) + ".example.com"; }

// ---- maps shared by the lookup benchmarks (built once per size) ---------------------------

struct loaded_map {
  tls::sni_map map;
  std::vector<std::string> hits, misses, wildcard_hits;
  std::vector<std::string> zipf_hits;  // names drawn by popularity (Zipf, s = 1)
};

constexpr std::size_t query_count = 1 << 16;

loaded_map& map_of(std::size_t n) {
  static std::mutex m;
  static std::map<std::size_t, std::unique_ptr<loaded_map>> maps;
  std::lock_guard lock(m);
  auto& slot = maps[n];
  if (slot) return *slot;
  slot = std::make_unique<loaded_map>();
  // One certificate object shared by every name keeps set-up at 1M names short; lookups
  // never touch the certificate itself.
  auto key = ca().leaf("shared.example.com");
  const std::size_t wildcards = std::max<std::size_t>(n / 16, 1);
  std::vector<tls::sni_update> updates;
  updates.reserve(n + wildcards);
  for (std::size_t i = 0; i < n; ++i) updates.push_back({host(i), {key}});
  for (std::size_t i = 0; i < wildcards; ++i) updates.push_back({"*.w" + std::to_string(i) + ".example.com", {key}});
  if (!slot->map.apply(updates)) fail("apply");
  std::mt19937_64 rng(42);
  for (std::size_t q = 0; q < query_count; ++q) {
    slot->hits.push_back(host(rng() % n));
    slot->misses.push_back("miss" + std::to_string(rng() % n) + ".example.com");
    slot->wildcard_hits.push_back("www.w" + std::to_string(rng() % wildcards) + ".example.com");
  }
  // Real traffic is skewed: a few names take most handshakes. Rank r (1-based) has weight
  // 1/r; ranks map to random names so popular names spread over the table.
  std::vector<double> cdf(n);
  double sum = 0;
  for (std::size_t r = 0; r < n; ++r) cdf[r] = sum += 1.0 / static_cast<double>(r + 1);
  std::vector<std::size_t> name_of_rank(n);
  for (std::size_t r = 0; r < n; ++r) name_of_rank[r] = r;
  std::shuffle(name_of_rank.begin(), name_of_rank.end(), rng);
  std::uniform_real_distribution<double> u(0, sum);
  for (std::size_t q = 0; q < query_count; ++q) {
    const auto r = static_cast<std::size_t>(std::lower_bound(cdf.begin(), cdf.end(), u(rng)) - cdf.begin());
    slot->zipf_hits.push_back(host(name_of_rank[std::min(r, n - 1)]));
  }
  return *slot;
}

template <class Lookup>
void run_lookups(benchmark::State& state, const std::vector<std::string>& queries, Lookup&& lookup,
                 bool expect_found) {
  std::size_t i = static_cast<std::size_t>(state.thread_index()) * 7919;
  std::uint64_t wrong = 0;
  const std::uint64_t allocs_before = thread_allocs;
  for (auto _ : state) {
    const bool found = lookup(queries[i & (query_count - 1)]);
    wrong += found != expect_found;
    ++i;
  }
  const std::uint64_t allocs = thread_allocs - allocs_before;
  if (wrong) state.SkipWithError("lookup answered wrongly");
  state.counters["allocs_per_lookup"] = benchmark::Counter(static_cast<double>(allocs), benchmark::Counter::kAvgIterations);
  state.SetItemsProcessed(state.iterations());
}

// lookup() of every name in one of the map's query sets; `expect_found` for all of them.
void lookups(benchmark::State& state, std::vector<std::string> loaded_map::*queries, bool expect_found) {
  auto& d = map_of(static_cast<std::size_t>(state.range(0)));
  run_lookups(state, d.*queries, [&](const std::string& q) {
    auto e = d.map.lookup(q);
    benchmark::DoNotOptimize(e.get());
    return e != nullptr;
  }, expect_found);
}

void bm_lookup_hit(benchmark::State& state) { lookups(state, &loaded_map::hits, true); }
void bm_lookup_hit_zipf(benchmark::State& state) { lookups(state, &loaded_map::zipf_hits, true); }
void bm_lookup_miss(benchmark::State& state) { lookups(state, &loaded_map::misses, false); }
void bm_lookup_wildcard(benchmark::State& state) { lookups(state, &loaded_map::wildcard_hits, true); }

void bm_visit_hit(benchmark::State& state) {
  auto& d = map_of(static_cast<std::size_t>(state.range(0)));
  run_lookups(state, d.hits, [&](const std::string& q) {
    return d.map.visit(q, [](const tls::sni_entry& e) noexcept { benchmark::DoNotOptimize(e.keys.data()); });
  }, true);
}

// ---- the latency of single lookups --------------------------------------------------------

// Cycle counter reads fenced so the timed region cannot leak out of them.
#if defined(__x86_64__)
inline std::uint64_t ticks_begin() noexcept {
  _mm_lfence();
  const std::uint64_t t = __rdtsc();
  _mm_lfence();
  return t;
}
inline std::uint64_t ticks_end() noexcept {
  unsigned aux = 0;
  const std::uint64_t t = __rdtscp(&aux);
  _mm_lfence();
  return t;
}
#else
inline std::uint64_t ticks_begin() noexcept {
  return static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
}
inline std::uint64_t ticks_end() noexcept { return ticks_begin(); }
#endif

double ns_per_tick() {
  static const double v = [] {
    const auto c0 = std::chrono::steady_clock::now();
    const std::uint64_t t0 = ticks_begin();
    while (std::chrono::steady_clock::now() - c0 < std::chrono::milliseconds(100)) {
    }
    const std::uint64_t t1 = ticks_end();
    const auto c1 = std::chrono::steady_clock::now();
    return std::chrono::duration<double, std::nano>(c1 - c0).count() / static_cast<double>(t1 - t0);
  }();
  return v;
}

// Counts of durations in ticks; the last bucket takes everything longer.
struct tick_histogram {
  std::vector<std::uint64_t> counts = std::vector<std::uint64_t>(1 << 14);
  std::uint64_t total = 0;
  std::uint64_t sum = 0;  // unclamped, for the mean
  void add(std::uint64_t t) noexcept {
    ++counts[std::min<std::uint64_t>(t, counts.size() - 1)];
    ++total;
    sum += t;
  }
  double quantile_ticks(double q) const noexcept {
    const auto want = static_cast<std::uint64_t>(q * static_cast<double>(total));
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < counts.size(); ++i)
      if ((seen += counts[i]) > want) return static_cast<double>(i);
    return static_cast<double>(counts.size() - 1);
  }
};

// visit() of one name at a time, each timed on its own: the distribution of single lookups
// (find the slot, compare the name), where the throughput benchmarks above give the mean of
// lookups that overlap. The clock's own cost is timed in the same loop (an empty region)
// and subtracted: p50_ns = p50 of the lookups - p50 of the empty region, likewise p99_ns.
// The TSC of a VM may advance in coarse steps (10 ns here), which quantiles inherit; mean_ns
// (summed ticks) does not. The lookup ends at the entry's address: a handshake then reads
// the entry, which at large sizes is another cache miss.
// range(1), "queries": 0 uniform hits, 1 Zipf hits, 2 unknown names.
void bm_visit_latency(benchmark::State& state) {
  auto& d = map_of(static_cast<std::size_t>(state.range(0)));
  const std::vector<std::string>& queries =
      state.range(1) == 0 ? d.hits : state.range(1) == 1 ? d.zipf_hits : d.misses;
  const bool expect_found = state.range(1) != 2;
  tick_histogram lookup, empty;
  std::size_t i = 0;
  std::uint64_t wrong = 0;
  char name[256];
  for (auto _ : state) {
    // The name is copied first, untimed: a handshake looks up bytes it has just received,
    // not one of 65536 strings spread over the heap.
    const std::string& q = queries[i++ & (query_count - 1)];
    std::memcpy(name, q.data(), q.size());
    benchmark::ClobberMemory();
    std::uint64_t t0 = ticks_begin();
    const bool found = d.map.visit(std::string_view(name, q.size()),
                                   [](const tls::sni_entry& e) noexcept { benchmark::DoNotOptimize(&e); });
    std::uint64_t t1 = ticks_end();
    lookup.add(t1 - t0);
    wrong += found != expect_found;
    t0 = ticks_begin();
    t1 = ticks_end();
    empty.add(t1 - t0);
  }
  if (wrong) state.SkipWithError("lookup answered wrongly");
  const double ns = ns_per_tick();
  const double clock_ticks = empty.quantile_ticks(0.5);
  state.counters["p50_ns"] = (lookup.quantile_ticks(0.5) - clock_ticks) * ns;
  state.counters["p90_ns"] = (lookup.quantile_ticks(0.9) - clock_ticks) * ns;
  state.counters["p99_ns"] = (lookup.quantile_ticks(0.99) - clock_ticks) * ns;
  state.counters["clock_ns"] = clock_ticks * ns;
  const double n = static_cast<double>(std::max<std::uint64_t>(lookup.total, 1));
  state.counters["mean_ns"] = (static_cast<double>(lookup.sum) - static_cast<double>(empty.sum)) / n * ns;
}
BENCHMARK(bm_visit_latency)
    ->ArgsProduct({{1000, 100000, 1000000}, {0, 1, 2}})
    ->ArgNames({"names", "queries"});

#define SNI_SIZES Arg(1000)->Arg(100000)->Arg(1000000)->Threads(1)->Threads(2)
BENCHMARK(bm_lookup_hit)->SNI_SIZES;
BENCHMARK(bm_lookup_hit_zipf)->SNI_SIZES;
BENCHMARK(bm_visit_hit)->SNI_SIZES;
BENCHMARK(bm_lookup_miss)->SNI_SIZES;
BENCHMARK(bm_lookup_wildcard)->SNI_SIZES;

// The reference for lookups in maps larger than the caches: one dependent load from memory
// (a pointer chase through a random cycle over 256 MiB, so every step misses the caches and
// usually the TLB). A lookup in a 1M-name map that costs k of these is k memory accesses.
void bm_memory_latency_reference(benchmark::State& state) {
  const std::size_t n = (256u << 20) / sizeof(std::size_t);
  std::vector<std::size_t> next(n);
  {
    std::vector<std::size_t> order(n);
    for (std::size_t i = 0; i < n; ++i) order[i] = i;
    std::mt19937_64 rng(7);
    std::shuffle(order.begin() + 1, order.end(), rng);
    for (std::size_t i = 0; i < n; ++i) next[order[i]] = order[(i + 1) % n];
  }
  std::size_t at = 0;
  for (auto _ : state) {
    at = next[at];
    benchmark::DoNotOptimize(at);
  }
}
BENCHMARK(bm_memory_latency_reference);

// ---- memory per loaded certificate ---------------------------------------------------------

// A byte count as a counter printed in KiB ("5.1k" is 5.1 KiB, not 5100 bytes).
benchmark::Counter bytes(double b) { return benchmark::Counter(b, benchmark::Counter::kDefaults, benchmark::Counter::kIs1024); }

double rss_bytes() {
  malloc_trim(0);
  std::ifstream f("/proc/self/statm");
  long size = 0, resident = 0;
  f >> size >> resident;
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE));
}

// Names that share one certificate object: what the map itself costs per name.
void bm_memory_per_name_shared_cert(benchmark::State& state) {
  const std::size_t n = static_cast<std::size_t>(state.range(0));
  auto key = ca().leaf("shared.example.com");
  for (auto _ : state) {
    auto map = std::make_unique<tls::sni_map>();
    const double before = rss_bytes();
    {
      std::vector<tls::sni_update> updates;
      updates.reserve(n);
      for (std::size_t i = 0; i < n; ++i) updates.push_back({host(i), {key}});
      if (!map->apply(std::move(updates))) fail("apply");
    }
    const double after = rss_bytes();
    state.counters["bytes_per_name"] = bytes((after - before) / static_cast<double>(n));
    state.PauseTiming();
    map.reset();
    state.ResumeTiming();
  }
}
BENCHMARK(bm_memory_per_name_shared_cert)->Arg(100000)->Iterations(1)->Unit(benchmark::kMillisecond);

// n distinct leaves (host(i)) and their keys as DER (the key as PKCS#8), as a server finds
// them in storage.
struct der_certs {
  std::vector<std::string> cert, key;
};

der_certs make_der_certs(std::size_t n, leaf_shape shape = leaf_shape::san_only) {
  der_certs out;
  out.cert.resize(n);
  out.key.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    auto ck = ca().leaf(host(i), shape);
    unsigned char* der = nullptr;
    int len = i2d_X509(ck->leaf.get(), &der);
    if (len <= 0) fail("i2d_X509");
    out.cert[i].assign(reinterpret_cast<char*>(der), static_cast<std::size_t>(len));
    OPENSSL_free(der);
    std::unique_ptr<PKCS8_PRIV_KEY_INFO, decltype(&PKCS8_PRIV_KEY_INFO_free)> p8(EVP_PKEY2PKCS8(ck->key.get()),
                                                                              &PKCS8_PRIV_KEY_INFO_free);
    der = nullptr;
    len = p8 ? i2d_PKCS8_PRIV_KEY_INFO(p8.get(), &der) : 0;
    if (len <= 0) fail("i2d_PKCS8_PRIV_KEY_INFO");
    out.key[i].assign(reinterpret_cast<char*>(der), static_cast<std::size_t>(len));
    OPENSSL_clear_free(der, static_cast<std::size_t>(len));
  }
  return out;
}

// Distinct ECDSA P-256 leaves with their keys, each under its own name: what a real loaded
// certificate costs (certificate, key, shared chain reference, entry and slot). The
// certificates and keys are made first and kept as DER, as a server finds them in storage;
// only parsing them (as the Manager does: tls::load_certified_key_der) and loading the map
// is measured, so the garbage of making them (key generation, signing)
// does not count.
void bm_memory_per_distinct_cert(benchmark::State& state) {
  const std::size_t n = static_cast<std::size_t>(state.range(0));
  const der_certs ders = make_der_certs(n, static_cast<leaf_shape>(state.range(1)));
  const auto& cert_der = ders.cert;
  const auto& key_der = ders.key;
  X509* chain[] = {ca().cert.get()};
  for (auto _ : state) {
    auto map = std::make_unique<tls::sni_map>();
    const double before = rss_bytes();
    {
      std::vector<tls::sni_update> updates;
      updates.reserve(n);
      for (std::size_t i = 0; i < n; ++i) {
        auto ck = tls::load_certified_key_der(cert_der[i], key_der[i], chain);
        if (!ck) fail("load_certified_key_der");
        updates.push_back({host(i), {std::move(*ck)}});
      }
      if (!map->apply(std::move(updates))) fail("apply");
    }
    const double after = rss_bytes();
    state.counters["bytes_per_cert"] = bytes((after - before) / static_cast<double>(n));
    state.counters["certs"] = static_cast<double>(map->size());
    state.PauseTiming();
    map.reset();
    state.ResumeTiming();
  }
}
// The same certificates loaded as tls::deferred_key: memory at rest (DER only), then once a
// pass over every name (a crawler) has parsed them, with no limit (range 1 = 0) or through a
// tls::deferred_cache of range(1) entries.
void bm_memory_per_deferred_cert(benchmark::State& state) {
  const std::size_t n = static_cast<std::size_t>(state.range(0));
  const std::size_t limit = static_cast<std::size_t>(state.range(1));
  const der_certs ders = make_der_certs(n);
  const auto& cert_der = ders.cert;
  const auto& key_der = ders.key;
  X509* chain[] = {ca().cert.get()};
  for (auto _ : state) {
    auto cache = limit ? tls::deferred_cache::make(limit) : nullptr;
    auto map = std::make_unique<tls::sni_map>();
    const double before = rss_bytes();
    {
      std::vector<tls::sni_update> updates;
      updates.reserve(n);
      for (std::size_t i = 0; i < n; ++i) {
        auto d = tls::deferred_key::make(cert_der[i], key_der[i], chain, cache);
        if (!d) fail("deferred_key::make");
        updates.push_back({host(i), {}, {std::move(*d)}});
      }
      if (!map->apply(std::move(updates))) fail("apply");
    }
    const double at_rest = rss_bytes();
    std::size_t unparsed = 0;
    const auto pass_start = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < n; ++i)
      if (!map->visit(host(i), [&](const tls::sni_entry& e) noexcept { unparsed += e.get(tls::key_kind::ecdsa) ? 0 : 1; }))
        fail("visit");
    if (unparsed) fail("a deferred certificate did not parse");
    const double pass_us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - pass_start).count();
    const double parsed = rss_bytes();
    state.counters["pass_us_per_cert"] = pass_us / static_cast<double>(n);
    state.counters["bytes_per_cert_at_rest"] = bytes((at_rest - before) / static_cast<double>(n));
    state.counters["bytes_per_cert_after_pass"] = bytes((parsed - before) / static_cast<double>(n));
    if (cache) state.counters["evictions"] = static_cast<double>(cache->evictions());
    state.PauseTiming();
    map.reset();
    state.ResumeTiming();
  }
}
BENCHMARK(bm_memory_per_deferred_cert)
    ->Args({10000, 0})
    ->Args({10000, 100})
    ->Args({100000, 0})
    ->Args({100000, 1000})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

// Where an eager certificate's memory goes, stage by stage over n distinct certificates
// (bytes per certificate, RSS after malloc_trim): parsing the certificate, OpenSSL's
// extension caches (filled at load, see make_certified_key), the key attached and the
// certified_key made, and the map's entry, name and slots; range 1 is the leaves' shape, as
// for bm_memory_per_distinct_cert. The certificates parsed in the first two stages are freed
// before the third parses them again as the Manager does.
void bm_memory_per_cert_by_stage(benchmark::State& state) {
  const std::size_t n = static_cast<std::size_t>(state.range(0));
  const der_certs ders = make_der_certs(n, static_cast<leaf_shape>(state.range(1)));
  X509* chain[] = {ca().cert.get()};
  const double count = static_cast<double>(n);
  for (auto _ : state) {
    const double start = rss_bytes();
    double parse = 0, caches = 0;
    {
      std::vector<tls::x509_ptr> parsed;
      parsed.reserve(n);
      for (const std::string& der : ders.cert) {
        auto x = tls::parse_certificate_der(der);
        if (!x) fail("parse_certificate_der");
        parsed.push_back(std::move(*x));
      }
      const double after_parse = rss_bytes();
      for (const auto& x : parsed) X509_check_purpose(x.get(), -1, 0);
      const double after_caches = rss_bytes();
      parse = (after_parse - start) / count;
      caches = (after_caches - after_parse) / count;
    }
    const double freed = rss_bytes();
    std::vector<std::shared_ptr<const tls::certified_key>> keys;
    keys.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      auto ck = tls::load_certified_key_der(ders.cert[i], ders.key[i], chain);
      if (!ck) fail("load_certified_key_der");
      keys.push_back(std::move(*ck));
    }
    const double loaded = rss_bytes();
    auto map = std::make_unique<tls::sni_map>();
    {
      std::vector<tls::sni_update> updates;
      updates.reserve(n);
      for (std::size_t i = 0; i < n; ++i) updates.push_back({host(i), {keys[i]}});
      if (!map->apply(std::move(updates))) fail("apply");
    }
    const double mapped = rss_bytes();
    state.counters["parse"] = bytes(parse);
    state.counters["extension_caches"] = bytes(caches);
    state.counters["key_and_certified_key"] = bytes((loaded - freed) / count - parse - caches);
    state.counters["map"] = bytes((mapped - loaded) / count);
    state.counters["total"] = bytes((mapped - freed) / count);
    state.PauseTiming();
    map.reset();
    keys.clear();
    state.ResumeTiming();
  }
}
BENCHMARK(bm_memory_per_cert_by_stage)->Args({100000, 0})->Args({100000, 1})->Iterations(1)->Unit(benchmark::kMillisecond);

// One DER certificate parsed: by d2i_X509 in OpenSSL's default context (arg 0) or by
// tls::parse_certificate_der in the library's own (arg 1).
void bm_parse_certificate(benchmark::State& state) {
  const der_certs ders = make_der_certs(256);
  const bool ours = state.range(0) != 0;
  std::size_t i = 0;
  for (auto _ : state) {
    const std::string& der = ders.cert[i++ % ders.cert.size()];
    if (ours) {
      auto x = tls::parse_certificate_der(der);
      if (!x) fail("parse_certificate_der");
      benchmark::DoNotOptimize(x->get());
    } else {
      const auto* p = reinterpret_cast<const unsigned char*>(der.data());
      tls::x509_ptr x(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
      if (!x) fail("d2i_X509");
      benchmark::DoNotOptimize(x.get());
    }
  }
}
BENCHMARK(bm_parse_certificate)->Arg(0)->Arg(1)->ArgName("library_context")->Unit(benchmark::kMicrosecond);

// Range 1: the leaves' shape (0: a SAN only, 1: typical, as tools/gen-certs makes them).
BENCHMARK(bm_memory_per_distinct_cert)
    ->Args({10000, 0})
    ->Args({100000, 0})
    ->Args({100000, 1})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);


// ---- installing the chosen certificate on a connection ------------------------------------

// n leaves, all for one key (as bench/compare-nginx's scale runs load them), parsed from DER.
struct installed_set {
  tls::evp_pkey_ptr key{EVP_EC_gen("P-256")};
  std::vector<std::shared_ptr<const tls::certified_key>> certs;
  tls::ssl_ctx_ptr ctx{SSL_CTX_new(TLS_server_method())};
};

const installed_set& installed_set_of(std::size_t n) {
  static std::map<std::size_t, std::unique_ptr<installed_set>> sets;
  auto& slot = sets[n];
  if (slot) return *slot;
  slot = std::make_unique<installed_set>();
  if (!slot->key || !slot->ctx) fail("installed_set");
  X509* chain[] = {ca().cert.get()};
  slot->certs.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    auto leaf = mint(slot->key.get(), host(i), ca().cert.get(), ca().key.get());
    auto ck = tls::make_certified_key(leaf.get(), slot->key.get(), chain);
    if (!ck) fail("make_certified_key");
    slot->certs.push_back(std::move(ck).value());
  }
  return *slot;
}

// What the ClientHello callback costs to put the chosen certificate on the connection
// (tls::use_certified_key, as the resolver calls it), on a fresh SSL each time,
// for a certificate picked at random among n. Arg 1: 1 = install, 0 = SSL_new/SSL_free
// only (the baseline to subtract). At n = 100000 the certificates' parsed objects (about
// 5 KiB each in OpenSSL 3.0) no longer fit in any cache, and OpenSSL's checks on the way
// in (the key matches the certificate, key and signature strength) walk them.
void bm_install_on_ssl(benchmark::State& state) {
  const auto& set = installed_set_of(static_cast<std::size_t>(state.range(0)));
  const bool install = state.range(1) != 0;
  std::mt19937_64 rng(9);
  for (auto _ : state) {
    const tls::certified_key& k = *set.certs[rng() % set.certs.size()];
    tls::ssl_ptr ssl(SSL_new(set.ctx.get()));
    if (!ssl) fail("SSL_new");
    if (install && !tls::use_certified_key(ssl.get(), k)) fail("use_certified_key");
    benchmark::DoNotOptimize(ssl.get());
  }
}
BENCHMARK(bm_install_on_ssl)->ArgsProduct({{1, 100000}, {0, 1}})->ArgNames({"certs", "install"});

}  // namespace

BENCHMARK_MAIN();
