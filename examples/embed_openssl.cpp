// An ordinary blocking OpenSSL server (a thread per connection) that gets automatic
// certificates by one call: manager::install(ctx). tls-alpn-01 challenges are answered by
// the same callback, so the server only needs to listen on the port the CA validates.
//
//   embed_openssl --port 443 --host example.com
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "letsencrypt/manager.hpp"

namespace {

void serve_one(letsencrypt::manager& m, SSL_CTX* ctx, int fd) {
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  for (;;) {
    int rc = SSL_accept(ssl);
    if (rc == 1) break;
    if (SSL_get_error(ssl, rc) == SSL_ERROR_WANT_CLIENT_HELLO_CB) {
      // The name has no certificate yet: obtain it (this thread waits; others keep serving),
      // then resume the same handshake.
      std::string name(letsencrypt::manager::pending_name(ssl));
      if (auto r = m.cert_sync(name); !r)
        std::fprintf(stderr, "no certificate for %s: %s\n", name.c_str(), r.error().message().c_str());
      continue;
    }
    SSL_free(ssl);
    ::close(fd);
    return;
  }
  char buf[4096];
  (void)SSL_read(ssl, buf, sizeof buf);
  const char reply[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 19\r\nConnection: close\r\n\r\nHello from OpenSSL\n";
  SSL_write(ssl, reply, sizeof reply - 1);
  SSL_shutdown(ssl);
  SSL_free(ssl);
  ::close(fd);
}

}  // namespace

int main(int argc, char** argv) {
  letsencrypt::config cfg;
  std::uint16_t port = 443;
  std::string listen = "0.0.0.0", cache = "letsencrypt.cache";
  std::vector<std::string> hosts;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i], v = argv[i + 1];
    if (a == "--port") port = static_cast<std::uint16_t>(std::stoi(v));
    else if (a == "--listen") listen = v;
    else if (a == "--host") hosts.push_back(v);
    else if (a == "--directory") cfg.directory_url = v;
    else if (a == "--cache") cache = v;
    else if (a == "--ca-root") {
      std::ifstream f(v);
      std::stringstream ss;
      ss << f.rdbuf();
      cfg.ca_root_pem = ss.str();
    } else {
      std::fprintf(stderr, "usage: %s [--port P] [--listen ADDR] [--host NAME]... [--directory URL] [--ca-root PEM] [--cache FILE]\n", argv[0]);
      return 2;
    }
  }
  cfg.challenges = {letsencrypt::challenge_type::tls_alpn_01};
  letsencrypt::manager m(cfg);
  if (auto r = m.cache_file(cache); !r) return std::fprintf(stderr, "cache: %s\n", r.error().message().c_str()), 1;
  if (!hosts.empty()) (void)m.set_hosts(hosts);

  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  m.install(ctx);  // the one line

  ::signal(SIGPIPE, SIG_IGN);  // peers (the CA's validator among them) may hang up early

  int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  ::inet_pton(AF_INET, listen.c_str(), &a.sin_addr);
  if (::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 || ::listen(lfd, 128) < 0) {
    std::perror("listen");
    return 1;
  }
  std::printf("listening on %s:%u\n", listen.c_str(), port);
  std::fflush(stdout);
  for (;;) {
    int fd = ::accept(lfd, nullptr, nullptr);
    if (fd < 0) continue;
    std::thread(serve_one, std::ref(m), ctx, fd).detach();
  }
}
