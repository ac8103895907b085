// Awaitable io_uring operations. Each awaiter owns everything the kernel reads or writes
// until its last CQE, and its address is the SQE's user_data.
#pragma once

#include <liburing.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstring>
#include <optional>
#include <span>
#include <stop_token>

#include "letsencrypt/error.hpp"
#include "letsencrypt/io/ring.hpp"
#include "letsencrypt/io/unique_fd.hpp"
#include "letsencrypt/result.hpp"

namespace letsencrypt::io {

using clock = std::chrono::steady_clock;
using duration = std::chrono::nanoseconds;

namespace detail {

inline __kernel_timespec to_timespec(duration d) noexcept {
  if (d < duration::zero()) d = duration::zero();
  __kernel_timespec ts{};
  ts.tv_sec = std::chrono::duration_cast<std::chrono::seconds>(d).count();
  ts.tv_nsec = (d - std::chrono::seconds(ts.tv_sec)).count();
  return ts;
}

/// State shared by all single-shot operations: the CQE count still expected, an optional
/// linked timeout and an optional stop token whose stop submits IORING_OP_ASYNC_CANCEL.
/// The awaiting coroutine resumes only after every CQE (operation, linked timeout,
/// zero-copy notification) has arrived, so no SQE is ever in flight for a dead frame.
struct op_state : completion {
  struct timeout_part : completion {
    op_state* op = nullptr;
  };
  struct canceller {
    op_state* op;
    void operator()() noexcept { op->ring_->cancel(op); }
  };

  ring* ring_ = nullptr;
  std::coroutine_handle<> waiter_;
  int res_ = 0;
  unsigned flags_ = 0;
  int pending_ = 0;
  bool has_timeout_ = false;
  bool timed_out_ = false;
  __kernel_timespec ts_{};
  timeout_part timeout_part_{};
  std::stop_token stop_;
  std::optional<std::stop_callback<canceller>> stop_cb_;

  op_state() = default;
  op_state(const op_state&) = delete;
  op_state& operator=(const op_state&) = delete;
  // Moving is allowed only before the operation is submitted (builder calls).
  op_state(op_state&& o) noexcept
      : completion(o), has_timeout_(o.has_timeout_), ts_(o.ts_), stop_(std::move(o.stop_)) {}

  static void on_main(completion* c, int res, unsigned flags) noexcept {
    auto* s = static_cast<op_state*>(c);
    if (!(flags & IORING_CQE_F_NOTIF)) {
      s->res_ = res;
      s->flags_ = flags;
      if (flags & IORING_CQE_F_MORE) ++s->pending_;  // a zero-copy notification follows
    }
    if (--s->pending_ == 0) s->ring_->schedule(s->waiter_);
  }
  static void on_timeout(completion* c, int res, unsigned) noexcept {
    auto* s = static_cast<timeout_part*>(c)->op;
    // It fired: -ETIME, it cancelled the operation; -EALREADY, the kernel was running the
    // operation in a worker and interrupted it (-EINTR follows); -ENOENT, the operation was
    // between two states and the cancel missed it (io::send_some exists so that a send
    // cannot then block on in a worker).
    if (res == -ETIME || res == -EALREADY || res == -ENOENT) s->timed_out_ = true;
    if (--s->pending_ == 0) s->ring_->schedule(s->waiter_);
  }

  bool check_stopped() noexcept {
    if (stop_.stop_requested()) {
      res_ = -ECANCELED;
      return true;
    }
    return false;
  }

  template <class Prep>
  void submit(std::coroutine_handle<> h, Prep&& prep) {
    ring_ = ring::current();
    waiter_ = h;
    on_cqe = &on_main;
    ring_->reserve_sqes(has_timeout_ ? 2 : 1);
    io_uring_sqe* sqe = ring_->get_sqe();
    prep(sqe);
    io_uring_sqe_set_data(sqe, static_cast<completion*>(this));
    pending_ = 1;
    if (has_timeout_) {
      sqe->flags |= IOSQE_IO_LINK;
      io_uring_sqe* t = ring_->get_sqe();
      io_uring_prep_link_timeout(t, &ts_, 0);
      timeout_part_.op = this;
      timeout_part_.on_cqe = &on_timeout;
      io_uring_sqe_set_data(t, static_cast<completion*>(&timeout_part_));
      pending_ = 2;
    }
    if (stop_.stop_possible()) stop_cb_.emplace(stop_, canceller{this});
  }

  /// The operation's result as cqe->res, with a timeout reported as -ETIME. This is the one
  /// place a CQE result is interpreted before conversion to an error code.
  int finish() noexcept {
    if (stop_cb_) {
      stop_cb_.reset();  // waits for a canceller running on another thread
      if (stop_.stop_requested()) ring_->forget_cancel(this);
    }
    // An operation the kernel was running in a worker (a blocking send, say) ends with
    // -EINTR rather than -ECANCELED when it is cancelled: the cause is the same.
    if ((res_ == -ECANCELED || res_ == -EINTR) && timed_out_) return -ETIME;
    if (res_ == -EINTR && stop_.stop_requested()) return -ECANCELED;
    return res_;
  }
};

}  // namespace detail

/// Base of the operation awaiters: adds `.timeout(d)`, `.deadline(t)` and `.cancel_on(st)`.
/// On timeout the result is errc::timed_out; on stop, errc::cancelled.
template <class Derived, class Result>
class basic_op : protected detail::op_state {
 public:
  Derived&& timeout(duration d) && {
    has_timeout_ = true;
    ts_ = detail::to_timespec(d);
    return static_cast<Derived&&>(*this);
  }
  Derived&& deadline(clock::time_point t) && { return std::move(*this).timeout(t - clock::now()); }
  Derived&& cancel_on(std::stop_token st) && {
    stop_ = std::move(st);
    return static_cast<Derived&&>(*this);
  }
  Derived& timeout(duration d) & {
    has_timeout_ = true;
    ts_ = detail::to_timespec(d);
    return static_cast<Derived&>(*this);
  }
  Derived& cancel_on(std::stop_token st) & {
    stop_ = std::move(st);
    return static_cast<Derived&>(*this);
  }

  bool await_ready() noexcept { return check_stopped(); }
  void await_suspend(std::coroutine_handle<> h) {
    submit(h, [this](io_uring_sqe* s) { static_cast<Derived*>(this)->prep(s); });
  }
  Result await_resume() { return static_cast<Derived*>(this)->convert(finish()); }

 protected:
  static result<std::size_t> size_result(int r) {
    if (r < 0) return errno_error(r);
    return static_cast<std::size_t>(r);
  }
  static result<void> void_result(int r) {
    if (r < 0) return errno_error(r);
    return {};
  }
};

/// A no-op round trip through the kernel (benchmarks, tests).
struct nop_op : basic_op<nop_op, result<void>> {
  void prep(io_uring_sqe* s) { io_uring_prep_nop(s); }
  result<void> convert(int r) { return void_result(r); }
};
inline nop_op nop() { return {}; }

/// Accepts one connection on a listening socket.
struct accept_op : basic_op<accept_op, result<unique_fd>> {
  int fd;
  int flags;
  accept_op(int f, int fl) : fd(f), flags(fl) {}
  void prep(io_uring_sqe* s) { io_uring_prep_accept(s, fd, nullptr, nullptr, flags); }
  result<unique_fd> convert(int r) {
    if (r < 0) return errno_error(r);
    return unique_fd(r);
  }
};
inline accept_op accept(int listen_fd, int flags = SOCK_CLOEXEC) { return {listen_fd, flags}; }

/// Connects a socket; the address is copied into the awaiter.
struct connect_op : basic_op<connect_op, result<void>> {
  int fd;
  sockaddr_storage addr{};
  socklen_t len;
  connect_op(int f, const sockaddr* a, socklen_t l) : fd(f), len(l) { std::memcpy(&addr, a, l); }
  void prep(io_uring_sqe* s) { io_uring_prep_connect(s, fd, reinterpret_cast<sockaddr*>(&addr), len); }
  result<void> convert(int r) { return void_result(r); }
};
inline connect_op connect(int fd, const sockaddr* addr, socklen_t len) { return {fd, addr, len}; }

/// Receives into `buf`; 0 means the peer closed its side.
struct recv_op : basic_op<recv_op, result<std::size_t>> {
  int fd;
  std::span<std::byte> buf;
  int flags;
  recv_op(int f, std::span<std::byte> b, int fl) : fd(f), buf(b), flags(fl) {}
  void prep(io_uring_sqe* s) { io_uring_prep_recv(s, fd, buf.data(), buf.size(), flags); }
  result<std::size_t> convert(int r) { return size_result(r); }
};
inline recv_op recv(int fd, std::span<std::byte> buf, int flags = 0) { return {fd, buf, flags}; }

/// Sends from `buf` (MSG_NOSIGNAL by default, so a closed peer is EPIPE, not SIGPIPE).
struct send_op : basic_op<send_op, result<std::size_t>> {
  int fd;
  std::span<const std::byte> buf;
  int flags;
  send_op(int f, std::span<const std::byte> b, int fl) : fd(f), buf(b), flags(fl) {}
  void prep(io_uring_sqe* s) { io_uring_prep_send(s, fd, buf.data(), buf.size(), flags); }
  result<std::size_t> convert(int r) { return size_result(r); }
};
inline send_op send(int fd, std::span<const std::byte> buf, int flags = MSG_NOSIGNAL) {
  return {fd, buf, flags};
}

/// Zero-copy send: completes after the kernel's notification that `buf` is no longer used.
struct send_zc_op : basic_op<send_zc_op, result<std::size_t>> {
  int fd;
  std::span<const std::byte> buf;
  int flags;
  send_zc_op(int f, std::span<const std::byte> b, int fl) : fd(f), buf(b), flags(fl) {}
  void prep(io_uring_sqe* s) { io_uring_prep_send_zc(s, fd, buf.data(), buf.size(), flags, 0); }
  result<std::size_t> convert(int r) { return size_result(r); }
};
inline send_zc_op send_zc(int fd, std::span<const std::byte> buf, int flags = MSG_NOSIGNAL) {
  return {fd, buf, flags};
}

/// Reads from a file at `offset` (-1: the file position).
struct read_op : basic_op<read_op, result<std::size_t>> {
  int fd;
  std::span<std::byte> buf;
  std::uint64_t offset;
  read_op(int f, std::span<std::byte> b, std::uint64_t o) : fd(f), buf(b), offset(o) {}
  void prep(io_uring_sqe* s) { io_uring_prep_read(s, fd, buf.data(), buf.size(), offset); }
  result<std::size_t> convert(int r) { return size_result(r); }
};
inline read_op read(int fd, std::span<std::byte> buf, std::uint64_t offset) { return {fd, buf, offset}; }

/// Writes to a file at `offset` (-1: the file position, as with O_APPEND).
struct write_op : basic_op<write_op, result<std::size_t>> {
  int fd;
  std::span<const std::byte> buf;
  std::uint64_t offset;
  write_op(int f, std::span<const std::byte> b, std::uint64_t o) : fd(f), buf(b), offset(o) {}
  void prep(io_uring_sqe* s) { io_uring_prep_write(s, fd, buf.data(), buf.size(), offset); }
  result<std::size_t> convert(int r) { return size_result(r); }
};
inline write_op write(int fd, std::span<const std::byte> buf, std::uint64_t offset) {
  return {fd, buf, offset};
}

/// fsync, or fdatasync when `datasync`.
struct fsync_op : basic_op<fsync_op, result<void>> {
  int fd;
  bool datasync;
  fsync_op(int f, bool d) : fd(f), datasync(d) {}
  void prep(io_uring_sqe* s) { io_uring_prep_fsync(s, fd, datasync ? IORING_FSYNC_DATASYNC : 0); }
  result<void> convert(int r) { return void_result(r); }
};
inline fsync_op fsync(int fd) { return {fd, false}; }
inline fsync_op fdatasync(int fd) { return {fd, true}; }

/// Closes a descriptor through the ring.
struct close_op : basic_op<close_op, result<void>> {
  int fd;
  explicit close_op(unique_fd f) : fd(f.release()) {}
  void prep(io_uring_sqe* s) { io_uring_prep_close(s, fd); }
  result<void> convert(int r) { return void_result(r); }
};
inline close_op close(unique_fd fd) { return close_op{std::move(fd)}; }

/// Waits for `events` (POLLIN, POLLOUT, ...) on a descriptor; yields the events seen.
struct poll_op : basic_op<poll_op, result<unsigned>> {
  int fd;
  unsigned events;
  poll_op(int f, unsigned e) : fd(f), events(e) {}
  void prep(io_uring_sqe* s) { io_uring_prep_poll_add(s, fd, events); }
  result<unsigned> convert(int r) {
    if (r < 0) return errno_error(r);
    return static_cast<unsigned>(r);
  }
};
inline poll_op poll(int fd, unsigned events) { return {fd, events}; }

/// Sleeps for a duration (a kernel timer, not a thread). Cancelled sleeps report cancelled.
struct sleep_op : basic_op<sleep_op, result<void>> {
  __kernel_timespec sleep_ts;
  explicit sleep_op(duration d) : sleep_ts(detail::to_timespec(d)) {}
  void prep(io_uring_sqe* s) { io_uring_prep_timeout(s, &sleep_ts, 0, 0); }
  result<void> convert(int r) {
    if (r == -ETIME || r == 0) return {};
    return errno_error(r);
  }
};
inline sleep_op sleep_for(duration d) { return sleep_op{d}; }
inline sleep_op sleep_until(clock::time_point t) { return sleep_op{t - clock::now()}; }

}  // namespace letsencrypt::io
