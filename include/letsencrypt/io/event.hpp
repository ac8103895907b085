// event: a one-shot, thread-safe signal that coroutines on any ring can await.
#pragma once

#include <algorithm>
#include <coroutine>
#include <mutex>
#include <optional>
#include <stop_token>
#include <vector>

#include "letsencrypt/io/ring.hpp"

namespace letsencrypt::io {

/// Set once, awaited by any number of coroutines on any rings. Each waiter is resumed on
/// the ring it awaited from (by message when that is another thread), never on the setter's
/// stack. Waiting after set() completes at once. The event must outlive its waiters' resumption.
class event {
 public:
  event() = default;
  event(const event&) = delete;
  event& operator=(const event&) = delete;

  bool is_set() const {
    std::lock_guard lk(mu_);
    return set_;
  }

  /// Wakes every waiter. Idempotent. Thread-safe.
  void set() {
    std::vector<waiter> ws;
    {
      std::lock_guard lk(mu_);
      if (set_) return;
      set_ = true;
      ws.swap(waiters_);
    }
    for (auto& w : ws) resume(w);
  }

  auto wait() noexcept {
    struct awaiter {
      event* e;
      bool await_ready() const { return e->is_set(); }
      bool await_suspend(std::coroutine_handle<> h) {
        std::lock_guard lk(e->mu_);
        if (e->set_) return false;
        e->waiters_.push_back({h, ring::current()});
        return true;
      }
      void await_resume() const noexcept {}
    };
    return awaiter{this};
  }

  /// Like wait(), but ends early when `stop` is requested: the result is true when the event
  /// was set, false when the wait was stopped first. The waiter still resumes on its own ring.
  /// Thread-safe against set() and the stop request racing. Off a ring the stop is not
  /// observed (there is no loop to resume the waiter from).
  auto wait(std::stop_token stop) noexcept {
    struct awaiter {
      struct on_stop {
        awaiter* a;
        void operator()() const noexcept { a->e->cancel_waiter(a->h); }
      };
      event* e;
      std::stop_token stop;
      std::coroutine_handle<> h{};
      std::optional<std::stop_callback<on_stop>> cb{};
      bool await_ready() const { return e->is_set() || stop.stop_requested(); }
      bool await_suspend(std::coroutine_handle<> handle) {
        h = handle;
        {
          std::lock_guard lk(e->mu_);
          if (e->set_) return false;
          e->waiters_.push_back({h, ring::current()});
        }
        // Runs on_stop at once when the stop is already requested; it takes the waiter back
        // and schedules it, so this coroutine resumes from its ring's loop, not from here.
        if (ring::current()) cb.emplace(stop, on_stop{this});
        return true;
      }
      bool await_resume() {
        cb.reset();  // waits for an on_stop running on another thread
        return e->is_set();
      }
    };
    return awaiter{this, std::move(stop)};
  }

 private:
  struct waiter {
    std::coroutine_handle<> h;
    ring* home;
  };

  // Resumes `w` from its ring's loop (by message from another thread), or here when it
  // awaited off any ring.
  static void resume(const waiter& w) {
    if (w.home && w.home != ring::current())
      w.home->post([h = w.h, r = w.home] { r->schedule(h); });
    else if (w.home)
      w.home->schedule(w.h);
    else
      w.h.resume();
  }

  // Takes `h` out of the waiters and resumes it, unless set() already has it. Only waiters
  // on a ring register a stop callback, so this never resumes inline.
  void cancel_waiter(std::coroutine_handle<> h) {
    waiter taken{};
    {
      std::lock_guard lk(mu_);
      auto it = std::find_if(waiters_.begin(), waiters_.end(), [h](const waiter& w) { return w.h == h; });
      if (it == waiters_.end()) return;  // set() has taken it and resumes it
      taken = *it;
      waiters_.erase(it);
    }
    resume(taken);
  }

  mutable std::mutex mu_;
  bool set_ = false;
  std::vector<waiter> waiters_;
};

}  // namespace letsencrypt::io
