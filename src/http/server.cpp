#include "http/server.hpp"

#include <array>
#include <future>
#include <optional>

#include "http/parser.hpp"
#include "http/stream.hpp"
#include "letsencrypt/io/net.hpp"

namespace letsencrypt::http {

std::string_view reason_phrase(int status) noexcept {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "";
  }
}

std::string serialize_response(const response& r, bool head, bool close) {
  int status = (r.status >= 100 && r.status <= 999) ? r.status : 500;
  const bool no_body = status < 200 || status == 204 || status == 304;
  std::string out;
  out.reserve(128 + r.body.size());
  out += "HTTP/1.1 ";
  out += std::to_string(status);
  out += ' ';
  out += reason_phrase(status);
  out += "\r\n";
  for (const auto& h : r.headers) {
    // Framing is the server's business, and a header that would split the message is dropped.
    if (iequals(h.name, "content-length") || iequals(h.name, "transfer-encoding") || iequals(h.name, "connection"))
      continue;
    if (!is_token(h.name) || !is_field_value(h.value)) continue;
    out += h.name;
    out += ": ";
    out += h.value;
    out += "\r\n";
  }
  if (!no_body) {
    out += "Content-Length: ";
    out += std::to_string(r.body.size());
    out += "\r\n";
  }
  // An HTTP/1.0 client keeps the connection only when told so.
  out += close ? "Connection: close\r\n" : "Connection: keep-alive\r\n";
  out += "\r\n";
  if (!no_body && !head) out += r.body;
  return out;
}

namespace {

response error_response(int status, std::string_view text) {
  response r;
  r.status = status;
  r.headers.push_back({"Content-Type", "text/plain; charset=utf-8"});
  r.body = std::string(text) + "\n";
  r.keep_alive = false;
  return r;
}

int status_for(parse_failure f) {
  switch (f) {
    case parse_failure::headers_too_large:
    case parse_failure::too_many_headers:
      return 431;
    case parse_failure::body_too_large:
      return 413;
    default:
      return 400;
  }
}

}  // namespace

io::task<void> server::serve(io::byte_stream& s, std::stop_token stop) const {
  request_parser p(config_.lim);
  std::string pending;  // bytes of the next pipelined request, already received
  std::array<char, 16 * 1024> buf;
  std::size_t handled = 0;
  const auto write_deadline = [&] { return io::clock::now() + config_.request_timeout; };
  for (;;) {
    std::optional<io::clock::time_point> request_deadline;
    std::optional<response> failure;
    auto feed = [&](std::string_view data) -> std::size_t {
      if (!request_deadline) request_deadline = io::clock::now() + config_.request_timeout;
      auto used = p.feed(data);
      if (!used) {
        failure = error_response(status_for(p.failure()), p.error_detail());
        return data.size();
      }
      return *used;
    };
    if (!pending.empty()) {
      std::size_t used = feed(pending);
      pending.erase(0, used);
    }
    while (!p.done() && !failure) {
      if (stop.stop_requested()) co_return;
      auto deadline = request_deadline ? *request_deadline : io::clock::now() + config_.idle_timeout;
      auto n = co_await s.read_some(std::as_writable_bytes(std::span(buf)), deadline);
      if (!n) {
        if (n.error() == errc::timed_out && request_deadline)
          failure = error_response(408, "request not received in time");
        else
          co_return;
      } else if (*n == 0) {
        co_return;  // the peer closed, between requests or in the middle of one
      } else {
        std::string_view data(buf.data(), *n);
        std::size_t used = feed(data);
        if (p.done()) pending.append(data.data() + used, data.size() - used);
      }
    }
    if (failure) {
      std::string out = serialize_response(*failure, false, true);
      (void)co_await s.write_all(std::as_bytes(std::span(out)), write_deadline());
      served_.fetch_add(1, std::memory_order_relaxed);
      (void)co_await s.shutdown(write_deadline());
      co_return;
    }
    request req = p.take();
    bool close = !req.keep_alive || stop.stop_requested() || ++handled >= config_.max_requests_per_connection;
    response resp;
    try {
      resp = co_await handler_(req);
    } catch (...) {
      resp = error_response(500, "internal error");
    }
    if (!resp.keep_alive || iequals(resp.header_value("connection"), "close")) close = true;
    std::string out = serialize_response(resp, req.method == "HEAD", close);
    auto w = co_await s.write_all(std::as_bytes(std::span(out)), write_deadline());
    served_.fetch_add(1, std::memory_order_relaxed);
    if (!w) co_return;
    if (close) {
      (void)co_await s.shutdown(write_deadline());
      co_return;
    }
  }
}

// ---- http_service ----

struct http_service::per_shard {
  per_shard(io::shard* s, io::unique_fd f) : sh(s), lfd(std::move(f)), acc(lfd.get()) {}
  io::shard* sh;
  io::unique_fd lfd;
  io::multishot_acceptor acc;
  std::stop_source stop;
  bool stopping = false;      // shard thread only
  bool acc_stopped = false;   // shard thread only
  std::coroutine_handle<> acc_stop_waiter;
  std::atomic<bool> finished{false};
  std::promise<void> done;
};

void http_service::begin_stop(per_shard* ps) {
  if (ps->stopping) return;
  ps->stopping = true;
  ps->stop.request_stop();
  ps->sh->scope().spawn(stopper(ps));
}

io::task<void> http_service::stopper(per_shard* ps) {
  co_await ps->acc.stop();
  ps->acc_stopped = true;
  if (ps->acc_stop_waiter) ps->sh->loop().schedule(std::exchange(ps->acc_stop_waiter, {}));
}

namespace {
io::task<void> serve_one(const server* srv, io::unique_fd fd, std::stop_token st) {
  stoppable_tcp_stream s(std::move(fd), st);
  co_await srv->serve(s, st);
}
}  // namespace

io::task<void> http_service::accept_loop(http_service* self, per_shard* ps) {
  struct on_stop {
    per_shard* ps;
    void operator()() const noexcept { begin_stop(ps); }
  };
  {
    io::task_scope conns;
    {
      std::stop_callback<on_stop> cb(ps->sh->scope().stop_token(), on_stop{ps});
      for (;;) {
        auto c = co_await ps->acc.next();
        if (ps->stopping) break;
        if (!c) {
          // Out of descriptors or similar: back off instead of spinning.
          (void)co_await io::sleep_for(std::chrono::milliseconds(10)).cancel_on(ps->stop.get_token());
          continue;
        }
        self->accepted_.fetch_add(1);
        conns.spawn(serve_one(self->server_.get(), std::move(*c), ps->stop.get_token()));
      }
    }
    co_await conns.join();
  }
  struct wait_acceptor {
    per_shard* ps;
    bool await_ready() const noexcept { return ps->acc_stopped; }
    void await_suspend(std::coroutine_handle<> h) noexcept { ps->acc_stop_waiter = h; }
    void await_resume() const noexcept {}
  };
  co_await wait_acceptor{ps};
  ps->finished = true;
  ps->done.set_value();
}

result<std::unique_ptr<http_service>> http_service::start(io::shard_group& g, const std::string& host,
                                                          std::uint16_t port, handler h, server_config c) {
  std::unique_ptr<http_service> svc(new http_service());
  svc->group_ = &g;
  svc->server_ = std::make_unique<server>(std::move(h), c);
  svc->stopped_ = true;  // nothing to stop until the accept loops are spawned
  io::listen_options lo;
  lo.reuse_port = g.size() > 1;
  for (unsigned i = 0; i < g.size(); ++i) {
    LE_TRY(fd, io::listen_tcp(host, i == 0 ? port : svc->port_, lo));
    if (i == 0) {
      LE_TRY(p, io::local_port(fd.get()));
      svc->port_ = p;
    }
    svc->shards_.push_back(std::make_unique<per_shard>(&g[i], std::move(fd)));
  }
  for (auto& ps : svc->shards_) {
    per_shard* p = ps.get();
    http_service* self = svc.get();
    p->sh->post([self, p] {
      if (p->sh->scope().stop_requested()) {  // the shard is already stopping
        p->acc_stopped = p->stopping = true;
        p->finished = true;
        p->done.set_value();
        return;
      }
      p->sh->scope().spawn(accept_loop(self, p));
    });
  }
  svc->stopped_ = false;
  return svc;
}

http_service::~http_service() { stop(); }

void http_service::stop() {
  if (stopped_) return;
  stopped_ = true;
  for (auto& ps : shards_) {
    per_shard* p = ps.get();
    if (!p->finished) p->sh->post([p] { begin_stop(p); });
  }
  for (auto& ps : shards_) ps->done.get_future().wait();
  shards_.clear();
}

result<std::unique_ptr<http_service>> serve_http(io::shard_group& g, const std::string& host, std::uint16_t port,
                                                 handler h, server_config c) {
  return http_service::start(g, host, port, std::move(h), c);
}

}  // namespace letsencrypt::http
