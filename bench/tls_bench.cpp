// A TLS 1.3 server's own CPU per handshake, in memory (no sockets, no kernel): a captured
// ClientHello is replayed into a fresh server engine, which answers with its flight through
// Finished, as handshake-bench's flood makes a server do. Two servers in the same run, both
// X25519 and ECDSA P-256 with TLS_AES_128_GCM_SHA256 and one ticket per handshake:
//   ours   tls::make_server_context (the library's context, TLS 1.3 key schedule and X25519
//          key generation), a tls::resolver over an sni_map choosing the certificate from
//          the ClientHello, tls::ticket_keys; the certificate loaded as the Manager loads it
//          (load_certified_key_der: the certificate's key object holds the private key)
//   plain  OpenSSL 3.0 as a server that uses it directly would: the default library
//          context, the certificate and key set once on the SSL_CTX (no per-handshake
//          choice), OpenSSL's own ticket keys
// Full handshakes and resumed ones (a ticket from that server, with its PSK binder). The
// replayed ClientHello carries the same random and key share every time; the server's work
// does not depend on them. The flight ends at the server's Finished, before the client's
// Finished that a TLS 1.3 server waits for to issue its ticket: ticket issuance is not in the
// measurement (a resumed handshake's ticket decryption is).
//
// Timings on a shared VM drift; instruction counts do not:
//   BENCH_TLS_ITERATIONS=200 valgrind --tool=callgrind --toggle-collect='*one_flight*'
//       build/bench/bench_tls --benchmark_filter='ours:1/resumed:0'
// counts one variant's instructions over 200 handshakes.
#include <benchmark/benchmark.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cstddef>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "bench_certs.hpp"
#include "letsencrypt/tls/engine.hpp"
#include "letsencrypt/tls/resolver.hpp"
#include "letsencrypt/tls/server_context.hpp"
#include "letsencrypt/tls/sni_map.hpp"
#include "letsencrypt/tls/tickets.hpp"

using namespace letsencrypt;
using bench::ca;
using bench::fail;

namespace {

constexpr char host_name[] = "bench.example";

std::string der_of(X509* x) {
  unsigned char* der = nullptr;
  const int len = i2d_X509(x, &der);
  if (len <= 0) fail("i2d_X509");
  std::string out(reinterpret_cast<char*>(der), static_cast<std::size_t>(len));
  OPENSSL_free(der);
  return out;
}

std::string pkcs8_of(EVP_PKEY* k) {
  PKCS8_PRIV_KEY_INFO* p8 = EVP_PKEY2PKCS8(k);
  if (!p8) fail("EVP_PKEY2PKCS8");
  unsigned char* der = nullptr;
  const int len = i2d_PKCS8_PRIV_KEY_INFO(p8, &der);
  PKCS8_PRIV_KEY_INFO_free(p8);
  if (len <= 0) fail("i2d_PKCS8_PRIV_KEY_INFO");
  std::string out(reinterpret_cast<char*>(der), static_cast<std::size_t>(len));
  OPENSSL_clear_free(der, static_cast<std::size_t>(len));
  return out;
}

// Moves what `from` wrote into `to`, kept in `store` for as long as `to` reads it.
void move_output(tls::engine& from, tls::engine& to, std::vector<std::byte>& store) {
  auto out = from.pending_output();
  if (out.empty()) return;
  to.keep_input();
  store.assign(out.begin(), out.end());
  from.consume_output(out.size());
  to.feed(store);
}

std::unique_ptr<tls::engine> client_of(SSL_CTX* cctx, SSL_SESSION* resume) {
  tls::ssl_ptr ssl(SSL_new(cctx));
  if (!ssl || SSL_set_tlsext_host_name(ssl.get(), host_name) != 1) fail("client SSL");
  if (resume && SSL_set_session(ssl.get(), resume) != 1) fail("SSL_set_session");
  auto c = tls::engine::create(std::move(ssl), tls::role::client);
  if (!c) fail("client engine");
  return std::move(c).value();
}

// The client's first flight: its ClientHello record.
std::vector<std::byte> client_hello(SSL_CTX* cctx, SSL_SESSION* resume) {
  auto c = client_of(cctx, resume);
  if (c->handshake().state != tls::status::have_output) fail("ClientHello");
  auto out = c->pending_output();
  return {out.begin(), out.end()};
}

// A whole handshake with `sctx` and the ticket that follows it: the session to resume.
tls::ssl_session_ptr ticket_from(SSL_CTX* cctx, SSL_CTX* sctx) {
  using tls::status;
  auto c = client_of(cctx, nullptr);
  auto s = tls::engine::create(sctx, tls::role::server);
  if (!s) fail("server engine");
  std::vector<std::byte> a, b;
  status cst = status::want_input;
  for (int i = 0; i < 10 && cst != status::done; ++i) {
    cst = c->handshake().state;
    move_output(*c, **s, a);
    if ((*s)->handshake().state == status::error) fail("server handshake");
    move_output(**s, *c, b);
  }
  if (cst != status::done) fail("client handshake");
  std::byte buf[16];
  for (int i = 0; i < 3; ++i) {
    move_output(**s, *c, b);
    if (c->read(buf).state == status::error) fail("ticket");
  }
  // A session freed without close_notify is marked not resumable.
  if (c->shutdown().state == status::error) fail("close_notify");
  tls::ssl_session_ptr session(SSL_get1_session(c->native()));
  if (!session || SSL_SESSION_is_resumable(session.get()) != 1) fail("no ticket");
  return session;
}

struct server {
  tls::ssl_ctx_ptr ctx;
  std::vector<std::byte> full_hello, resume_hello;
};

struct fixture {
  tls::sni_map map;
  tls::resolver resolver{map};
  tls::ticket_keys tickets;
  tls::x509_ptr leaf;  // ours' certificate, as parsed into the SNI map
  server ours, plain;
  tls::ssl_ctx_ptr client{SSL_CTX_new(TLS_client_method())};

  fixture() {
    tls::evp_pkey_ptr key(EVP_EC_gen("P-256"));
    if (!key || !client) fail("fixture");
    auto cert = bench::mint(key.get(), host_name, ca().cert.get(), ca().key.get());
    X509* chain[] = {ca().cert.get()};
    auto ck = tls::load_certified_key_der(der_of(cert.get()), pkcs8_of(key.get()), chain);
    if (!ck) fail("load_certified_key_der");
    leaf = tls::up_ref((*ck)->leaf.get());
    if (!map.apply({tls::sni_update{host_name, {std::move(*ck)}}})) fail("sni_map");

    tls::server_context_options o;
    o.min_version = TLS1_3_VERSION;
    o.groups = "X25519";
    auto ctx = tls::make_server_context(o);
    if (!ctx) fail("make_server_context");
    ours.ctx = std::move(*ctx);
    resolver.install(ours.ctx.get());
    if (!tickets.install(ours.ctx.get())) fail("ticket_keys");

    plain.ctx.reset(SSL_CTX_new(TLS_server_method()));
    SSL_CTX* p = plain.ctx.get();
    if (!p || SSL_CTX_set_min_proto_version(p, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_ciphersuites(p, o.ciphersuites.c_str()) != 1 || SSL_CTX_set1_groups_list(p, "X25519") != 1 ||
        SSL_CTX_set_num_tickets(p, 1) != 1 || SSL_CTX_use_certificate(p, cert.get()) != 1 ||
        SSL_CTX_use_PrivateKey(p, key.get()) != 1 || SSL_CTX_add1_chain_cert(p, ca().cert.get()) != 1)
      fail("plain SSL_CTX");
    SSL_CTX_set_options(p, SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_session_cache_mode(p, SSL_SESS_CACHE_OFF);

    SSL_CTX_set_min_proto_version(client.get(), TLS1_3_VERSION);
    SSL_CTX_set1_groups_list(client.get(), "X25519");
    for (server* s : {&ours, &plain}) {
      s->full_hello = client_hello(client.get(), nullptr);
      auto session = ticket_from(client.get(), s->ctx.get());
      s->resume_hello = client_hello(client.get(), session.get());
    }
  }
};

fixture& fx() {
  static fixture f;
  return f;
}

// One server flight: a fresh server engine answers `hello`. Returns its flight's size, or 0
// when the server did not answer as it should (a certificate other than `leaf` for a full
// handshake, no resumption for a resumed one): a wrong answer is no measurement.
[[gnu::noinline]] std::size_t one_flight(SSL_CTX* ctx, const std::vector<std::byte>& hello, X509* leaf,
                                         bool resumed) {
  auto e = tls::engine::create(ctx, tls::role::server);
  if (!e) return 0;
  (*e)->feed(hello);
  if ((*e)->handshake().state != tls::status::have_output) return 0;
  SSL* ssl = (*e)->native();
  if (resumed ? SSL_session_reused(ssl) != 1 : (leaf && X509_cmp(SSL_get_certificate(ssl), leaf) != 0)) return 0;
  return (*e)->pending_output().size();
}

// Arg 0: 1 = ours, 0 = plain OpenSSL. Arg 1: 1 = resumed, 0 = full.
void bm_server_flight(benchmark::State& state) {
  fixture& f = fx();
  const bool ours = state.range(0) != 0;
  const bool resumed = state.range(1) != 0;
  const server& s = ours ? f.ours : f.plain;
  const std::vector<std::byte>& hello = resumed ? s.resume_hello : s.full_hello;
  std::size_t flight = 0;
  for (auto _ : state) {
    flight = one_flight(s.ctx.get(), hello, ours ? f.leaf.get() : nullptr, resumed);
    if (flight == 0) {
      state.SkipWithError(resumed ? "the server did not resume" : "the server did not answer with its certificate");
      break;
    }
  }
  state.counters["flight_bytes"] = static_cast<double>(flight);
  state.SetItemsProcessed(state.iterations());
}

}  // namespace

// BENCH_TLS_ITERATIONS=N runs each variant exactly N times, for counting instructions under
// callgrind (the fixture is built before the first, outside one_flight).
int main(int argc, char** argv) {
  auto* b = benchmark::RegisterBenchmark("bm_server_flight", bm_server_flight)
                ->ArgsProduct({{0, 1}, {0, 1}})
                ->ArgNames({"ours", "resumed"})
                ->Unit(benchmark::kMicrosecond);
  if (const char* n = std::getenv("BENCH_TLS_ITERATIONS")) {
    b->Iterations(std::strtoll(n, nullptr, 10));
    fx();
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
