// change_notifier: tells watchers that the state changed, coalescing bursts. A version
// counter starts at 0 (no state) and grows by one per committed change (a group-committed
// batch counts once); watchers see the latest version, not every step.
#pragma once

#include <atomic>
#include <coroutine>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <vector>

#include "letsencrypt/io/ring.hpp"
#include "letsencrypt/result.hpp"

namespace letsencrypt::store {

class change_notifier {
 public:
  change_notifier();
  ~change_notifier();
  change_notifier(const change_notifier&) = delete;
  change_notifier& operator=(const change_notifier&) = delete;

  /// The latest version; 0 while nothing was ever recorded. Thread-safe.
  std::uint64_t version() const noexcept { return hub_->version.load(std::memory_order_acquire); }

  /// Records a change: raises the version, then calls every callback (on the calling thread,
  /// outside any lock) and wakes every changed() awaiter. Thread-safe.
  void notify();
  /// Sets the version without telling anyone (replay on open). Thread-safe.
  void set_version(std::uint64_t v) noexcept { hub_->version.store(v, std::memory_order_release); }

  /// Calls `cb` after every later change. Like Go's Watch, a watcher is told at once (from
  /// inside this call) when state already exists (version() > 0). Returns an id for unwatch.
  /// The callback runs on the thread that commits the change and must not block long; it
  /// may call watch/unwatch. Thread-safe.
  std::uint64_t watch(std::function<void()> cb);
  /// Removes a callback; a call already under way may still finish. Thread-safe.
  void unwatch(std::uint64_t id);

  /// Awaitable: completes with the current version as soon as it is greater than `since`
  /// (at once if it already is), else suspends until the next change. Completes with
  /// errc::cancelled when `st` is stopped first. Must be awaited on a thread with an
  /// io::ring (the awaiter is resumed there). The notifier must outlive the wait.
  auto changed(std::uint64_t since, std::stop_token st = {});

 private:
  struct waiter {
    std::uint64_t id = 0;
    std::coroutine_handle<> handle;
    io::ring* ring = nullptr;
    bool cancelled = false;
  };
  struct hub {
    std::atomic<std::uint64_t> version{0};
    std::mutex mu;
    std::uint64_t next_id = 1;
    std::vector<std::pair<std::uint64_t, std::shared_ptr<std::function<void()>>>> callbacks;
    std::vector<waiter*> waiters;
  };
  static void resume_on(io::ring* r, std::coroutine_handle<> h);
  static void cancel_waiter(const std::weak_ptr<hub>& wh, std::uint64_t id);

 public:
  /// The awaiter returned by changed().
  class changed_awaiter {
   public:
    changed_awaiter(std::shared_ptr<hub> h, std::uint64_t since, std::stop_token st)
        : hub_(std::move(h)), since_(since), stop_(std::move(st)) {}
    changed_awaiter(changed_awaiter&& o) noexcept
        : hub_(std::move(o.hub_)), since_(o.since_), stop_(std::move(o.stop_)) {}
    changed_awaiter(const changed_awaiter&) = delete;
    changed_awaiter& operator=(const changed_awaiter&) = delete;
    changed_awaiter& operator=(changed_awaiter&&) = delete;
    ~changed_awaiter() = default;

    bool await_ready() const noexcept {
      return stop_.stop_requested() || hub_->version.load(std::memory_order_acquire) > since_;
    }
    bool await_suspend(std::coroutine_handle<> h);
    result<std::uint64_t> await_resume();

   private:
    struct on_stop {
      std::weak_ptr<hub> h;
      std::uint64_t id;
      void operator()() noexcept { cancel_waiter(h, id); }
    };
    std::shared_ptr<hub> hub_;
    std::uint64_t since_;
    std::stop_token stop_;
    waiter w_{};
    std::optional<std::stop_callback<on_stop>> stop_cb_;
  };

 private:
  std::shared_ptr<hub> hub_;
};

inline auto change_notifier::changed(std::uint64_t since, std::stop_token st) {
  return changed_awaiter(hub_, since, std::move(st));
}

}  // namespace letsencrypt::store
