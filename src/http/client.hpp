// HTTP/1.1 client over io::byte_stream, with one idle kept-alive connection per origin.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <stop_token>
#include <string>
#include <unordered_map>
#include <vector>

#include "http/message.hpp"
#include "http/url.hpp"
#include "letsencrypt/io/stream.hpp"
#include "letsencrypt/io/task.hpp"

namespace letsencrypt::http {

inline constexpr std::string_view user_agent = "letsencrypt-cpp/0.1";

class client {
 public:
  using connector = std::function<io::task<result<std::unique_ptr<io::byte_stream>>>(
      const url& origin, io::clock::time_point deadline)>;

  /// A client that opens connections through `c`. Use it from one ring thread; it must
  /// outlive every fetch in flight.
  explicit client(connector c, limits l = {});

  /// Sends one request to an absolute http(s) URL and reads the whole response within
  /// limits.timeout; reuses a kept-alive connection to the same origin (one idle connection
  /// per origin); retries once on a fresh connection if a reused one was closed by the
  /// server before any response byte arrived. Sends Host, User-Agent (unless `headers` has
  /// one) and Content-Length (for a body, and for methods that expect one); Host, framing
  /// and hop-by-hop headers in `headers` are ignored, except "Connection: close", which is
  /// sent and keeps the connection out of the pool. Errors: invalid_argument (bad URL, method,
  /// header, or a body on GET/HEAD), timed_out, closed (the server closed early),
  /// message_too_large, protocol_error (not HTTP), or the connector's error.
  io::task<result<response>> fetch(std::string method, std::string url, std::vector<header> headers = {},
                                   std::string body = {});
  /// The same, also ending with errc::cancelled when `stop` is triggered (the connection
  /// must implement http::stoppable for a pending read to end at once; otherwise the
  /// deadline bounds it).
  io::task<result<response>> fetch(std::string method, std::string url, std::vector<header> headers,
                                   std::string body, std::stop_token stop);

  /// Connections opened so far (tests and metrics).
  std::size_t connections_opened() const noexcept { return opened_; }
  /// Drops every idle connection.
  void close_idle() noexcept { idle_.clear(); }

 private:
  connector connect_;
  limits limits_;
  std::unordered_map<std::string, std::unique_ptr<io::byte_stream>> idle_;
  std::size_t opened_ = 0;
};

/// http:// through io::connect_tcp and a stoppable TCP stream; https URLs get
/// errc::unsupported (TLS is plugged in through another connector).
client::connector plain_tcp_connector();

}  // namespace letsencrypt::http
