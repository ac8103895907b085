#include "letsencrypt/tls/acceptor.hpp"

#include <coroutine>
#include <optional>
#include <stop_token>

#include "letsencrypt/io/buffer_pool.hpp"
#include "letsencrypt/io/net.hpp"
#include "letsencrypt/tls/error.hpp"

namespace letsencrypt::tls {

struct acceptor::shard_state {
  io::shard* sh = nullptr;
  io::unique_fd listen_fd;
  std::optional<io::multishot_acceptor> ms;
  io::task_scope conns;
  std::stop_source stop;
  std::unique_ptr<io::buffer_pool> pool;
  bool stopping = false;
  bool ms_stopped = false;
  std::coroutine_handle<> loop_waiter;
  std::atomic<bool> finished{false};

  // Completes once the multishot accept has delivered its final CQE.
  auto wait_ms_stopped() noexcept {
    struct awaiter {
      shard_state* s;
      bool await_ready() const noexcept { return s->ms_stopped; }
      void await_suspend(std::coroutine_handle<> h) noexcept { s->loop_waiter = h; }
      void await_resume() const noexcept {}
    };
    return awaiter{this};
  }
};

acceptor::acceptor(io::shard_group& shards, SSL_CTX* ctx, acceptor_config cfg, handler h)
    : shards_(shards), ctx_(up_ref(ctx)), cfg_(std::move(cfg)), handler_(std::move(h)) {}

acceptor::~acceptor() { stop(); }

result<void> acceptor::start() {
  if (started_ || !ctx_ || !handler_) return errc::invalid_argument;
  std::vector<std::unique_ptr<shard_state>> states;
  std::uint16_t port = cfg_.port;
  for (unsigned i = 0; i < shards_.size(); ++i) {
    io::listen_options lo;
    lo.backlog = cfg_.backlog;
    // Only to spread one port over our shards: with a single listener, a port some other
    // socket still listens on is refused rather than silently shared.
    lo.reuse_port = shards_.size() > 1;
    LE_TRY(fd, io::listen_tcp(cfg_.host, port, lo));
    if (i == 0) {
      LE_TRY(p, io::local_port(fd.get()));
      port = p;
    }
    auto st = std::make_unique<shard_state>();
    st->sh = &shards_[i];
    st->listen_fd = std::move(fd);
    st->ms.emplace(st->listen_fd.get());
    states.push_back(std::move(st));
  }
  port_ = port;
  states_ = std::move(states);
  finished_ = std::make_unique<std::latch>(static_cast<std::ptrdiff_t>(states_.size()));
  started_ = true;
  for (auto& st : states_) st->sh->spawn(accept_loop(*st));
  return ok();
}

void acceptor::begin_stop(shard_state& st) {
  if (st.stopping) return;
  st.stopping = true;
  st.stop.request_stop();
  auto stopper = [](shard_state& s) -> io::task<void> {
    co_await s.ms->stop();
    s.ms_stopped = true;
    if (s.loop_waiter) io::ring::current()->schedule(std::exchange(s.loop_waiter, {}));
  };
  st.sh->scope().spawn(stopper(st));
}

io::task<void> acceptor::accept_loop(shard_state& st) {
  if (cfg_.pool_buffers > 0) {
    try {
      st.pool = std::make_unique<io::buffer_pool>(st.sh->loop(), cfg_.pool_group, cfg_.pool_buffers, 17 * 1024);
    } catch (const std::exception&) {
      st.pool.reset();  // the kernel refused provided buffers: per-connection buffers instead
    }
  }
  {
    // The shard stopping (shard_group::stop) stops this listener too.
    std::stop_callback on_shard_stop(st.sh->scope().stop_token(), [this, &st] { begin_stop(st); });
    while (!st.stopping) {
      auto c = co_await st.ms->next();
      if (st.stopping) break;
      if (!c) {
        // EMFILE, ENFILE, ENOBUFS...: back off briefly instead of spinning on the error.
        auto slept = co_await io::sleep_for(std::chrono::milliseconds(10)).cancel_on(st.stop.get_token());
        (void)slept;
        continue;
      }
      n_.accepted.fetch_add(1, std::memory_order_relaxed);
      st.conns.spawn(serve(st, std::move(*c)));
    }
    co_await st.wait_ms_stopped();
  }
  st.conns.request_stop();
  co_await st.conns.join();
  st.pool.reset();
  st.listen_fd.reset();
  st.finished.store(true);
  finished_->count_down();
}

void acceptor::count_failure(const std::error_code& ec) noexcept {
  auto bump = [](std::atomic<std::uint64_t>& a) { a.fetch_add(1, std::memory_order_relaxed); };
  if (ec == errc::timed_out) return bump(n_.timeouts);
  if (ec == errc::cancelled) return bump(n_.cancelled);
  if (ec == errc::closed || ec == std::errc::connection_reset || ec == std::errc::broken_pipe)
    return bump(n_.eof);
  switch (classify(ec)) {
    case tls_errc::unexpected_eof: return bump(n_.eof);
    case tls_errc::protocol_error: return bump(n_.protocol);
    case tls_errc::alert_received:
    case tls_errc::certificate_verify_failed: return bump(n_.alert);
    case tls_errc::no_certificate: return bump(n_.no_cert);
    default: return bump(n_.other);
  }
}

io::task<void> acceptor::serve(shard_state& st, io::unique_fd fd) {
  n_.active.fetch_add(1, std::memory_order_relaxed);
  struct active_guard {
    std::atomic<std::uint64_t>& a;
    ~active_guard() { a.fetch_sub(1, std::memory_order_relaxed); }
  } guard{n_.active};

  auto s = stream::server(std::move(fd), ctx_.get());
  if (!s) {
    count_failure(s.error());
    co_return;
  }
  stream& conn = **s;
  conn.set_stop_token(st.stop.get_token());
  if (st.pool) conn.set_buffer_pool(st.pool.get());
  if (cfg_.on_client_hello_retry) conn.set_client_hello_retry(cfg_.on_client_hello_retry);

  auto hs = co_await conn.handshake(io::clock::now() + cfg_.handshake_timeout);
  if (!hs) {
    count_failure(hs.error());
    co_return;
  }
  n_.ok.fetch_add(1, std::memory_order_relaxed);
  try {
    co_await handler_(conn);
  } catch (...) {
    n_.handler_errors.fetch_add(1, std::memory_order_relaxed);
  }
  auto r = co_await conn.shutdown(io::clock::now() + cfg_.shutdown_timeout);
  (void)r;
}

void acceptor::stop() {
  if (!started_ || stopped_) return;
  stopped_ = true;
  for (auto& st : states_) {
    if (st->finished.load()) continue;  // its shard already stopped (and may be gone)
    shard_state* sp = st.get();
    sp->sh->post([this, sp] { begin_stop(*sp); });
  }
  finished_->wait();
}

acceptor_stats acceptor::stats() const noexcept {
  auto g = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  acceptor_stats s;
  s.accepted = g(n_.accepted);
  s.handshakes_ok = g(n_.ok);
  s.handshake_timeouts = g(n_.timeouts);
  s.handshake_cancelled = g(n_.cancelled);
  s.handshake_eof = g(n_.eof);
  s.handshake_protocol = g(n_.protocol);
  s.handshake_alert = g(n_.alert);
  s.handshake_no_certificate = g(n_.no_cert);
  s.handshake_other = g(n_.other);
  s.handler_errors = g(n_.handler_errors);
  s.active = g(n_.active);
  return s;
}

}  // namespace letsencrypt::tls
