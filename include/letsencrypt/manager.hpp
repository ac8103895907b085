// manager: automatic HTTPS in one object — the contract of Go's rsc.io/letsencrypt Manager.
#pragma once

#include <openssl/ssl.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "letsencrypt/config.hpp"
#include "letsencrypt/http.hpp"
#include "letsencrypt/io/task.hpp"
#include "letsencrypt/result.hpp"

namespace letsencrypt {

/// Counters a manager keeps (for tests, metrics and the demo).
struct manager_stats {
  std::uint64_t orders = 0;            ///< ACME orders started (issuance or renewal)
  std::uint64_t issued = 0;            ///< certificates obtained
  std::uint64_t renewed = 0;           ///< of which renewals
  std::uint64_t failures = 0;          ///< failed issuance or renewal attempts
  std::uint64_t refused = 0;           ///< cert() requests refused by policy or rate limit
  std::uint64_t certificates = 0;      ///< names with a certificate being served
  std::uint64_t loaded_from_cache = 0; ///< certificates loaded by cache_file/unmarshal
  std::uint64_t ari_polls = 0;         ///< renewalInfo (ARI) requests after issuance
  std::uint64_t ari_moves = 0;         ///< of which moved a renewal window
  /// Parsed cached certificates dropped to stay within config::parsed_certificates_limit
  /// (each is parsed again by its name's next handshake).
  std::uint64_t parsed_evictions = 0;
};

/// Obtains, renews, stores and serves certificates for the host names a server answers.
///
/// A default-constructed manager is ready: it talks to Let's Encrypt production, registers
/// an account on first need (agreeing to the CA's terms unless register_account was given a
/// prompt), and allows any host name (rate limits still apply) until set_hosts or
/// set_host_policy narrow it. Every method is safe from any thread, except that the
/// blocking ones (cert_sync, serve, serve_https) must not be called from the manager's own
/// event-loop threads. Destroying the manager stops its servers and background tasks.
class manager {
 public:
  manager();
  explicit manager(letsencrypt::config c);
  ~manager();
  manager(const manager&) = delete;
  manager& operator=(const manager&) = delete;

  /// Opens (creating it 0600) and replays the journal at `path`, serves every certificate
  /// it holds at once — before any CA contact — and from then on records every state change
  /// there before reporting it done. Call it before serving. Fails with errc::busy when
  /// another process holds the file, errc::corrupt when it is damaged beyond a torn tail, or
  /// the system error; the manager then keeps its state in memory only.
  result<void> cache_file(const std::string& path);

  /// Makes sure `host` has a certificate, obtaining one if needed (one issuance per name at
  /// a time: concurrent callers share it). Completes on the awaiting coroutine's ring.
  /// Fails at once with errc::not_allowed (allowlist or policy), errc::invalid_name, or
  /// errc::rate_limited; else with the CA's error (an acme::errc code).
  io::task<result<void>> cert(std::string host);
  /// cert() for threads without a ring: blocks the calling thread until done.
  result<void> cert_sync(const std::string& host);

  /// Installs the certificate selection into any OpenSSL server context: a ClientHello
  /// callback serving each name's certificate (and tls-alpn-01 challenges). A name without a
  /// certificate that the policy allows suspends the handshake (SSL_ERROR_WANT_CLIENT_HELLO_CB)
  /// and starts its issuance; call cert_sync(pending_name(ssl)) (or await cert) and then
  /// SSL_do_handshake again. The manager must outlive `ctx`.
  void install(SSL_CTX* ctx);
  /// The name a handshake suspended by install()'s callback waits for ("" if none).
  static std::string_view pending_name(const SSL* ssl) noexcept;

  /// Creates the ACME account with `email` as contact; `prompt` is shown the CA's terms of
  /// service URL and must return true to agree. Fails if an account exists already.
  io::task<result<void>> register_account(std::string email, std::function<bool(std::string_view tos_url)> prompt);
  result<void> register_account_sync(const std::string& email, std::function<bool(std::string_view tos_url)> prompt);
  /// Whether an ACME account exists (registered, or loaded from the cache).
  bool registered() const;

  /// Allows only these names (normalised; "*.example.com" allows one level of subdomain).
  /// Recorded in the journal. Fails with errc::invalid_name naming nothing changed.
  result<void> set_hosts(std::vector<std::string> hosts);
  /// Additionally asks `policy` for every name (after the allowlist); it runs on handshake
  /// threads and must not block.
  void set_host_policy(std::function<bool(std::string_view host)> policy);

  /// The whole state (account, allowlist, certificates, limiter state) as JSON text. It holds
  /// private keys: store it as a secret.
  std::string marshal() const;
  /// Replaces the state with `json` (marshal's output or a cache file of Go's
  /// rsc.io/letsencrypt), serves its certificates, and records it in the journal if any.
  result<void> unmarshal(std::string_view json);

  /// Calls `cb` after every state change, and at once if state exists already (Go's Watch).
  /// Bursts are coalesced. Returns an id for unwatch. `cb` runs on a manager thread.
  std::uint64_t watch(std::function<void()> cb);
  void unwatch(std::uint64_t id);
  /// Completes when the state version exceeds `since` (see state_version()).
  io::task<result<std::uint64_t>> changed(std::uint64_t since);
  std::uint64_t state_version() const noexcept;

  /// Serves HTTPS (configuration().https_port) with `handler` and the HTTP redirect server
  /// (configuration().http_port) that also answers http-01 challenges. Blocks until stop().
  result<void> serve(http::handler handler);
  /// Serves HTTPS only. Blocks until stop().
  result<void> serve_https(http::handler handler);
  /// Starts serving like serve()/serve_https() but returns at once (the ports are bound on
  /// return). `with_http` also starts the redirect server.
  result<void> start(http::handler handler, bool with_http = true);
  /// Stops the servers and makes serve() return. Background renewal keeps running until the
  /// manager is destroyed. Idempotent.
  void stop();
  /// Ports actually bound (useful when the configuration asked for 0).
  std::uint16_t https_port() const noexcept;
  std::uint16_t http_port() const noexcept;

  const letsencrypt::config& configuration() const noexcept;
  manager_stats stats() const;

  struct impl;

 private:
  friend struct manager_test_access;  // tests: a transport in front of the CA
  std::unique_ptr<impl> impl_;
};

/// A handler for plain HTTP that redirects every request to https on the same host (only
/// for hosts `policy` allows: no open redirects), as Go's RedirectHTTP.
http::handler redirect_http(std::function<bool(std::string_view host)> policy, std::uint16_t https_port = 443);

}  // namespace letsencrypt
