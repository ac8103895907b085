// bench_server: the library's TLS server under test by bench/compare-nginx.
//
// A tls::acceptor on one shard (by default) whose certificates come from a directory of PEM
// files loaded into the SNI map and chosen by the ClientHello resolver, with session tickets
// from tls::ticket_keys. Each connection gets its handshake, then one tiny HTTP answer if the
// client sends a request. It prints its PID, the RSS before and after loading the
// certificates and the load time (wall and CPU), then "ready port=N", and runs until SIGINT
// or SIGTERM.
#include <dirent.h>
#include <fcntl.h>
#include <malloc.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <fmt/core.h>

#include "letsencrypt/io/shard.hpp"
#include "letsencrypt/tls/acceptor.hpp"
#include "letsencrypt/tls/handles.hpp"
#include "letsencrypt/tls/resolver.hpp"
#include "letsencrypt/tls/server_context.hpp"
#include "letsencrypt/tls/sni_map.hpp"
#include "letsencrypt/tls/stream.hpp"
#include "letsencrypt/tls/tickets.hpp"

namespace {

using namespace letsencrypt;

const char* usage_text = R"(usage: bench_server --certs DIR [options]

Serves TLS 1.3 (X25519; tickets on) on HOST:PORT with the certificates of DIR, as
tools/gen-certs writes them: DIR/certs/NAME.crt (leaf, then chain) with DIR/certs/NAME.key, or
DIR/shared.key for every leaf that has no own key (parsed once and shared). NAME, the file's
stem, is the SNI name. Answers "GET /" with "200 ok". Prints pid=, rss_before_kb=,
rss_after_kb=, certificates=, load_seconds= (wall) and load_cpu_seconds=, then "ready port=N".
Options:
  --certs DIR       certificate directory (required)
  --host ADDR       numeric listen address (default 127.0.0.1)
  --port PORT       listen port (default 8443; 0 picks one)
  --shards N        event-loop threads (default 1)
  --deferred        keep leaves and their keys as DER until a handshake needs them
                    (tls::deferred_key): faster start, less memory for names not
                    yet asked for, and the first handshake of each name parses
  --parsed-limit N  with --deferred: at most N certificates stay parsed, the ones not
                    used lately dropped first (tls::deferred_cache; default: no limit)
  --openssl-defaults  OpenSSL's TLS 1.3 suite order, the client's preference and two
                    tickets per handshake, as nginx runs with its defaults (default: the
                    library's, see tls::make_server_context)
  -h, --help        this text
)";

[[noreturn]] void usage_error(const std::string& msg) {
  fmt::print(stderr, "bench_server: {}\n(see --help)\n", msg);
  std::exit(2);
}

[[noreturn]] void fatal(const std::string& msg) {
  fmt::print(stderr, "bench_server: {}\n", msg);
  std::exit(1);
}

long rss_kb() {
  std::ifstream f("/proc/self/status");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  return -1;
}

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// One open, one fstat and one read per file: 100k certificates are 100k of these.
bool read_file(const std::string& path, std::string& out) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat st {};
  bool ok = ::fstat(fd, &st) == 0;
  if (ok) {
    out.resize(static_cast<std::size_t>(st.st_size));
    std::size_t got = 0;
    while (ok && got < out.size()) {
      const ssize_t n = ::read(fd, out.data() + got, out.size() - got);
      if (n < 0 && errno == EINTR) continue;
      ok = n > 0;
      if (ok) got += static_cast<std::size_t>(n);
    }
  }
  ::close(fd);
  return ok;
}

bool ends_with(std::string_view s, std::string_view tail) {
  return s.size() >= tail.size() && s.substr(s.size() - tail.size()) == tail;
}

// The CERTIFICATE blocks of a PEM text, in order, as views into it.
std::vector<std::string_view> pem_blocks(std::string_view text) {
  static constexpr std::string_view begin = "-----BEGIN CERTIFICATE-----";
  static constexpr std::string_view end = "-----END CERTIFICATE-----";
  std::vector<std::string_view> out;
  std::size_t at = 0;
  while ((at = text.find(begin, at)) != std::string_view::npos) {
    auto stop = text.find(end, at);
    if (stop == std::string_view::npos) break;
    stop += end.size();
    out.push_back(text.substr(at, stop - at));
    at = stop;
  }
  return out;
}

// The DER of the first PEM block of `pem` labelled `label`, or empty; nothing is parsed.
std::string pem_to_der(std::string_view pem, const char* label) {
  auto blocks = tls::pem_blocks_der(pem, label);
  if (!blocks || blocks->empty()) return {};
  for (std::size_t i = 1; i < blocks->size(); ++i) OPENSSL_cleanse((*blocks)[i].data(), (*blocks)[i].size());
  return std::move(blocks->front());
}

// The PKCS#8 DER of CERTS/NAME.key, or "" when NAME has no readable key file of its own;
// exits when the file holds no "PRIVATE KEY" block. The text read is cleansed.
std::string own_key_der(const std::string& certs, const std::string& name,
                        const std::unordered_set<std::string>& own_keys) {
  std::string text;
  if (!own_keys.count(name) || !read_file(certs + "/" + name + ".key", text)) return {};
  std::string der = pem_to_der(text, "PRIVATE KEY");
  OPENSSL_cleanse(text.data(), text.size());
  if (der.empty()) fatal(certs + "/" + name + ".key: no PKCS#8 \"PRIVATE KEY\" block");
  return der;
}

// Loads every DIR/certs/*.crt into `map`; returns the number loaded. Chain certificates
// that many leafs share (the issuer) are parsed once and shared by reference, as a server
// holding thousands of certificates from one CA would. With `deferred`, leaves and their own
// keys are kept as DER and parsed by the first handshake that needs them
// (tls::deferred_key), counted against `cache` when there is one.
std::size_t load_certificates(const std::string& dir, tls::sni_map& map, bool deferred,
                              const std::shared_ptr<tls::deferred_cache>& cache) {
  std::unordered_map<std::string, tls::x509_ptr> issuers;
  tls::evp_pkey_ptr shared;
  std::string text;
  if (read_file(dir + "/shared.key", text)) {
    auto k = tls::load_private_key_pem(text);
    if (!k) fatal(dir + "/shared.key: " + k.error().message());
    shared = std::move(*k);
  }
  std::string certs = dir + "/certs";
  DIR* d = ::opendir(certs.c_str());
  if (!d) fatal("cannot open " + certs);
  std::vector<std::string> names;
  std::unordered_set<std::string> own_keys;  // stems with a NAME.key beside NAME.crt
  while (dirent* e = ::readdir(d)) {
    std::string_view n = e->d_name;
    if (ends_with(n, ".crt")) names.emplace_back(n.substr(0, n.size() - 4));
    if (ends_with(n, ".key")) own_keys.emplace(n.substr(0, n.size() - 4));
  }
  ::closedir(d);
  if (names.empty()) fatal("no *.crt in " + certs);

  // One write for the whole set, as the Manager loads its cache: a write copies every shard
  // it changes, so writes in batches would copy the growing map once per batch.
  std::vector<tls::sni_update> batch;
  for (const auto& name : names) {
    std::string path = certs + "/" + name + ".crt";
    if (!read_file(path, text)) fatal("cannot read " + path);
    auto blocks = pem_blocks(text);
    if (blocks.empty()) fatal(path + ": no certificate");
    std::vector<X509*> rest;
    for (std::size_t i = 1; i < blocks.size(); ++i) {
      auto [it, fresh] = issuers.try_emplace(std::string(blocks[i]));
      if (fresh) {
        auto c = tls::load_certificate_chain_pem(blocks[i]);
        if (!c) fatal(path + ": " + c.error().message());
        it->second = std::move((*c)[0]);
      }
      rest.push_back(it->second.get());
    }
    if (deferred) {
      std::string leaf_der = pem_to_der(blocks[0], "CERTIFICATE");
      if (leaf_der.empty()) fatal(path + ": the first block does not decode");
      result<std::shared_ptr<const tls::deferred_key>> dk = errc::invalid_argument;
      if (std::string key_der = own_key_der(certs, name, own_keys); !key_der.empty()) {
        dk = tls::deferred_key::make(std::move(leaf_der), std::move(key_der), rest, cache);
      } else if (shared) {
        dk = tls::deferred_key::make(std::move(leaf_der), shared.get(), rest, cache);
      } else {
        fatal("no key for " + path + " (neither " + name + ".key nor shared.key)");
      }
      if (!dk) fatal(path + ": " + dk.error().message());
      batch.push_back(tls::sni_update{name, {}, {std::move(*dk)}});
      continue;
    }
    result<std::shared_ptr<const tls::certified_key>> ck = errc::invalid_argument;
    if (std::string key_der = own_key_der(certs, name, own_keys); !key_der.empty()) {
      // As the Manager loads a certificate with its own PKCS#8 key.
      std::string leaf_der = pem_to_der(blocks[0], "CERTIFICATE");
      if (leaf_der.empty()) fatal(path + ": the first block does not decode");
      ck = tls::load_certified_key_der(leaf_der, key_der, rest);
      OPENSSL_cleanse(key_der.data(), key_der.size());
    } else if (shared) {
      auto leaf = tls::load_certificate_chain_pem(blocks[0]);
      if (!leaf) fatal(path + ": " + leaf.error().message());
      ck = tls::make_certified_key((*leaf)[0].get(), shared.get(), rest);
    } else {
      fatal("no key for " + path + " (neither " + name + ".key nor shared.key)");
    }
    if (!ck) fatal(path + ": " + ck.error().message());
    batch.push_back(tls::sni_update{name, {std::move(*ck)}});
  }
  const std::size_t loaded = batch.size();
  if (auto r = map.apply(std::move(batch)); !r) fatal("cannot load the SNI map: " + r.error().message());
  return loaded;
}

// One tiny HTTP exchange: read a request head, answer 200. A client that leaves after the
// handshake (the usual benchmark case) just ends the connection.
io::task<void> serve(tls::stream& s) {
  static constexpr std::string_view answer = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n";
  auto deadline = io::clock::now() + std::chrono::seconds(5);
  std::array<std::byte, 4096> buf;
  std::string head;
  for (;;) {
    auto n = co_await s.read_some(buf, deadline);
    if (!n || *n == 0) co_return;
    head.append(reinterpret_cast<const char*>(buf.data()), *n);
    if (head.find("\r\n\r\n") != std::string::npos) break;
    if (head.size() > 16 * 1024) co_return;
  }
  (void)co_await s.write_all(std::as_bytes(std::span(answer)), deadline);
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  std::string host = "127.0.0.1";
  unsigned port = 8443;
  unsigned shards = 1;
  bool openssl_defaults = false;
  bool deferred = false;
  unsigned parsed_limit = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto need = [&]() -> std::string {
      if (i + 1 >= argc) usage_error(a + " needs a value");
      return argv[++i];
    };
    auto number = [&](const std::string& s) {
      unsigned v = 0;
      auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      if (ec != std::errc() || p != s.data() + s.size()) usage_error(a + ": not a number: '" + s + "'");
      return v;
    };
    if (a == "-h" || a == "--help") {
      fmt::print("{}", usage_text);
      return 0;
    } else if (a == "--certs") {
      dir = need();
    } else if (a == "--host") {
      host = need();
    } else if (a == "--port") {
      port = number(need());
      if (port > 65535) usage_error("--port must be 0..65535");
    } else if (a == "--deferred") {
      deferred = true;
    } else if (a == "--parsed-limit") {
      parsed_limit = number(need());
    } else if (a == "--openssl-defaults") {
      openssl_defaults = true;
    } else if (a == "--shards") {
      shards = number(need());
      if (shards == 0 || shards > 256) usage_error("--shards must be 1..256");
    } else {
      usage_error("unknown argument '" + a + "'");
    }
  }
  if (dir.empty()) usage_error("--certs is required");
  if (parsed_limit > 0 && !deferred) usage_error("--parsed-limit needs --deferred");

  // Signals go to sigwait below, never to the shard threads that inherit this mask.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  // The library's server defaults (AES-128-GCM-SHA256 preferred, one ticket per handshake),
  // TLS 1.3 and X25519 only, as bench/compare-nginx configures nginx.
  tls::server_context_options opts;
  opts.min_version = TLS1_3_VERSION;
  opts.groups = "X25519";
  if (openssl_defaults) {
    opts.ciphersuites = "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256";
    opts.tickets_per_handshake = 2;
  }
  auto made = tls::make_server_context(opts);
  if (!made) fatal("cannot create an OpenSSL context: " + made.error().message());
  tls::ssl_ctx_ptr ctx = std::move(*made);
  if (openssl_defaults) SSL_CTX_clear_options(ctx.get(), SSL_OP_CIPHER_SERVER_PREFERENCE);
  tls::ticket_keys tickets;
  if (auto r = tickets.install(ctx.get()); !r) fatal("cannot install ticket keys: " + r.error().message());

  long rss_before = rss_kb();
  double cpu0 = cpu_seconds();
  auto t0 = std::chrono::steady_clock::now();
  tls::sni_map map;
  auto cache = parsed_limit > 0 ? tls::deferred_cache::make(parsed_limit) : nullptr;
  std::size_t loaded = load_certificates(dir, map, deferred, cache);
  // The load's scratch memory (file text, the update batch) goes back to the system, as
  // bench_sni's memory figures count it: what stays is what the certificates hold.
  malloc_trim(0);
  double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double load_cpu = cpu_seconds() - cpu0;
  long rss_after = rss_kb();

  tls::resolver res(map);
  res.install(ctx.get());

  io::shard_group group(shards);
  tls::acceptor_config cfg;
  cfg.host = host;
  cfg.port = static_cast<std::uint16_t>(port);
  cfg.handshake_timeout = std::chrono::milliseconds(10'000);
  tls::acceptor acc(group, ctx.get(), cfg, [](tls::stream& s) { return serve(s); });
  if (auto r = acc.start(); !r) fatal(fmt::format("cannot listen on {}:{}: {}", host, port, r.error().message()));

  fmt::print("pid={}\nrss_before_kb={}\nrss_after_kb={}\ncertificates={}\nload_seconds={:.3f}\nload_cpu_seconds={:.3f}\nready port={}\n",
             getpid(), rss_before, rss_after, loaded, load_s, load_cpu, acc.port());
  std::fflush(stdout);

  int sig = 0;
  sigwait(&sigs, &sig);
  acc.stop();
  group.stop();
  auto s = acc.stats();
  auto r = res.stats();
  fmt::print(
      "stopped: accepted={} handshakes_ok={} timeouts={} eof={} protocol={} alert={} no_certificate={} other={} "
      "sni_hits={} sni_misses={} tickets_issued={} tickets_resumed={}\n",
      s.accepted, s.handshakes_ok, s.handshake_timeouts, s.handshake_eof, s.handshake_protocol, s.handshake_alert,
      s.handshake_no_certificate, s.handshake_other, r.hits, r.misses, tickets.stats().issued,
      tickets.stats().resumed_current + tickets.stats().resumed_previous);
  return 0;
}
