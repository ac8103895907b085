#include "memory_pair.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "letsencrypt/tls/engine.hpp"
#include "test_certs.hpp"

namespace letsencrypt::testing {

namespace {

void move_output(tls::engine& from, tls::engine& to, std::vector<std::byte>& store) {
  auto out = from.pending_output();
  if (out.empty()) return;
  to.keep_input();
  store.assign(out.begin(), out.end());
  from.consume_output(out.size());
  to.feed(store);
}

}  // namespace

memory_connection connect_in_memory(SSL_CTX* cctx, SSL_CTX* sctx, const char* host, int version,
                                    SSL_SESSION* resume, const std::function<void(SSL*)>& prepare) {
  using tls::status;
  memory_connection o;
  tls::ssl_ptr cs(SSL_new(cctx));
  SSL_set_tlsext_host_name(cs.get(), host);
  SSL_set1_host(cs.get(), host);
  SSL_set_min_proto_version(cs.get(), version);
  SSL_set_max_proto_version(cs.get(), version);
  if (resume) SSL_set_session(cs.get(), resume);
  if (prepare) prepare(cs.get());
  auto c = std::move(tls::engine::create(std::move(cs), tls::role::client)).value();
  auto s = std::move(tls::engine::create(sctx, tls::role::server)).value();
  std::vector<std::byte> a, b;
  status cst = status::want_input, sst = status::want_input;
  for (int i = 0; i < 20 && (cst != status::done || sst != status::done); ++i) {
    cst = c->handshake().state;
    move_output(*c, *s, a);
    sst = s->handshake().state;
    move_output(*s, *c, b);
    EXPECT_NE(cst, status::error) << c->error().message();
    EXPECT_NE(sst, status::error) << s->error().message();
  }
  EXPECT_EQ(cst, status::done);
  o.handshake_done = cst == status::done;
  // TLS 1.3 tickets arrive after the handshake: a read processes them.
  std::byte buf[64];
  for (int i = 0; i < 3; ++i) {
    move_output(*s, *c, b);
    EXPECT_EQ(c->read(buf).state, status::want_input);
  }
  o.suite = SSL_get_cipher_name(c->native());
  o.reused = SSL_session_reused(c->native()) == 1;
  if (X509* peer = SSL_get0_peer_certificate(c->native())) o.peer_key_type = EVP_PKEY_get_base_id(X509_get0_pubkey(peer));
  EVP_PKEY* share = nullptr;
  if (SSL_get_tmp_key(s->native(), &share) == 1 && share) {
    o.server_share_provider = provider_name(share);
    EVP_PKEY_free(share);
  }
  EXPECT_EQ(c->shutdown().state, status::have_output);
  o.session.reset(SSL_get1_session(c->native()));
  return o;
}

}  // namespace letsencrypt::testing
