// The Quick Start: HTTPS answering "Hello, TLS!" with certificates obtained automatically, and
// plain HTTP redirecting to it (and answering http-01 challenges).
//
//   redirect_server --host example.com [--email you@example.com]
//
// runs against Let's Encrypt on a real host (ports 443 and 80). Against a test CA:
//
//   redirect_server --directory https://127.0.0.1:14000/dir --ca-root pebble-https-ca.pem
//       --https-port 5001 --http-port 5002 --host demo.test --listen 127.0.0.1
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "letsencrypt/letsencrypt.hpp"
#include "letsencrypt/manager.hpp"

namespace {

void usage(const char* argv0) {
  std::printf(
      "usage: %s [options]\n"
      "  --host NAME[,NAME...]  names to serve (the allowlist; default: any name)\n"
      "  --email ADDRESS        contact for the ACME account\n"
      "  --directory URL        ACME directory (default: Let's Encrypt production)\n"
      "  --ca-root FILE         PEM root to trust for the CA's HTTPS API (default: system store)\n"
      "  --https-port P         default 443 (also where tls-alpn-01 is answered)\n"
      "  --http-port P          default 80 (redirects, and http-01); 0 disables it\n"
      "  --listen ADDRESS       numeric address to listen on (default 0.0.0.0)\n"
      "  --cache FILE           the journal (default letsencrypt.cache)\n"
      "  --shards N             event-loop threads (default: one per core)\n",
      argv0);
}

bool read_file(const std::string& path, std::string& out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  std::stringstream ss;
  ss << f.rdbuf();
  out = ss.str();
  return true;
}

}  // namespace

int redirect_server_main(int argc, char** argv) {
  letsencrypt::config cfg;
  std::string cache = "letsencrypt.cache";
  std::vector<std::string> hosts;
  bool with_http = true;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      usage(argv[0]);
      return 0;
    } else if (a == "--host") {
      std::stringstream ss(value());
      for (std::string h; std::getline(ss, h, ',');)
        if (!h.empty()) hosts.push_back(h);
    } else if (a == "--email") {
      cfg.email = value();
    } else if (a == "--directory") {
      cfg.directory_url = value();
    } else if (a == "--ca-root") {
      std::string path = value();
      if (!read_file(path, cfg.ca_root_pem)) {
        std::fprintf(stderr, "cannot read %s: %s\n", path.c_str(), std::strerror(errno));
        return 2;
      }
    } else if (a == "--https-port") {
      cfg.https_port = static_cast<std::uint16_t>(std::stoi(value()));
    } else if (a == "--http-port") {
      cfg.http_port = static_cast<std::uint16_t>(std::stoi(value()));
      with_http = cfg.http_port != 0;
    } else if (a == "--listen") {
      cfg.listen_host = value();
    } else if (a == "--cache") {
      cache = value();
    } else if (a == "--shards") {
      cfg.shards = static_cast<unsigned>(std::stoi(value()));
    } else {
      std::fprintf(stderr, "unknown option %s (see --help)\n", a.c_str());
      return 2;
    }
  }

  // SIGINT/SIGTERM stop the server: block them here, wait for them on a thread.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  letsencrypt::manager m(cfg);
  if (auto r = m.cache_file(cache); !r) {
    std::fprintf(stderr, "cache file %s: %s\n", cache.c_str(), r.error().message().c_str());
    return 1;
  }
  if (!hosts.empty())
    if (auto r = m.set_hosts(hosts); !r) {
      std::fprintf(stderr, "--host: %s\n", r.error().message().c_str());
      return 2;
    }

  auto hello = [](const letsencrypt::http::request&) -> letsencrypt::io::task<letsencrypt::http::response> {
    letsencrypt::http::response r;
    r.status = 200;
    r.headers.push_back({"Content-Type", "text/plain"});
    r.body = "Hello, TLS!\n";
    co_return r;
  };
  if (auto r = m.start(hello, with_http); !r) {
    std::fprintf(stderr, "cannot serve: %s\n", r.error().message().c_str());
    return 1;
  }
  std::printf("listening: https %u, http %u\n", m.https_port(), m.http_port());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&sigs, &sig);
  m.stop();
  auto s = m.stats();
  std::printf("stopped: orders=%llu issued=%llu loaded_from_cache=%llu\n", (unsigned long long)s.orders,
              (unsigned long long)s.issued, (unsigned long long)s.loaded_from_cache);
  return 0;
}

#ifndef LETSENCRYPT_EXAMPLE_NO_MAIN
int main(int argc, char** argv) { return redirect_server_main(argc, argv); }
#endif
