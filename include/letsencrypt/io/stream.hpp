// byte_stream: what protocol code (HTTP, ACME) reads and writes, whether TCP or TLS.
#pragma once

#include <cstddef>
#include <span>

#include "letsencrypt/io/net.hpp"
#include "letsencrypt/io/ops.hpp"
#include "letsencrypt/io/task.hpp"
#include "letsencrypt/io/unique_fd.hpp"
#include "letsencrypt/result.hpp"

namespace letsencrypt::io {

/// A bidirectional byte stream driven from one ring thread. Every call takes an absolute
/// deadline; passing it yields errc::timed_out. The stream must outlive the calls.
class byte_stream {
 public:
  virtual ~byte_stream() = default;
  /// Reads at least one byte into `buf`, or returns 0 at end of stream.
  virtual task<result<std::size_t>> read_some(std::span<std::byte> buf, clock::time_point deadline) = 0;
  /// Writes all of `buf`.
  virtual task<result<void>> write_all(std::span<const std::byte> buf, clock::time_point deadline) = 0;
  /// Ends the stream in an orderly way (TLS close_notify, TCP FIN); the descriptor stays open
  /// until the stream is destroyed.
  virtual task<result<void>> shutdown(clock::time_point deadline) = 0;
};

/// byte_stream over a connected TCP socket.
class tcp_stream final : public byte_stream {
 public:
  explicit tcp_stream(unique_fd fd) noexcept : fd_(std::move(fd)) {}
  int fd() const noexcept { return fd_.get(); }
  unique_fd release() noexcept { return std::move(fd_); }

  task<result<std::size_t>> read_some(std::span<std::byte> buf, clock::time_point deadline) override {
    co_return co_await io::recv_some(fd_.get(), buf, deadline);
  }
  task<result<void>> write_all(std::span<const std::byte> buf, clock::time_point deadline) override {
    while (!buf.empty()) {
      LE_CO_TRY(n, co_await io::send_some(fd_.get(), buf, deadline));
      buf = buf.subspan(n);
    }
    co_return ok();
  }
  task<result<void>> shutdown(clock::time_point) override {
    if (::shutdown(fd_.get(), SHUT_WR) < 0) co_return std::error_code(errno, std::system_category());
    co_return ok();
  }

 private:
  unique_fd fd_;
};

}  // namespace letsencrypt::io
