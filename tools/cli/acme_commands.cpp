// letsencrypt obtain / revoke / account: the ACME client from the command line.
#include <openssl/x509.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "http/handlers.hpp"
#include "http/server.hpp"
#include "letsencrypt/acme/client.hpp"
#include "letsencrypt/acme/csr.hpp"
#include "letsencrypt/io/shard.hpp"
#include "letsencrypt/store/journal.hpp"
#include "letsencrypt/tls/acceptor.hpp"
#include "letsencrypt/tls/server_context.hpp"
#include "letsencrypt/tls/handles.hpp"
#include "letsencrypt/tls/resolver.hpp"
#include "manager/solvers.hpp"

extern char** environ;

namespace letsencrypt::cli {
namespace {

bool read_file(const std::string& path, std::string& out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  std::stringstream ss;
  ss << f.rdbuf();
  out = ss.str();
  return true;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string x; std::getline(ss, x, ',');)
    if (!x.empty()) out.push_back(x);
  return out;
}

std::string name_line(X509_NAME* n) {
  char buf[512];
  X509_NAME_oneline(n, buf, sizeof buf);
  return buf;
}

// Prints subject, issuer and expiry of the first certificate of a PEM chain.
void print_certificate(const std::string& chain_pem) {
  auto chain = tls::load_certificate_chain_pem(chain_pem);
  if (!chain || chain->empty()) return;
  X509* leaf = (*chain)[0].get();
  std::tm tm{};
  ASN1_TIME_to_tm(X509_get0_notAfter(leaf), &tm);
  char when[64];
  std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
  std::printf("subject: %s\nissuer:  %s\nexpires: %s\n", name_line(X509_get_subject_name(leaf)).c_str(),
              name_line(X509_get_issuer_name(leaf)).c_str(), when);
}

// The options every ACME subcommand shares.
struct common {
  acme::client_options client;
  std::string cache;
  std::unique_ptr<store::journal> journal;
};

const std::set<std::string> common_values = {"--directory", "--ca-root", "--cache"};

bool load_common(const args& a, common& c) {
  c.client.directory_url = a.get("--directory", c.client.directory_url);
  if (a.has("--ca-root") && !read_file(a.get("--ca-root"), c.client.ca_pem)) {
    std::fprintf(stderr, "error: cannot read --ca-root %s\n", a.get("--ca-root").c_str());
    return false;
  }
  c.cache = a.get("--cache");
  if (c.cache.empty()) {
    std::fprintf(stderr, "error: --cache FILE is required (the journal holding the account and certificates)\n");
    return false;
  }
  store::open_report rep;
  auto j = store::journal::open(c.cache, {}, &rep);
  if (!j) {
    std::fprintf(stderr, "error: cache %s: %s\n", c.cache.c_str(), rep.message.empty() ? j.error().message().c_str() : rep.message.c_str());
    return false;
  }
  c.journal = std::move(*j);
  return true;
}

int fail(const acme::error& e) {
  std::fprintf(stderr, "error: %s\n", e.message().c_str());
  return 1;
}

// The account of the journal, or a new one registered with `ao`.
io::task<acme::acme_result<std::unique_ptr<acme::client>>> open_account(common& c, const acme::account_options* ao) {
  const auto& st = c.journal->state();
  if (st.account && !st.account->url.empty()) {
    auto key = acme::account_key::from_pem(st.account->key_pem);
    if (!key) co_return acme::error(key.error());
    auto cl = std::make_unique<acme::client>(c.client, std::move(*key));
    cl->set_account_url(st.account->url);
    co_return cl;
  }
  if (!ao) co_return acme::error(acme::errc::account_does_not_exist);
  auto key = acme::account_key::generate_p256();
  if (!key) co_return acme::error(key.error());
  auto pem = key->private_pem();
  if (!pem) co_return acme::error(pem.error());
  auto cl = std::make_unique<acme::client>(c.client, std::move(*key));
  auto acct = co_await cl->register_account(*ao);
  if (!acct) co_return std::move(acct).error();
  store::account_record rec{*pem, acct->url, acct->contact, acct->terms_of_service_agreed};
  auto seq = co_await c.journal->append(rec);
  if (!seq) co_return acme::error(seq.error());
  std::printf("account: %s\n", acct->url.c_str());
  co_return cl;
}

// Runs `cmd present|cleanup NAME VALUE` for dns-01.
manager_detail::dns_hook command_hook(std::string cmd) {
  return [cmd](std::string_view name, std::string_view value, bool present) {
    std::string n(name), v(value), verb = present ? "present" : "cleanup";
    const char* argv[] = {cmd.c_str(), verb.c_str(), n.c_str(), v.c_str(), nullptr};
    pid_t pid;
    if (posix_spawnp(&pid, cmd.c_str(), nullptr, nullptr, const_cast<char**>(argv), environ) != 0) return false;
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
  };
}

const char* obtain_help =
    "usage: letsencrypt obtain --domains a,b --cache FILE [options]\n"
    "Obtains one certificate for all the names, answering the challenge itself, records it in\n"
    "the cache file and prints its subject, issuer and expiry.\n"
    "  --directory URL        ACME directory (default: Let's Encrypt production)\n"
    "  --ca-root PEM          root to trust for the CA's HTTPS API (default: system store)\n"
    "  --challenge TYPE       tls-alpn-01 (default), http-01 or dns-01\n"
    "  --tls-port P           where tls-alpn-01 is answered (default 443)\n"
    "  --http-port P          where http-01 is answered (default 80)\n"
    "  --listen ADDRESS       numeric address the challenge servers listen on (default 0.0.0.0)\n"
    "  --dns-hook CMD         dns-01: runs `CMD present|cleanup _acme-challenge.NAME VALUE`\n"
    "  --email E              account contact\n"
    "  --eab-kid K --eab-hmac H   external account binding\n"
    "  --key-type T           p256 (default) or rsa2048 for the certificate key\n"
    "  --agree-tos            agree to the CA's terms of service without asking\n";

}  // namespace

int obtain_command(int argc, char** argv) {
  auto values = common_values;
  values.insert({"--domains", "--challenge", "--tls-port", "--http-port", "--listen", "--dns-hook", "--email", "--eab-kid",
                 "--eab-hmac", "--key-type"});
  args a(argc, argv, values, {"--agree-tos"});
  if (a.help()) return std::printf("%s", obtain_help), 0;
  if (!a.ok()) return 2;
  auto domains = split(a.get("--domains"));
  if (domains.empty()) return std::fprintf(stderr, "error: --domains is required\n%s", obtain_help), 2;
  std::string challenge = a.get("--challenge", "tls-alpn-01");
  if (challenge != "tls-alpn-01" && challenge != "http-01" && challenge != "dns-01")
    return std::fprintf(stderr, "error: unknown --challenge %s\n", challenge.c_str()), 2;
  if (challenge == "dns-01" && !a.has("--dns-hook"))
    return std::fprintf(stderr, "error: dns-01 needs --dns-hook CMD\n"), 2;
  common c;
  if (!load_common(a, c)) return 1;
  c.client.challenge_preference = {challenge};
  std::string listen = a.get("--listen", "0.0.0.0");

  io::shard_group g(1);
  tls::sni_map map;
  tls::resolver res(map);
  http::acme_http01_tokens tokens;
  tls::ssl_ctx_ptr ctx;
  std::unique_ptr<tls::acceptor> acc;
  std::unique_ptr<http::http_service> hs;
  if (challenge == "tls-alpn-01") {
    auto made = tls::make_server_context();
    if (!made) return std::fprintf(stderr, "error: cannot create a TLS context: %s\n", made.error().message().c_str()), 1;
    ctx = std::move(*made);
    res.install(ctx.get());
    tls::acceptor_config ac;
    ac.host = listen;
    ac.port = static_cast<std::uint16_t>(std::stoi(a.get("--tls-port", "443")));
    acc = std::make_unique<tls::acceptor>(g, ctx.get(), ac, [](tls::stream&) -> io::task<void> { co_return; });
    if (auto r = acc->start(); !r)
      return std::fprintf(stderr, "error: cannot listen on %s:%u: %s\n", listen.c_str(), ac.port, r.error().message().c_str()), 1;
  } else if (challenge == "http-01") {
    auto port = static_cast<std::uint16_t>(std::stoi(a.get("--http-port", "80")));
    auto s = http::serve_http(g, listen, port, tokens.as_handler());
    if (!s) return std::fprintf(stderr, "error: cannot listen on %s:%u: %s\n", listen.c_str(), port, s.error().message().c_str()), 1;
    hs = std::move(*s);
  }

  acme::account_options ao;
  if (a.has("--email")) ao.contact.push_back("mailto:" + a.get("--email"));
  ao.eab_kid = a.get("--eab-kid");
  ao.eab_hmac_key = a.get("--eab-hmac");
  bool agree = a.has("--agree-tos");
  ao.accept_terms = [agree](std::string_view tos) {
    if (agree) return true;
    std::printf("Do you agree to the terms of service at %.*s? [y/N] ", int(tos.size()), tos.data());
    std::fflush(stdout);
    std::string line;
    if (!std::getline(std::cin, line)) return false;
    return !line.empty() && (line[0] == 'y' || line[0] == 'Y');
  };

  manager_detail::tls_alpn01_solver alpn(res);
  manager_detail::http01_solver http01(tokens);
  manager_detail::dns01_solver dns01(command_hook(a.get("--dns-hook")));
  acme::order_request req;
  req.names = domains;
  req.key_type = a.get("--key-type") == "rsa2048" ? acme::cert_key_type::rsa2048 : acme::cert_key_type::p256;
  req.solvers = {{"tls-alpn-01", &alpn}, {"http-01", &http01}, {"dns-01", &dns01}};

  io::ring r;
  int rc = r.run([](common& cm, const acme::account_options& o, const acme::order_request& rq) -> io::task<int> {
    auto cl = co_await open_account(cm, &o);
    if (!cl) co_return fail(cl.error());
    auto issued = co_await (*cl)->obtain(rq);
    if (!issued) co_return fail(issued.error());
    store::cert_record rec;
    rec.names = rq.names;
    rec.chain_pem = issued->chain.pem;
    rec.key_pem = issued->key_pem;
    if (auto na = store::pem_not_after(issued->chain.pem)) rec.not_after = *na;
    if (auto id = acme::ari_certificate_id(issued->chain.pem)) rec.ari_cert_id = *id;
    auto seq = co_await cm.journal->append(rec);
    if (!seq) {
      std::fprintf(stderr, "error: the certificate was issued but not recorded in %s: %s\n", cm.cache.c_str(),
                   seq.error().message().c_str());
      co_return 1;
    }
    print_certificate(issued->chain.pem);
    co_return 0;
  }(c, ao, req));
  if (acc) acc->stop();
  if (hs) hs->stop();
  return rc;
}

int revoke_command(int argc, char** argv) {
  auto values = common_values;
  values.insert({"--domain", "--cert", "--reason"});
  args a(argc, argv, values, {"--with-cert-key"});
  const char* help =
      "usage: letsencrypt revoke --cache FILE (--domain NAME | --cert PEM) [--reason N] [--with-cert-key]\n"
      "Revokes a certificate of the cache (by one of its names) or given as a PEM file, signed by\n"
      "the account key, or by the certificate's own key (--with-cert-key, cache certificates only).\n"
      "  --directory URL --ca-root PEM   as for obtain\n"
      "  --reason N   RFC 5280 reason: 0 unspecified, 1 keyCompromise, 4 superseded, 5 cessationOfOperation\n";
  if (a.help()) return std::printf("%s", help), 0;
  if (!a.ok()) return 2;
  common c;
  if (!load_common(a, c)) return 1;
  std::string cert_pem, key_pem;
  if (a.has("--cert")) {
    if (!read_file(a.get("--cert"), cert_pem)) return std::fprintf(stderr, "error: cannot read %s\n", a.get("--cert").c_str()), 1;
  } else if (a.has("--domain")) {
    auto it = c.journal->state().certs.find(a.get("--domain"));
    if (it == c.journal->state().certs.end())
      return std::fprintf(stderr, "error: no certificate for %s in %s\n", a.get("--domain").c_str(), c.cache.c_str()), 1;
    cert_pem = it->second->chain_pem;
    key_pem = it->second->key_pem;
  } else {
    return std::fprintf(stderr, "error: --domain or --cert is required\n%s", help), 2;
  }
  auto reason = static_cast<acme::revocation_reason>(std::stoi(a.get("--reason", "0")));
  bool with_cert_key = a.has("--with-cert-key");
  if (with_cert_key && key_pem.empty()) return std::fprintf(stderr, "error: --with-cert-key needs --domain\n"), 2;
  io::ring r;
  return r.run([](common& cm, std::string cert, std::string key, acme::revocation_reason why, bool by_cert) -> io::task<int> {
    if (by_cert) {
      auto k = acme::account_key::from_pem(key);
      if (!k) co_return fail(k.error());
      // Signed with the certificate's key: the client's own key is never used.
      auto unused = acme::account_key::generate_p256();
      if (!unused) co_return fail(unused.error());
      acme::client cl(cm.client, std::move(*unused));
      auto rv = co_await cl.revoke_with_certificate_key(cert, *k, why);
      if (!rv) co_return fail(rv.error());
    } else {
      auto cl = co_await open_account(cm, nullptr);
      if (!cl) co_return fail(cl.error());
      auto rv = co_await (*cl)->revoke(cert, why);
      if (!rv) co_return fail(rv.error());
    }
    std::printf("revoked\n");
    co_return 0;
  }(c, cert_pem, key_pem, reason, with_cert_key));
}

int account_command(int argc, char** argv) {
  args a(argc, argv, common_values, {});
  const char* help =
      "usage: letsencrypt account show|rollover|deactivate --cache FILE [--directory URL] [--ca-root PEM]\n"
      "  show        print the account URL, status and contacts (never the key)\n"
      "  rollover    replace the account key (RFC 8555 7.3.5) and record the new key\n"
      "  deactivate  deactivate the account at the CA (irreversible)\n";
  if (a.help()) return std::printf("%s", help), 0;
  if (!a.ok()) return 2;
  if (a.positional().size() != 1) return std::fprintf(stderr, "%s", help), 2;
  std::string verb = a.positional()[0];
  if (verb != "show" && verb != "rollover" && verb != "deactivate") return std::fprintf(stderr, "%s", help), 2;
  common c;
  if (!load_common(a, c)) return 1;
  io::ring r;
  return r.run([](common& cm, std::string v) -> io::task<int> {
    auto cl = co_await open_account(cm, nullptr);
    if (!cl) co_return fail(cl.error());
    if (v == "show") {
      auto acct = co_await (*cl)->fetch_account();
      if (!acct) co_return fail(acct.error());
      std::printf("url: %s\nstatus: %s\n", (*cl)->account_url().c_str(), std::string(acme::to_string(acct->status)).c_str());
      for (const auto& ct : acct->contact) std::printf("contact: %s\n", ct.c_str());
      co_return 0;
    }
    if (v == "deactivate") {
      auto acct = co_await (*cl)->deactivate_account();
      if (!acct) co_return fail(acct.error());
      std::printf("deactivated: %s\n", (*cl)->account_url().c_str());
      co_return 0;
    }
    auto nk = acme::account_key::generate_p256();
    if (!nk) co_return fail(nk.error());
    auto pem = nk->private_pem();
    if (!pem) co_return fail(pem.error());
    auto ch = co_await (*cl)->change_key(std::move(*nk));
    if (!ch) co_return fail(ch.error());
    auto rec = *cm.journal->state().account;
    rec.key_pem = *pem;
    auto seq = co_await cm.journal->append(rec);
    if (!seq) {
      std::fprintf(stderr, "error: key rolled over at the CA but not recorded: %s\n", seq.error().message().c_str());
      co_return 1;
    }
    std::printf("rolled over the key of %s\n", (*cl)->account_url().c_str());
    co_return 0;
  }(c, verb));
}

}  // namespace letsencrypt::cli
