#include "http/handlers.hpp"

#include <arpa/inet.h>

namespace letsencrypt::http {

namespace {

io::task<response> ready(response r) { co_return r; }

response text(int status, std::string body) {
  response r;
  r.status = status;
  r.headers.push_back({"Content-Type", "text/plain; charset=utf-8"});
  r.body = std::move(body);
  return r;
}

bool is_ipv4(const std::string& s) {
  in_addr a;
  return inet_pton(AF_INET, s.c_str(), &a) == 1;
}

bool is_ipv6(const std::string& s) {
  in6_addr a;
  return inet_pton(AF_INET6, s.c_str(), &a) == 1;
}

bool is_dns_name(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  std::size_t label = 0;
  char prev = '.';
  for (char c : s) {
    if (c == '.') {
      if (label == 0 || prev == '-') return false;
      label = 0;
    } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-') {
      if (c == '-' && label == 0) return false;
      if (++label > 63) return false;
    } else {
      return false;
    }
    prev = c;
  }
  return prev != '-';
}

bool is_port(std::string_view p) {
  if (p.empty() || p.size() > 5) return false;
  unsigned v = 0;
  for (char c : p) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + unsigned(c - '0');
  }
  return v <= 65535;
}

// Origin-form printable ASCII: what may be copied into a Location header unchanged.
bool safe_target(std::string_view t) {
  if (t.empty() || t.front() != '/') return false;
  for (unsigned char c : t)
    if (c <= 0x20 || c >= 0x7f) return false;
  return true;
}

}  // namespace

bool is_base64url(std::string_view s, std::size_t max) noexcept {
  if (s.empty() || s.size() > max) return false;
  for (char c : s)
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
      return false;
  return true;
}

result<void> acme_http01_tokens::set(std::string token, std::string key_authorization) {
  if (!is_base64url(token)) return errc::invalid_argument;
  std::string_view ka = key_authorization;
  if (ka.size() <= token.size() + 1 || ka.substr(0, token.size()) != token || ka[token.size()] != '.' ||
      !is_base64url(ka.substr(token.size() + 1), 512))
    return errc::invalid_argument;
  std::lock_guard lk(mu_);
  tokens_.insert_or_assign(std::move(token), std::move(key_authorization));
  return ok();
}

void acme_http01_tokens::remove(std::string_view token) {
  std::lock_guard lk(mu_);
  if (auto it = tokens_.find(std::string(token)); it != tokens_.end()) tokens_.erase(it);
}

std::optional<std::string> acme_http01_tokens::get(std::string_view token) const {
  std::lock_guard lk(mu_);
  if (auto it = tokens_.find(std::string(token)); it != tokens_.end()) return it->second;
  return std::nullopt;
}

std::size_t acme_http01_tokens::size() const {
  std::lock_guard lk(mu_);
  return tokens_.size();
}

std::optional<response> acme_http01_tokens::answer(const request& r) const {
  std::string_view t = r.target;
  if (!t.starts_with(acme_challenge_prefix)) return std::nullopt;
  if (r.method != "GET" && r.method != "HEAD") {
    auto resp = text(405, "method not allowed\n");
    resp.headers.push_back({"Allow", "GET, HEAD"});
    return resp;
  }
  std::string_view token = t.substr(acme_challenge_prefix.size());
  if (is_base64url(token))
    if (auto ka = get(token)) {
      response resp;
      resp.status = 200;
      resp.headers.push_back({"Content-Type", "text/plain"});
      resp.body = std::move(*ka);
      return resp;
    }
  return text(404, "unknown challenge token\n");
}

handler acme_http01_tokens::as_handler() const {
  return [this](const request& r) -> io::task<response> {
    if (auto a = answer(r)) return ready(std::move(*a));
    return ready(text(404, "not found\n"));
  };
}

std::optional<std::string> parse_host_header(std::string_view v) {
  if (v.empty() || v.size() > 260) return std::nullopt;
  std::string host;
  std::string_view port;
  if (v.front() == '[') {
    auto close = v.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    host = std::string(v.substr(1, close - 1));
    std::string_view rest = v.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return std::nullopt;
      port = rest.substr(1);
      if (!is_port(port)) return std::nullopt;
    }
    if (!is_ipv6(host)) return std::nullopt;
  } else {
    auto colon = v.find(':');
    if (colon != std::string_view::npos) {
      port = v.substr(colon + 1);
      if (!is_port(port)) return std::nullopt;
      v = v.substr(0, colon);
    }
    host = std::string(v);
  }
  for (char& c : host)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  if (host.find(':') != std::string::npos) return host;  // the IPv6 literal, checked above
  if (!host.empty() && host.back() == '.') host.pop_back();
  if (is_ipv4(host) || is_dns_name(host)) return host;
  return std::nullopt;
}

handler redirect_to_https(host_policy policy, std::uint16_t https_port) {
  return [policy = std::move(policy), https_port](const request& r) -> io::task<response> {
    auto hosts = r.header_values("host");
    if (hosts.size() != 1) return ready(text(400, "exactly one Host header is required\n"));
    auto host = parse_host_header(hosts.front());
    if (!host) return ready(text(400, "invalid Host header\n"));
    if (!safe_target(r.target)) return ready(text(400, "invalid request target\n"));
    if (!policy || !policy(*host)) return ready(text(404, "unknown host\n"));
    std::string location = "https://";
    location += host->find(':') != std::string::npos ? "[" + *host + "]" : *host;
    if (https_port != 443) location += ":" + std::to_string(https_port);
    location += r.target;
    response resp = text(r.method == "GET" || r.method == "HEAD" ? 301 : 308, "");
    resp.headers.push_back({"Location", std::move(location)});
    return ready(std::move(resp));
  };
}

handler acme_redirect_handler(const acme_http01_tokens& tokens, host_policy policy, std::uint16_t https_port) {
  return [&tokens, redirect = redirect_to_https(std::move(policy), https_port)](const request& r) {
    if (auto a = tokens.answer(r)) return ready(std::move(*a));
    return redirect(r);
  };
}

}  // namespace letsencrypt::http
