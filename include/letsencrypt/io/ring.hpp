// ring: one io_uring per thread, with a completion loop that resumes coroutines.
#pragma once

#include <liburing.h>

#include <atomic>
#include <coroutine>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stop_token>
#include <thread>
#include <utility>
#include <vector>

#include "letsencrypt/io/task.hpp"
#include "letsencrypt/io/unique_fd.hpp"

namespace letsencrypt::io {

/// The target of a CQE: `sqe->user_data` is always a completion*, and the loop calls
/// on_cqe for each CQE (user_data 0 marks CQEs nobody waits for, such as cancel requests).
/// on_cqe must not resume coroutines itself: it records the result and calls
/// ring::schedule, so resumption happens after the CQ has been advanced.
struct completion {
  void (*on_cqe)(completion* self, int res, unsigned flags) noexcept = nullptr;
};

/// A cross-thread message: runs on the ring's thread.
struct message {
  message* next_ = nullptr;
  virtual void run() noexcept = 0;
  virtual ~message() = default;
};

/// An io_uring owned by the thread that constructed it (IORING_SETUP_SINGLE_ISSUER and
/// DEFER_TASKRUN where the kernel has them, with fallbacks where it refuses a flag).
/// Only post(), stop() and wake() may be called from other threads.
class ring {
 public:
  struct options {
    unsigned entries = 256;        ///< submission queue size; the CQ gets 8x that
    bool single_issuer = true;     ///< ask for SINGLE_ISSUER|DEFER_TASKRUN
  };

  /// Creates the ring on the calling thread. Throws std::system_error when the kernel has
  /// no io_uring at all (setup is the one place this library throws).
  ring();
  explicit ring(options o);
  ~ring();
  ring(const ring&) = delete;
  ring& operator=(const ring&) = delete;

  /// The ring of the calling thread, or nullptr when the thread has none.
  static ring* current() noexcept;

  /// A free SQE; when the queue is full it submits what is queued and retries, so it never
  /// returns nullptr. The caller must fill the SQE before it next suspends.
  io_uring_sqe* get_sqe();

  /// Makes sure `n` SQEs can be taken without an intervening submit, so a linked chain
  /// (an operation and its timeout) is never split across two submissions.
  void reserve_sqes(unsigned n);

  /// Queues a coroutine for resumption by the loop (ring thread only).
  void schedule(std::coroutine_handle<> h) { ready_.push_back(h); }

  /// Runs the loop on the calling thread until `t` finishes, and returns its value
  /// (rethrowing its exception). The calling thread must be the ring's thread.
  template <class T>
  T run(task<T> t) {
    auto h = t.handle();
    schedule(h);
    while (!h.done()) loop_once();
    return t.take_result();
  }

  /// Runs the loop until stop() is called (from any thread) or `st` is stopped.
  void run_until_stopped(std::stop_token st = {});

  /// Makes run_until_stopped return at its next iteration. Thread-safe.
  void stop() noexcept;

  /// Runs `fn()` on the ring's thread. Thread-safe; never blocks; allocates one node.
  template <class F>
  void post(F&& fn) {
    struct impl final : message {
      std::decay_t<F> f;
      explicit impl(F&& x) : f(std::forward<F>(x)) {}
      void run() noexcept override { f(); }  // f may be mutable (move-only captures)
    };
    push(new impl(std::forward<F>(fn)));
  }

  /// An awaitable that moves the awaiting coroutine onto this ring's thread.
  auto enter() noexcept {
    struct awaiter {
      ring* r;
      bool await_ready() const noexcept { return ring::current() == r; }
      void await_suspend(std::coroutine_handle<> h) { r->post([h, rr = r] { rr->schedule(h); }); }
      void await_resume() const noexcept {}
    };
    return awaiter{this};
  }

  /// Requests IORING_OP_ASYNC_CANCEL of the operation whose user_data is `target`.
  /// Safe from any thread; from another thread the request is posted.
  void cancel(completion* target) noexcept;

  /// Drops a cancel that another thread requested for `target` and that has not run yet.
  /// Ring thread only; an operation calls it once its last CQE is in, before its memory can
  /// be reused, so a late cancel cannot hit a newer operation at the same address.
  void forget_cancel(completion* target) noexcept;

  bool on_ring_thread() const noexcept { return std::this_thread::get_id() == owner_; }
  io_uring* native() noexcept { return &ring_; }
  unsigned setup_flags() const noexcept { return flags_; }
  /// Number of operations submitted to the kernel whose CQE is still expected (debugging).
  std::uint64_t cqes_seen() const noexcept { return cqes_seen_; }

  /// Runs one iteration: submit, wait for at least one CQE unless work is ready, dispatch
  /// CQEs, advance the CQ, then resume every ready coroutine.
  void loop_once();

 private:
  void init(options o);
  void push(message* m) noexcept;
  void drain_messages() noexcept;
  void arm_wakeup();
  unsigned reap() noexcept;
  static void on_wakeup(completion* self, int res, unsigned flags) noexcept;

  io_uring ring_{};
  unsigned flags_ = 0;
  std::thread::id owner_;
  std::vector<std::coroutine_handle<>> ready_;
  std::vector<std::coroutine_handle<>> running_;
  std::atomic<message*> inbox_{nullptr};
  std::atomic<bool> wake_pending_{false};
  // Posts from other threads still inside push(): the ring waits for them before it goes,
  // since the message may already have run (and ended the ring's owner) before the poster
  // wrote the wake-up.
  std::atomic<unsigned> posting_{0};
  unique_fd event_fd_;
  std::uint64_t event_buf_ = 0;
  struct wakeup : completion {
    ring* owner = nullptr;
  } wake_completion_{};
  bool stopped_ = false;
  std::atomic<bool> stop_requested_{false};
  std::uint64_t cqes_seen_ = 0;
  std::mutex remote_cancels_mu_;
  std::vector<completion*> remote_cancels_;  // posted cross-thread cancels not yet run
};

}  // namespace letsencrypt::io
