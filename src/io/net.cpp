#include "letsencrypt/io/net.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <poll.h>

#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

namespace letsencrypt::io {

result<sockaddr_storage> numeric_address(const std::string& host, std::uint16_t port, socklen_t* len) {
  sockaddr_storage ss{};
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  std::string h = host;
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  if (::inet_pton(AF_INET, h.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    if (len) *len = sizeof(sockaddr_in);
    return ss;
  }
  if (::inet_pton(AF_INET6, h.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    if (len) *len = sizeof(sockaddr_in6);
    return ss;
  }
  return errc::invalid_argument;
}

result<unique_fd> listen_tcp(const std::string& host, std::uint16_t port, listen_options o) {
  socklen_t len = 0;
  LE_TRY(addr, numeric_address(host, port, &len));
  unique_fd fd(::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return std::error_code(errno, std::system_category());
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (o.reuse_port && ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
    return std::error_code(errno, std::system_category());
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), len) < 0)
    return std::error_code(errno, std::system_category());
  if (::listen(fd.get(), o.backlog) < 0) return std::error_code(errno, std::system_category());
  return fd;
}

result<std::uint16_t> local_port(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0)
    return std::error_code(errno, std::system_category());
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return errc::unsupported;
}

namespace {

// One worker thread for blocking library calls, started on first use and joined at exit.
class worker {
 public:
  static worker& instance() {
    static worker w;
    return w;
  }
  void push(std::function<void()> fn) {
    {
      std::lock_guard lk(mu_);
      q_.push_back(std::move(fn));
    }
    cv_.notify_one();
  }
  ~worker() {
    {
      std::lock_guard lk(mu_);
      done_ = true;
    }
    cv_.notify_one();
    if (t_.joinable()) t_.join();
  }

 private:
  worker() : t_([this] { loop(); }) {}
  void loop() {
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock lk(mu_);
        cv_.wait(lk, [this] { return done_ || !q_.empty(); });
        if (q_.empty()) return;
        fn = std::move(q_.front());
        q_.pop_front();
      }
      fn();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> q_;
  bool done_ = false;
  std::thread t_;
};

}  // namespace

void run_on_worker(std::function<void()> fn) { worker::instance().push(std::move(fn)); }

task<result<std::vector<sockaddr_storage>>> resolve(std::string host, std::uint16_t port) {
  socklen_t len = 0;
  if (auto a = numeric_address(host, port, &len)) co_return std::vector<sockaddr_storage>{*a};
  if (host.empty() || host.size() > 253) co_return errc::invalid_name;

  struct state {
    std::string host;
    std::uint16_t port;
    ring* home;
    std::coroutine_handle<> h;
    int rc = 0;
    std::vector<sockaddr_storage> out;
  } st{host, port, ring::current(), {}};

  struct awaiter {
    state* s;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) {
      s->h = h;
      run_on_worker([s = s] {
        addrinfo hints{};
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        addrinfo* res = nullptr;
        std::string service = std::to_string(s->port);
        s->rc = ::getaddrinfo(s->host.c_str(), service.c_str(), &hints, &res);
        for (addrinfo* p = res; p; p = p->ai_next) {
          sockaddr_storage ss{};
          std::memcpy(&ss, p->ai_addr, p->ai_addrlen);
          s->out.push_back(ss);
        }
        if (res) ::freeaddrinfo(res);
        s->home->post([s] { s->home->schedule(s->h); });
      });
    }
    void await_resume() const noexcept {}
  };
  co_await awaiter{&st};
  if (st.rc != 0 || st.out.empty()) co_return errc::not_found;
  co_return std::move(st.out);
}

namespace {

// Runs the operation `make()` gives until it does not say EAGAIN; between tries waits for
// `events` on the socket (a poll never runs in a kernel worker, so its deadline and
// cancellation always hold).
template <class R, class MakeOp>
task<R> until_not_eagain(int fd, unsigned events, clock::time_point deadline, std::stop_token stop, MakeOp make) {
  duration backoff = std::chrono::milliseconds(1);
  bool polled_ready = false;
  for (;;) {
    R r = co_await make().deadline(deadline).cancel_on(stop);
    if (r || r.error() != std::errc::resource_unavailable_try_again) co_return r;
    if (polled_ready) {
      // The socket polled ready yet refused again: a peer that half-closed shows POLLRDHUP
      // while its window stays shut, and TCP memory pressure refuses sends under POLLOUT.
      // Back off instead of spinning; the deadline still ends the wait.
      auto slept = co_await io::sleep_for(std::min(backoff, deadline - clock::now())).cancel_on(stop);
      if (!slept && slept.error() == errc::cancelled) co_return errc::cancelled;
      backoff = std::min<duration>(backoff * 2, std::chrono::milliseconds(50));
    }
    if (stop.stop_requested()) co_return errc::cancelled;
    if (clock::now() >= deadline) co_return errc::timed_out;
    auto ready = co_await io::poll(fd, events).deadline(deadline).cancel_on(stop);
    if (!ready) co_return ready.error();
    polled_ready = true;
  }
}

}  // namespace

task<result<std::size_t>> send_some(int fd, std::span<const std::byte> buf, clock::time_point deadline,
                                    std::stop_token stop) {
  return until_not_eagain<result<std::size_t>>(fd, POLLOUT, deadline, std::move(stop),
                                               [=] { return io::send(fd, buf, MSG_NOSIGNAL | MSG_DONTWAIT); });
}

task<result<std::size_t>> recv_some(int fd, std::span<std::byte> buf, clock::time_point deadline,
                                    std::stop_token stop) {
  return until_not_eagain<result<std::size_t>>(fd, POLLIN, deadline, std::move(stop),
                                               [=] { return io::recv(fd, buf); });
}

task<result<pooled_buffer>> recv_some_pooled(int fd, buffer_pool& pool, clock::time_point deadline,
                                             std::stop_token stop) {
  return until_not_eagain<result<pooled_buffer>>(fd, POLLIN, deadline, std::move(stop),
                                                 [fd, p = &pool] { return io::recv_pooled(fd, *p); });
}

task<result<unique_fd>> connect_tcp(std::string host, std::uint16_t port, duration timeout, std::stop_token stop) {
  auto addrs = co_await resolve(host, port);
  if (!addrs) co_return addrs.error();
  std::error_code last = errc::not_found;
  for (const auto& a : *addrs) {
    unique_fd fd(::socket(a.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) co_return std::error_code(errno, std::system_category());
    socklen_t len = a.ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
    auto r = co_await io::connect(fd.get(), reinterpret_cast<const sockaddr*>(&a), len).timeout(timeout).cancel_on(stop);
    if (r) {
      int one = 1;
      ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      co_return fd;
    }
    last = r.error();
    if (last == errc::cancelled) break;
  }
  co_return last;
}

multishot_acceptor::multishot_acceptor(int listen_fd) noexcept : fd_(listen_fd) {
  on_cqe = &multishot_acceptor::on_accept;
}

multishot_acceptor::~multishot_acceptor() {
  // Destroying an armed acceptor would leave an SQE pointing at freed memory.
  if (armed_) std::terminate();
  for (int fd : queue_)
    if (fd >= 0) ::close(fd);
}

void multishot_acceptor::arm() {
  ring_ = ring::current();
  io_uring_sqe* s = ring_->get_sqe();
  io_uring_prep_multishot_accept(s, fd_, nullptr, nullptr, SOCK_CLOEXEC);
  io_uring_sqe_set_data(s, static_cast<completion*>(this));
  armed_ = true;
}

void multishot_acceptor::on_accept(completion* c, int res, unsigned flags) noexcept {
  auto* a = static_cast<multishot_acceptor*>(c);
  ++a->accepted_;
  if (!(flags & IORING_CQE_F_MORE)) a->armed_ = false;
  if (a->stopping_) {
    if (res >= 0) ::close(res);
    if (!a->armed_ && a->stop_waiter_) a->ring_->schedule(std::exchange(a->stop_waiter_, {}));
    return;
  }
  // A terminal CQE without error (the kernel ended the multishot) is re-armed by next().
  if (res >= 0 || a->armed_ || res != -ECANCELED) a->queue_.push_back(res);
  if (a->waiter_) {
    if (a->queue_.empty() && !a->armed_) {
      a->arm();
      return;
    }
    a->ring_->schedule(std::exchange(a->waiter_, {}));
  }
}

result<unique_fd> multishot_acceptor::pop() {
  if (queue_.empty()) return errc::cancelled;
  int r = queue_.front();
  queue_.pop_front();
  if (r < 0) return errno_error(r);
  return unique_fd(r);
}

task<void> multishot_acceptor::stop() {
  stopping_ = true;
  for (int fd : queue_)
    if (fd >= 0) ::close(fd);
  queue_.clear();
  if (waiter_) ring_->schedule(std::exchange(waiter_, {}));
  if (armed_) {
    struct awaiter {
      multishot_acceptor* a;
      bool await_ready() const noexcept { return !a->armed_; }
      void await_suspend(std::coroutine_handle<> h) noexcept {
        a->stop_waiter_ = h;
        a->ring_->cancel(a);
      }
      void await_resume() const noexcept {}
    };
    co_await awaiter{this};
  }
  // Closing the descriptor would stop the listening only when its last copy goes: one held
  // by a forked child, or by a request the kernel frees after its ring is gone, keeps the
  // port taken and the kernel completing handshakes that nobody will accept.
  ::shutdown(fd_, SHUT_RD);
}

}  // namespace letsencrypt::io
