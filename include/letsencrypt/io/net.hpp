// Sockets: listeners, multishot accept, connect, and name resolution off the ring thread.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <coroutine>
#include <cstdint>
#include <deque>
#include <functional>
#include <stop_token>
#include <string>
#include <vector>

#include "letsencrypt/io/buffer_pool.hpp"
#include "letsencrypt/io/ops.hpp"
#include "letsencrypt/io/task.hpp"
#include "letsencrypt/io/unique_fd.hpp"
#include "letsencrypt/result.hpp"

namespace letsencrypt::io {

struct listen_options {
  int backlog = 4096;
  bool reuse_port = false;  ///< SO_REUSEPORT: one listener per shard on the same port
};

/// Opens a non-blocking TCP listener on `host` (a numeric IPv4/IPv6 address) and `port`
/// (0 picks a free port; see local_port). Errors: invalid_argument for a non-numeric host,
/// else the socket call's errno.
result<unique_fd> listen_tcp(const std::string& host, std::uint16_t port, listen_options o = {});

/// The port a socket is bound to.
result<std::uint16_t> local_port(int fd);

/// A socket address for a numeric host and port, or invalid_argument.
result<sockaddr_storage> numeric_address(const std::string& host, std::uint16_t port, socklen_t* len);

/// Resolves `host` (name or numeric) without blocking the ring: getaddrinfo runs on a small
/// shared worker thread and the coroutine resumes on the calling ring. Numeric addresses are
/// answered at once.
task<result<std::vector<sockaddr_storage>>> resolve(std::string host, std::uint16_t port);

/// Connects a new TCP socket to `host:port` (resolved as above), trying each address in
/// turn, each attempt bounded by `timeout`; `stop` cancels a pending attempt (errc::cancelled).
task<result<unique_fd>> connect_tcp(std::string host, std::uint16_t port, duration timeout, std::stop_token stop = {});

/// Sends some of `buf` on a socket (at least one byte), before `deadline`, cancelled by
/// `stop`. Unlike a plain io::send it never blocks a kernel worker: the kernel runs a socket
/// operation it had to retry too often in a worker thread, where a blocking send to a peer
/// that stopped reading can outlive its deadline (the cancellation races with the hand-off).
/// This one sends with MSG_DONTWAIT and waits for POLLOUT itself when the kernel says
/// EAGAIN (backing off when the socket polls ready but still refuses). Errors:
/// errc::timed_out, errc::cancelled, or the socket's errno (EPIPE, ECONNRESET...). `buf`
/// must stay valid until the task completes.
task<result<std::size_t>> send_some(int fd, std::span<const std::byte> buf, clock::time_point deadline,
                                    std::stop_token stop = {});
/// Receives into `buf` (0: the peer closed its side) before `deadline`. A receive waits in
/// the kernel's own poll (every wake-up brings data, an end or an error, so it is not handed
/// to a worker); an EAGAIN is still waited out by poll as above.
task<result<std::size_t>> recv_some(int fd, std::span<std::byte> buf, clock::time_point deadline,
                                    std::stop_token stop = {});
/// Receives into a buffer from `pool`, the same way. ENOBUFS as recv_pooled.
task<result<pooled_buffer>> recv_some_pooled(int fd, buffer_pool& pool, clock::time_point deadline,
                                             std::stop_token stop = {});

/// Runs `fn` on the shared worker thread and resumes the awaiting coroutine on its ring
/// with the value. For blocking library calls (getaddrinfo) only; never for hot paths.
void run_on_worker(std::function<void()> fn);

/// Multishot accept (IORING_ACCEPT_MULTISHOT): one SQE yields a CQE per connection. next()
/// yields connections in arrival order; stop() cancels the SQE and completes after its last
/// CQE. Connections queued but not taken are closed by stop().
class multishot_acceptor : completion {
 public:
  explicit multishot_acceptor(int listen_fd) noexcept;
  multishot_acceptor(const multishot_acceptor&) = delete;
  multishot_acceptor& operator=(const multishot_acceptor&) = delete;
  ~multishot_acceptor();

  /// The next connection; errc::cancelled after stop().
  auto next() noexcept {
    struct awaiter {
      multishot_acceptor* a;
      bool await_ready() noexcept { return !a->queue_.empty() || a->stopping_; }
      void await_suspend(std::coroutine_handle<> h) {
        a->waiter_ = h;
        if (!a->armed_) a->arm();
      }
      result<unique_fd> await_resume() { return a->pop(); }
    };
    return awaiter{this};
  }

  /// Cancels the multishot SQE, waits for its final CQE, then stops the socket listening
  /// (shutdown SHUT_RD): connections still in its backlog are reset and the port is free at
  /// once, even while another copy of the descriptor stays open. The caller still closes it.
  task<void> stop();

  /// CQEs received so far (each one a connection or an error).
  std::uint64_t accepted() const noexcept { return accepted_; }

 private:
  static void on_accept(completion* c, int res, unsigned flags) noexcept;
  void arm();
  result<unique_fd> pop();

  int fd_;
  ring* ring_ = nullptr;
  bool armed_ = false;
  bool stopping_ = false;
  std::deque<int> queue_;  // fds (>= 0) or negative errno
  std::coroutine_handle<> waiter_;
  std::coroutine_handle<> stop_waiter_;
  std::uint64_t accepted_ = 0;
};

}  // namespace letsencrypt::io
