// JSON form of the state (marshal / unmarshal), including import of Go's rsc.io/letsencrypt
// cache files.
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cctype>
#include <cmath>
#include <ctime>
#include <memory>

#include <fmt/format.h>
#include <simdjson.h>

#include "letsencrypt/store/state.hpp"
#include "pem_no_prompt.hpp"

namespace letsencrypt::store {
namespace {

constexpr std::string_view native_format = "letsencrypt-state-1";

// Appends `s` as a JSON string. Bytes that are not UTF-8 become U+FFFD, as Go does.
void put_str(fmt::memory_buffer& b, std::string_view s) {
  b.push_back('"');
  std::size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      switch (c) {
        case '"': b.append(std::string_view("\\\"")); break;
        case '\\': b.append(std::string_view("\\\\")); break;
        case '\n': b.append(std::string_view("\\n")); break;
        case '\r': b.append(std::string_view("\\r")); break;
        case '\t': b.append(std::string_view("\\t")); break;
        case '\b': b.append(std::string_view("\\b")); break;
        case '\f': b.append(std::string_view("\\f")); break;
        default:
          if (c < 0x20 || c == 0x7f) fmt::format_to(std::back_inserter(b), "\\u{:04x}", c);
          else b.push_back(static_cast<char>(c));
      }
      ++i;
      continue;
    }
    std::size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 0;
    if (n != 0 && i + n <= s.size() && simdjson::validate_utf8(s.data() + i, n)) {
      b.append(s.substr(i, n));
      i += n;
    } else {
      b.append(std::string_view("\\ufffd"));
      ++i;
    }
  }
  b.push_back('"');
}

void put_strs(fmt::memory_buffer& b, const std::vector<std::string>& v) {
  b.push_back('[');
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i) b.push_back(',');
    put_str(b, v[i]);
  }
  b.push_back(']');
}

using simdjson::dom::element;
using simdjson::dom::element_type;

struct parse_error {
  std::string message;
};

bool iequal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

// Small typed accessors that record what went wrong.
struct ctx {
  std::string message;
  bool fail(std::string m) {
    if (message.empty()) message = std::move(m);
    return false;
  }
  bool str(element e, std::string_view what, std::string& out) {
    std::string_view v;
    if (e.get_string().get(v)) return fail(fmt::format("{}: expected a string", what));
    out.assign(v);
    return true;
  }
  bool strs(element e, std::string_view what, std::vector<std::string>& out) {
    simdjson::dom::array a;
    if (e.get_array().get(a)) return fail(fmt::format("{}: expected an array of strings", what));
    for (element x : a) {
      std::string s;
      if (!str(x, what, s)) return false;
      out.push_back(std::move(s));
    }
    return true;
  }
  bool i64(element e, std::string_view what, std::int64_t& out) {
    if (e.get_int64().get(out)) return fail(fmt::format("{}: expected an integer", what));
    return true;
  }
  bool f64(element e, std::string_view what, double& out) {
    if (e.get_double().get(out) || !std::isfinite(out))
      return fail(fmt::format("{}: expected a number", what));
    return true;
  }
  bool boolean(element e, std::string_view what, bool& out) {
    if (e.get_bool().get(out)) return fail(fmt::format("{}: expected true or false", what));
    return true;
  }
};

bool parse_native(simdjson::dom::object top, state& st, ctx& c) {
  using std::chrono::seconds;
  for (auto [key, value] : top) {
    if (key == "format") continue;
    if (key == "account") {
      if (value.is_null()) continue;
      simdjson::dom::object o;
      if (value.get_object().get(o)) return c.fail("account: expected an object");
      account_record a;
      for (auto [k, v] : o) {
        if (k == "key") { if (!c.str(v, "account.key", a.key_pem)) return false; }
        else if (k == "url") { if (!c.str(v, "account.url", a.url)) return false; }
        else if (k == "contact") { if (!c.strs(v, "account.contact", a.contact)) return false; }
        else if (k == "tos_agreed") { if (!c.boolean(v, "account.tos_agreed", a.tos_agreed)) return false; }
        else return c.fail(fmt::format("account: unknown field \"{}\"", k));
      }
      (void)st.apply(a);
    } else if (key == "hosts") {
      hosts_record h;
      if (!value.is_null()) {
        h.hosts.emplace();
        if (!c.strs(value, "hosts", *h.hosts)) return false;
      }
      (void)st.apply(h);
    } else if (key == "certs") {
      simdjson::dom::array arr;
      if (value.get_array().get(arr)) return c.fail("certs: expected an array");
      std::size_t idx = 0;
      for (element e : arr) {
        simdjson::dom::object o;
        auto where = fmt::format("certs[{}]", idx++);
        if (e.get_object().get(o)) return c.fail(where + ": expected an object");
        cert_record cr;
        std::int64_t t = 0;
        for (auto [k, v] : o) {
          if (k == "names") { if (!c.strs(v, where + ".names", cr.names)) return false; }
          else if (k == "chain") { if (!c.str(v, where + ".chain", cr.chain_pem)) return false; }
          else if (k == "key") { if (!c.str(v, where + ".key", cr.key_pem)) return false; }
          else if (k == "ari_cert_id") { if (!c.str(v, where + ".ari_cert_id", cr.ari_cert_id)) return false; }
          else if (k == "not_after") { if (!c.i64(v, where + ".not_after", t)) return false; cr.not_after = unix_seconds(seconds(t)); }
          else if (k == "ari_start") { if (!c.i64(v, where + ".ari_start", t)) return false; cr.ari_start = unix_seconds(seconds(t)); }
          else if (k == "ari_end") { if (!c.i64(v, where + ".ari_end", t)) return false; cr.ari_end = unix_seconds(seconds(t)); }
          else return c.fail(fmt::format("{}: unknown field \"{}\"", where, k));
        }
        if (!st.apply(cr)) return c.fail(where + ": names missing, empty or repeated");
      }
    } else if (key == "rate_limits") {
      simdjson::dom::array arr;
      if (value.get_array().get(arr)) return c.fail("rate_limits: expected an array");
      std::size_t idx = 0;
      for (element e : arr) {
        simdjson::dom::object o;
        auto where = fmt::format("rate_limits[{}]", idx++);
        if (e.get_object().get(o)) return c.fail(where + ": expected an object");
        rate_limit_record rl;
        for (auto [k, v] : o) {
          if (k == "bucket") { if (!c.str(v, where + ".bucket", rl.bucket)) return false; }
          else if (k == "tokens") { if (!c.f64(v, where + ".tokens", rl.tokens)) return false; }
          else if (k == "last_refill_ms") {
            std::int64_t t = 0;
            if (!c.i64(v, where + ".last_refill_ms", t)) return false;
            rl.last_refill = unix_millis(std::chrono::milliseconds(t));
          } else return c.fail(fmt::format("{}: unknown field \"{}\"", where, k));
        }
        if (!st.apply(rl)) return c.fail(where + ": bucket name missing");
      }
    } else {
      return c.fail(fmt::format("unknown field \"{}\"", key));
    }
  }
  return true;
}

bool parse_go(simdjson::dom::object top, state& st, ctx& c) {
  std::string email, key;
  account_record acct;
  bool have_reg = false;
  for (auto [k, v] : top) {
    if (iequal(k, "Email")) {
      if (!v.is_null() && !c.str(v, "Email", email)) return false;
    } else if (iequal(k, "Key")) {
      if (!v.is_null() && !c.str(v, "Key", key)) return false;
    } else if (iequal(k, "Reg")) {
      if (v.is_null()) continue;
      simdjson::dom::object reg;
      if (v.get_object().get(reg)) return c.fail("Reg: expected an object");
      have_reg = true;
      for (auto [rk, rv] : reg) {
        if (iequal(rk, "URI")) {
          if (!rv.is_null() && !c.str(rv, "Reg.URI", acct.url)) return false;
        } else if (iequal(rk, "Body")) {
          simdjson::dom::object body;
          if (rv.is_null()) continue;
          if (rv.get_object().get(body)) return c.fail("Reg.Body: expected an object");
          for (auto [bk, bv] : body) {
            if (iequal(bk, "agreement")) {
              std::string agreement;
              if (!bv.is_null() && !c.str(bv, "Reg.Body.agreement", agreement)) return false;
              acct.tos_agreed = !agreement.empty();
            } else if (iequal(bk, "contact")) {
              if (!bv.is_null() && !c.strs(bv, "Reg.Body.contact", acct.contact)) return false;
            }
          }
        }
      }
    } else if (iequal(k, "Hosts")) {
      hosts_record h;
      if (!v.is_null()) {
        h.hosts.emplace();
        if (!c.strs(v, "Hosts", *h.hosts)) return false;
      }
      (void)st.apply(h);
    } else if (iequal(k, "Certs")) {
      if (v.is_null()) continue;
      simdjson::dom::object certs;
      if (v.get_object().get(certs)) return c.fail("Certs: expected an object");
      for (auto [host, entry] : certs) {
        auto where = fmt::format("Certs[\"{}\"]", host);
        simdjson::dom::object o;
        if (entry.get_object().get(o)) return c.fail(where + ": expected an object");
        cert_record cr;
        cr.names.emplace_back(host);
        for (auto [ck, cv] : o) {
          if (iequal(ck, "Cert")) { if (!c.str(cv, where + ".Cert", cr.chain_pem)) return false; }
          else if (iequal(ck, "Key")) { if (!c.str(cv, where + ".Key", cr.key_pem)) return false; }
        }
        auto na = pem_not_after(cr.chain_pem);
        if (!na) return c.fail(where + ": Cert is not a PEM certificate");
        if (cr.key_pem.empty()) return c.fail(where + ": Key is missing");
        cr.not_after = *na;
        if (!st.apply(cr)) return c.fail(where + ": bad host name");
      }
    }
    // Go's decoder ignores unknown fields; so does the import.
  }
  if (have_reg || !key.empty() || !email.empty()) {
    acct.key_pem = std::move(key);
    if (!email.empty() && acct.contact.empty()) acct.contact.push_back("mailto:" + email);
    (void)st.apply(acct);
  }
  return true;
}

}  // namespace

result<unix_seconds> pem_not_after(std::string_view chain_pem) {
  if (chain_pem.empty() || chain_pem.size() > static_cast<std::size_t>(INT32_MAX))
    return errc::invalid_argument;
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(chain_pem.data(), static_cast<int>(chain_pem.size())), &BIO_free);
  if (!bio) return errc::invalid_argument;
  std::unique_ptr<X509, decltype(&X509_free)> x(
      PEM_read_bio_X509(bio.get(), nullptr, letsencrypt::detail::refuse_pem_passphrase, nullptr), &X509_free);
  if (!x) return errc::invalid_argument;
  std::tm tm{};
  if (ASN1_TIME_to_tm(X509_get0_notAfter(x.get()), &tm) != 1) return errc::invalid_argument;
  return unix_seconds(std::chrono::seconds(timegm(&tm)));
}

std::string marshal(const state& s) {
  fmt::memory_buffer b;
  auto out = std::back_inserter(b);
  fmt::format_to(out, "{{\"format\":\"{}\",\n\"account\":", native_format);
  if (s.account) {
    b.append(std::string_view("{\"key\":"));
    put_str(b, s.account->key_pem);
    b.append(std::string_view(",\"url\":"));
    put_str(b, s.account->url);
    b.append(std::string_view(",\"contact\":"));
    put_strs(b, s.account->contact);
    fmt::format_to(out, ",\"tos_agreed\":{}}}", s.account->tos_agreed);
  } else {
    b.append(std::string_view("null"));
  }
  b.append(std::string_view(",\n\"hosts\":"));
  if (s.hosts) put_strs(b, *s.hosts);
  else b.append(std::string_view("null"));
  b.append(std::string_view(",\n\"certs\":["));
  bool first = true;
  for (auto& c : s.distinct_certs()) {
    b.append(std::string_view(first ? "\n{\"names\":" : ",\n{\"names\":"));
    first = false;
    put_strs(b, c->names);
    b.append(std::string_view(",\"chain\":"));
    put_str(b, c->chain_pem);
    b.append(std::string_view(",\"key\":"));
    put_str(b, c->key_pem);
    fmt::format_to(out, ",\"not_after\":{},\"ari_start\":{},\"ari_end\":{},\"ari_cert_id\":",
                   c->not_after.time_since_epoch().count(), c->ari_start.time_since_epoch().count(),
                   c->ari_end.time_since_epoch().count());
    put_str(b, c->ari_cert_id);
    b.push_back('}');
  }
  b.append(std::string_view("],\n\"rate_limits\":["));
  first = true;
  for (auto& [name, rl] : s.rate_limits) {
    b.append(std::string_view(first ? "\n{\"bucket\":" : ",\n{\"bucket\":"));
    first = false;
    put_str(b, rl.bucket);
    // {} prints the shortest text that reads back as the same double.
    fmt::format_to(out, ",\"tokens\":{},\"last_refill_ms\":{}}}", rl.tokens,
                   rl.last_refill.time_since_epoch().count());
  }
  b.append(std::string_view("]}\n"));
  return fmt::to_string(b);
}

result<state> unmarshal(std::string_view json, unmarshal_report* report) {
  unmarshal_report local;
  unmarshal_report& rep = report ? *report : local;
  rep = {};
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  simdjson::padded_string padded(json);
  if (auto err = parser.parse(padded).get(doc)) {
    rep.message = fmt::format("not JSON: {}", simdjson::error_message(err));
    return errc::protocol_error;
  }
  simdjson::dom::object top;
  if (doc.get_object().get(top)) {
    rep.message = "not a JSON object";
    return errc::protocol_error;
  }
  state st;
  ctx c;
  std::string_view fmt_value;
  bool ok_parse;
  if (!top["format"].get(fmt_value)) {
    if (fmt_value != native_format) {
      rep.message = fmt::format("unknown format \"{}\"", fmt_value);
      return errc::protocol_error;
    }
    rep.format = json_format::native;
    ok_parse = parse_native(top, st, c);
  } else {
    rep.format = json_format::go_cache;
    ok_parse = parse_go(top, st, c);
  }
  if (!ok_parse) {
    rep.message = c.message;
    // A certificate that does not parse is bad data, not bad JSON.
    return c.message.find("not a PEM") != std::string::npos ||
                   c.message.find("Key is missing") != std::string::npos
               ? errc::invalid_argument
               : errc::protocol_error;
  }
  return st;
}

}  // namespace letsencrypt::store
