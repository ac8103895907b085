#include "http/url.hpp"

#include <http_parser.h>

#include "http/message.hpp"

namespace letsencrypt::http {

namespace {
std::string lowered(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  return out;
}
}  // namespace

result<url> parse_url(std::string_view s) {
  // http_parser_url keeps 16-bit offsets.
  if (s.empty() || s.size() > 0xffff) return errc::invalid_argument;
  http_parser_url u;
  http_parser_url_init(&u);
  if (http_parser_parse_url(s.data(), s.size(), 0, &u) != 0) return errc::invalid_argument;
  auto field = [&](int f) -> std::string_view {
    if (!(u.field_set & (1 << f))) return {};
    return s.substr(u.field_data[f].off, u.field_data[f].len);
  };
  if (!(u.field_set & (1 << UF_SCHEMA)) || !(u.field_set & (1 << UF_HOST))) return errc::invalid_argument;
  if (u.field_set & (1 << UF_USERINFO)) return errc::invalid_argument;
  url out;
  out.scheme = lowered(field(UF_SCHEMA));
  if (out.scheme == "http")
    out.port = 80;
  else if (out.scheme == "https")
    out.port = 443;
  else
    return errc::invalid_argument;
  out.host = lowered(field(UF_HOST));
  if (out.host.empty()) return errc::invalid_argument;
  if (u.field_set & (1 << UF_PORT)) {
    if (u.port == 0) return errc::invalid_argument;
    out.port = u.port;
  }
  out.target = field(UF_PATH);
  if (out.target.empty()) out.target = "/";
  if (u.field_set & (1 << UF_QUERY)) {
    out.target += '?';
    out.target += field(UF_QUERY);
  }
  return out;
}

std::string authority(const url& u) {
  std::string a = u.host.find(':') != std::string::npos ? "[" + u.host + "]" : u.host;
  bool default_port = (u.scheme == "http" && u.port == 80) || (u.scheme == "https" && u.port == 443);
  if (!default_port) a += ":" + std::to_string(u.port);
  return a;
}

std::string origin(const url& u) { return u.scheme + "://" + authority(u); }

}  // namespace letsencrypt::http
