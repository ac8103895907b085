// Absolute http(s) URLs, parsed with http_parser_parse_url.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "letsencrypt/result.hpp"

namespace letsencrypt::http {

struct url {
  std::string scheme;  ///< "http" or "https", lower case
  std::string host;    ///< lower case; an IPv6 literal without its brackets
  std::uint16_t port = 0;
  std::string target;  ///< path?query ("/" when the URL has no path); the fragment is dropped
};

/// Parses an absolute http or https URL, filling in the default port (80 / 443). Fails with
/// errc::invalid_argument for another scheme, a relative URL, user info, an empty host,
/// port 0, or anything http_parser refuses.
result<url> parse_url(std::string_view s);

/// The Host header value for `u`: the host (bracketed when IPv6) and ":port" unless the
/// port is the scheme's default.
std::string authority(const url& u);

/// "scheme://authority", the key under which connections to one server are pooled.
std::string origin(const url& u);

}  // namespace letsencrypt::http
