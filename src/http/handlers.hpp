// Ready-made handlers for the plain-HTTP side of a TLS server: ACME http-01 answers and
// redirects to https.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "http/server.hpp"

namespace letsencrypt::http {

inline constexpr std::string_view acme_challenge_prefix = "/.well-known/acme-challenge/";

/// True for a non-empty base64url string (A-Z a-z 0-9 - _) of at most `max` characters.
bool is_base64url(std::string_view s, std::size_t max = 128) noexcept;

/// Token → key authorization for pending http-01 challenges. Thread-safe.
class acme_http01_tokens {
 public:
  /// Publishes `key_authorization` (RFC 8555 §8.1: token "." thumbprint) for `token`.
  /// Fails with invalid_argument when the token is not base64url of at most 128 characters
  /// or the key authorization does not start with the token and a dot.
  result<void> set(std::string token, std::string key_authorization);
  void remove(std::string_view token);
  std::optional<std::string> get(std::string_view token) const;
  std::size_t size() const;

  /// The answer to `GET|HEAD /.well-known/acme-challenge/<token>`: 200 text/plain with the
  /// key authorization, or 404 for an unknown or malformed token; nullopt when the request
  /// is not for the challenge path (so another handler may answer it).
  std::optional<response> answer(const request& r) const;

  /// A handler that answers challenge requests and 404 to everything else. The store must
  /// outlive the handler.
  handler as_handler() const;

 private:
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::string> tokens_;
};

/// Decides whether a host (lower case, no port, IPv6 without brackets) may be redirected to.
using host_policy = std::function<bool(std::string_view host)>;

/// Validates a Host header value: a DNS name (letters, digits, hyphens, labels of 1..63,
/// at most 253 characters, one trailing dot allowed) or an IPv4 / bracketed IPv6 literal,
/// with an optional port. Returns the host lower-cased, without port, dot or brackets.
std::optional<std::string> parse_host_header(std::string_view value);

/// Redirects every request to `https://<host>[:https_port]<target>`: 301 for GET and HEAD,
/// 308 for other methods. Answers 400 when the Host header is missing, repeated or invalid,
/// or the target is not origin-form printable ASCII; 404 when `policy` refuses the host.
handler redirect_to_https(host_policy policy, std::uint16_t https_port = 443);

/// The redirect server of a TLS site: http-01 challenges first, then redirect_to_https.
/// `tokens` must outlive the handler.
handler acme_redirect_handler(const acme_http01_tokens& tokens, host_policy policy, std::uint16_t https_port = 443);

}  // namespace letsencrypt::http
