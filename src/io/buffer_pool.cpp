#include "letsencrypt/io/buffer_pool.hpp"

#include <sys/mman.h>

#include <system_error>

namespace letsencrypt::io {

buffer_pool::buffer_pool(ring& r, std::uint16_t group, std::uint16_t count, std::size_t size)
    : ring_(&r), group_(group), count_(count), size_(size) {
  if (count == 0 || (count & (count - 1)) != 0 || count > 32768)
    throw std::system_error(EINVAL, std::system_category(), "buffer_pool: count must be a power of two <= 32768");
  ring_bytes_ = sizeof(io_uring_buf) * count;
  void* mem = ::mmap(nullptr, ring_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (mem == MAP_FAILED) throw std::system_error(errno, std::system_category(), "buffer_pool: mmap");
  br_ = static_cast<io_uring_buf_ring*>(mem);
  io_uring_buf_ring_init(br_);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<std::uint64_t>(br_);
  reg.ring_entries = count;
  reg.bgid = group;
  int rc = io_uring_register_buf_ring(ring_->native(), &reg, 0);
  if (rc < 0) {
    ::munmap(br_, ring_bytes_);
    throw std::system_error(-rc, std::system_category(), "io_uring_register_buf_ring");
  }
  storage_ = new std::byte[std::size_t(count) * size];
  const int mask = io_uring_buf_ring_mask(count);
  for (std::uint16_t i = 0; i < count; ++i)
    io_uring_buf_ring_add(br_, storage_ + std::size_t(i) * size, static_cast<unsigned>(size), i, mask, i);
  io_uring_buf_ring_advance(br_, count);
  available_ = count;
}

buffer_pool::~buffer_pool() {
  io_uring_unregister_buf_ring(ring_->native(), group_);
  ::munmap(br_, ring_bytes_);
  delete[] storage_;
}

void buffer_pool::recycle(std::uint16_t id) noexcept {
  io_uring_buf_ring_add(br_, storage_ + std::size_t(id) * size_, static_cast<unsigned>(size_), id,
                        io_uring_buf_ring_mask(count_), 0);
  io_uring_buf_ring_advance(br_, 1);
  ++available_;
}

}  // namespace letsencrypt::io
