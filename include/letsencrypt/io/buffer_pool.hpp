// buffer_pool: a provided-buffer ring (IORING_REGISTER_PBUF_RING) for recv without a
// buffer per pending connection, and the awaitable recv that draws from it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

#include "letsencrypt/io/ops.hpp"

namespace letsencrypt::io {

class buffer_pool;

/// A received buffer lent by a pool; going out of scope gives it back to the kernel.
/// Must be released on the pool's ring thread and before the pool is destroyed.
class pooled_buffer {
 public:
  pooled_buffer() noexcept = default;
  pooled_buffer(buffer_pool* p, std::uint16_t id, std::size_t len) noexcept : pool_(p), id_(id), len_(len) {}
  pooled_buffer(pooled_buffer&& o) noexcept
      : pool_(std::exchange(o.pool_, nullptr)), id_(o.id_), len_(o.len_) {}
  pooled_buffer& operator=(pooled_buffer&& o) noexcept {
    if (this != &o) {
      reset();
      pool_ = std::exchange(o.pool_, nullptr);
      id_ = o.id_;
      len_ = o.len_;
    }
    return *this;
  }
  ~pooled_buffer() { reset(); }

  std::span<std::byte> data() const noexcept;
  std::size_t size() const noexcept { return len_; }
  bool empty() const noexcept { return len_ == 0; }
  std::uint16_t id() const noexcept { return id_; }
  void reset() noexcept;

 private:
  buffer_pool* pool_ = nullptr;
  std::uint16_t id_ = 0;
  std::size_t len_ = 0;
};

/// `count` buffers of `size` bytes registered with the ring as buffer group `group`.
/// liburing 2.3 has no io_uring_setup_buf_ring, so the ring memory is mapped and registered
/// here. Throws std::system_error at construction when the kernel refuses (setup only).
class buffer_pool {
 public:
  buffer_pool(ring& r, std::uint16_t group, std::uint16_t count, std::size_t size);
  ~buffer_pool();
  buffer_pool(const buffer_pool&) = delete;
  buffer_pool& operator=(const buffer_pool&) = delete;

  std::uint16_t group() const noexcept { return group_; }
  std::size_t buffer_size() const noexcept { return size_; }
  std::uint16_t count() const noexcept { return count_; }
  /// Buffers currently owned by the kernel (not lent out to the application).
  std::size_t available() const noexcept { return available_; }

  std::span<std::byte> buffer(std::uint16_t id) const noexcept {
    return {storage_ + std::size_t(id) * size_, size_};
  }
  /// Returns buffer `id` to the kernel.
  void recycle(std::uint16_t id) noexcept;
  /// Called when the kernel hands out a buffer (by recv_pooled's completion).
  void lent() noexcept { --available_; }

 private:
  ring* ring_;
  io_uring_buf_ring* br_ = nullptr;
  std::size_t ring_bytes_ = 0;
  std::byte* storage_ = nullptr;
  std::uint16_t group_;
  std::uint16_t count_;
  std::size_t size_;
  std::size_t available_ = 0;
};

inline std::span<std::byte> pooled_buffer::data() const noexcept {
  return pool_ ? pool_->buffer(id_).first(len_) : std::span<std::byte>{};
}
inline void pooled_buffer::reset() noexcept {
  if (pool_) std::exchange(pool_, nullptr)->recycle(id_);
}

/// Receives into a buffer the kernel picks from `pool`. Size 0 means the peer closed.
/// ENOBUFS (errc from the system category) means every buffer is lent out.
struct recv_pooled_op : basic_op<recv_pooled_op, result<pooled_buffer>> {
  int fd;
  buffer_pool* pool;
  int flags;
  recv_pooled_op(int f, buffer_pool& p, int fl) : fd(f), pool(&p), flags(fl) {}
  void prep(io_uring_sqe* s) {
    io_uring_prep_recv(s, fd, nullptr, pool->buffer_size(), flags);
    s->flags |= IOSQE_BUFFER_SELECT;
    s->buf_group = pool->group();
  }
  result<pooled_buffer> convert(int r) {
    pooled_buffer b;
    if (flags_ & IORING_CQE_F_BUFFER) {
      pool->lent();
      b = pooled_buffer(pool, static_cast<std::uint16_t>(flags_ >> IORING_CQE_BUFFER_SHIFT),
                        r > 0 ? std::size_t(r) : 0);
    }
    if (r < 0) return errno_error(r);
    return b;
  }
};
inline recv_pooled_op recv_pooled(int fd, buffer_pool& pool, int flags = 0) { return {fd, pool, flags}; }

}  // namespace letsencrypt::io
