// change_notifier: version counter, callbacks and changed() awaiters.
#include <algorithm>

#include "letsencrypt/store/watch.hpp"

namespace letsencrypt::store {

change_notifier::change_notifier() : hub_(std::make_shared<hub>()) {}
change_notifier::~change_notifier() = default;

void change_notifier::resume_on(io::ring* r, std::coroutine_handle<> h) {
  // Never resume inline: the notifier may be called from inside the awaiting coroutine's
  // own suspension path or from another thread.
  if (io::ring::current() == r) r->schedule(h);
  else r->post([r, h] { r->schedule(h); });
}

void change_notifier::notify() {
  std::vector<std::shared_ptr<std::function<void()>>> cbs;
  std::vector<waiter*> ws;
  {
    std::lock_guard lk(hub_->mu);
    hub_->version.fetch_add(1, std::memory_order_acq_rel);
    cbs.reserve(hub_->callbacks.size());
    for (auto& [id, cb] : hub_->callbacks) cbs.push_back(cb);
    ws.swap(hub_->waiters);
  }
  for (auto* w : ws) resume_on(w->ring, w->handle);
  for (auto& cb : cbs) (*cb)();
}

std::uint64_t change_notifier::watch(std::function<void()> cb) {
  auto p = std::make_shared<std::function<void()>>(std::move(cb));
  std::uint64_t id;
  {
    std::lock_guard lk(hub_->mu);
    id = hub_->next_id++;
    hub_->callbacks.emplace_back(id, p);
  }
  if (version() > 0) (*p)();
  return id;
}

void change_notifier::unwatch(std::uint64_t id) {
  std::lock_guard lk(hub_->mu);
  std::erase_if(hub_->callbacks, [id](auto& e) { return e.first == id; });
}

void change_notifier::cancel_waiter(const std::weak_ptr<hub>& wh, std::uint64_t id) {
  auto h = wh.lock();
  if (!h) return;
  io::ring* r = nullptr;
  std::coroutine_handle<> handle;
  {
    std::lock_guard lk(h->mu);
    auto it = std::find_if(h->waiters.begin(), h->waiters.end(),
                           [id](waiter* w) { return w->id == id; });
    if (it == h->waiters.end()) return;  // already woken by a change
    (*it)->cancelled = true;
    r = (*it)->ring;
    handle = (*it)->handle;
    h->waiters.erase(it);
  }
  resume_on(r, handle);
}

bool change_notifier::changed_awaiter::await_suspend(std::coroutine_handle<> h) {
  w_.handle = h;
  w_.ring = io::ring::current();
  {
    std::lock_guard lk(hub_->mu);
    // Re-check under the lock: a change between await_ready and here must not be missed.
    if (hub_->version.load(std::memory_order_acquire) > since_) return false;
    w_.id = hub_->next_id++;
    hub_->waiters.push_back(&w_);
  }
  if (stop_.stop_possible()) stop_cb_.emplace(stop_, on_stop{hub_, w_.id});
  return true;
}

result<std::uint64_t> change_notifier::changed_awaiter::await_resume() {
  stop_cb_.reset();
  const auto v = hub_->version.load(std::memory_order_acquire);
  if (v > since_) return v;
  if (w_.cancelled || stop_.stop_requested()) return errc::cancelled;
  return v;
}

}  // namespace letsencrypt::store
