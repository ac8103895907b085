#include "pebble_fixture.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

extern char** environ;

namespace letsencrypt::test {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

pebble_error fail(errc code, std::string detail) {
  return pebble_error{make_error_code(code), std::move(detail)};
}
pebble_error fail_errno(const std::string& what) {
  int e = errno;
  return pebble_error{std::error_code(e, std::system_category()),
                      what + ": " + std::strerror(e)};
}

std::string openssl_errors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "no OpenSSL error queued" : out;
}

// Owns a file descriptor; closes it on destruction.
class fd_guard {
 public:
  explicit fd_guard(int fd = -1) noexcept : fd_(fd) {}
  fd_guard(fd_guard&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  fd_guard& operator=(fd_guard&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~fd_guard() { reset(); }
  void reset() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int get() const noexcept { return fd_; }

 private:
  int fd_;
};

template <auto Fn>
struct fn_deleter {
  template <class T>
  void operator()(T* p) const noexcept { Fn(p); }
};
using pkey_ptr = std::unique_ptr<EVP_PKEY, fn_deleter<EVP_PKEY_free>>;
using x509_ptr = std::unique_ptr<X509, fn_deleter<X509_free>>;
using bio_ptr = std::unique_ptr<BIO, fn_deleter<BIO_free_all>>;
using ssl_ctx_ptr = std::unique_ptr<SSL_CTX, fn_deleter<SSL_CTX_free>>;
using ssl_ptr = std::unique_ptr<SSL, fn_deleter<SSL_free>>;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Last `lines` lines of a log file, for error messages.
std::string tail(const std::string& path, int lines = 20) {
  std::string s = read_file(path);
  std::size_t pos = s.size();
  if (pos > 0 && s[pos - 1] == '\n') --pos;
  for (int n = 0; n < lines && pos > 0; ++n) {
    std::size_t nl = s.rfind('\n', pos - 1);
    if (nl == std::string::npos) {
      pos = 0;
      break;
    }
    pos = nl;
  }
  std::string t = s.substr(pos == 0 ? 0 : pos + 1);
  return t.empty() ? "(no output)" : t;
}

pebble_result<void> write_file(const std::string& path, const std::string& data, mode_t mode) {
  fd_guard fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (fd.get() < 0) return unexpected(fail_errno("open " + path));
  std::size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd.get(), data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return unexpected(fail_errno("write " + path));
    }
    off += static_cast<std::size_t>(n);
  }
  return {};
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out;
}

// Picks `n` distinct ports free for TCP on 127.0.0.1 (and for UDP too when `udp_index` names
// one of them), holding all sockets until every port is chosen so none repeats. The ports
// are released before the children (and, for the challenge ports, the test) bind them, so
// they come from just below the kernel's ephemeral range (ip_local_port_range): no connect()
// or bind to port 0 in another test process can take one in between.
pebble_result<std::vector<std::uint16_t>> free_ports(int n, int udp_index) {
  std::vector<fd_guard> held;
  std::vector<std::uint16_t> ports;
  int ephemeral_low = 32768;  // the kernel's default when its setting cannot be read
  if (std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range"); range) range >> ephemeral_low;
  const int high = std::max(ephemeral_low - 1, 2048), low = std::max(high - 12767, 1024);
  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int> pick(low, high);
  for (int attempts = 0; static_cast<int>(ports.size()) < n; ++attempts) {
    if (attempts > 1000)
      return unexpected(fail(errc::busy, "no free loopback ports in " + std::to_string(low) + "-" + std::to_string(high)));
    fd_guard s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (s.get() < 0) return unexpected(fail_errno("socket"));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(pick(rng)));
    if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) continue;  // taken
    if (static_cast<int>(ports.size()) == udp_index) {
      fd_guard u(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
      if (u.get() < 0) return unexpected(fail_errno("socket"));
      if (::bind(u.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) continue;
      held.push_back(std::move(u));
    }
    ports.push_back(ntohs(a.sin_port));
    held.push_back(std::move(s));
  }
  return ports;
}

// --- certificates -------------------------------------------------------------------------

pebble_result<pkey_ptr> make_key() {
  pkey_ptr k(EVP_EC_gen("P-256"));
  if (!k) return unexpected(fail(errc::unsupported, "EVP_EC_gen: " + openssl_errors()));
  return k;
}

bool add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (!ext) return false;
  int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  return ok == 1;
}

// Issues a certificate for `key` named `cn`, signed by issuer/issuer_key (self-signed when
// issuer is null), valid from an hour ago for two days.
pebble_result<x509_ptr> make_cert(EVP_PKEY* key, const char* cn, X509* issuer,
                                  EVP_PKEY* issuer_key, bool is_ca) {
  x509_ptr c(X509_new());
  if (!c) return unexpected(fail(errc::invalid_argument, "X509_new: " + openssl_errors()));
  unsigned char serial[16];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  bool ok = X509_set_version(c.get(), 2) == 1 && bn != nullptr &&
            BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(c.get())) != nullptr;
  BN_free(bn);
  X509_NAME* name = X509_get_subject_name(c.get());
  ok = ok &&
       X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                  reinterpret_cast<const unsigned char*>(cn), -1, -1, 0) == 1;
  ok = ok && X509_set_issuer_name(c.get(), issuer ? X509_get_subject_name(issuer) : name) == 1;
  ok = ok && X509_gmtime_adj(X509_getm_notBefore(c.get()), -3600) != nullptr &&
       X509_gmtime_adj(X509_getm_notAfter(c.get()), 2 * 86400) != nullptr;
  ok = ok && X509_set_pubkey(c.get(), key) == 1;
  X509* signer = issuer ? issuer : c.get();
  if (is_ca) {
    ok = ok && add_ext(c.get(), signer, NID_basic_constraints, "critical,CA:TRUE") &&
         add_ext(c.get(), signer, NID_key_usage, "critical,keyCertSign,cRLSign") &&
         add_ext(c.get(), signer, NID_subject_key_identifier, "hash");
  } else {
    ok = ok && add_ext(c.get(), signer, NID_basic_constraints, "critical,CA:FALSE") &&
         add_ext(c.get(), signer, NID_key_usage, "critical,digitalSignature") &&
         add_ext(c.get(), signer, NID_ext_key_usage, "serverAuth") &&
         add_ext(c.get(), signer, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1") &&
         add_ext(c.get(), signer, NID_authority_key_identifier, "keyid:always");
  }
  ok = ok && X509_sign(c.get(), issuer_key ? issuer_key : key, EVP_sha256()) > 0;
  if (!ok) return unexpected(fail(errc::invalid_argument, "making a certificate: " + openssl_errors()));
  return c;
}

std::string cert_pem(X509* c) {
  bio_ptr b(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(b.get(), c);
  char* data = nullptr;
  long n = BIO_get_mem_data(b.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

std::string key_pem(EVP_PKEY* k) {
  bio_ptr b(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(b.get(), k, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long n = BIO_get_mem_data(b.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

// --- processes ----------------------------------------------------------------------------

std::string find_program(const std::string& name) {
  if (name.find('/') != std::string::npos) return ::access(name.c_str(), X_OK) == 0 ? name : "";
  const char* path = std::getenv("PATH");
  std::string p = path ? path : "/usr/local/bin:/usr/bin:/bin";
  std::size_t start = 0;
  while (start <= p.size()) {
    std::size_t end = p.find(':', start);
    if (end == std::string::npos) end = p.size();
    std::string dir = p.substr(start, end - start);
    if (dir.empty()) dir = ".";
    std::string full = dir + "/" + name;
    struct stat st{};
    if (::stat(full.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(full.c_str(), X_OK) == 0)
      return full;
    start = end + 1;
  }
  return "";
}

// Starts `program` with `args`, the current environment minus any PEBBLE_* plus `env`, stdin
// from /dev/null and stdout+stderr appended to `log`.
pebble_result<pid_t> spawn(const std::string& program, const std::vector<std::string>& args,
                           const std::vector<std::string>& env, const std::string& log) {
  std::string path = find_program(program);
  if (path.empty())
    return unexpected(fail(errc::not_found, program + ": not found or not executable"));
  fd_guard out(::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (out.get() < 0) return unexpected(fail_errno("open " + log));
  fd_guard in(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (in.get() < 0) return unexpected(fail_errno("open /dev/null"));

  // Everything the child needs is built before fork: after it only async-signal-safe calls.
  std::vector<std::string> envs;
  for (char** e = environ; e && *e; ++e)
    if (std::strncmp(*e, "PEBBLE_", 7) != 0) envs.emplace_back(*e);
  envs.insert(envs.end(), env.begin(), env.end());
  std::vector<char*> argv{const_cast<char*>(path.c_str())};
  for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (auto& e : envs) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  pid_t parent = ::getpid();

  pid_t pid = ::fork();
  if (pid < 0) return unexpected(fail_errno("fork"));
  if (pid == 0) {
    // Dies with the test process, so an aborted test leaves no CA running.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::setpgid(0, 0);
    if (::dup2(in.get(), 0) < 0 || ::dup2(out.get(), 1) < 0 || ::dup2(out.get(), 2) < 0)
      ::_exit(127);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  return pid;
}

// Reaps `pid` if it has exited: its wait status, or nullopt while it runs.
std::optional<int> exited(pid_t pid) {
  int status = 0;
  pid_t r;
  do r = ::waitpid(pid, &status, WNOHANG);
  while (r < 0 && errno == EINTR);
  if (r == pid) return status;
  if (r < 0) return -1;  // not our child any more: treat as gone
  return std::nullopt;
}

std::string describe_status(int status) {
  if (status == -1) return "vanished";
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("killed by signal ") + strsignal(WTERMSIG(status));
  return "stopped";
}

void terminate(pid_t& pid) noexcept {
  if (pid <= 0) return;
  if (!exited(pid)) {
    ::kill(pid, SIGTERM);
    auto until = std::chrono::steady_clock::now() + 3s;
    while (std::chrono::steady_clock::now() < until) {
      if (exited(pid)) {
        pid = -1;
        return;
      }
      std::this_thread::sleep_for(10ms);
    }
    ::kill(pid, SIGKILL);
    int status;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  pid = -1;
}

}  // namespace

// --- HTTP ---------------------------------------------------------------------------------

pebble_result<http_reply> loopback_http(std::uint16_t port, const std::string& method,
                                        const std::string& path, const std::string& body,
                                        const std::string& ca_pem) {
  fd_guard s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (s.get() < 0) return unexpected(fail_errno("socket"));
  timeval tv{5, 0};
  ::setsockopt(s.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(s.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0)
    return unexpected(fail_errno("connect 127.0.0.1:" + std::to_string(port)));

  std::string req = method + " " + path + " HTTP/1.0\r\nHost: 127.0.0.1:" + std::to_string(port) +
                    "\r\nUser-Agent: pebble-fixture\r\nContent-Type: application/json\r\n"
                    "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  std::string resp;
  if (ca_pem.empty()) {
    std::size_t off = 0;
    while (off < req.size()) {
      ssize_t n = ::send(s.get(), req.data() + off, req.size() - off, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        return unexpected(fail_errno("send"));
      }
      off += static_cast<std::size_t>(n);
    }
    char buf[4096];
    for (;;) {
      ssize_t n = ::recv(s.get(), buf, sizeof buf, 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        return unexpected(fail_errno("recv"));
      }
      if (n == 0) break;
      resp.append(buf, static_cast<std::size_t>(n));
    }
  } else {
    ERR_clear_error();
    ssl_ctx_ptr ctx(SSL_CTX_new(TLS_client_method()));
    if (!ctx) return unexpected(fail(errc::unsupported, "SSL_CTX_new: " + openssl_errors()));
    bio_ptr pem(BIO_new_mem_buf(ca_pem.data(), static_cast<int>(ca_pem.size())));
    x509_ptr ca(PEM_read_bio_X509(pem.get(), nullptr, nullptr, nullptr));
    if (!ca || X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx.get()), ca.get()) != 1)
      return unexpected(fail(errc::invalid_argument, "bad CA PEM: " + openssl_errors()));
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
    ssl_ptr ssl(SSL_new(ctx.get()));
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl.get()), "127.0.0.1");
    SSL_set_fd(ssl.get(), s.get());
    if (SSL_connect(ssl.get()) != 1)
      return unexpected(fail(errc::protocol_error,
                             "TLS handshake with 127.0.0.1:" + std::to_string(port) + ": " +
                                 X509_verify_cert_error_string(SSL_get_verify_result(ssl.get())) +
                                 " / " + openssl_errors()));
    std::size_t written = 0;
    if (SSL_write_ex(ssl.get(), req.data(), req.size(), &written) != 1 || written != req.size())
      return unexpected(fail(errc::closed, "TLS write: " + openssl_errors()));
    char buf[4096];
    for (;;) {
      std::size_t n = 0;
      if (SSL_read_ex(ssl.get(), buf, sizeof buf, &n) != 1) {
        int err = SSL_get_error(ssl.get(), 0);
        // Go closes without close_notify on HTTP/1.0; treat EOF as the end of the body.
        if (err == SSL_ERROR_ZERO_RETURN || err == SSL_ERROR_SYSCALL || err == SSL_ERROR_SSL) {
          ERR_clear_error();
          break;
        }
        return unexpected(fail(errc::protocol_error, "TLS read: " + openssl_errors()));
      }
      resp.append(buf, n);
    }
  }
  // "HTTP/1.x NNN ..." then headers, blank line, body (HTTP/1.0: no chunking, body to EOF).
  http_reply r;
  if (resp.size() < 12 || resp.compare(0, 5, "HTTP/") != 0)
    return unexpected(fail(errc::protocol_error, "not an HTTP response from port " +
                                                     std::to_string(port)));
  r.status = std::atoi(resp.c_str() + 9);
  std::size_t hdr_end = resp.find("\r\n\r\n");
  if (hdr_end == std::string::npos)
    return unexpected(fail(errc::protocol_error, "truncated HTTP response"));
  r.body = resp.substr(hdr_end + 4);
  return r;
}

// --- pebble_ca ----------------------------------------------------------------------------

bool pebble_ca::installed() { return installed(options{}); }

pebble_result<std::unique_ptr<pebble_ca>> pebble_ca::start() { return start(options{}); }

bool pebble_ca::installed(const options& o) {
  return !find_program(o.pebble_program).empty() && !find_program(o.challtestsrv_program).empty();
}

std::string pebble_ca::management_url() const {
  return "https://127.0.0.1:" + std::to_string(management_port_);
}
std::string pebble_ca::challtestsrv_url() const {
  return "http://127.0.0.1:" + std::to_string(challtestsrv_port_);
}

pebble_result<std::unique_ptr<pebble_ca>> pebble_ca::start(options o) {
  if (o.nonce_reject_percent < 0 || o.nonce_reject_percent > 100)
    return unexpected(fail(errc::invalid_argument, "nonce_reject_percent must be 0..100"));
  if (o.authz_reuse_percent && (*o.authz_reuse_percent < 0 || *o.authz_reuse_percent > 100))
    return unexpected(fail(errc::invalid_argument, "authz_reuse_percent must be 0..100"));
  if (o.certificate_validity_seconds && *o.certificate_validity_seconds <= 0)
    return unexpected(fail(errc::invalid_argument, "certificate_validity_seconds must be > 0"));
  // Ports are picked, released, then bound by the children: another process may take one in
  // between. That shows as "address already in use" and is retried with new ports.
  for (int attempt = 0;; ++attempt) {
    auto r = start_once(o);
    if (r || attempt == 2 || r.error().detail.find("address already in use") == std::string::npos)
      return r;
  }
}

pebble_result<std::unique_ptr<pebble_ca>> pebble_ca::start_once(const options& o) {
  std::unique_ptr<pebble_ca> ca(new pebble_ca());
  char tmpl[] = "/tmp/pebble-fixture-XXXXXX";
  if (!::mkdtemp(tmpl)) return unexpected(fail_errno("mkdtemp"));
  ca->dir_ = tmpl;

  LE_TRY(ports, free_ports(6, 2));
  ca->acme_port_ = ports[0];
  ca->management_port_ = ports[1];
  ca->dns_port_ = ports[2];
  ca->challtestsrv_port_ = ports[3];
  ca->http_port_ = o.http_port ? o.http_port : ports[4];
  ca->tls_port_ = o.tls_port ? o.tls_port : ports[5];

  LE_TRY(ca_key, make_key());
  LE_TRY(ca_cert, make_cert(ca_key.get(), "pebble fixture throwaway HTTPS CA", nullptr, nullptr, true));
  LE_TRY(leaf_key, make_key());
  LE_TRY(leaf, make_cert(leaf_key.get(), "localhost", ca_cert.get(), ca_key.get(), false));
  ca->https_ca_pem_ = cert_pem(ca_cert.get());
  ca->https_ca_file_ = ca->dir_ + "/https-ca.pem";
  const std::string cert_file = ca->dir_ + "/https.pem", key_file = ca->dir_ + "/https.key";
  LE_TRY_VOID(write_file(ca->https_ca_file_, ca->https_ca_pem_, 0644));
  LE_TRY_VOID(write_file(cert_file, cert_pem(leaf.get()), 0644));
  LE_TRY_VOID(write_file(key_file, key_pem(leaf_key.get()), 0600));

  std::string cfg = "{\n  \"pebble\": {\n";
  cfg += "    \"listenAddress\": \"127.0.0.1:" + std::to_string(ca->acme_port_) + "\",\n";
  cfg += "    \"managementListenAddress\": \"127.0.0.1:" + std::to_string(ca->management_port_) +
         "\",\n";
  cfg += "    \"certificate\": \"" + json_escape(cert_file) + "\",\n";
  cfg += "    \"privateKey\": \"" + json_escape(key_file) + "\",\n";
  cfg += "    \"httpPort\": " + std::to_string(ca->http_port_) + ",\n";
  cfg += "    \"tlsPort\": " + std::to_string(ca->tls_port_) + ",\n";
  cfg += "    \"ocspResponderURL\": \"\",\n";
  if (o.certificate_validity_seconds)
    cfg += "    \"certificateValidityPeriod\": " + std::to_string(*o.certificate_validity_seconds) +
           ",\n";
  if (!o.eab_keys.empty()) {
    cfg += "    \"externalAccountMACKeys\": {";
    bool first = true;
    for (auto& [kid, key] : o.eab_keys) {
      cfg += std::string(first ? "" : ",") + "\n      \"" + json_escape(kid) + "\": \"" +
             json_escape(key) + "\"";
      first = false;
    }
    cfg += "\n    },\n";
  }
  cfg += std::string("    \"externalAccountBindingRequired\": ") +
         (o.eab_required ? "true" : "false") + "\n  }\n}\n";
  const std::string cfg_file = ca->dir_ + "/pebble-config.json";
  LE_TRY_VOID(write_file(cfg_file, cfg, 0644));

  ca->pebble_log_ = ca->dir_ + "/pebble.log";
  ca->challtestsrv_log_ = ca->dir_ + "/challtestsrv.log";
  const std::string dns_addr = "127.0.0.1:" + std::to_string(ca->dns_port_);
  LE_TRY(cts_pid, spawn(o.challtestsrv_program,
                        {"-defaultIPv4", "127.0.0.1", "-defaultIPv6", "", "-dns01", dns_addr,
                         "-management", "127.0.0.1:" + std::to_string(ca->challtestsrv_port_),
                         "-http01", "", "-https01", "", "-tlsalpn01", ""},
                        {}, ca->challtestsrv_log_));
  ca->challtestsrv_pid_ = cts_pid;

  std::vector<std::string> env{"PEBBLE_WFE_NONCEREJECT=" + std::to_string(o.nonce_reject_percent)};
  if (o.va_nosleep) env.push_back("PEBBLE_VA_NOSLEEP=1");
  if (o.authz_reuse_percent)
    env.push_back("PEBBLE_AUTHZREUSE=" + std::to_string(*o.authz_reuse_percent));
  LE_TRY(pebble_pid,
         spawn(o.pebble_program, {"-config", cfg_file, "-dnsserver", dns_addr}, env, ca->pebble_log_));
  ca->pebble_pid_ = pebble_pid;
  ca->directory_url_ = "https://127.0.0.1:" + std::to_string(ca->acme_port_) + "/dir";

  // Ready when the directory answers over verified HTTPS and challtestsrv takes a command.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(o.startup_timeout_ms);
  std::string last_error = "no answer yet";
  for (;;) {
    if (auto st = exited(ca->pebble_pid_)) {
      ca->pebble_pid_ = -1;
      return unexpected(fail(errc::closed, o.pebble_program + " " + describe_status(*st) +
                                               " during start-up; log tail:\n" +
                                               tail(ca->pebble_log_)));
    }
    if (auto st = exited(ca->challtestsrv_pid_)) {
      ca->challtestsrv_pid_ = -1;
      return unexpected(fail(errc::closed, o.challtestsrv_program + " " + describe_status(*st) +
                                               " during start-up; log tail:\n" +
                                               tail(ca->challtestsrv_log_)));
    }
    auto dir = loopback_http(ca->acme_port_, "GET", "/dir", {}, ca->https_ca_pem_);
    if (dir && dir->status == 200) {
      auto probe = ca->clear_txt("pebble-fixture-probe.invalid");
      if (probe) break;
      last_error = probe.error().detail;
    } else {
      last_error = dir ? "directory status " + std::to_string(dir->status) : dir.error().detail;
    }
    if (std::chrono::steady_clock::now() > deadline)
      return unexpected(fail(errc::timed_out, "pebble did not become ready within " +
                                                  std::to_string(o.startup_timeout_ms) +
                                                  " ms (" + last_error + "); pebble log tail:\n" +
                                                  tail(ca->pebble_log_) +
                                                  "\nchalltestsrv log tail:\n" +
                                                  tail(ca->challtestsrv_log_)));
    std::this_thread::sleep_for(20ms);
  }
  LE_TRY(root, ca->management_get("/roots/0"));
  LE_TRY(inter, ca->management_get("/intermediates/0"));
  ca->root_pem_ = std::move(root);
  ca->intermediate_pem_ = std::move(inter);
  return ca;
}

pebble_ca::~pebble_ca() {
  stop();
  if (!dir_.empty()) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
}

void pebble_ca::stop() noexcept {
  // Pebble first: it is the client of the DNS server.
  terminate(pebble_pid_);
  terminate(challtestsrv_pid_);
}

pebble_result<std::string> pebble_ca::management_get(const std::string& path) const {
  LE_TRY(r, loopback_http(management_port_, "GET", path, {}, https_ca_pem_));
  if (r.status != 200)
    return unexpected(fail(errc::not_found, "GET " + management_url() + path + ": status " +
                                                std::to_string(r.status) + ": " + r.body));
  return std::move(r.body);
}

pebble_result<void> pebble_ca::challtestsrv_post(const std::string& path, const std::string& body) {
  LE_TRY(r, loopback_http(challtestsrv_port_, "POST", path, body));
  if (r.status != 200)
    return unexpected(fail(errc::protocol_error, "POST " + challtestsrv_url() + path + ": status " +
                                                     std::to_string(r.status) + ": " + r.body));
  return {};
}

namespace {
std::string fqdn(const std::string& name) {
  return !name.empty() && name.back() == '.' ? name : name + ".";
}
}  // namespace

pebble_result<void> pebble_ca::set_txt(const std::string& name, const std::string& value) {
  return challtestsrv_post("/set-txt", "{\"host\":\"" + json_escape(fqdn(name)) +
                                           "\",\"value\":\"" + json_escape(value) + "\"}");
}

pebble_result<void> pebble_ca::clear_txt(const std::string& name) {
  return challtestsrv_post("/clear-txt", "{\"host\":\"" + json_escape(fqdn(name)) + "\"}");
}

pebble_result<void> pebble_ca::add_a(const std::string& name, const std::string& ip) {
  bool v6 = ip.find(':') != std::string::npos;
  return challtestsrv_post(v6 ? "/add-aaaa" : "/add-a", "{\"host\":\"" + json_escape(fqdn(name)) +
                                                             "\",\"addresses\":[\"" +
                                                             json_escape(ip) + "\"]}");
}

}  // namespace letsencrypt::test
