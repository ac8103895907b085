// HTTP/1.1 messages as handlers see them (the server's request, the handler's response),
// and the handler type of manager::serve.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "letsencrypt/io/ops.hpp"
#include "letsencrypt/io/task.hpp"
#include "letsencrypt/result.hpp"

namespace letsencrypt::http {

struct header {
  std::string name, value;
};

/// ASCII case-insensitive comparison, as header names and schemes need.
bool iequals(std::string_view a, std::string_view b) noexcept;

/// The value of the first header called `name` (case-insensitive), or "" when absent.
std::string_view find_header(const std::vector<header>& hs, std::string_view name) noexcept;
/// Every value of the headers called `name`, in order.
std::vector<std::string_view> find_headers(const std::vector<header>& hs, std::string_view name);

struct response {
  int status = 0;
  std::vector<header> headers;
  std::string body;
  /// Whether the connection may carry another message after this one (as parsed), or, for
  /// a server's answer, false to close the connection after it.
  bool keep_alive = true;

  std::string_view header_value(std::string_view name) const { return find_header(headers, name); }
  std::vector<std::string_view> header_values(std::string_view name) const { return find_headers(headers, name); }
};

struct request {
  std::string method;  ///< upper case, as on the wire ("GET")
  std::string target;  ///< the request-target as sent (usually origin-form "/path?query")
  std::vector<header> headers;
  std::string body;
  bool keep_alive = true;

  std::string_view header_value(std::string_view name) const { return find_header(headers, name); }
  std::vector<std::string_view> header_values(std::string_view name) const { return find_headers(headers, name); }
};

struct limits {
  std::size_t max_header_bytes = 16 * 1024;  ///< start line plus all header lines
  std::size_t max_body_bytes = 1 << 20;
  io::duration timeout = std::chrono::seconds(30);
  std::size_t max_headers = 100;  ///< header lines per message
};

/// True for an RFC 9110 token (method names, header names).
bool is_token(std::string_view s) noexcept;
/// True when `s` may be sent as a header value: no CR, LF, NUL or other control bytes
/// except horizontal tab.
bool is_field_value(std::string_view s) noexcept;

/// Answers one request. The request stays alive until the returned task finishes.
using handler = std::function<io::task<response>(const request&)>;

}  // namespace letsencrypt::http
