// event: a one-shot, thread-safe signal that coroutines on any ring can await.
#pragma once

#include <coroutine>
#include <mutex>
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
    for (auto& w : ws) {
      if (w.home && w.home != ring::current())
        w.home->post([h = w.h, r = w.home] { r->schedule(h); });
      else if (w.home)
        w.home->schedule(w.h);
      else
        w.h.resume();
    }
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

 private:
  struct waiter {
    std::coroutine_handle<> h;
    ring* home;
  };
  mutable std::mutex mu_;
  bool set_ = false;
  std::vector<waiter> waiters_;
};

}  // namespace letsencrypt::io
