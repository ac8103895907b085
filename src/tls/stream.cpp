#include "letsencrypt/tls/stream.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <mutex>
#include <optional>

#include "letsencrypt/io/net.hpp"
#include "letsencrypt/tls/error.hpp"
#include "tls/ktls.hpp"

namespace letsencrypt::tls {

namespace {
constexpr std::size_t receive_size = 17 * 1024;     // one full TLS record and change
constexpr std::size_t write_chunk = 4 * 16 * 1024;  // plaintext encrypted before each send
// A name is looked up, waited for (obtained or refused), looked up again: a few rounds at
// most, more only when something keeps failing.
constexpr int max_client_hello_retries = 4;
}  // namespace

// Marks one kind of operation as running. Before the handshake has finished every operation
// is exclusive (each would drive the handshake); after it one read and one write (or
// shutdown) may run at once.
struct stream::busy_guard {
  bool* flag = nullptr;
  busy_guard(stream& st, bool stream::*kind) {
    const bool idle = !st.reading_ && !st.writing_ && !st.exclusive_;
    // Once finished the handshake stays finished for this purpose: OpenSSL reports "in init"
    // again around post-handshake messages (a key update being sent), which SSL_read and
    // SSL_write each handle on their own.
    if (st.eng_->handshake_done()) st.established_ = true;
    if (kind == &stream::exclusive_ || !st.established_) {
      if (idle) flag = &st.exclusive_;
    } else if (!(st.*kind) && !st.exclusive_) {
      flag = &(st.*kind);
    }
    if (flag) *flag = true;
  }
  ~busy_guard() {
    if (flag) *flag = false;
  }
  bool ok() const noexcept { return flag != nullptr; }
};

stream::stream(io::unique_fd fd, std::unique_ptr<engine> eng) noexcept : fd_(std::move(fd)), eng_(std::move(eng)) {}

stream::~stream() {
  // The engine may still point into the pooled buffer; drop that link before giving it back.
  if (eng_) eng_->keep_input();
}

result<std::unique_ptr<stream>> stream::server(io::unique_fd fd, SSL_CTX* ctx) {
  LE_TRY(eng, engine::create(ctx, role::server));
  return std::make_unique<stream>(std::move(fd), std::move(eng));
}

void stream::release_input() noexcept {
  // An idle connection should not pin a pooled buffer the engine has finished with.
  if (eng_->input_pending() == 0) held_.reset();
}

io::task<result<void>> stream::flush(io::clock::time_point deadline, bool yields) {
  // Once the kernel makes the records, OpenSSL's would be sealed a second time: whatever path
  // asks to send them (a key update or ticket asked of the SSL directly, say) fails here.
  if (ktls_tx_ && !eng_->pending_output().empty()) {
    ktls_stuck_ = true;
    co_return tls_errc::ktls_cannot_answer;
  }
  while (!eng_->pending_output().empty()) {
    if (flushing_) {
      // Two sends at once could interleave records, so this one waits. Only a write (or
      // shutdown) gets here, behind a read's flush whose send may be bound by the read's
      // deadline, not this one: that flush yields at once (its unsent bytes stay pending)
      // and this one sends everything under its own deadline.
      // An operation already over its deadline or stopped leaves the read's send alone.
      if (stop_.stop_requested()) co_return errc::cancelled;
      if (io::clock::now() >= deadline) co_return errc::timed_out;
      if (!flushed_) flushed_ = std::make_shared<io::event>();
      auto done = flushed_;
      if (flush_yields_) {
        take_over_ = true;
        flush_stop_.request_stop();
      }
      co_await done->wait();
      // Until here the read side leaves its output to this flush (it does not start another).
      take_over_ = false;
      if (stop_.stop_requested()) co_return errc::cancelled;
      if (io::clock::now() >= deadline && !eng_->pending_output().empty()) co_return errc::timed_out;
      continue;
    }
    flushing_ = true;
    flush_yields_ = yields;
    std::stop_token token = stop_;
    struct forward_stop {
      std::stop_source* to;
      void operator()() const noexcept { to->request_stop(); }
    };
    std::optional<std::stop_callback<forward_stop>> forward;
    if (yields) {
      // A send that can be taken over stops on the stream's token or on the taker's.
      flush_stop_ = std::stop_source();
      token = flush_stop_.get_token();
      forward.emplace(stop_, forward_stop{&flush_stop_});
    }
    result<void> outcome = ok();
    while (!eng_->pending_output().empty()) {
      // Lent, not borrowed: a read on the other side may write (a key update's answer) while
      // this send is in flight, and that must not move these bytes.
      auto out = eng_->lend_output();
      auto n = co_await io::send_some(fd_.get(), out, deadline, token);
      if (!n) {
        // Taken over is not a failure here: the taker sends what is left.
        if (!take_over_ || stop_.stop_requested()) outcome = n.error();
        break;
      }
      eng_->consume_output(*n);
      if (take_over_) break;
    }
    forward.reset();
    end_flush();
    co_return outcome;
  }
  co_return ok();
}

io::task<result<void>> stream::fill(io::clock::time_point deadline) {
  if (pool_) {
    // The previous pooled buffer goes back to the kernel; its unread bytes stay with the engine.
    eng_->keep_input();
    held_.reset();
    auto r = co_await io::recv_some_pooled(fd_.get(), *pool_, deadline, stop_);
    if (r) {
      if (r->empty()) {
        eng_->feed_eof();
      } else {
        held_ = std::move(*r);
        eng_->feed(held_.data());
      }
      co_return ok();
    }
    if (r.error() != std::error_code(ENOBUFS, std::system_category())) co_return r.error();
  }
  eng_->keep_input();
  if (rbuf_.empty()) rbuf_.resize(receive_size);
  LE_CO_TRY(n, co_await io::recv_some(fd_.get(), rbuf_, deadline, stop_));
  if (n == 0)
    eng_->feed_eof();
  else
    eng_->feed(std::span(rbuf_).first(n));
  co_return ok();
}

io::task<void> stream::send_alert() {
  // Best effort, bounded: the connection is failing anyway. A running flush sends it itself;
  // otherwise this is a flush like the others, so nothing else sends meanwhile. Under kernel
  // TLS OpenSSL's records would carry a stale key and sequence number: none is sent.
  if (eng_->pending_output().empty() || flushing_ || ktls_tx_) co_return;
  flushing_ = true;
  auto out = eng_->lend_output();
  auto r = co_await io::send(fd_.get(), out, MSG_NOSIGNAL | MSG_DONTWAIT).timeout(std::chrono::milliseconds(100));
  if (r) eng_->consume_output(*r);
  end_flush();
}

void stream::try_ktls() noexcept {
  if (ktls_tx_) return;
  // Taken even where the kernel refuses, so the secret does not outlive the handshake.
  auto params = detail::take_ktls_tx(*eng_);
  if (params && eng_->pending_output().empty()) ktls_tx_ = detail::attach_ktls_tx(fd_.get(), *params);
}

io::task<result<void>> stream::send_ktls_close_notify(io::clock::time_point deadline) {
  for (;;) {
    const int err = detail::send_ktls_alert(fd_.get(), 1, 0);  // warning, close_notify
    if (err == 0) co_return ok();
    if (err != EAGAIN && err != EWOULDBLOCK && err != EINTR) co_return std::error_code(err, std::system_category());
    if (stop_.stop_requested()) co_return errc::cancelled;
    if (io::clock::now() >= deadline) co_return errc::timed_out;
    auto r = co_await io::poll(fd_.get(), POLLOUT).deadline(deadline).cancel_on(stop_);
    if (!r) co_return r.error();
  }
}

void stream::end_flush() {
  flushing_ = false;
  flush_yields_ = false;
  if (auto waiting = std::exchange(flushed_, nullptr)) waiting->set();
}

io::task<result<void>> stream::handshake(io::clock::time_point deadline) {
  busy_guard g(*this, &stream::exclusive_);
  if (!g.ok()) co_return errc::busy;
  int retries = 0;
  for (;;) {
    auto r = eng_->handshake();
    release_input();
    if (r.state == status::error) {
      co_await send_alert();
      co_return eng_->error();
    }
    if (!eng_->pending_output().empty()) LE_CO_TRY_VOID(co_await flush(deadline));
    switch (r.state) {
      case status::done:
        if (eng_->side() == role::server) try_ktls();
        co_return ok();
      case status::have_output:
        break;
      case status::want_input:
        LE_CO_TRY_VOID(co_await fill(deadline));
        break;
      case status::want_certificate: {
        if (!retry_) co_return tls_errc::no_retry_handler;
        if (stop_.stop_requested()) co_return errc::cancelled;  // start no issuance now
        // A resolver asks again only after a wait that changed something; a handler that
        // answers at once while the callback keeps asking would spin on this thread.
        if (++retries > max_client_hello_retries) co_return tls_errc::no_certificate;
        // The deadline is the client's: the first wait for a certificate (an issuance, for a
        // name seen for the first time) is bounded by whoever obtains it, and is added back
        // so a first visitor is not dropped just after its certificate has arrived. Later
        // waits count.
        const auto asked = io::clock::now();
        co_await retry_(eng_->native(), stop_);
        if (stop_.stop_requested()) co_return errc::cancelled;
        if (retries == 1) {
          const auto waited = io::clock::now() - asked;
          deadline = io::clock::time_point::max() - deadline <= waited ? io::clock::time_point::max()
                                                                        : deadline + waited;
        }
        if (io::clock::now() >= deadline) co_return errc::timed_out;
        break;
      }
      case status::closed:
        co_return errc::closed;
      case status::error:
        break;  // handled above
    }
  }
}

io::task<result<std::size_t>> stream::read_some(std::span<std::byte> buf, io::clock::time_point deadline) {
  busy_guard g(*this, &stream::reading_);
  if (!g.ok()) co_return errc::busy;
  if (buf.empty()) co_return std::size_t{0};
  if (ktls_stuck_) co_return tls_errc::ktls_cannot_answer;
  for (;;) {
    auto r = eng_->read(buf);
    release_input();
    if (r.state == status::error) {
      co_await send_alert();
      co_return eng_->error();
    }
    if (ktls_tx_) {
      // A key update the peer asked for must be answered before our next data record, and
      // OpenSSL would answer (or send anything else) with its own, stale, write state. What
      // was read is still delivered; later reads and writes fail.
      if (SSL_get_key_update_type(eng_->native()) != SSL_KEY_UPDATE_NONE || !eng_->pending_output().empty())
        ktls_stuck_ = true;
      if (ktls_stuck_ && r.state != status::done) co_return tls_errc::ktls_cannot_answer;
    }
    // Post-handshake messages (key updates) may need an answer before more data comes. A
    // write's flush in progress sends it; waiting for that flush here could deadlock two
    // peers that both write more than the sockets hold.
    const bool sent_by_write = flushing_ || take_over_;
    if (!eng_->pending_output().empty() && !sent_by_write) LE_CO_TRY_VOID(co_await flush(deadline, true));
    switch (r.state) {
      case status::done:
        co_return r.bytes;
      case status::closed:
        co_return std::size_t{0};
      case status::want_input:
        LE_CO_TRY_VOID(co_await fill(deadline));
        break;
      case status::have_output:
        // OpenSSL wants input; the output pending is the write's to send.
        if (flushing_ || take_over_) LE_CO_TRY_VOID(co_await fill(deadline));
        break;
      case status::want_certificate:
        co_return tls_errc::handshake_failed;
      case status::error:
        break;
    }
  }
}

io::task<result<void>> stream::write_all(std::span<const std::byte> buf, io::clock::time_point deadline) {
  busy_guard g(*this, &stream::writing_);
  if (!g.ok()) co_return errc::busy;
  if (ktls_tx_) {
    // As in user space, a connection whose TLS failed takes no more data.
    if (eng_->error()) co_return eng_->error();
    while (!buf.empty()) {
      // Checked before each send: a key update asked for while this write runs must be
      // answered before any more data.
      if (ktls_stuck_) co_return tls_errc::ktls_cannot_answer;
      LE_CO_TRY(n, co_await io::send_some(fd_.get(), buf, deadline, stop_));
      buf = buf.subspan(n);
    }
    co_return ok();
  }
  while (!buf.empty()) {
    auto chunk = buf.first(std::min(buf.size(), write_chunk));
    auto r = eng_->write(chunk);
    if (r.state == status::error) {
      co_await send_alert();
      co_return eng_->error();
    }
    LE_CO_TRY_VOID(co_await flush(deadline));
    if (r.state != status::done) co_return tls_errc::internal_error;
    buf = buf.subspan(r.bytes);
  }
  co_return ok();
}

io::task<result<void>> stream::shutdown(io::clock::time_point deadline) {
  busy_guard g(*this, &stream::writing_);
  if (!g.ok()) co_return errc::busy;
  if (fin_sent_) co_return ok();
  if (ktls_tx_) {
    // No close_notify after a failure, as in user space. And no FIN here: the kernel may
    // still hold records it could not hand to TCP yet (a send it accepted while the socket
    // was full), which a FIN would cut off; closing the descriptor sends what is left first.
    fin_sent_ = true;
    if (!eng_->error()) LE_CO_TRY_VOID(co_await send_ktls_close_notify(deadline));
    co_return ok();
  }
  if (eng_->handshake_done()) {
    auto r = eng_->shutdown();
    if (r.state != status::error) LE_CO_TRY_VOID(co_await flush(deadline));
  }
  fin_sent_ = true;
  ::shutdown(fd_.get(), SHUT_WR);
  co_return ok();
}

std::string_view stream::alpn_selected() const noexcept {
  const unsigned char* p = nullptr;
  unsigned len = 0;
  SSL_get0_alpn_selected(eng_->native(), &p, &len);
  if (!p) return {};
  return {reinterpret_cast<const char*>(p), len};
}

X509* stream::peer_certificate() const noexcept { return SSL_get0_peer_certificate(eng_->native()); }

std::string_view stream::server_name() const noexcept {
  const char* n = SSL_get_servername(eng_->native(), TLSEXT_NAMETYPE_host_name);
  return n ? std::string_view(n) : std::string_view();
}

result<ssl_ctx_ptr> make_client_context(const client_config& cfg) {
  ERR_clear_error();
  ssl_ctx_ptr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) return tls_error();
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  // A TLS 1.2 server asking to renegotiate would turn a write into a read; no CA needs it.
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  if (cfg.ca_pem.empty()) {
    if (SSL_CTX_set_default_verify_paths(ctx.get()) != 1) return tls_error();
  } else {
    LE_TRY(roots, load_certificate_chain_pem(cfg.ca_pem));
    X509_STORE* store = SSL_CTX_get_cert_store(ctx.get());
    for (auto& c : roots)
      if (X509_STORE_add_cert(store, c.get()) != 1) return tls_error();
  }
  if (!cfg.alpn.empty()) {
    std::vector<unsigned char> wire;
    for (const auto& p : cfg.alpn) {
      if (p.empty() || p.size() > 255) return errc::invalid_argument;
      wire.push_back(static_cast<unsigned char>(p.size()));
      wire.insert(wire.end(), p.begin(), p.end());
    }
    // SSL_CTX_set_alpn_protos returns 0 on success.
    if (SSL_CTX_set_alpn_protos(ctx.get(), wire.data(), static_cast<unsigned>(wire.size())) != 0)
      return tls_error();
  }
  return ctx;
}

namespace {

std::string strip_brackets(std::string h) {
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') return h.substr(1, h.size() - 2);
  return h;
}

bool is_address(const std::string& h) {
  unsigned char buf[16];
  return inet_pton(AF_INET, h.c_str(), buf) == 1 || inet_pton(AF_INET6, h.c_str(), buf) == 1;
}

}  // namespace

io::task<result<std::unique_ptr<stream>>> connect(std::string host, std::uint16_t port, SSL_CTX* ctx,
                                                  std::string sni_override, io::clock::time_point deadline,
                                                  std::stop_token stop) {
  if (!ctx || host.empty()) co_return errc::invalid_argument;
  std::string name = strip_brackets(sni_override.empty() ? host : sni_override);
  ERR_clear_error();
  ssl_ptr ssl(SSL_new(ctx));
  if (!ssl) co_return tls_error();
  if (is_address(name)) {
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl.get()), name.c_str()) != 1) co_return errc::invalid_argument;
  } else {
    if (SSL_set_tlsext_host_name(ssl.get(), name.c_str()) != 1) co_return tls_error(tls_errc::internal_error);
    if (SSL_set1_host(ssl.get(), name.c_str()) != 1) co_return tls_error(tls_errc::internal_error);
  }
  LE_CO_TRY(eng, engine::create(std::move(ssl), role::client));
  auto timeout = deadline - io::clock::now();
  if (timeout <= io::duration::zero()) co_return errc::timed_out;
  LE_CO_TRY(fd, co_await io::connect_tcp(host, port, timeout, stop));
  auto s = std::make_unique<stream>(std::move(fd), std::move(eng));
  // The stream keeps the token: its handshake, reads and writes end when it is stopped.
  s->set_stop_token(std::move(stop));
  LE_CO_TRY_VOID(co_await s->handshake(deadline));
  co_return std::move(s);
}

io::task<result<std::unique_ptr<stream>>> connect(std::string host, std::uint16_t port, const client_config& cfg,
                                                  io::clock::time_point deadline) {
  LE_CO_TRY(ctx, make_client_context(cfg));
  co_return co_await connect(std::move(host), port, ctx.get(), cfg.sni_override, deadline);
}

bool ktls_available() noexcept {
  static const bool available = [] {
    io::unique_fd l(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!l) return false;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(l.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 || ::listen(l.get(), 1) < 0 ||
        ::getsockname(l.get(), reinterpret_cast<sockaddr*>(&a), &len) < 0)
      return false;
    io::unique_fd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!c || ::connect(c.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) return false;
    io::unique_fd peer(::accept4(l.get(), nullptr, nullptr, SOCK_CLOEXEC));
    // The "tls" ULP attaches only to an established socket; ENOENT means no tls module.
    return ::setsockopt(c.get(), SOL_TCP, TCP_ULP, "tls", sizeof("tls")) == 0;
  }();
  return available;
}

}  // namespace letsencrypt::tls
