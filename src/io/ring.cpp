#include "letsencrypt/io/ring.hpp"

#include <sys/eventfd.h>

#include <algorithm>
#include <cerrno>
#include <system_error>

#include "letsencrypt/error.hpp"

namespace letsencrypt::io {
namespace {
thread_local ring* current_ring = nullptr;
}

ring::ring() { init(options{}); }
ring::ring(options o) { init(o); }

void ring::init(options o) {
  owner_ = std::this_thread::get_id();
  // reserve_sqes(2) (an operation and its linked timeout) must be satisfiable.
  if (o.entries < 2) o.entries = 2;
  io_uring_params p{};
  p.cq_entries = o.entries * 8;
  // Preferred flags first; older kernels reject newer flags with EINVAL, so fall back.
  const unsigned base = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
  const unsigned tries[] = {
      o.single_issuer ? base | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN : base,
      o.single_issuer ? base | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN : base,
      base | IORING_SETUP_COOP_TASKRUN,
      IORING_SETUP_CQSIZE,
  };
  int rc = -EINVAL;
  for (unsigned f : tries) {
    p = io_uring_params{};
    p.cq_entries = o.entries * 8;
    p.flags = f;
    rc = io_uring_queue_init_params(o.entries, &ring_, &p);
    if (rc == 0) {
      flags_ = f;
      break;
    }
    if (rc != -EINVAL) break;
  }
  if (rc < 0) throw std::system_error(-rc, std::system_category(), "io_uring_queue_init");

  event_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!event_fd_) {
    int e = errno;
    io_uring_queue_exit(&ring_);
    throw std::system_error(e, std::system_category(), "eventfd");
  }
  ready_.reserve(64);
  running_.reserve(64);
  wake_completion_.on_cqe = &ring::on_wakeup;
  wake_completion_.owner = this;
  current_ring = this;
  arm_wakeup();
}

ring::~ring() {
  // A post that has published its message may not have written the wake-up yet; that
  // write must not land on a closed (or reused) descriptor or freed memory.
  while (posting_.load(std::memory_order_acquire) != 0) std::this_thread::yield();
  drain_messages();
  // Deliver nothing more: pending messages are dropped with the ring.
  message* m = inbox_.exchange(nullptr);
  while (m) {
    message* n = m->next_;
    delete m;
    m = n;
  }
  io_uring_queue_exit(&ring_);
  if (current_ring == this) current_ring = nullptr;
}

ring* ring::current() noexcept { return current_ring; }

io_uring_sqe* ring::get_sqe() {
  io_uring_sqe* s = io_uring_get_sqe(&ring_);
  while (!s) {
    int rc = io_uring_submit(&ring_);
    if (rc == -EBUSY || rc == -EAGAIN) reap();  // CQ backlog: make room, resume later
    s = io_uring_get_sqe(&ring_);
  }
  return s;
}

void ring::reserve_sqes(unsigned n) {
  while (io_uring_sq_space_left(&ring_) < n) {
    int rc = io_uring_submit(&ring_);
    if (rc == -EBUSY || rc == -EAGAIN) reap();
  }
}

void ring::arm_wakeup() {
  io_uring_sqe* s = get_sqe();
  io_uring_prep_read(s, event_fd_.get(), &event_buf_, sizeof event_buf_, 0);
  io_uring_sqe_set_data(s, &wake_completion_);
}

void ring::on_wakeup(completion* self, int, unsigned) noexcept {
  ring* r = static_cast<wakeup*>(self)->owner;
  r->wake_pending_.store(false, std::memory_order_release);
  r->drain_messages();
  if (r->stop_requested_.load(std::memory_order_acquire)) r->stopped_ = true;
  r->arm_wakeup();
}

void ring::push(message* m) noexcept {
  posting_.fetch_add(1, std::memory_order_acq_rel);
  message* head = inbox_.load(std::memory_order_relaxed);
  do {
    m->next_ = head;
  } while (!inbox_.compare_exchange_weak(head, m, std::memory_order_release, std::memory_order_relaxed));
  if (!wake_pending_.exchange(true, std::memory_order_acq_rel)) {
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(event_fd_.get(), &one, sizeof one);
  }
  posting_.fetch_sub(1, std::memory_order_release);  // the last touch of this ring
}

void ring::drain_messages() noexcept {
  message* m = inbox_.exchange(nullptr, std::memory_order_acquire);
  // The inbox is a stack: reverse it so messages run in the order they were posted.
  message* fifo = nullptr;
  while (m) {
    message* n = m->next_;
    m->next_ = fifo;
    fifo = m;
    m = n;
  }
  while (fifo) {
    message* n = fifo->next_;
    fifo->run();
    delete fifo;
    fifo = n;
  }
}

void ring::stop() noexcept {
  stop_requested_.store(true, std::memory_order_release);
  post([] {});
}

void ring::cancel(completion* target) noexcept {
  auto submit_cancel = [this, target] {
    io_uring_sqe* s = get_sqe();
    io_uring_prep_cancel64(s, reinterpret_cast<std::uint64_t>(target), 0);
    io_uring_sqe_set_data64(s, 0);
  };
  if (on_ring_thread()) {
    submit_cancel();
    return;
  }
  // The message runs later; by then the operation may have completed and another one may
  // sit at the same address. Only cancel if the operation has not called forget_cancel.
  {
    std::lock_guard lk(remote_cancels_mu_);
    remote_cancels_.push_back(target);
  }
  post([this, target, submit_cancel] {
    {
      std::lock_guard lk(remote_cancels_mu_);
      auto it = std::find(remote_cancels_.begin(), remote_cancels_.end(), target);
      if (it == remote_cancels_.end()) return;
      remote_cancels_.erase(it);
    }
    submit_cancel();
  });
}

void ring::forget_cancel(completion* target) noexcept {
  std::lock_guard lk(remote_cancels_mu_);
  std::erase(remote_cancels_, target);
}

unsigned ring::reap() noexcept {
  unsigned head;
  unsigned n = 0;
  io_uring_cqe* cqe;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    ++n;
    auto* c = reinterpret_cast<completion*>(io_uring_cqe_get_data(cqe));
    if (c) c->on_cqe(c, cqe->res, cqe->flags);
  }
  io_uring_cq_advance(&ring_, n);
  cqes_seen_ += n;
  return n;
}

void ring::loop_once() {
  if (ready_.empty()) {
    int rc = io_uring_submit_and_wait(&ring_, 1);
    if (rc < 0 && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN && rc != -ETIME)
      throw std::system_error(-rc, std::system_category(), "io_uring_submit_and_wait");
  } else {
    // Work is ready: submit without waiting, but still collect what has completed.
    int rc = io_uring_submit_and_get_events(&ring_);
    if (rc < 0 && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN)
      throw std::system_error(-rc, std::system_category(), "io_uring_submit_and_get_events");
  }
  reap();
  while (!ready_.empty()) {
    running_.swap(ready_);
    for (auto h : running_) h.resume();
    running_.clear();
  }
}

void ring::run_until_stopped(std::stop_token st) {
  std::stop_callback on_stop(st, [this] { stop(); });
  while (!stopped_) loop_once();
  stopped_ = false;
  stop_requested_.store(false, std::memory_order_relaxed);
}

}  // namespace letsencrypt::io
