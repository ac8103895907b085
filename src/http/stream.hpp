// A TCP byte_stream whose reads and writes also end when a stop token is triggered.
#pragma once

#include <stop_token>

#include "letsencrypt/io/stream.hpp"

namespace letsencrypt::http {

/// Implemented by streams whose pending operations can be cancelled by a stop token; the
/// client binds a fetch's token to its connection through it.
class stoppable {
 public:
  virtual void bind_stop(std::stop_token st) noexcept = 0;

 protected:
  ~stoppable() = default;
};

/// io::tcp_stream's behaviour plus cancellation: an operation pending when the bound token
/// is stopped (or started after) fails with errc::cancelled.
class stoppable_tcp_stream final : public io::byte_stream, public stoppable {
 public:
  explicit stoppable_tcp_stream(io::unique_fd fd, std::stop_token st = {}) noexcept
      : fd_(std::move(fd)), stop_(std::move(st)) {}
  int fd() const noexcept { return fd_.get(); }
  void bind_stop(std::stop_token st) noexcept override { stop_ = std::move(st); }

  io::task<result<std::size_t>> read_some(std::span<std::byte> buf, io::clock::time_point deadline) override {
    co_return co_await io::recv_some(fd_.get(), buf, deadline, stop_);
  }
  io::task<result<void>> write_all(std::span<const std::byte> buf, io::clock::time_point deadline) override {
    while (!buf.empty()) {
      LE_CO_TRY(n, co_await io::send_some(fd_.get(), buf, deadline, stop_));
      buf = buf.subspan(n);
    }
    co_return ok();
  }
  io::task<result<void>> shutdown(io::clock::time_point) override {
    if (::shutdown(fd_.get(), SHUT_WR) < 0) co_return std::error_code(errno, std::system_category());
    co_return ok();
  }

 private:
  io::unique_fd fd_;
  std::stop_token stop_;
};

}  // namespace letsencrypt::http
