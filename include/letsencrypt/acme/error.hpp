// ACME errors: the acme_category error codes, RFC 8555 problem documents, and how a caller
// should react to each (retry the call, restart the order, or stop).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "letsencrypt/error.hpp"
#include "letsencrypt/result.hpp"

namespace letsencrypt::acme {

/// Error codes of the ACME client. Values from `bad_nonce` to `already_replaced` mirror the
/// problem types of RFC 8555 §6.7 (and ARI's alreadyReplaced); the rest are client-side.
enum class errc {
  ok = 0,
  // Problem types of urn:ietf:params:acme:error:*
  account_does_not_exist = 1,
  already_revoked,
  bad_csr,
  bad_nonce,
  bad_public_key,
  bad_revocation_reason,
  bad_signature_algorithm,
  caa,
  compound,
  connection,
  dns,
  external_account_required,
  incorrect_response,
  invalid_contact,
  malformed,
  order_not_ready,
  rate_limited,
  rejected_identifier,
  server_internal,
  tls,
  unauthorized,
  unsupported_contact,
  unsupported_identifier,
  user_action_required,
  already_replaced,
  unknown_problem,         ///< a problem document of a type this client does not know
  // Client-side conditions
  bad_response = 100,      ///< the CA sent a response that is not what RFC 8555 requires
  http_status,             ///< an HTTP error status without a problem document
  order_invalid,           ///< the order (or one of its authorizations) became invalid
  no_supported_challenge,  ///< no offered challenge type is enabled or has a solver
  terms_not_accepted,      ///< the terms-of-service prompt declined
  eab_required,            ///< the CA requires external account binding and none was given
  order_timeout,           ///< the order did not finish before its total deadline
  too_many_bad_nonces,     ///< badNonce kept coming after the bounded number of retries
  key_error,               ///< a key or certificate could not be used (OpenSSL failure)
};

const std::error_category& acme_category() noexcept;

inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), acme_category()};
}

/// What a caller should do after an error.
enum class action {
  retry_call,     ///< transient: repeat the same request (after retry_after when set)
  restart_order,  ///< the order is dead: start a new one
  stop,           ///< retrying will not help without a change (configuration, policy, key)
};

struct identifier {
  std::string type;   ///< "dns" (or "ip")
  std::string value;
  bool operator==(const identifier&) const = default;
};

/// A subproblem of a compound problem (RFC 8555 §6.7.1).
struct subproblem {
  std::string type;
  std::string detail;
  std::optional<identifier> id;
};

/// An RFC 7807 problem document as RFC 8555 uses it.
struct problem {
  std::string type;      ///< e.g. "urn:ietf:params:acme:error:badNonce"
  std::string detail;
  int status = 0;        ///< the "status" member, 0 when absent
  std::vector<subproblem> subproblems;
};

/// The error type of the ACME client: a code, plus the CA's problem document when it sent
/// one, plus how long the CA asked to wait (Retry-After) when it said so.
struct error {
  std::error_code code;
  std::optional<acme::problem> problem;
  std::optional<std::chrono::seconds> retry_after;
  int http_status = 0;

  error() = default;
  error(std::error_code c) : code(c) {}  // NOLINT: implicit, so LE_TRY works across layers
  error(errc e) : code(make_error_code(e)) {}  // NOLINT
  error(letsencrypt::errc e) : code(letsencrypt::make_error_code(e)) {}  // NOLINT

  /// One readable line: the code's message and, when present, the problem's type and detail.
  std::string message() const;
};

template <class T>
using acme_result = letsencrypt::result<T, error>;

/// The acme::errc for a problem type URN; unknown_problem when it is not an ACME error type.
errc problem_code(std::string_view type) noexcept;

/// How to react to `e`: retry_call for badNonce, rateLimited, serverInternal, 5xx statuses,
/// connection-level errors (timeouts, resets) and unparseable responses; restart_order for
/// an invalid order/authorization/challenge and orderNotReady; stop for everything else.
action classify(const error& e) noexcept;

/// Parses a Retry-After header value (delta-seconds or an IMF-fixdate HTTP-date), relative to
/// `now`. Dates in the past give 0 s; malformed values (and years past 2200) give nullopt.
/// Capped at 1 day.
std::optional<std::chrono::seconds> parse_retry_after(
    std::string_view value, std::chrono::system_clock::time_point now = std::chrono::system_clock::now());

}  // namespace letsencrypt::acme

template <>
struct std::is_error_code_enum<letsencrypt::acme::errc> : std::true_type {};
