// gen-certs: a throwaway CA and K ECDSA P-256 leaf certificates for generated names, as PEM
// files plus an nginx configuration fragment with one server block per name. For benchmarks
// and tests only: the CA key is written next to the certificates.
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/core.h>

#include "letsencrypt/tls/handles.hpp"

namespace {

using namespace letsencrypt;
namespace fs = std::filesystem;

const char* usage_text = R"(usage: gen-certs --out DIR [options]

Writes a throwaway CA and K ECDSA P-256 leaf certificates, one per generated name:
  DIR/ca.crt, DIR/ca.key          the CA (self-signed, P-256)
  DIR/certs/NAME.crt              leaf certificate followed by the CA certificate
  DIR/certs/NAME.key              the leaf's key (with --distinct-keys)
  DIR/shared.key                  the one key of every leaf (without --distinct-keys)
  DIR/names.txt                   the names, one per line
  DIR/nginx-servers.conf          one nginx server block per name (listen, server_name,
                                  ssl_certificate, ssl_certificate_key, "return 200")
Options:
  --out DIR            output directory (created; existing files are overwritten)
  -k, --count K        number of names (default 1)
  --pattern PAT        name pattern with one %d (default name-%d.bench.test)
  --distinct-keys      a fresh key per leaf (default: one key shared by every leaf)
  --listen ADDR:PORT   listen directive of the nginx blocks (default 127.0.0.1:8443)
  --days N             validity in days (default 30)
  -h, --help           this text
)";

[[noreturn]] void usage_error(const std::string& msg) {
  fmt::print(stderr, "gen-certs: {}\n(see --help)\n", msg);
  std::exit(2);
}

[[noreturn]] void fatal(const std::string& msg) {
  unsigned long e = ERR_get_error();
  if (e) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    fmt::print(stderr, "gen-certs: {} ({})\n", msg, buf);
  } else {
    fmt::print(stderr, "gen-certs: {}\n", msg);
  }
  std::exit(1);
}

void write_file(const fs::path& p, std::string_view data, mode_t mode) {
  int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) fatal("cannot write " + p.string() + ": " + std::strerror(errno));
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n <= 0) {
      ::close(fd);
      fatal("cannot write " + p.string() + ": " + std::strerror(errno));
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  ::close(fd);
}

void add_ext(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (!ext) fatal("cannot make extension " + value);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// A certificate for `cn` with `key`'s public half, signed by `issuer_key` (self-signed when
// issuer is null).
tls::x509_ptr make_cert(const std::string& cn, EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key, long days, bool ca) {
  tls::x509_ptr cert(X509_new());
  if (!cert) fatal("out of memory");
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), days * 86400L);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer) : name);
  X509_set_pubkey(cert.get(), key);
  X509* iss = issuer ? issuer : cert.get();
  if (ca) {
    add_ext(cert.get(), iss, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(cert.get(), iss, NID_key_usage, "critical,keyCertSign,cRLSign");
    add_ext(cert.get(), iss, NID_subject_key_identifier, "hash");
  } else {
    add_ext(cert.get(), iss, NID_basic_constraints, "critical,CA:FALSE");
    add_ext(cert.get(), iss, NID_key_usage, "critical,digitalSignature");
    add_ext(cert.get(), iss, NID_ext_key_usage, "serverAuth");
    add_ext(cert.get(), iss, NID_subject_alt_name, "DNS:" + cn);
    add_ext(cert.get(), iss, NID_authority_key_identifier, "keyid");
  }
  if (X509_sign(cert.get(), issuer_key, EVP_sha256()) == 0) fatal("cannot sign the certificate of " + cn);
  return cert;
}

std::string pem_of(X509* c) {
  auto r = tls::to_pem(c);
  if (!r) fatal("cannot encode a certificate");
  return std::move(*r);
}

std::string pem_of(EVP_PKEY* k) {
  auto r = tls::to_pem(k);
  if (!r) fatal("cannot encode a key");
  return std::move(*r);
}

}  // namespace

int main(int argc, char** argv) {
  std::string out;
  std::string pattern = "name-%d.bench.test";
  std::string listen = "127.0.0.1:8443";
  unsigned long count = 1;
  long days = 30;
  bool distinct = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto need = [&]() -> std::string {
      if (i + 1 >= argc) usage_error(a + " needs a value");
      return argv[++i];
    };
    auto number = [&](const std::string& s) {
      unsigned long v = 0;
      auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      if (ec != std::errc() || p != s.data() + s.size()) usage_error(a + ": not a number: '" + s + "'");
      return v;
    };
    if (a == "-h" || a == "--help") {
      fmt::print("{}", usage_text);
      return 0;
    } else if (a == "--out") {
      out = need();
    } else if (a == "-k" || a == "--count") {
      count = number(need());
      if (count == 0 || count > 10'000'000) usage_error("--count must be 1..10000000");
    } else if (a == "--pattern") {
      pattern = need();
    } else if (a == "--distinct-keys") {
      distinct = true;
    } else if (a == "--listen") {
      listen = need();
    } else if (a == "--days") {
      days = static_cast<long>(number(need()));
      if (days == 0 || days > 3650) usage_error("--days must be 1..3650");
    } else {
      usage_error("unknown argument '" + a + "'");
    }
  }
  if (out.empty()) usage_error("--out is required");
  auto at = pattern.find("%d");
  if (at == std::string::npos || pattern.find('%') != at || pattern.find('%', at + 2) != std::string::npos)
    usage_error("--pattern needs exactly one %d and no other %");
  if (listen.find_first_of(" ;{}\"'\n") != std::string::npos) usage_error("--listen must be ADDR:PORT");

  auto t0 = std::chrono::steady_clock::now();
  fs::path dir = fs::absolute(out);
  std::error_code ec;
  fs::create_directories(dir / "certs", ec);
  if (ec) fatal("cannot create " + (dir / "certs").string() + ": " + ec.message());

  auto ca_key = tls::generate_ec_p256_key();
  if (!ca_key) fatal("cannot generate a key");
  auto ca = make_cert("handshake-bench CA", ca_key->get(), nullptr, ca_key->get(), days, true);
  std::string ca_pem = pem_of(ca.get());
  write_file(dir / "ca.crt", ca_pem, 0644);
  write_file(dir / "ca.key", pem_of(ca_key->get()), 0600);

  tls::evp_pkey_ptr shared;
  fs::path shared_path = dir / "shared.key";
  if (!distinct) {
    auto k = tls::generate_ec_p256_key();
    if (!k) fatal("cannot generate a key");
    shared = std::move(*k);
    write_file(shared_path, pem_of(shared.get()), 0600);
  }

  std::string names;
  std::string nginx;
  nginx.reserve(count * 300);
  for (unsigned long i = 0; i < count; ++i) {
    std::string name = pattern.substr(0, at) + std::to_string(i) + pattern.substr(at + 2);
    if (name.size() > 253 || name.find_first_of(" ;{}\"'/\n") != std::string::npos)
      usage_error("the pattern makes an unusable name: " + name);
    tls::evp_pkey_ptr own;
    EVP_PKEY* key = shared.get();
    fs::path key_path = shared_path;
    if (distinct) {
      auto k = tls::generate_ec_p256_key();
      if (!k) fatal("cannot generate a key");
      own = std::move(*k);
      key = own.get();
      key_path = dir / "certs" / (name + ".key");
      write_file(key_path, pem_of(key), 0600);
    }
    auto leaf = make_cert(name, key, ca.get(), ca_key->get(), days, false);
    fs::path crt_path = dir / "certs" / (name + ".crt");
    write_file(crt_path, pem_of(leaf.get()) + ca_pem, 0644);
    names += name;
    names += '\n';
    nginx += fmt::format(
        "server {{\n    listen {} ssl;\n    server_name {};\n    ssl_certificate {};\n    ssl_certificate_key {};\n"
        "    location / {{ return 200 \"ok\\n\"; }}\n}}\n",
        listen, name, crt_path.string(), key_path.string());
  }
  write_file(dir / "names.txt", names, 0644);
  write_file(dir / "nginx-servers.conf", nginx, 0644);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  fmt::print("gen-certs: {} certificate(s) for {} in {:.2f}s ({}) -> {}\n", count,
             count == 1 ? pattern.substr(0, at) + "0" + pattern.substr(at + 2) : pattern, secs,
             distinct ? "distinct keys" : "one key shared by all leafs", dir.string());
  return 0;
}
