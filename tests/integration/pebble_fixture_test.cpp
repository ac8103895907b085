#include "pebble_fixture.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <simdjson.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace letsencrypt;
using namespace letsencrypt::test;
using namespace std::chrono_literals;

namespace {

#define SKIP_WITHOUT_PEBBLE()                                                    \
  do {                                                                           \
    if (!pebble_ca::installed())                                                 \
      GTEST_SKIP() << "pebble not installed: apt-get install pebble";           \
  } while (0)

std::unique_ptr<pebble_ca> start_or_fail(pebble_ca::options o = pebble_ca::options()) {
  auto r = pebble_ca::start(std::move(o));
  EXPECT_TRUE(r) << (r ? "" : r.error().message());
  return r ? std::move(r).value() : nullptr;
}

// Runs a shell command, returning its stdout and exit status.
std::pair<std::string, int> run(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return {"popen failed", -1};
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  int st = ::pclose(p);
  return {out, WIFEXITED(st) ? WEXITSTATUS(st) : -1};
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// True while `pid` exists and is not a zombie.
bool running(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  if (!in) return false;
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z';
}

// Checks the directory over HTTPS with curl, trusting only `ca_file`.
void expect_directory(const std::string& url, const std::string& ca_file) {
  auto [body, rc] = run("curl -sS --max-time 10 --cacert '" + ca_file + "' '" + url + "'");
  ASSERT_EQ(rc, 0) << body;
  simdjson::dom::parser parser;
  simdjson::dom::element dir;
  ASSERT_EQ(parser.parse(body).get(dir), simdjson::SUCCESS) << body;
  for (const char* key : {"newNonce", "newAccount", "newOrder"}) {
    std::string_view v;
    ASSERT_EQ(dir[key].get(v), simdjson::SUCCESS) << key << " missing in " << body;
    EXPECT_EQ(v.rfind("https://127.0.0.1:", 0), 0u) << v;
  }
}

// --- a minimal DNS client -------------------------------------------------------------------

std::vector<std::uint8_t> dns_query(const std::string& name, std::uint16_t qtype,
                                    std::uint16_t id) {
  std::vector<std::uint8_t> q{static_cast<std::uint8_t>(id >> 8), static_cast<std::uint8_t>(id),
                              0x01, 0x00,  // RD
                              0, 1, 0, 0, 0, 0, 0, 0};
  std::size_t start = 0;
  while (start < name.size()) {
    std::size_t dot = name.find('.', start);
    if (dot == std::string::npos) dot = name.size();
    q.push_back(static_cast<std::uint8_t>(dot - start));
    q.insert(q.end(), name.begin() + static_cast<long>(start), name.begin() + static_cast<long>(dot));
    start = dot + 1;
  }
  q.push_back(0);
  q.push_back(static_cast<std::uint8_t>(qtype >> 8));
  q.push_back(static_cast<std::uint8_t>(qtype));
  q.push_back(0);
  q.push_back(1);  // IN
  return q;
}

// Skips a (possibly compressed) name at `pos`; false when it runs off the message.
bool skip_name(const std::vector<std::uint8_t>& m, std::size_t& pos) {
  while (pos < m.size()) {
    std::uint8_t len = m[pos];
    if ((len & 0xc0) == 0xc0) {
      pos += 2;
      return pos <= m.size();
    }
    pos += 1 + len;
    if (len == 0) return pos <= m.size();
  }
  return false;
}

// Sends one UDP query to 127.0.0.1:port and returns the RDATA of every answer of `qtype`
// (TXT: the character-strings concatenated).
std::vector<std::string> resolve(std::uint16_t port, const std::string& name, std::uint16_t qtype) {
  std::vector<std::string> out;
  int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return out;
  timeval tv{3, 0};
  ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::uint16_t id = 0;
  RAND_bytes(reinterpret_cast<unsigned char*>(&id), sizeof id);
  auto q = dns_query(name, qtype, id);
  std::vector<std::uint8_t> m(4096);
  ssize_t n = -1;
  if (::sendto(s, q.data(), q.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof a) ==
      static_cast<ssize_t>(q.size()))
    n = ::recv(s, m.data(), m.size(), 0);
  ::close(s);
  if (n < 12) return out;
  m.resize(static_cast<std::size_t>(n));
  if (m[0] != (id >> 8) || m[1] != (id & 0xff)) return out;
  std::size_t qd = (m[4] << 8) | m[5], an = (m[6] << 8) | m[7];
  std::size_t pos = 12;
  for (std::size_t i = 0; i < qd; ++i) {
    if (!skip_name(m, pos)) return out;
    pos += 4;
  }
  for (std::size_t i = 0; i < an; ++i) {
    if (!skip_name(m, pos) || pos + 10 > m.size()) return out;
    std::uint16_t type = static_cast<std::uint16_t>((m[pos] << 8) | m[pos + 1]);
    std::size_t rdlen = (m[pos + 8] << 8) | m[pos + 9];
    pos += 10;
    if (pos + rdlen > m.size()) return out;
    if (type == qtype) {
      std::string rdata;
      if (qtype == 16) {
        for (std::size_t p = pos; p < pos + rdlen;) {
          std::size_t l = m[p];
          rdata.append(reinterpret_cast<const char*>(&m[p + 1]), std::min(l, pos + rdlen - p - 1));
          p += 1 + l;
        }
      } else {
        rdata.assign(reinterpret_cast<const char*>(&m[pos]), rdlen);
      }
      out.push_back(rdata);
    }
    pos += rdlen;
  }
  return out;
}

std::unique_ptr<X509, decltype(&X509_free)> parse_pem(const std::string& pem) {
  BIO* b = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* x = PEM_read_bio_X509(b, nullptr, nullptr, nullptr);
  BIO_free(b);
  return {x, &X509_free};
}

// --- the fixture ----------------------------------------------------------------------------

TEST(PebbleFixture, DirectoryAnswersOverVerifiedHttps) {
  SKIP_WITHOUT_PEBBLE();
  auto ca = start_or_fail();
  ASSERT_TRUE(ca);
  EXPECT_EQ(ca->directory_url(), "https://127.0.0.1:" + std::to_string(ca->acme_port()) + "/dir");
  EXPECT_EQ(slurp(ca->https_ca_file()), ca->https_ca_pem());
  expect_directory(ca->directory_url(), ca->https_ca_file());

  // A CA that did not sign Pebble's certificate is refused.
  auto other = start_or_fail();
  ASSERT_TRUE(other);
  auto [body, rc] = run("curl -sS --max-time 10 --cacert '" + other->https_ca_file() + "' '" +
                        ca->directory_url() + "' 2>&1");
  EXPECT_NE(rc, 0) << body;
}

TEST(PebbleFixture, IssuingRootIsACaAndSignsTheIntermediate) {
  SKIP_WITHOUT_PEBBLE();
  auto ca = start_or_fail();
  ASSERT_TRUE(ca);
  auto root = parse_pem(ca->issuing_root_pem());
  auto inter = parse_pem(ca->intermediate_pem());
  ASSERT_TRUE(root) << ca->issuing_root_pem();
  ASSERT_TRUE(inter) << ca->intermediate_pem();
  EXPECT_EQ(X509_check_ca(root.get()), 1);
  EXPECT_EQ(X509_check_issued(root.get(), root.get()), X509_V_OK);
  EXPECT_EQ(X509_check_ca(inter.get()), 1);
  EXPECT_EQ(X509_check_issued(root.get(), inter.get()), X509_V_OK);
  EXPECT_EQ(X509_verify(inter.get(), X509_get0_pubkey(root.get())), 1);
  // The fixture's HTTPS CA is a different CA from the issuing root.
  auto https_ca = parse_pem(ca->https_ca_pem());
  ASSERT_TRUE(https_ca);
  EXPECT_NE(X509_cmp(https_ca.get(), root.get()), 0);

  // The management interface answers other paths too, and reports unknown serials as errors.
  auto again = ca->management_get("/roots/0");
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(*again, ca->issuing_root_pem());
  auto missing = ca->management_get("/cert-status-by-serial/0123456789abcdef");
  EXPECT_FALSE(missing);
}

TEST(PebbleFixture, SetTxtIsServedByTheMockDns) {
  SKIP_WITHOUT_PEBBLE();
  auto ca = start_or_fail();
  ASSERT_TRUE(ca);
  const std::string name = "_acme-challenge.example.com";
  EXPECT_TRUE(resolve(ca->dns_port(), name, 16).empty());
  auto set = ca->set_txt(name, "token-value-1");
  ASSERT_TRUE(set) << set.error().message();
  EXPECT_EQ(resolve(ca->dns_port(), name, 16), std::vector<std::string>{"token-value-1"});
  auto cleared = ca->clear_txt(name);
  ASSERT_TRUE(cleared) << cleared.error().message();
  EXPECT_TRUE(resolve(ca->dns_port(), name, 16).empty());

  // Every name resolves to 127.0.0.1 unless told otherwise.
  const std::string loopback("\x7f\x00\x00\x01", 4);
  EXPECT_EQ(resolve(ca->dns_port(), "anything.example.org", 1), std::vector<std::string>{loopback});
  ASSERT_TRUE(ca->add_a("other.example.org", "127.0.0.2"));
  EXPECT_EQ(resolve(ca->dns_port(), "other.example.org", 1),
            std::vector<std::string>{std::string("\x7f\x00\x00\x02", 4)});
  // No AAAA records: Pebble must not try ::1 where the tests do not listen.
  EXPECT_TRUE(resolve(ca->dns_port(), "anything.example.org", 28).empty());
}

TEST(PebbleFixture, TwoFixturesGetDifferentPorts) {
  SKIP_WITHOUT_PEBBLE();
  auto a = start_or_fail();
  auto b = start_or_fail();
  ASSERT_TRUE(a && b);
  // The ports the fixtures' processes listen on. The challenge ports are only where Pebble
  // connects to: nothing holds them until a test binds one, so they are left out.
  std::set<std::uint16_t> ports;
  for (auto* ca : {a.get(), b.get()})
    for (auto p : {ca->acme_port(), ca->management_port(), ca->dns_port(), ca->challtestsrv_port()})
      ports.insert(p);
  EXPECT_EQ(ports.size(), 8u);
  expect_directory(a->directory_url(), a->https_ca_file());
  expect_directory(b->directory_url(), b->https_ca_file());
  EXPECT_NE(a->issuing_root_pem(), b->issuing_root_pem());
}

TEST(PebbleFixture, StopLeavesNoProcessBehind) {
  SKIP_WITHOUT_PEBBLE();
  auto ca = start_or_fail();
  ASSERT_TRUE(ca);
  pid_t p = ca->pebble_pid(), c = ca->challtestsrv_pid();
  ASSERT_GT(p, 0);
  ASSERT_GT(c, 0);
  EXPECT_TRUE(running(p));
  EXPECT_TRUE(running(c));
  std::string dir = ca->directory();
  std::uint16_t acme = ca->acme_port();
  ca->stop();
  EXPECT_EQ(ca->pebble_pid(), -1);
  EXPECT_EQ(ca->challtestsrv_pid(), -1);
  // Reaped, not merely dead: the pids no longer exist.
  EXPECT_EQ(::kill(p, 0), -1);
  EXPECT_EQ(errno, ESRCH);
  EXPECT_EQ(::kill(c, 0), -1);
  EXPECT_EQ(errno, ESRCH);
  EXPECT_FALSE(loopback_http(acme, "GET", "/dir", {}, ca->https_ca_pem()));
  ca->stop();  // idempotent
  ca.reset();
  EXPECT_FALSE(std::filesystem::exists(dir));
}

TEST(PebbleFixture, OptionsReachPebble) {
  SKIP_WITHOUT_PEBBLE();
  pebble_ca::options o;
  o.http_port = 0;
  o.nonce_reject_percent = 37;
  o.certificate_validity_seconds = 3600;
  o.eab_required = true;
  o.eab_keys = {{"kid-1", "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"}};
  auto ca = start_or_fail(o);
  ASSERT_TRUE(ca);
  auto dir = loopback_http(ca->acme_port(), "GET", "/dir", {}, ca->https_ca_pem());
  ASSERT_TRUE(dir) << dir.error().message();
  simdjson::dom::parser parser;
  simdjson::dom::element d;
  ASSERT_EQ(parser.parse(dir->body).get(d), simdjson::SUCCESS) << dir->body;
  bool eab = false;
  ASSERT_EQ(d["meta"]["externalAccountRequired"].get(eab), simdjson::SUCCESS) << dir->body;
  EXPECT_TRUE(eab);
  std::string log = slurp(ca->pebble_log_path());
  EXPECT_NE(log.find("reject 37% of good nonces"), std::string::npos) << log;
  EXPECT_NE(log.find("validity period of 3600 seconds"), std::string::npos) << log;
  EXPECT_NE(log.find("Disabling random VA sleeps"), std::string::npos) << log;
  EXPECT_NE(log.find("DNS resolver for ACME challenges: 127.0.0.1:" +
                     std::to_string(ca->dns_port())),
            std::string::npos)
      << log;
}

TEST(PebbleFixture, ChosenValidationPortsAreUsed) {
  SKIP_WITHOUT_PEBBLE();
  auto first = start_or_fail();
  ASSERT_TRUE(first);
  // Ports a test would have picked for its own challenge servers.
  pebble_ca::options o;
  o.http_port = first->http_port();
  o.tls_port = first->tls_port();
  first.reset();
  auto ca = start_or_fail(o);
  ASSERT_TRUE(ca);
  EXPECT_EQ(ca->http_port(), o.http_port);
  EXPECT_EQ(ca->tls_port(), o.tls_port);
  std::string cfg = slurp(ca->directory() + "/pebble-config.json");
  EXPECT_NE(cfg.find("\"httpPort\": " + std::to_string(o.http_port)), std::string::npos) << cfg;
  EXPECT_NE(cfg.find("\"tlsPort\": " + std::to_string(o.tls_port)), std::string::npos) << cfg;
}

// Writes an executable shell script into `dir` and returns its path.
std::string script_file(const std::string& dir, const std::string& name, const std::string& body) {
  std::string path = dir + "/" + name;
  std::ofstream(path) << "#!/bin/sh\n" << body << "\n";
  std::filesystem::permissions(path, std::filesystem::perms::owner_all);
  return path;
}

TEST(PebbleFixture, BadOptionsAndBrokenProgramsGiveClearErrors) {
  pebble_ca::options bad;
  bad.nonce_reject_percent = 101;
  auto r = pebble_ca::start(bad);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("nonce_reject_percent"), std::string::npos);

  char tmpl[] = "/tmp/pebble-fixture-test-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  struct rm {
    std::string d;
    ~rm() { std::filesystem::remove_all(d); }
  } guard{dir};
  // Stands in for a program that starts and never answers; the fixture must stop it.
  const std::string sleeper = script_file(dir, "sleeper", "exec sleep 30");

  pebble_ca::options missing;
  missing.pebble_program = "/nonexistent/pebble";
  missing.challtestsrv_program = sleeper;
  r = pebble_ca::start(missing);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, make_error_code(errc::not_found));
  EXPECT_NE(r.error().message().find("/nonexistent/pebble"), std::string::npos)
      << r.error().message();

  // A "pebble" that prints and exits: the error names the exit and carries its output.
  pebble_ca::options dies;
  dies.pebble_program = script_file(dir, "dies", "echo 'fake pebble: cannot start' >&2; exit 3");
  dies.challtestsrv_program = sleeper;
  r = pebble_ca::start(dies);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, make_error_code(errc::closed));
  EXPECT_NE(r.error().message().find("exited with status 3 during start-up"), std::string::npos)
      << r.error().message();
  EXPECT_NE(r.error().message().find("fake pebble: cannot start"), std::string::npos)
      << r.error().message();

  // Programs that run but never answer: bounded by startup_timeout_ms, then stopped.
  pebble_ca::options silent;
  silent.pebble_program = sleeper;
  silent.challtestsrv_program = sleeper;
  silent.startup_timeout_ms = 300;
  r = pebble_ca::start(silent);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, make_error_code(errc::timed_out));
  EXPECT_NE(r.error().message().find("did not become ready"), std::string::npos)
      << r.error().message();
  // The sleepers were killed and reaped: no child of this process is left.
  EXPECT_EQ(::waitpid(-1, nullptr, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
}

// An independent ACME client (lego) gets certificates from the fixture's CA: Pebble's DNS
// lookups go to the mock DNS, and its http-01 / tls-alpn-01 validations reach http_port() /
// tls_port() on 127.0.0.1. The chain verifies against issuing_root_pem().
TEST(PebbleFixture, IndependentClientIsIssuedCertificates) {
  SKIP_WITHOUT_PEBBLE();
  if (run("command -v lego").second != 0) GTEST_SKIP() << "lego not installed: apt-get install lego";
  pebble_ca::options o;
  o.certificate_validity_seconds = 86400;
  auto ca = start_or_fail(o);
  ASSERT_TRUE(ca);
  const std::string root_file = ca->directory() + "/issuing-root.pem";
  std::ofstream(root_file) << ca->issuing_root_pem();

  struct challenge {
    const char* domain;
    std::string flags;
  };
  for (const challenge& ch :
       {challenge{"http.fixture.test", "--http --http.port 127.0.0.1:" + std::to_string(ca->http_port())},
        challenge{"tls.fixture.test", "--tls --tls.port 127.0.0.1:" + std::to_string(ca->tls_port())}}) {
    SCOPED_TRACE(ch.domain);
    const std::string path = ca->directory() + "/lego-" + ch.domain;
    auto [out, rc] = run("LEGO_CA_CERTIFICATES='" + ca->https_ca_file() +
                         "' timeout 60 lego --server '" + ca->directory_url() +
                         "' --email test@fixture.test --accept-tos --key-type ec256 --domains " +
                         ch.domain + " " + ch.flags + " --path '" + path + "' run 2>&1");
    ASSERT_EQ(rc, 0) << out;
    const std::string crt = path + "/certificates/" + ch.domain + ".crt";
    auto [verify, vrc] = run("openssl verify -CAfile '" + root_file + "' -untrusted '" + path +
                             "/certificates/" + ch.domain + ".issuer.crt' '" + crt + "' 2>&1");
    EXPECT_EQ(vrc, 0) << verify;
    // The certificate is not trusted by the HTTPS CA: the two CAs are separate.
    auto [wrong, wrc] = run("openssl verify -CAfile '" + ca->https_ca_file() + "' '" + crt + "' 2>&1");
    EXPECT_NE(wrc, 0) << wrong;
    auto [dates, drc] = run("openssl x509 -noout -checkend 86401 -in '" + crt + "'");
    EXPECT_NE(drc, 0) << "validity longer than configured: " << dates;
    auto [dates2, drc2] = run("openssl x509 -noout -checkend 80000 -in '" + crt + "'");
    EXPECT_EQ(drc2, 0) << dates2;
  }
}

// --- tools/ca-env -------------------------------------------------------------------------

std::map<std::string, std::string> parse_env(const std::string& text) {
  std::map<std::string, std::string> m;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    auto eq = line.find('=');
    if (eq != std::string::npos) m[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return m;
}

TEST(CaEnv, StartServesTheDirectoryAndStopEndsBothProcesses) {
  SKIP_WITHOUT_PEBBLE();
  char tmpl[] = "/tmp/ca-env-test-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  const std::string script = LE_CA_ENV_SCRIPT;
  struct cleanup {
    std::string script, dir;
    ~cleanup() {
      std::system(("'" + script + "' stop '" + dir + "' >/dev/null 2>&1").c_str());
      std::filesystem::remove_all(dir);
    }
  } guard{script, dir};

  auto [out, rc] = run("bash '" + script + "' start '" + dir + "' --validity 7200 2>&1");
  ASSERT_EQ(rc, 0) << out;
  auto env = parse_env(slurp(dir + "/env"));
  EXPECT_EQ(parse_env(out), env);  // printed as written
  for (const char* k : {"CA_DIRECTORY_URL", "CA_HTTPS_CA", "CA_ROOT", "CA_INTERMEDIATE",
                        "CA_MANAGEMENT_URL", "CA_HTTP_PORT", "CA_TLS_PORT", "CA_DNS_PORT",
                        "CA_CHALLTESTSRV_URL", "PEBBLE_PID", "CHALLTESTSRV_PID"})
    EXPECT_FALSE(env[k].empty()) << k << " missing in:\n" << out;
  expect_directory(env["CA_DIRECTORY_URL"], env["CA_HTTPS_CA"]);
  auto root = parse_pem(slurp(env["CA_ROOT"]));
  ASSERT_TRUE(root);
  EXPECT_EQ(X509_check_ca(root.get()), 1);
  EXPECT_NE(slurp(dir + "/pebble.log").find("validity period of 7200 seconds"), std::string::npos);

  // Its DNS serves what its challtestsrv API is told.
  auto [set_out, set_rc] =
      run("curl -sS --max-time 5 -d '{\"host\":\"_acme-challenge.ca-env.test.\",\"value\":\"v1\"}' '" +
          env["CA_CHALLTESTSRV_URL"] + "/set-txt' 2>&1");
  ASSERT_EQ(set_rc, 0) << set_out;
  EXPECT_EQ(resolve(static_cast<std::uint16_t>(std::stoi(env["CA_DNS_PORT"])),
                    "_acme-challenge.ca-env.test", 16),
            std::vector<std::string>{"v1"});

  // A second start on the same directory refuses while the first runs.
  auto [again, again_rc] = run("bash '" + script + "' start '" + dir + "' 2>&1");
  EXPECT_NE(again_rc, 0) << again;

  pid_t p = std::stoi(env["PEBBLE_PID"]), c = std::stoi(env["CHALLTESTSRV_PID"]);
  EXPECT_TRUE(running(p));
  EXPECT_TRUE(running(c));
  auto [stop_out, stop_rc] = run("bash '" + script + "' stop '" + dir + "' 2>&1");
  EXPECT_EQ(stop_rc, 0) << stop_out;
  EXPECT_FALSE(running(p));
  EXPECT_FALSE(running(c));
  EXPECT_FALSE(std::filesystem::exists(dir + "/env"));
}

}  // namespace
