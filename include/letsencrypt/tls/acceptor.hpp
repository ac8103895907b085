// tls::acceptor: a TLS listener on every shard of a shard_group, each connection a task with
// a handshake deadline, then the caller's handler.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <latch>
#include <memory>
#include <string>
#include <vector>

#include "letsencrypt/io/shard.hpp"
#include "letsencrypt/io/task.hpp"
#include "letsencrypt/result.hpp"
#include "letsencrypt/tls/handles.hpp"
#include "letsencrypt/tls/stream.hpp"

namespace letsencrypt::tls {

struct acceptor_config {
  std::string host = "0.0.0.0";  ///< numeric address to listen on
  std::uint16_t port = 443;      ///< 0 picks a free port (see acceptor::port)
  /// From accept to handshake done, not counting the time the first on_client_hello_retry
  /// call takes (an issuance is bounded by its own deadlines and by stop()).
  std::chrono::milliseconds handshake_timeout{10'000};
  std::chrono::milliseconds shutdown_timeout{1'000};    ///< for sending close_notify
  int backlog = 4096;
  /// Serves SSL_CLIENT_HELLO_RETRY from the SSL_CTX's ClientHello callback (the SNI
  /// resolver); without it such handshakes fail with tls_errc::no_retry_handler.
  client_hello_retry on_client_hello_retry;
  /// Buffers per shard for pooled receives (0: each connection has its own buffer).
  std::uint16_t pool_buffers = 0;
  std::uint16_t pool_group = 7;  ///< buffer group id used for the pool on each shard's ring
};

/// Snapshot of the acceptor's counters (monotonic since start()).
struct acceptor_stats {
  std::uint64_t accepted = 0;
  std::uint64_t handshakes_ok = 0;
  std::uint64_t handshake_timeouts = 0;      ///< dropped at the handshake deadline
  std::uint64_t handshake_cancelled = 0;     ///< cut short by stop()
  std::uint64_t handshake_eof = 0;           ///< the client left mid-handshake
  std::uint64_t handshake_protocol = 0;      ///< malformed TLS (not TLS, corrupt, unsupported)
  std::uint64_t handshake_alert = 0;         ///< the client sent a fatal alert
  std::uint64_t handshake_no_certificate = 0;
  std::uint64_t handshake_other = 0;         ///< other TLS or socket failures
  std::uint64_t handler_errors = 0;          ///< handlers that threw
  std::uint64_t active = 0;                  ///< connections open now
};

/// One listener per shard (SO_REUSEPORT, multishot accept). For each connection: a task in
/// the shard's scope that runs the handshake before handshake_timeout (silent or slow
/// clients are dropped then, holding no thread), the handler, then close_notify.
///
/// The SSL_CTX, the shard_group and the handler must outlive the acceptor. The handler runs
/// on the connection's shard; the stream is valid until the handler's task completes, and its
/// operations are cancelled (errc::cancelled) when stop() is called.
class acceptor {
 public:
  using handler = std::function<io::task<void>(stream&)>;

  acceptor(io::shard_group& shards, SSL_CTX* ctx, acceptor_config cfg, handler h);
  /// Calls stop().
  ~acceptor();
  acceptor(const acceptor&) = delete;
  acceptor& operator=(const acceptor&) = delete;

  /// Binds the listeners (all on one port) and starts accepting. Errors: the socket calls'
  /// (errno), errc::invalid_argument for a non-numeric host or a second start.
  result<void> start();

  /// Closes the listeners, cancels every connection (handshakes and handlers see
  /// errc::cancelled), and returns when all of them have finished. Idempotent; blocking;
  /// must not be called from a shard thread. If the shard_group stops first, the acceptor's
  /// tasks end with it.
  void stop();

  /// The bound port (the one picked when 0 was asked); 0 before start().
  std::uint16_t port() const noexcept { return port_; }
  acceptor_stats stats() const noexcept;

 private:
  struct shard_state;
  struct counters {
    std::atomic<std::uint64_t> accepted{0}, ok{0}, timeouts{0}, cancelled{0}, eof{0}, protocol{0}, alert{0},
        no_cert{0}, other{0}, handler_errors{0}, active{0};
  };

  io::task<void> accept_loop(shard_state& st);
  io::task<void> serve(shard_state& st, io::unique_fd fd);
  void begin_stop(shard_state& st);
  void count_failure(const std::error_code& ec) noexcept;

  io::shard_group& shards_;
  ssl_ctx_ptr ctx_;
  acceptor_config cfg_;
  handler handler_;
  std::vector<std::unique_ptr<shard_state>> states_;
  std::unique_ptr<std::latch> finished_;
  std::uint16_t port_ = 0;
  bool started_ = false;
  bool stopped_ = false;
  counters n_;
};

}  // namespace letsencrypt::tls
