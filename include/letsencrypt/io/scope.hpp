// Structured concurrency: task_scope (a nursery that a stop awaits) and when_all.
#pragma once

#include <cassert>
#include <coroutine>
#include <cstddef>
#include <exception>
#include <optional>
#include <stop_token>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "letsencrypt/io/ring.hpp"
#include "letsencrypt/io/task.hpp"

namespace letsencrypt::io {

namespace detail {

/// A fire-and-forget coroutine frame that frees itself; only used inside scopes and
/// when_all, which count their children, so nothing is ever truly detached.
struct eager_task {
  struct promise_type {
    eager_task get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() const noexcept { return {}; }
    std::suspend_never final_suspend() const noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
};

inline void resume_later(std::coroutine_handle<> h) {
  if (ring* r = ring::current())
    r->schedule(h);
  else
    h.resume();
}

/// Counts finished children and resumes one waiter when the count reaches zero.
struct countdown {
  std::size_t remaining = 0;
  std::coroutine_handle<> waiter;
  void done() {
    assert(remaining > 0);
    if (--remaining == 0 && waiter) resume_later(std::exchange(waiter, {}));
  }
  auto wait() noexcept {
    struct awaiter {
      countdown* c;
      bool await_ready() const noexcept { return c->remaining == 0; }
      void await_suspend(std::coroutine_handle<> h) noexcept { c->waiter = h; }
      void await_resume() const noexcept {}
    };
    return awaiter{this};
  }
};

}  // namespace detail

/// A nursery: tasks spawned into it start at once on the calling thread and are owned by the
/// scope; join() completes when all have finished. The scope must be joined before it is
/// destroyed (destroying it with live children terminates). Single-threaded: spawn and join
/// from the ring thread that owns the scope.
class task_scope {
 public:
  task_scope() = default;
  task_scope(const task_scope&) = delete;
  task_scope& operator=(const task_scope&) = delete;
  ~task_scope() {
    if (live_.remaining != 0) std::terminate();
  }

  /// Starts `t`; it runs until its first suspension before spawn returns. An exception
  /// escaping `t` is kept (the first one) and the task counts as finished.
  void spawn(task<void> t) {
    ++live_.remaining;
    ++spawned_;
    run_child(this, std::move(t));
  }

  /// Completes when every spawned task has finished (immediately when none are live).
  auto join() noexcept { return live_.wait(); }

  /// Asks children to stop: they observe stop_token() and cancel their operations.
  void request_stop() noexcept { stop_.request_stop(); }
  std::stop_token stop_token() const noexcept { return stop_.get_token(); }
  bool stop_requested() const noexcept { return stop_.stop_requested(); }

  std::size_t live() const noexcept { return live_.remaining; }
  std::size_t spawned() const noexcept { return spawned_; }
  std::exception_ptr first_error() const noexcept { return error_; }

 private:
  static detail::eager_task run_child(task_scope* s, task<void> t) {
    try {
      co_await std::move(t);
    } catch (...) {
      if (!s->error_) s->error_ = std::current_exception();
    }
    s->live_.done();
  }

  detail::countdown live_;
  std::size_t spawned_ = 0;
  std::stop_source stop_;
  std::exception_ptr error_;
};

namespace detail {
template <class T>
using slot_t = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

template <class T>
eager_task run_into(task<T> t, std::optional<slot_t<T>>* out, std::exception_ptr* err, countdown* c) {
  try {
    if constexpr (std::is_void_v<T>) {
      co_await std::move(t);
      out->emplace();
    } else {
      out->emplace(co_await std::move(t));
    }
  } catch (...) {
    if (!*err) *err = std::current_exception();
  }
  c->done();
}
}  // namespace detail

/// Runs all tasks concurrently on the calling thread; completes when all have finished, with
/// their values in order (void tasks give std::monostate). If any threw, the first exception
/// is rethrown after all have finished.
template <class T>
task<std::vector<detail::slot_t<T>>> when_all(std::vector<task<T>> tasks) {
  std::vector<std::optional<detail::slot_t<T>>> slots(tasks.size());
  std::exception_ptr err;
  detail::countdown c{tasks.size(), {}};
  for (std::size_t i = 0; i < tasks.size(); ++i) detail::run_into(std::move(tasks[i]), &slots[i], &err, &c);
  co_await c.wait();
  if (err) std::rethrow_exception(err);
  std::vector<detail::slot_t<T>> out;
  out.reserve(slots.size());
  for (auto& s : slots) out.push_back(std::move(*s));
  co_return out;
}

template <class... Ts>
task<std::tuple<detail::slot_t<Ts>...>> when_all(task<Ts>... tasks) {
  std::tuple<std::optional<detail::slot_t<Ts>>...> slots;
  std::exception_ptr err;
  detail::countdown c{sizeof...(Ts), {}};
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    (detail::run_into(std::move(tasks), &std::get<I>(slots), &err, &c), ...);
  }(std::index_sequence_for<Ts...>{});
  co_await c.wait();
  if (err) std::rethrow_exception(err);
  co_return std::apply([](auto&... s) { return std::tuple<detail::slot_t<Ts>...>(std::move(*s)...); }, slots);
}

}  // namespace letsencrypt::io
