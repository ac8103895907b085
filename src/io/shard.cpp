#include "letsencrypt/io/shard.hpp"

namespace letsencrypt::io {

task<void> shard::main() {
  struct wait_stop {
    shard* s;
    bool await_ready() const noexcept { return s->stopping_; }
    void await_suspend(std::coroutine_handle<> h) noexcept { s->stop_waiter_ = h; }
    void await_resume() const noexcept {}
  };
  co_await wait_stop{this};
  scope_.request_stop();
  co_await scope_.join();
}

shard_group::shard_group(unsigned n, ring::options o) {
  if (n == 0) n = std::max(1u, std::thread::hardware_concurrency());
  std::latch started(n);
  for (unsigned i = 0; i < n; ++i) {
    auto s = std::make_unique<shard>();
    s->index_ = i;
    shard* sp = s.get();
    s->thread_ = std::thread([sp, o, &started] {
      ring r(o);
      sp->ring_ = &r;
      started.count_down();
      r.run(sp->main());
    });
    shards_.push_back(std::move(s));
  }
  started.wait();
}

shard_group::~shard_group() { stop(); }

void shard_group::stop() {
  if (stopped_) return;
  stopped_ = true;
  for (auto& s : shards_) {
    shard* sp = s.get();
    sp->post([sp] {
      sp->stopping_ = true;
      if (sp->stop_waiter_) sp->ring_->schedule(std::exchange(sp->stop_waiter_, {}));
    });
  }
  for (auto& s : shards_) s->thread_.join();
}

}  // namespace letsencrypt::io
