// One whole TLS connection between a client and a server engine in memory: handshake, the
// server's post-handshake messages (tickets), close_notify.
#pragma once

#include <openssl/ssl.h>

#include <functional>
#include <string>

#include "letsencrypt/tls/handles.hpp"

namespace letsencrypt::testing {

struct memory_connection {
  bool handshake_done = false;
  bool reused = false;          ///< the client resumed a session
  std::string suite;            ///< the negotiated cipher suite
  tls::ssl_session_ptr session; ///< the client's session at the end (the last ticket's)
  int peer_key_type = 0;        ///< EVP_PKEY_get_base_id of the server certificate's key
  std::string server_share_provider;  ///< the provider of the server's ephemeral key share
};

/// Connects a client made from `cctx` (SNI and verified name `host`, exactly `version`,
/// offering `resume` when given; `prepare` may adjust its SSL first) to a server engine on
/// `sctx`, reads the tickets that follow the handshake, and closes with close_notify (OpenSSL
/// marks a session freed without one as not resumable). Failures are reported through
/// GoogleTest expectations.
memory_connection connect_in_memory(SSL_CTX* cctx, SSL_CTX* sctx, const char* host, int version,
                                    SSL_SESSION* resume = nullptr,
                                    const std::function<void(SSL*)>& prepare = {});

}  // namespace letsencrypt::testing
