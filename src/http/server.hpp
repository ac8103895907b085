// HTTP/1.1 server: one connection at a time over io::byte_stream, and a plain-TCP accept
// loop over a shard_group.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <stop_token>
#include <string>
#include <vector>

#include "http/message.hpp"
#include "letsencrypt/io/shard.hpp"
#include "letsencrypt/io/stream.hpp"
#include "letsencrypt/io/task.hpp"

namespace letsencrypt::http {

/// Answers one request. The request stays alive until the returned task finishes.
using handler = std::function<io::task<response>(const request&)>;

struct server_config {
  limits lim{};                                            ///< header and body limits
  io::duration request_timeout = std::chrono::seconds(30); ///< from a request's first byte to its response
  io::duration idle_timeout = std::chrono::seconds(60);    ///< between requests on a kept-alive connection
  std::size_t max_requests_per_connection = 1000;
};

/// The standard reason phrase for `status` ("" when unknown).
std::string_view reason_phrase(int status) noexcept;

/// Serialises a response: status line, the handler's headers (minus framing headers it may
/// not set), Content-Length, and Connection: close when `close`. `head` omits the body.
std::string serialize_response(const response& r, bool head, bool close);

/// Serves the requests of one connection until the peer closes, an error, a timeout, or
/// `stop`: answers 400 to malformed requests, 413 to bodies and 431 to headers over the
/// limits, 500 when the handler throws, then closes. Keeps pipelined requests in order.
class server {
 public:
  explicit server(handler h, server_config c = {}) : handler_(std::move(h)), config_(c) {}

  /// Runs the request loop on `s` (which must outlive the task). Returns when the
  /// connection is done; `stop` ends it between requests (and, on a stream with
  /// cancellable operations, during a read).
  io::task<void> serve(io::byte_stream& s, std::stop_token stop = {}) const;

  /// Requests answered by this server object (tests and metrics); updated on the
  /// connection's thread.
  std::uint64_t requests_served() const noexcept { return served_.load(std::memory_order_relaxed); }

 private:
  handler handler_;
  server_config config_;
  mutable std::atomic<std::uint64_t> served_{0};
};

/// A plain-HTTP listener with one accept loop per shard (SO_REUSEPORT), each connection a
/// task on the shard that accepted it. stop() (or the destructor) closes the listeners and
/// unwinds every connection; stop the service before the shard group.
class http_service {
 public:
  /// Listens on `host` (numeric) and `port` (0: a free one; see port()) and starts
  /// accepting on every shard. Fails with the listener's error (EADDRINUSE, ...).
  static result<std::unique_ptr<http_service>> start(io::shard_group& g, const std::string& host,
                                                     std::uint16_t port, handler h, server_config c = {});
  ~http_service();
  http_service(const http_service&) = delete;
  http_service& operator=(const http_service&) = delete;

  std::uint16_t port() const noexcept { return port_; }
  /// Connections accepted so far, on all shards.
  std::uint64_t connections() const noexcept { return accepted_.load(); }
  /// Stops accepting, ends every connection and waits for all of them. Idempotent; must
  /// not be called from a shard thread.
  void stop();

 private:
  struct per_shard;
  http_service() = default;
  static io::task<void> accept_loop(http_service* self, per_shard* ps);
  static io::task<void> stopper(per_shard* ps);
  static void begin_stop(per_shard* ps);

  io::shard_group* group_ = nullptr;
  std::uint16_t port_ = 0;
  std::unique_ptr<server> server_;
  std::vector<std::unique_ptr<per_shard>> shards_;
  std::atomic<std::uint64_t> accepted_{0};
  bool stopped_ = false;
};

/// http_service::start.
result<std::unique_ptr<http_service>> serve_http(io::shard_group& g, const std::string& host, std::uint16_t port,
                                                 handler h, server_config c = {});

}  // namespace letsencrypt::http
