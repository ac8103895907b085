// Configuration of a manager: which CA, which challenges, which ports, which limits.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

struct ssl_ctx_st;  // OpenSSL's SSL_CTX

namespace letsencrypt {

enum class key_type { ecdsa_p256, rsa_2048 };
enum class challenge_type { tls_alpn_01, http_01, dns_01 };

/// A token bucket: one token every `interval`, at most `burst` saved up.
struct rate_limit {
  std::chrono::nanoseconds interval;
  std::uint32_t burst;
};

/// Log severities of the manager's one-line log messages.
enum class log_level { debug, info, warning, error };

struct config {
  /// ACME directory. Let's Encrypt production by default; staging is
  /// https://acme-staging-v02.api.letsencrypt.org/directory.
  std::string directory_url = "https://acme-v02.api.letsencrypt.org/directory";
  /// PEM of the root to trust for the CA's HTTPS API; empty means the system trust store.
  std::string ca_root_pem;
  /// Contact for the ACME account (optional).
  std::string email;
  /// External Account Binding, for CAs that require it.
  std::string eab_kid;
  std::string eab_hmac_key;  ///< base64url
  key_type key = key_type::ecdsa_p256;
  /// Challenges tried, in order of preference. dns-01 needs dns_hook.
  std::vector<challenge_type> challenges = {challenge_type::tls_alpn_01, challenge_type::http_01};
  /// Sets (present = true) or removes the TXT record `_acme-challenge.<name>` = value.
  /// Removal is also asked for after a set that failed (it may have half happened), so it
  /// must accept a record that is not there.
  std::function<bool(std::string_view name, std::string_view value, bool present)> dns_hook;

  /// Event-loop threads; 0 means one per core.
  unsigned shards = 0;
  std::string listen_host = "0.0.0.0";
  std::uint16_t https_port = 443;
  std::uint16_t http_port = 80;
  /// A TLS handshake's deadline, from accept. The wait for a certificate being obtained for a
  /// name seen for the first time does not count: the order has its own bounds.
  std::chrono::seconds handshake_timeout{10};
  /// Certificates loaded from the journal at start stay DER (about 1 KiB each) until a
  /// handshake for one of their names needs them. At most this many of those stay parsed
  /// (about 7 KiB each) at once: the ones not used lately are dropped first and parsed again
  /// when asked for (tls::deferred_cache), so a client walking every name cannot grow the
  /// server's memory. 0 means no limit: each is parsed once and kept.
  std::size_t parsed_certificates_limit = 10000;

  /// All requests to the CA (the Go package: 1 a minute, burst 20).
  rate_limit ca_requests{std::chrono::minutes(1), 20};
  /// Certificates for names not seen before (the Go package: 1 per 3 hours, burst 20).
  /// Renewals are exempt.
  rate_limit new_names{std::chrono::hours(3), 20};
  /// Longest wait between failed renewal attempts (exponential backoff with jitter).
  std::chrono::seconds max_backoff = std::chrono::hours(24);
  /// How often each certificate's renewal window is asked of a CA that offers ARI (RFC 9773)
  /// when the CA does not say; its Retry-After wins, kept between 1 minute (or this interval,
  /// if shorter) and 1 day. A window the CA moves (before a mass revocation, say) reschedules
  /// the renewal, at once when the window has begun. Certificates loaded at start-up are
  /// first asked about within min(this interval, 1 hour), spread at random. Kept between
  /// 1 second and 1 day.
  std::chrono::seconds ari_poll_interval = std::chrono::hours(6);

  /// Adjusts the HTTPS server's SSL_CTX after the library's defaults are set (see
  /// tls::make_server_context: TLS 1.2 and up, TLS_AES_128_GCM_SHA256 first, one ticket per
  /// handshake), before it serves: for a compliance rule such as TLS 1.3 only or AES-256
  /// first. Runs once per start(); the ClientHello and ALPN callbacks, which choose
  /// certificates and answer tls-alpn-01, are installed after it. Returning false makes
  /// start() fail with errc::invalid_argument.
  std::function<bool(ssl_ctx_st*)> configure_tls;

  /// Where log lines go; the default writes them to stderr. Lines never contain keys.
  std::function<void(log_level, std::string_view)> log;
};

}  // namespace letsencrypt
