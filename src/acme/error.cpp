#include "letsencrypt/acme/error.hpp"

#include <cctype>
#include <charconv>
#include <ctime>

namespace letsencrypt::acme {
namespace {

struct problem_name {
  std::string_view suffix;
  errc code;
};

constexpr problem_name problem_names[] = {
    {"accountDoesNotExist", errc::account_does_not_exist},
    {"alreadyRevoked", errc::already_revoked},
    {"badCSR", errc::bad_csr},
    {"badNonce", errc::bad_nonce},
    {"badPublicKey", errc::bad_public_key},
    {"badRevocationReason", errc::bad_revocation_reason},
    {"badSignatureAlgorithm", errc::bad_signature_algorithm},
    {"caa", errc::caa},
    {"compound", errc::compound},
    {"connection", errc::connection},
    {"dns", errc::dns},
    {"externalAccountRequired", errc::external_account_required},
    {"incorrectResponse", errc::incorrect_response},
    {"invalidContact", errc::invalid_contact},
    {"malformed", errc::malformed},
    {"orderNotReady", errc::order_not_ready},
    {"rateLimited", errc::rate_limited},
    {"rejectedIdentifier", errc::rejected_identifier},
    {"serverInternal", errc::server_internal},
    {"tls", errc::tls},
    {"unauthorized", errc::unauthorized},
    {"unsupportedContact", errc::unsupported_contact},
    {"unsupportedIdentifier", errc::unsupported_identifier},
    {"userActionRequired", errc::user_action_required},
    {"alreadyReplaced", errc::already_replaced},
};

class acme_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "acme"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::ok: return "success";
      case errc::account_does_not_exist: return "ACME account does not exist";
      case errc::already_revoked: return "certificate already revoked";
      case errc::bad_csr: return "CA rejected the CSR";
      case errc::bad_nonce: return "CA rejected the anti-replay nonce";
      case errc::bad_public_key: return "CA rejected the public key";
      case errc::bad_revocation_reason: return "CA rejected the revocation reason";
      case errc::bad_signature_algorithm: return "CA rejected the JWS signature algorithm";
      case errc::caa: return "CAA records forbid issuance";
      case errc::compound: return "several errors (see subproblems)";
      case errc::connection: return "CA could not connect to the challenge server";
      case errc::dns: return "CA had a DNS problem for the identifier";
      case errc::external_account_required: return "CA requires external account binding";
      case errc::incorrect_response: return "challenge response was incorrect";
      case errc::invalid_contact: return "invalid account contact";
      case errc::malformed: return "CA found the request malformed";
      case errc::order_not_ready: return "order is not ready for finalization";
      case errc::rate_limited: return "CA rate limit exceeded";
      case errc::rejected_identifier: return "CA will not issue for this identifier";
      case errc::server_internal: return "CA internal error";
      case errc::tls: return "CA had a TLS problem validating the challenge";
      case errc::unauthorized: return "unauthorized by the CA";
      case errc::unsupported_contact: return "unsupported account contact";
      case errc::unsupported_identifier: return "unsupported identifier type";
      case errc::user_action_required: return "user action required (see the CA's instructions)";
      case errc::already_replaced: return "certificate already replaced";
      case errc::unknown_problem: return "CA returned an unknown problem";
      case errc::bad_response: return "invalid response from the CA";
      case errc::http_status: return "unexpected HTTP status from the CA";
      case errc::order_invalid: return "order became invalid";
      case errc::no_supported_challenge: return "no usable challenge type offered";
      case errc::terms_not_accepted: return "terms of service not accepted";
      case errc::eab_required: return "CA requires external account binding; none configured";
      case errc::order_timeout: return "order did not complete before its deadline";
      case errc::too_many_bad_nonces: return "CA kept rejecting nonces";
      case errc::key_error: return "key or certificate operation failed";
    }
    return "unknown acme error " + std::to_string(ev);
  }
};

bool ieq(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

}  // namespace

const std::error_category& acme_category() noexcept {
  static const acme_category_impl instance;
  return instance;
}

errc problem_code(std::string_view type) noexcept {
  constexpr std::string_view prefix = "urn:ietf:params:acme:error:";
  if (!type.starts_with(prefix)) return errc::unknown_problem;
  type.remove_prefix(prefix.size());
  for (const auto& p : problem_names)
    if (p.suffix == type) return p.code;
  return errc::unknown_problem;
}

std::string error::message() const {
  std::string out = code ? code.message() : std::string("error");
  if (http_status != 0) out += " (HTTP " + std::to_string(http_status) + ")";
  if (problem) {
    if (!problem->type.empty()) out += ": " + problem->type;
    if (!problem->detail.empty()) out += ": " + problem->detail;
    for (const auto& s : problem->subproblems) {
      out += " [";
      if (s.id) out += s.id->value + ": ";
      out += s.detail.empty() ? s.type : s.detail;
      out += "]";
    }
  }
  if (retry_after) out += " (retry after " + std::to_string(retry_after->count()) + " s)";
  // One line: a CA's detail could carry newlines.
  for (char& c : out)
    if (c == '\n' || c == '\r') c = ' ';
  return out;
}

namespace {
// A status that says "not now": the server's trouble, too many requests, or a timeout.
bool transient_status(int status) noexcept { return status >= 500 || status == 429 || status == 408; }
}  // namespace

action classify(const error& e) noexcept {
  if (e.code.category() == acme_category()) {
    switch (static_cast<errc>(e.code.value())) {
      case errc::bad_nonce:
      case errc::rate_limited:
      case errc::server_internal:
      case errc::bad_response:
      case errc::too_many_bad_nonces:
        return action::retry_call;
      case errc::http_status:
        return transient_status(e.http_status) ? action::retry_call : action::stop;
      case errc::order_invalid:
      case errc::order_not_ready:
      case errc::connection:
      case errc::dns:
      case errc::incorrect_response:
      case errc::tls:
      case errc::order_timeout:
        return action::restart_order;
      case errc::unknown_problem:  // a problem document of another kind (about:blank): as a bare status
        return transient_status(e.http_status) ? action::retry_call : action::stop;
      default:
        return action::stop;
    }
  }
  if (e.code.category() == library_category()) {
    switch (static_cast<letsencrypt::errc>(e.code.value())) {
      case letsencrypt::errc::timed_out:
      case letsencrypt::errc::closed:
      case letsencrypt::errc::protocol_error:
      case letsencrypt::errc::message_too_large:
        return action::retry_call;
      default:
        return action::stop;
    }
  }
  if (e.code.category() == std::system_category() || e.code.category() == std::generic_category()) {
    // Socket-level failures (ECONNREFUSED, ECONNRESET, EHOSTUNREACH, ...) are transient.
    return action::retry_call;
  }
  // Other categories (TLS handshake failures and the like) are worth another attempt too.
  return action::retry_call;
}

std::optional<std::chrono::seconds> parse_retry_after(std::string_view v,
                                                      std::chrono::system_clock::time_point now) {
  constexpr long long cap = 86400;
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  if (v.empty()) return std::nullopt;
  if (std::isdigit(static_cast<unsigned char>(v.front()))) {
    long long secs = 0;
    for (char c : v) {
      if (!std::isdigit(static_cast<unsigned char>(c))) return std::nullopt;
      secs = secs * 10 + (c - '0');
      if (secs > cap) secs = cap + 1;
    }
    return std::chrono::seconds(std::min(secs, cap));
  }
  // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
  if (v.size() != 29 || v[3] != ',' || v[4] != ' ' || v[7] != ' ' || v[11] != ' ' || v[16] != ' ' ||
      v[19] != ':' || v[22] != ':' || v.substr(25) != " GMT")
    return std::nullopt;
  auto num = [&](std::size_t pos, std::size_t len, int& out) {
    auto r = std::from_chars(v.data() + pos, v.data() + pos + len, out);
    return r.ec == std::errc{} && r.ptr == v.data() + pos + len;
  };
  static constexpr std::string_view months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  int day = 0, year = 0, hh = 0, mm = 0, ss = 0, mon = -1;
  for (int i = 0; i < 12; ++i)
    if (ieq(v.substr(8, 3), months[i])) mon = i;
  if (mon < 0 || !num(5, 2, day) || !num(12, 4, year) || !num(17, 2, hh) || !num(20, 2, mm) || !num(23, 2, ss))
    return std::nullopt;
  if (day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60 || year < 1970 || year > 2200) return std::nullopt;
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = mon;
  tm.tm_mday = day;
  tm.tm_hour = hh;
  tm.tm_min = mm;
  tm.tm_sec = ss;
  std::time_t t = timegm(&tm);
  auto when = std::chrono::system_clock::from_time_t(t);
  auto d = std::chrono::duration_cast<std::chrono::seconds>(when - now);
  if (d.count() < 0) return std::chrono::seconds(0);
  return std::chrono::seconds(std::min<long long>(d.count(), cap));
}

}  // namespace letsencrypt::acme
