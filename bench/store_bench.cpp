// Journal benchmarks: durable appends (group commit vs one fdatasync per record), replay
// of 100k certificates, and bytes per certificate.
#include <benchmark/benchmark.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <malloc.h>

#include <cstdlib>
#include <fstream>
#include <cstring>
#include <filesystem>
#include <memory>

#include "letsencrypt/io/ring.hpp"
#include "letsencrypt/manager.hpp"
#include "letsencrypt/io/scope.hpp"
#include "letsencrypt/store/journal.hpp"
#include "letsencrypt/store/replay.hpp"

using namespace letsencrypt;
using namespace letsencrypt::store;

namespace {

std::string temp_dir() {
  std::string t = (std::filesystem::temp_directory_path() / "le-bench-XXXXXX").string();
  if (!::mkdtemp(t.data())) std::abort();
  return t;
}

std::string mem_string(BIO* b) {
  char* p = nullptr;
  long n = BIO_get_mem_data(b, &p);
  return std::string(p, static_cast<std::size_t>(n));
}

// A realistic certificate record: an EC P-256 leaf signed by an issuer, chain of two.
cert_record sample_cert() {
  static cert_record proto = [] {
    cert_record c;
    EVP_PKEY* k = EVP_EC_gen("P-256");
    auto make = [&](const char* cn) {
      X509* x = X509_new();
      X509_set_version(x, 2);
      ASN1_INTEGER_set(X509_get_serialNumber(x), 12345);
      X509_gmtime_adj(X509_getm_notBefore(x), 0);
      X509_gmtime_adj(X509_getm_notAfter(x), 90L * 86400);
      X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                                 reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
      X509_set_issuer_name(x, X509_get_subject_name(x));
      X509_set_pubkey(x, k);
      X509_sign(x, k, EVP_sha256());
      return x;
    };
    BIO* b = BIO_new(BIO_s_mem());
    X509* leaf = make("www.example.org");
    X509* issuer = make("Example Issuing CA R11");
    PEM_write_bio_X509(b, leaf);
    PEM_write_bio_X509(b, issuer);
    c.chain_pem = mem_string(b);
    BIO_free(b);
    b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, k, nullptr, nullptr, 0, nullptr, nullptr);
    c.key_pem = mem_string(b);
    BIO_free(b);
    X509_free(leaf);
    X509_free(issuer);
    EVP_PKEY_free(k);
    c.not_after = unix_seconds(std::chrono::seconds(1'900'000'000));
    c.ari_start = c.not_after - std::chrono::hours(24 * 30);
    c.ari_end = c.ari_start + std::chrono::hours(48);
    c.ari_cert_id = "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE";
    return c;
  }();
  return proto;
}

io::task<void> append_batch(journal& j, int n, int base) {
  std::vector<io::task<result<std::uint64_t>>> ts;
  for (int i = 0; i < n; ++i)
    ts.push_back(j.append(rate_limit_record{"b" + std::to_string((base + i) % 64), double(i), {}}));
  co_await io::when_all(std::move(ts));
}

// Durable appends with `range(0)` concurrent appenders (group commit); 1 means one
// fdatasync per record.
void bm_durable_append(benchmark::State& st) {
  const auto dir = temp_dir();
  journal_options o;
  o.compact_min_dead = 0;
  auto j = journal::open(dir + "/j", o);
  if (!j) std::abort();
  io::ring r;
  const int conc = static_cast<int>(st.range(0));
  int base = 0;
  for (auto _ : st) {
    r.run(append_batch(**j, conc, base));
    base += conc;
  }
  st.SetItemsProcessed(st.iterations() * conc);
  st.counters["fdatasyncs_per_record"] =
      double((*j)->stats().fdatasyncs) / double((*j)->stats().appends);
  j->reset();
  std::filesystem::remove_all(dir);
}
BENCHMARK(bm_durable_append)->Arg(1)->Arg(16)->Arg(256)->UseRealTime();

// Replay of a journal image holding 100k certificates (one name each).
void bm_replay_100k_certs(benchmark::State& st) {
  const int n = 100000;
  cert_record c = sample_cert();
  std::vector<std::byte> img(journal_magic.size());
  std::memcpy(img.data(), journal_magic.data(), journal_magic.size());
  for (int i = 0; i < n; ++i) {
    c.names = {"host" + std::to_string(i) + ".example.org"};
    if (!encode(c, img)) std::abort();
  }
  for (auto _ : st) {
    auto rr = replay(img);
    if (rr.error || rr.records != std::uint64_t(n)) std::abort();
    benchmark::DoNotOptimize(rr.state.certs.size());
  }
  st.counters["bytes_per_cert"] = double(img.size() - journal_magic.size()) / n;
  st.counters["MB"] = double(img.size()) / 1e6;
  st.SetBytesProcessed(st.iterations() * std::int64_t(img.size()));
}
BENCHMARK(bm_replay_100k_certs)->Unit(benchmark::kMillisecond)->Iterations(3);

// Writes a journal of `n` certificate records (sample_cert under n names) at `path`;
// returns its size in bytes.
std::uint64_t write_journal(const std::string& path, int n) {
  auto j = journal::open(path);
  if (!j) std::abort();
  io::ring r;
  cert_record c = sample_cert();
  auto fill = [&]() -> io::task<void> {
    for (int b = 0; b < n; b += 1000) {
      std::vector<io::task<result<std::uint64_t>>> ts;
      for (int i = b; i < b + 1000; ++i) {
        c.names = {"host" + std::to_string(i) + ".example.org"};
        ts.push_back((*j)->append(c));
      }
      co_await io::when_all(std::move(ts));
    }
  };
  r.run(fill());
  return (*j)->stats().bytes;
}

// Open (read + replay + lock) of a 100k-certificate journal file.
void bm_open_100k_certs(benchmark::State& st) {
  const auto dir = temp_dir();
  const int n = 100000;
  st.counters["journal_bytes_per_cert"] = double(write_journal(dir + "/j", n)) / n;
  for (auto _ : st) {
    auto j = journal::open(dir + "/j");
    if (!j || (*j)->state().certs.size() != std::size_t(n)) std::abort();
  }
  std::filesystem::remove_all(dir);
}
BENCHMARK(bm_open_100k_certs)->Unit(benchmark::kMillisecond)->Iterations(3);

long rss_kb() {
  std::ifstream f("/proc/self/status");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  return 0;
}

// A manager starting from a cache of 100k certificates: journal replay, then every
// certificate into the SNI map (deferred: DER kept, validity read, parsed by the first
// handshake), before any CA contact. RSS is the process's growth over the start.
void bm_manager_start_100k_certs(benchmark::State& st) {
  const auto dir = temp_dir();
  const int n = 100000;
  write_journal(dir + "/j", n);
  for (auto _ : st) {
    malloc_trim(0);
    const long before = rss_kb();
    config cfg;
    cfg.shards = 1;
    cfg.log = [](log_level, std::string_view) {};
    auto m = std::make_unique<manager>(cfg);
    if (!m->cache_file(dir + "/j") || m->stats().certificates != std::uint64_t(n)) std::abort();
    st.PauseTiming();
    st.counters["rss_kib_per_cert"] = double(rss_kb() - before) / n;
    m.reset();
    st.ResumeTiming();
  }
  std::filesystem::remove_all(dir);
}
BENCHMARK(bm_manager_start_100k_certs)->Unit(benchmark::kMillisecond)->Iterations(1);

void bm_crc32c(benchmark::State& st) {
  std::vector<std::byte> data(static_cast<std::size_t>(st.range(0)), std::byte{0x5a});
  for (auto _ : st) benchmark::DoNotOptimize(crc32c(data));
  st.SetBytesProcessed(st.iterations() * st.range(0));
}
BENCHMARK(bm_crc32c)->Arg(4096)->Arg(1 << 20);

}  // namespace

BENCHMARK_MAIN();
