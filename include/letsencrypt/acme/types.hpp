// ACME resources (RFC 8555 §7.1, RFC 9773) and their parsers. The parsers take the body
// of a CA response and never trust it: missing members, wrong types, oversized or invalid
// JSON give errc::bad_response (or message_too_large) with a clear message, never a crash.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "letsencrypt/acme/error.hpp"

namespace letsencrypt::acme {

/// The largest JSON body the parsers accept (the HTTP layer has its own limit too).
inline constexpr std::size_t max_json_bytes = 1 << 20;

enum class status { unknown, pending, ready, processing, valid, invalid, deactivated, expired, revoked };

/// "pending" -> status::pending, ...; unknown for anything else.
status parse_status(std::string_view s) noexcept;
std::string_view to_string(status s) noexcept;

/// The directory object (RFC 8555 §7.1.1, RFC 9773 renewalInfo, profiles extension).
struct directory {
  std::string new_nonce;
  std::string new_account;
  std::string new_order;
  std::string new_authz;      ///< optional in RFC 8555; empty when absent
  std::string revoke_cert;
  std::string key_change;
  std::string renewal_info;   ///< ARI endpoint; empty when the CA has none
  // meta
  std::string terms_of_service;
  std::string website;
  std::vector<std::string> caa_identities;
  bool external_account_required = false;
  std::vector<std::pair<std::string, std::string>> profiles;  ///< name, description

  bool has_profile(std::string_view name) const noexcept;
};

struct account {
  std::string url;  ///< from the Location header, filled by the client
  acme::status status = acme::status::unknown;
  std::vector<std::string> contact;
  bool terms_of_service_agreed = false;
  std::string orders;
};

struct order {
  std::string url;  ///< from the Location header, filled by the client
  acme::status status = acme::status::unknown;
  std::string expires;
  std::vector<identifier> identifiers;
  std::vector<std::string> authorizations;
  std::string finalize;
  std::string certificate;  ///< set once status is valid
  std::string replaces;     ///< RFC 9773 certificate identifier
  std::string profile;
  std::optional<acme::problem> error;
  /// The CA's Retry-After on the reply this was read from (0 when it gave none): how long to
  /// wait before polling a processing order. Filled by the client (finalize).
  std::chrono::seconds retry_after{0};
};

struct challenge {
  std::string type;
  std::string url;
  std::string token;
  acme::status status = acme::status::unknown;
  std::string validated;
  std::optional<acme::problem> error;
};

struct authorization {
  std::string url;  ///< filled by the caller
  acme::identifier identifier;
  acme::status status = acme::status::unknown;
  std::string expires;
  bool wildcard = false;
  std::vector<acme::challenge> challenges;
};

/// RFC 9773 renewalInfo.
struct renewal_info {
  std::chrono::system_clock::time_point window_start;
  std::chrono::system_clock::time_point window_end;
  std::string explanation_url;
  /// The CA's Retry-After: when to ask again (0 when it gave none). Filled by the client.
  std::chrono::seconds retry_after{0};
};

// Parsers. Each validates the members the client relies on and ignores unknown ones.
result<directory> parse_directory(std::string_view json);
result<account> parse_account(std::string_view json);
result<order> parse_order(std::string_view json);
result<authorization> parse_authorization(std::string_view json);
result<challenge> parse_challenge(std::string_view json);
result<renewal_info> parse_renewal_info(std::string_view json);
/// A problem document (application/problem+json). `type` is required.
result<problem> parse_problem(std::string_view json);

/// Parses an RFC 3339 timestamp ("2025-01-02T03:04:05Z", fractional seconds and numeric
/// offsets accepted) into UTC; nullopt when malformed.
std::optional<std::chrono::system_clock::time_point> parse_rfc3339(std::string_view s) noexcept;

/// Appends `s` to `out` as a JSON string literal (with quotes), escaping quotes,
/// backslashes and control characters. Bytes >= 0x80 pass through (the input is UTF-8).
void append_json_string(std::string& out, std::string_view s);
std::string json_string(std::string_view s);

}  // namespace letsencrypt::acme
