#include "letsencrypt/acme/types.hpp"

#include <simdjson.h>

#include <charconv>
#include <ctime>

namespace letsencrypt::acme {
namespace {

namespace dom = simdjson::dom;

// A parsed document: simdjson's parser owns the tape the elements point into.
struct document {
  dom::parser parser;
  dom::element root;
};

result<dom::object> parse_object(std::string_view json, document& doc) {
  if (json.size() > max_json_bytes) return letsencrypt::errc::message_too_large;
  simdjson::padded_string padded(json);
  // max_capacity bounds the parser's allocation; the size check above bounds the input.
  if (doc.parser.allocate(padded.size() + 1, 256) != simdjson::SUCCESS) return errc::bad_response;
  if (doc.parser.parse(padded).get(doc.root) != simdjson::SUCCESS) return errc::bad_response;
  dom::object obj;
  if (doc.root.get_object().get(obj) != simdjson::SUCCESS) return errc::bad_response;
  return obj;
}

// Member readers: an absent member is fine for optional ones; a present member of the
// wrong type is a bad response either way.
bool opt_string(dom::object o, std::string_view key, std::string& out) {
  dom::element e;
  if (o.at_key(key).get(e) != simdjson::SUCCESS) return true;
  if (e.is_null()) return true;
  std::string_view s;
  if (e.get_string().get(s) != simdjson::SUCCESS) return false;
  out.assign(s);
  return true;
}

bool req_string(dom::object o, std::string_view key, std::string& out) {
  dom::element e;
  if (o.at_key(key).get(e) != simdjson::SUCCESS) return false;
  std::string_view s;
  if (e.get_string().get(s) != simdjson::SUCCESS) return false;
  out.assign(s);
  return true;
}

bool opt_bool(dom::object o, std::string_view key, bool& out) {
  dom::element e;
  if (o.at_key(key).get(e) != simdjson::SUCCESS) return true;
  if (e.is_null()) return true;
  return e.get_bool().get(out) == simdjson::SUCCESS;
}

bool opt_string_array(dom::object o, std::string_view key, std::vector<std::string>& out) {
  dom::element e;
  if (o.at_key(key).get(e) != simdjson::SUCCESS) return true;
  if (e.is_null()) return true;
  dom::array a;
  if (e.get_array().get(a) != simdjson::SUCCESS) return false;
  for (dom::element item : a) {
    std::string_view s;
    if (item.get_string().get(s) != simdjson::SUCCESS) return false;
    out.emplace_back(s);
  }
  return true;
}

bool read_status(dom::object o, status& out, bool required) {
  std::string s;
  if (required ? !req_string(o, "status", s) : !opt_string(o, "status", s)) return false;
  out = parse_status(s);
  return !required || out != status::unknown;
}

bool read_identifier(dom::element e, identifier& out) {
  dom::object o;
  if (e.get_object().get(o) != simdjson::SUCCESS) return false;
  return req_string(o, "type", out.type) && req_string(o, "value", out.value);
}

bool read_problem(dom::element e, problem& out) {
  dom::object o;
  if (e.get_object().get(o) != simdjson::SUCCESS) return false;
  if (!opt_string(o, "type", out.type) || !opt_string(o, "detail", out.detail)) return false;
  if (out.type.empty()) out.type = "about:blank";  // RFC 7807 §4.2
  dom::element st;
  if (o.at_key("status").get(st) == simdjson::SUCCESS && !st.is_null()) {
    int64_t v = 0;
    if (st.get_int64().get(v) != simdjson::SUCCESS || v < 0 || v > 999) return false;
    out.status = static_cast<int>(v);
  }
  dom::element subs;
  if (o.at_key("subproblems").get(subs) == simdjson::SUCCESS && !subs.is_null()) {
    dom::array a;
    if (subs.get_array().get(a) != simdjson::SUCCESS) return false;
    for (dom::element item : a) {
      dom::object so;
      if (item.get_object().get(so) != simdjson::SUCCESS) return false;
      subproblem sp;
      if (!opt_string(so, "type", sp.type) || !opt_string(so, "detail", sp.detail)) return false;
      dom::element id;
      if (so.at_key("identifier").get(id) == simdjson::SUCCESS && !id.is_null()) {
        identifier ident;
        if (!read_identifier(id, ident)) return false;
        sp.id = std::move(ident);
      }
      out.subproblems.push_back(std::move(sp));
    }
  }
  return true;
}

bool opt_problem(dom::object o, std::string_view key, std::optional<problem>& out) {
  dom::element e;
  if (o.at_key(key).get(e) != simdjson::SUCCESS || e.is_null()) return true;
  problem p;
  if (!read_problem(e, p)) return false;
  out = std::move(p);
  return true;
}

bool read_challenge(dom::element e, challenge& c) {
  dom::object o;
  if (e.get_object().get(o) != simdjson::SUCCESS) return false;
  return req_string(o, "type", c.type) && req_string(o, "url", c.url) && opt_string(o, "token", c.token) &&
         read_status(o, c.status, false) && opt_string(o, "validated", c.validated) &&
         opt_problem(o, "error", c.error);
}

int two(std::string_view s, std::size_t pos, bool& ok) {
  if (pos + 2 > s.size() || !std::isdigit(static_cast<unsigned char>(s[pos])) ||
      !std::isdigit(static_cast<unsigned char>(s[pos + 1]))) {
    ok = false;
    return 0;
  }
  return (s[pos] - '0') * 10 + (s[pos + 1] - '0');
}

}  // namespace

status parse_status(std::string_view s) noexcept {
  if (s == "pending") return status::pending;
  if (s == "ready") return status::ready;
  if (s == "processing") return status::processing;
  if (s == "valid") return status::valid;
  if (s == "invalid") return status::invalid;
  if (s == "deactivated") return status::deactivated;
  if (s == "expired") return status::expired;
  if (s == "revoked") return status::revoked;
  return status::unknown;
}

std::string_view to_string(status s) noexcept {
  switch (s) {
    case status::pending: return "pending";
    case status::ready: return "ready";
    case status::processing: return "processing";
    case status::valid: return "valid";
    case status::invalid: return "invalid";
    case status::deactivated: return "deactivated";
    case status::expired: return "expired";
    case status::revoked: return "revoked";
    case status::unknown: break;
  }
  return "unknown";
}

bool directory::has_profile(std::string_view name) const noexcept {
  for (const auto& p : profiles)
    if (p.first == name) return true;
  return false;
}

result<directory> parse_directory(std::string_view json) {
  document doc;
  LE_TRY(o, parse_object(json, doc));
  directory d;
  if (!req_string(o, "newNonce", d.new_nonce) || !req_string(o, "newAccount", d.new_account) ||
      !req_string(o, "newOrder", d.new_order) || !opt_string(o, "newAuthz", d.new_authz) ||
      !opt_string(o, "revokeCert", d.revoke_cert) || !opt_string(o, "keyChange", d.key_change) ||
      !opt_string(o, "renewalInfo", d.renewal_info))
    return errc::bad_response;
  dom::element meta;
  if (o.at_key("meta").get(meta) == simdjson::SUCCESS && !meta.is_null()) {
    dom::object m;
    if (meta.get_object().get(m) != simdjson::SUCCESS) return errc::bad_response;
    if (!opt_string(m, "termsOfService", d.terms_of_service) || !opt_string(m, "website", d.website) ||
        !opt_string_array(m, "caaIdentities", d.caa_identities) ||
        !opt_bool(m, "externalAccountRequired", d.external_account_required))
      return errc::bad_response;
    dom::element profiles;
    if (m.at_key("profiles").get(profiles) == simdjson::SUCCESS && !profiles.is_null()) {
      dom::object po;
      if (profiles.get_object().get(po) != simdjson::SUCCESS) return errc::bad_response;
      for (auto [key, value] : po) {
        std::string_view desc;
        if (value.get_string().get(desc) != simdjson::SUCCESS) desc = {};
        d.profiles.emplace_back(std::string(key), std::string(desc));
      }
    }
  }
  return d;
}

result<account> parse_account(std::string_view json) {
  document doc;
  LE_TRY(o, parse_object(json, doc));
  account a;
  if (!read_status(o, a.status, false) || !opt_string_array(o, "contact", a.contact) ||
      !opt_bool(o, "termsOfServiceAgreed", a.terms_of_service_agreed) || !opt_string(o, "orders", a.orders))
    return errc::bad_response;
  return a;
}

result<order> parse_order(std::string_view json) {
  document doc;
  LE_TRY(o, parse_object(json, doc));
  order r;
  if (!read_status(o, r.status, true) || !opt_string(o, "expires", r.expires) ||
      !opt_string_array(o, "authorizations", r.authorizations) || !req_string(o, "finalize", r.finalize) ||
      !opt_string(o, "certificate", r.certificate) || !opt_string(o, "replaces", r.replaces) ||
      !opt_string(o, "profile", r.profile) || !opt_problem(o, "error", r.error))
    return errc::bad_response;
  dom::element ids;
  if (o.at_key("identifiers").get(ids) == simdjson::SUCCESS) {
    dom::array a;
    if (ids.get_array().get(a) != simdjson::SUCCESS) return errc::bad_response;
    for (dom::element item : a) {
      identifier id;
      if (!read_identifier(item, id)) return errc::bad_response;
      r.identifiers.push_back(std::move(id));
    }
  }
  if (r.status == status::valid && r.certificate.empty()) return errc::bad_response;
  return r;
}

result<authorization> parse_authorization(std::string_view json) {
  document doc;
  LE_TRY(o, parse_object(json, doc));
  authorization a;
  dom::element id;
  if (o.at_key("identifier").get(id) != simdjson::SUCCESS || !read_identifier(id, a.identifier))
    return errc::bad_response;
  if (!read_status(o, a.status, true) || !opt_string(o, "expires", a.expires) ||
      !opt_bool(o, "wildcard", a.wildcard))
    return errc::bad_response;
  dom::element chs;
  if (o.at_key("challenges").get(chs) == simdjson::SUCCESS) {
    dom::array arr;
    if (chs.get_array().get(arr) != simdjson::SUCCESS) return errc::bad_response;
    for (dom::element item : arr) {
      challenge c;
      if (!read_challenge(item, c)) return errc::bad_response;
      a.challenges.push_back(std::move(c));
    }
  }
  return a;
}

result<challenge> parse_challenge(std::string_view json) {
  document doc;
  LE_TRY_VOID(parse_object(json, doc));
  challenge c;
  if (!read_challenge(doc.root, c)) return errc::bad_response;
  return c;
}

result<renewal_info> parse_renewal_info(std::string_view json) {
  document doc;
  LE_TRY(o, parse_object(json, doc));
  renewal_info r;
  dom::element w;
  dom::object wo;
  if (o.at_key("suggestedWindow").get(w) != simdjson::SUCCESS || w.get_object().get(wo) != simdjson::SUCCESS)
    return errc::bad_response;
  std::string start, end;
  if (!req_string(wo, "start", start) || !req_string(wo, "end", end) ||
      !opt_string(o, "explanationURL", r.explanation_url))
    return errc::bad_response;
  auto s = parse_rfc3339(start);
  auto e = parse_rfc3339(end);
  if (!s || !e || *e <= *s) return errc::bad_response;  // RFC 9773 4.2: end after start
  r.window_start = *s;
  r.window_end = *e;
  return r;
}

result<problem> parse_problem(std::string_view json) {
  document doc;
  LE_TRY_VOID(parse_object(json, doc));
  problem p;
  if (!read_problem(doc.root, p)) return errc::bad_response;
  return p;
}

std::optional<std::chrono::system_clock::time_point> parse_rfc3339(std::string_view s) noexcept {
  // YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)
  if (s.size() < 20) return std::nullopt;
  bool ok = true;
  int year = two(s, 0, ok) * 100 + two(s, 2, ok);
  int mon = two(s, 5, ok), day = two(s, 8, ok), hh = two(s, 11, ok), mm = two(s, 14, ok), ss = two(s, 17, ok);
  if (!ok || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || s[13] != ':' ||
      s[16] != ':')
    return std::nullopt;
  // system_clock counts nanoseconds in 64 bits, which ends in 2262: keep well inside.
  if (year < 1970 || year > 2200) return std::nullopt;
  if (mon < 1 || mon > 12 || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60) return std::nullopt;
  std::size_t pos = 19;
  long long nanos = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    int digits = 0;
    while (pos < s.size() && std::isdigit(static_cast<unsigned char>(s[pos]))) {
      if (digits < 9) {
        nanos = nanos * 10 + (s[pos] - '0');
        ++digits;
      }
      ++pos;
    }
    if (digits == 0) return std::nullopt;
    for (; digits < 9; ++digits) nanos *= 10;
  }
  if (pos >= s.size()) return std::nullopt;
  long long offset = 0;
  if (s[pos] == 'Z' || s[pos] == 'z') {
    ++pos;
  } else if (s[pos] == '+' || s[pos] == '-') {
    if (pos + 6 != s.size() || s[pos + 3] != ':') return std::nullopt;
    int oh = two(s, pos + 1, ok), om = two(s, pos + 4, ok);
    if (!ok || oh > 23 || om > 59) return std::nullopt;
    offset = (oh * 3600LL + om * 60LL) * (s[pos] == '+' ? 1 : -1);
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != s.size()) return std::nullopt;
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = mon - 1;
  tm.tm_mday = day;
  tm.tm_hour = hh;
  tm.tm_min = mm;
  tm.tm_sec = ss;
  std::time_t t = timegm(&tm);
  auto tp = std::chrono::system_clock::from_time_t(t) - std::chrono::seconds(offset);
  return tp + std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::nanoseconds(nanos));
}

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out.push_back('"');
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out += "\\u00";
          out.push_back(hex[c >> 4]);
          out.push_back(hex[c & 15]);
        } else {
          out.push_back(ch);
        }
    }
  }
  out.push_back('"');
}

std::string json_string(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  append_json_string(out, s);
  return out;
}

}  // namespace letsencrypt::acme
