// task<T>: a lazy coroutine that starts when awaited and resumes its awaiter when it finishes.
#pragma once

#include <atomic>
#include <cassert>
#include <coroutine>
#include <exception>
#include <type_traits>
#include <utility>
#include <variant>

namespace letsencrypt::io {

template <class T = void>
class task;

namespace detail {

// Completion hand-off between a task and its awaiter. The awaiter starts the task with a
// plain resume() and the task's end resumes the awaiter only if the awaiter has already
// suspended; a task that finishes synchronously just returns into the awaiter, which then
// continues without suspending. This keeps the stack flat over any number of synchronous
// completions even where the compiler does not turn symmetric transfer into a tail call
// (GCC under ASan or at -O0). The flag is atomic because a task may finish on another ring.
struct final_awaiter {
  bool await_ready() const noexcept { return false; }
  template <class Promise>
  std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> h) noexcept {
    auto& p = h.promise();
    if (p.continuation_ && p.awaiter_suspended_.exchange(true, std::memory_order_acq_rel))
      return p.continuation_;
    return std::noop_coroutine();
  }
  void await_resume() const noexcept {}
};

struct promise_base {
  std::coroutine_handle<> continuation_;
  std::atomic<bool> awaiter_suspended_{false};
  std::suspend_always initial_suspend() const noexcept { return {}; }
  final_awaiter final_suspend() const noexcept { return {}; }
};

template <class T>
struct promise final : promise_base {
  std::variant<std::monostate, T, std::exception_ptr> value_;
  task<T> get_return_object() noexcept;
  void unhandled_exception() noexcept { value_.template emplace<2>(std::current_exception()); }
  template <class U>
    requires std::is_convertible_v<U&&, T>
  void return_value(U&& v) noexcept(std::is_nothrow_constructible_v<T, U&&>) {
    value_.template emplace<1>(std::forward<U>(v));
  }
  T take() {
    if (value_.index() == 2) std::rethrow_exception(std::get<2>(value_));
    assert(value_.index() == 1);
    return std::move(std::get<1>(value_));
  }
};

template <>
struct promise<void> final : promise_base {
  std::exception_ptr error_;
  task<void> get_return_object() noexcept;
  void unhandled_exception() noexcept { error_ = std::current_exception(); }
  void return_void() noexcept {}
  void take() {
    if (error_) std::rethrow_exception(error_);
  }
};

}  // namespace detail

/// A lazy coroutine producing T. It runs only when awaited (or started by a scope, when_all
/// or ring::run); the awaiter resumes on the thread where the task finished. Exceptions
/// propagate to the awaiter. A task that was never started is destroyed without running.
template <class T>
class [[nodiscard]] task {
 public:
  using promise_type = detail::promise<T>;
  using handle_type = std::coroutine_handle<promise_type>;

  task() noexcept = default;
  explicit task(handle_type h) noexcept : h_(h) {}
  task(task&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  task& operator=(task&& o) noexcept {
    if (this != &o) {
      if (h_) h_.destroy();
      h_ = std::exchange(o.h_, {});
    }
    return *this;
  }
  task(const task&) = delete;
  task& operator=(const task&) = delete;
  ~task() {
    if (h_) h_.destroy();
  }

  bool valid() const noexcept { return bool(h_); }
  bool done() const noexcept { return h_ && h_.done(); }

  auto operator co_await() && noexcept {
    struct awaiter {
      handle_type h;
      bool await_ready() const noexcept { return !h || h.done(); }
      bool await_suspend(std::coroutine_handle<> awaiting) noexcept {
        h.promise().continuation_ = awaiting;
        h.resume();
        // false: the task already finished, so the awaiter continues without suspending.
        return !h.promise().awaiter_suspended_.exchange(true, std::memory_order_acq_rel);
      }
      T await_resume() { return h.promise().take(); }
    };
    return awaiter{h_};
  }

  /// The coroutine handle, for executors (ring::run, scopes) that start and reap tasks.
  handle_type handle() const noexcept { return h_; }
  handle_type release() noexcept { return std::exchange(h_, {}); }
  /// The finished task's value (or its exception rethrown).
  T take_result() { return h_.promise().take(); }

 private:
  handle_type h_;
};

namespace detail {
template <class T>
task<T> promise<T>::get_return_object() noexcept {
  return task<T>{std::coroutine_handle<promise<T>>::from_promise(*this)};
}
inline task<void> promise<void>::get_return_object() noexcept {
  return task<void>{std::coroutine_handle<promise<void>>::from_promise(*this)};
}
}  // namespace detail

}  // namespace letsencrypt::io
