// make_server_context: the server SSL_CTX the acceptor, the Manager and the tools use, with
// defaults chosen for handshake cost as much as for security.
#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <string>

#include "letsencrypt/result.hpp"
#include "letsencrypt/tls/handles.hpp"

namespace letsencrypt::tls {

/// Settings of a server SSL_CTX. The defaults follow Go's crypto/tls and BoringSSL rather
/// than OpenSSL's: see make_server_context.
struct server_context_options {
  /// Lowest protocol version accepted (TLS1_2_VERSION or TLS1_3_VERSION).
  int min_version = TLS1_2_VERSION;
  /// TLS 1.3 suites, in the server's order of preference.
  std::string ciphersuites = "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384";
  /// TLS 1.2 ciphers (forward-secret AEAD only), in the server's order of preference.
  std::string tls12_ciphers =
      "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:"
      "ECDHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384";
  /// Key exchange groups, preferred first.
  std::string groups = "X25519:P-256:P-384";
  /// TLS 1.3 session tickets sent after each handshake (0 turns tickets off).
  std::size_t tickets_per_handshake = 1;
};

/// Makes a server SSL_CTX with `o`: the server's suite order wins over the client's,
/// renegotiation is refused, compression is off, and there is no server-side session cache
/// (resumption is by tickets only: install a ticket_keys on the result). No certificate is
/// set: install a resolver, or set one on the context. Where the kernel has TLS
/// (ktls_available()), each connection keeps its write secret until its tls::stream
/// hands the write side to the kernel (see tls::stream); a key-log callback set on the
/// context afterwards replaces that, and the streams stay in user space.
///
/// Why these defaults: a TLS 1.3 suite fixes the key schedule's hash. With
/// TLS_AES_256_GCM_SHA384 first (OpenSSL's order, which nginx keeps by honouring the client's
/// order) every HKDF step and the transcript run SHA-384, which has no CPU instruction on
/// x86, while SHA-256 runs on the SHA extensions; AES-128-GCM first is also what Go and
/// BoringSSL choose. One ticket per handshake instead of OpenSSL's two: a client resumes
/// one connection with one ticket, and each ticket costs the server a key derivation and an
/// encryption.
///
/// The context is made in the library's own OpenSSL library context, where its certificates
/// and keys are parsed (see parse_certificate_der), unless OpenSSL's default context has FIPS
/// properties on or a provider besides default and base: then in the default context, so
/// that groups and keys of the application's providers work.
///
/// Fails with tls_error() when OpenSSL rejects a list outright (no name in it it knows, an
/// unknown group), and with errc::invalid_argument for a TLS 1.3 suite list that is empty or
/// names a suite OpenSSL does not have (OpenSSL would drop it silently), for TLS 1.2 ciphers
/// that leave none when TLS 1.2 is allowed, or for a min_version other than TLS 1.2 or 1.3.
result<ssl_ctx_ptr> make_server_context(const server_context_options& o = {});

}  // namespace letsencrypt::tls
