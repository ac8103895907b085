#include <gtest/gtest.h>
#include <sys/socket.h>

#include "letsencrypt/io/buffer_pool.hpp"
#include "letsencrypt/io/scope.hpp"

using namespace letsencrypt;
using namespace std::chrono_literals;

TEST(buffer_pool, recv_draws_from_pool_and_returns_buffers) {
  io::ring r;
  io::buffer_pool pool(r, 1, 8, 512);
  EXPECT_EQ(pool.available(), 8u);
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  io::unique_fd a(sv[0]), b(sv[1]);
  ASSERT_EQ(::write(b.get(), "pooled", 6), 6);
  auto t = [&]() -> io::task<void> {
    auto buf = co_await io::recv_pooled(a.get(), pool).timeout(2s);
    EXPECT_TRUE(buf);
    if (!buf) co_return;
    EXPECT_EQ(pool.available(), 7u);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(buf->data().data()), buf->size()), "pooled");
  };
  r.run(t());
  EXPECT_EQ(pool.available(), 8u);  // returned when the pooled_buffer died
}

TEST(buffer_pool, buffers_recycled_under_load) {
  // Many more messages than buffers: only recycling lets this finish; ASan checks for leaks.
  io::ring r;
  io::buffer_pool pool(r, 2, 4, 256);
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  io::unique_fd a(sv[0]), b(sv[1]);
  constexpr int messages = 5000;
  auto reader = [&]() -> io::task<int> {
    int got = 0;
    std::uint64_t bytes = 0;
    while (got < messages) {
      auto buf = co_await io::recv_pooled(a.get(), pool).timeout(5s);
      if (!buf) {
        ADD_FAILURE() << buf.error().message();
        break;
      }
      bytes += buf->size();
      ++got;
    }
    EXPECT_EQ(bytes, std::uint64_t(messages) * 100);
    co_return got;
  };
  auto writer = [&]() -> io::task<void> {
    std::byte msg[100]{};
    for (int i = 0; i < messages; ++i) {
      auto s = co_await io::send(b.get(), msg).timeout(5s);
      if (!s) {
        ADD_FAILURE() << s.error().message();
        break;
      }
    }
  };
  auto [got, unused] = r.run(io::when_all(reader(), writer()));
  (void)unused;
  EXPECT_EQ(got, messages);
  EXPECT_EQ(pool.available(), 4u);
}

TEST(buffer_pool, rejects_bad_count) {
  io::ring r;
  EXPECT_THROW(io::buffer_pool(r, 3, 6, 64), std::system_error);
}
