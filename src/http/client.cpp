#include "http/client.hpp"

#include <array>
#include <cerrno>

#include "http/parser.hpp"
#include "http/stream.hpp"
#include "letsencrypt/io/net.hpp"

namespace letsencrypt::http {

namespace {

bool connection_lost(const std::error_code& ec) {
  if (ec == errc::closed) return true;
  if (ec.category() != std::system_category()) return false;
  return ec.value() == ECONNRESET || ec.value() == EPIPE || ec.value() == ECONNABORTED;
}

bool managed_header(std::string_view name) {
  return iequals(name, "host") || iequals(name, "content-length") || iequals(name, "transfer-encoding") ||
         iequals(name, "keep-alive") || iequals(name, "te") || iequals(name, "upgrade");
}

struct exchange_state {
  bool got_byte = false;   // any response byte arrived
  bool leftover = false;   // bytes after the response: the connection is not reusable
};

// Writes the request and reads one final (non-1xx) response.
io::task<result<response>> exchange(io::byte_stream& s, const std::string& req, bool head, const limits& lim,
                                    io::clock::time_point deadline, exchange_state& st) {
  LE_CO_TRY_VOID(co_await s.write_all(std::as_bytes(std::span(req)), deadline));
  response_parser p(lim);
  p.expect_no_body(head);
  std::array<char, 16 * 1024> buf;
  for (;;) {
    auto n = co_await s.read_some(std::as_writable_bytes(std::span(buf)), deadline);
    if (!n) co_return n.error();
    if (*n == 0) {
      LE_CO_TRY_VOID(p.finish());
      response r = p.take();
      r.keep_alive = false;
      co_return r;
    }
    st.got_byte = true;
    std::string_view data(buf.data(), *n);
    while (!data.empty()) {
      LE_CO_TRY(used, p.feed(data));
      data.remove_prefix(used);
      if (!p.done()) continue;
      response r = p.take();
      if (r.status >= 100 && r.status < 200) {
        if (r.status == 101) co_return unexpected(make_error_code(errc::protocol_error));
        continue;  // an interim response; the final one follows
      }
      st.leftover = !data.empty();
      co_return r;
    }
  }
}

}  // namespace

client::client(connector c, limits l) : connect_(std::move(c)), limits_(l) {}

io::task<result<response>> client::fetch(std::string method, std::string url_s, std::vector<header> headers,
                                         std::string body) {
  co_return co_await fetch(std::move(method), std::move(url_s), std::move(headers), std::move(body),
                           std::stop_token{});
}

io::task<result<response>> client::fetch(std::string method, std::string url_s, std::vector<header> headers,
                                         std::string body, std::stop_token stop) {
  LE_CO_TRY(u, parse_url(url_s));
  if (!is_token(method)) co_return unexpected(make_error_code(errc::invalid_argument));
  const bool head = method == "HEAD";
  if ((head || method == "GET") && !body.empty()) co_return unexpected(make_error_code(errc::invalid_argument));
  for (const auto& h : headers)
    if (!is_token(h.name) || !is_field_value(h.value))
      co_return unexpected(make_error_code(errc::invalid_argument));

  std::string req;
  req.reserve(256 + body.size());
  req += method;
  req += ' ';
  req += u.target;
  req += " HTTP/1.1\r\nHost: ";
  req += authority(u);
  req += "\r\n";
  bool has_agent = false;
  bool close = false;
  for (const auto& h : headers) {
    if (managed_header(h.name)) continue;
    if (iequals(h.name, "connection")) {
      // Only "close" is meaningful here: the client decides about reuse itself.
      if (!iequals(h.value, "close")) continue;
      close = true;
    }
    has_agent |= iequals(h.name, "user-agent");
    req += h.name;
    req += ": ";
    req += h.value;
    req += "\r\n";
  }
  if (!has_agent) {
    req += "User-Agent: ";
    req += user_agent;
    req += "\r\n";
  }
  if (!body.empty() || !(head || method == "GET" || method == "DELETE" || method == "OPTIONS")) {
    req += "Content-Length: ";
    req += std::to_string(body.size());
    req += "\r\n";
  }
  req += "\r\n";
  req += body;

  const auto deadline = io::clock::now() + limits_.timeout;
  const std::string key = origin(u);
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (stop.stop_requested()) co_return unexpected(make_error_code(errc::cancelled));
    std::unique_ptr<io::byte_stream> s;
    bool reused = false;
    if (auto it = idle_.find(key); it != idle_.end()) {
      s = std::move(it->second);
      idle_.erase(it);
      reused = true;
    } else {
      auto c = co_await connect_(u, deadline);
      if (!c) co_return unexpected(c.error());
      s = std::move(*c);
      ++opened_;
    }
    auto* cancellable = dynamic_cast<stoppable*>(s.get());
    if (cancellable) cancellable->bind_stop(stop);
    exchange_state st;
    auto r = co_await exchange(*s, req, head, limits_, deadline, st);
    if (cancellable) cancellable->bind_stop({});
    if (!r) {
      // A kept-alive connection the server closed meanwhile: the request never reached it.
      if (reused && !st.got_byte && connection_lost(r.error())) continue;
      co_return r;
    }
    if (r->keep_alive && !close && !st.leftover) idle_[key] = std::move(s);
    co_return r;
  }
  co_return unexpected(make_error_code(errc::closed));
}

client::connector plain_tcp_connector() {
  return [](const url& u, io::clock::time_point deadline) -> io::task<result<std::unique_ptr<io::byte_stream>>> {
    if (u.scheme != "http") co_return unexpected(make_error_code(errc::unsupported));
    auto left = deadline - io::clock::now();
    if (left <= io::duration::zero()) co_return unexpected(make_error_code(errc::timed_out));
    LE_CO_TRY(fd, co_await io::connect_tcp(u.host, u.port, left));
    co_return std::unique_ptr<io::byte_stream>(std::make_unique<stoppable_tcp_stream>(std::move(fd)));
  };
}

}  // namespace letsencrypt::http
