#include "acme/transport.hpp"

#include <memory>

#include "http/client.hpp"
#include "http/stream.hpp"
#include "letsencrypt/tls/stream.hpp"

namespace letsencrypt::acme {
namespace {

// tls::stream as an http::stoppable, so a pending read ends at once when the client's stop
// token fires instead of waiting for the request deadline.
class stoppable_tls final : public io::byte_stream, public http::stoppable {
 public:
  explicit stoppable_tls(std::unique_ptr<tls::stream> s) noexcept : s_(std::move(s)) {}
  void bind_stop(std::stop_token st) noexcept override { s_->set_stop_token(std::move(st)); }
  io::task<result<std::size_t>> read_some(std::span<std::byte> buf, io::clock::time_point deadline) override {
    return s_->read_some(buf, deadline);
  }
  io::task<result<void>> write_all(std::span<const std::byte> buf, io::clock::time_point deadline) override {
    return s_->write_all(buf, deadline);
  }
  io::task<result<void>> shutdown(io::clock::time_point deadline) override { return s_->shutdown(deadline); }

 private:
  std::unique_ptr<tls::stream> s_;
};

struct tls_settings {
  std::string ca_pem;
  tls::ssl_ctx_ptr ctx;  // made on first use; an unusable ca_pem fails each connect
};

// Coroutines take their state by value (not lambda captures), so a frame never refers to
// a closure that could go away first.
io::task<result<std::unique_ptr<io::byte_stream>>> open_stream(http::client::connector plain,
                                                                std::shared_ptr<tls_settings> tls_cfg,
                                                                http::url origin, io::clock::time_point deadline,
                                                                std::stop_token stop) {
  if (origin.scheme == "http") co_return co_await plain(origin, deadline);
  if (!tls_cfg->ctx) {
    tls::client_config cfg;
    cfg.ca_pem = tls_cfg->ca_pem;
    auto ctx = tls::make_client_context(cfg);
    if (!ctx) co_return ctx.error();
    tls_cfg->ctx = std::move(ctx).value();
  }
  // The client's stop token reaches connect and the handshake, not only later reads.
  auto s = co_await tls::connect(origin.host, origin.port, tls_cfg->ctx.get(), std::string(), deadline, stop);
  if (!s) co_return s.error();
  co_return std::unique_ptr<io::byte_stream>(std::make_unique<stoppable_tls>(std::move(s).value()));
}

io::task<result<http_response>> do_fetch(std::shared_ptr<http::client> c, http_request r, std::stop_token stop) {
  std::vector<http::header> hs;
  hs.reserve(r.headers.size());
  for (auto& h : r.headers) hs.push_back(http::header{std::move(h.first), std::move(h.second)});
  auto resp = co_await c->fetch(std::move(r.method), std::move(r.url), std::move(hs), std::move(r.body), std::move(stop));
  if (!resp) co_return resp.error();
  http_response out;
  out.status = resp->status;
  out.body = std::move(resp->body);
  out.headers.reserve(resp->headers.size());
  for (auto& h : resp->headers) out.headers.emplace_back(std::move(h.name), std::move(h.value));
  co_return out;
}

}  // namespace

http_fetch make_default_fetch(const client_options& options) {
  http::limits lim;
  lim.max_header_bytes = options.max_header_bytes;
  lim.max_body_bytes = options.max_body_bytes;
  lim.timeout = options.request_timeout;
  auto tls_cfg = std::make_shared<tls_settings>();
  tls_cfg->ca_pem = options.ca_pem;
  http::client::connector connect = [plain = http::plain_tcp_connector(), tls_cfg, stop = options.stop](
                                        const http::url& origin, io::clock::time_point deadline) {
    return open_stream(plain, tls_cfg, origin, deadline, stop);
  };
  auto c = std::make_shared<http::client>(std::move(connect), lim);
  return [c](http_request r, std::stop_token stop) { return do_fetch(c, std::move(r), std::move(stop)); };
}

}  // namespace letsencrypt::acme
