// shard_group: one thread per core, each with its own ring and task scope.
#pragma once

#include <coroutine>
#include <functional>
#include <latch>
#include <memory>
#include <thread>
#include <vector>

#include "letsencrypt/io/ring.hpp"
#include "letsencrypt/io/scope.hpp"

namespace letsencrypt::io {

/// One event-loop thread. Work reaches it only by message (post/spawn), never by locks.
class shard {
 public:
  unsigned index() const noexcept { return index_; }
  ring& loop() noexcept { return *ring_; }
  /// The shard's scope; use only on the shard's thread.
  task_scope& scope() noexcept { return scope_; }

  /// Runs fn() on the shard's thread. Thread-safe.
  template <class F>
  void post(F&& fn) {
    ring_->post(std::forward<F>(fn));
  }

  /// Starts `t` in the shard's scope, on the shard's thread. Thread-safe. A task that
  /// arrives after the shard began stopping is destroyed without running. Whatever the task
  /// refers to (a coroutine lambda's captures included) must outlive it.
  void spawn(task<void> t) {
    ring_->post([this, t = std::move(t)]() mutable {
      if (scope_.stop_requested()) return;
      scope_.spawn(std::move(t));
    });
  }

 private:
  friend class shard_group;
  task<void> main();

  unsigned index_ = 0;
  ring* ring_ = nullptr;
  task_scope scope_;
  std::coroutine_handle<> stop_waiter_;
  bool stopping_ = false;
  std::thread thread_;
};

/// N shards, started by the constructor (which returns once every ring exists) and stopped by
/// stop() or the destructor: each shard's scope is asked to stop and awaited, so no task
/// outlives its shard.
class shard_group {
 public:
  explicit shard_group(unsigned n = 0, ring::options o = {});
  ~shard_group();
  shard_group(const shard_group&) = delete;
  shard_group& operator=(const shard_group&) = delete;

  unsigned size() const noexcept { return static_cast<unsigned>(shards_.size()); }
  shard& operator[](unsigned i) noexcept { return *shards_[i]; }

  /// Stops every shard and joins its thread. Idempotent. Must not be called from a shard.
  void stop();

 private:
  std::vector<std::unique_ptr<shard>> shards_;
  bool stopped_ = false;
};

}  // namespace letsencrypt::io
