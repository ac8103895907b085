#include <gtest/gtest.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/socket.h>

#include <atomic>
#include <memory>
#include <vector>
#include <thread>

#include "letsencrypt/io/ops.hpp"
#include "letsencrypt/io/ring.hpp"
#include "letsencrypt/io/scope.hpp"

using namespace letsencrypt;
using namespace std::chrono_literals;

TEST(ring, uses_single_issuer_and_defer_taskrun_when_available) {
  io::ring r;
  // This kernel has both flags; on an older one the ring falls back and still works.
  EXPECT_NE(r.setup_flags() & IORING_SETUP_SINGLE_ISSUER, 0u);
  EXPECT_NE(r.setup_flags() & IORING_SETUP_DEFER_TASKRUN, 0u);
  EXPECT_EQ(io::ring::current(), &r);
}

TEST(ring, nop_round_trip) {
  io::ring r;
  auto t = []() -> io::task<int> {
    int ok = 0;
    for (int i = 0; i < 1000; ++i)
      if (co_await io::nop()) ++ok;
    co_return ok;
  };
  EXPECT_EQ(r.run(t()), 1000);
}

TEST(ring, submission_queue_full_is_handled) {
  // More concurrent operations than SQ entries: get_sqe must submit and retry.
  io::ring r(io::ring::options{.entries = 8});
  auto one = []() -> io::task<int> { co_return (co_await io::sleep_for(1ms)) ? 1 : 0; };
  std::vector<io::task<int>> ts;
  for (int i = 0; i < 500; ++i) ts.push_back(one());
  auto v = r.run(io::when_all(std::move(ts)));
  int sum = 0;
  for (int x : v) sum += x;
  EXPECT_EQ(sum, 500);
}

TEST(ring, deadline_fires_on_silent_recv) {
  io::ring r;
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  io::unique_fd a(sv[0]), b(sv[1]);
  auto t = [&]() -> io::task<result<std::size_t>> {
    std::byte buf[16];
    co_return co_await io::recv(a.get(), buf).timeout(50ms);
  };
  auto start = io::clock::now();
  auto res = r.run(t());
  auto took = io::clock::now() - start;
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error(), errc::timed_out);
  EXPECT_EQ(res.error(), std::errc::timed_out);
  EXPECT_GE(took, 45ms);
  EXPECT_LT(took, 2s);
}

TEST(ring, deadline_does_not_fire_when_data_arrives) {
  io::ring r;
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  io::unique_fd a(sv[0]), b(sv[1]);
  ASSERT_EQ(::write(b.get(), "hi", 2), 2);
  auto t = [&]() -> io::task<result<std::size_t>> {
    std::byte buf[16];
    co_return co_await io::recv(a.get(), buf).timeout(5s);
  };
  auto res = r.run(t());
  ASSERT_TRUE(res);
  EXPECT_EQ(*res, 2u);
}

TEST(ring, cancel_of_pending_recv_unwinds_the_coroutine) {
  io::ring r;
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  io::unique_fd a(sv[0]), b(sv[1]);
  std::stop_source stop;
  bool destroyed = false;
  auto hang = [&]() -> io::task<result<std::size_t>> {
    struct guard {
      bool* d;
      ~guard() { *d = true; }
    } g{&destroyed};
    std::byte buf[16];
    co_return co_await io::recv(a.get(), buf).cancel_on(stop.get_token());
  };
  auto canceller = [&]() -> io::task<void> {
    co_await io::sleep_for(10ms);
    stop.request_stop();
  };
  auto both = [&]() -> io::task<result<std::size_t>> {
    auto [res, unused] = co_await io::when_all(hang(), canceller());
    (void)unused;
    co_return res;
  };
  auto res = r.run(both());
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error(), errc::cancelled);
  EXPECT_TRUE(destroyed);
  // The socket is still usable: nothing is left reading from it.
  ASSERT_EQ(::write(b.get(), "x", 1), 1);
  char c;
  EXPECT_EQ(::read(a.get(), &c, 1), 1);
}

TEST(ring, cancel_before_submit_does_not_touch_kernel) {
  io::ring r;
  std::stop_source stop;
  stop.request_stop();
  auto t = [&]() -> io::task<result<void>> { co_return co_await io::sleep_for(10s).cancel_on(stop.get_token()); };
  auto res = r.run(t());
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error(), errc::cancelled);
}

TEST(ring, cross_thread_cancel) {
  io::ring r;
  std::stop_source stop;
  std::thread other([&] {
    std::this_thread::sleep_for(20ms);
    stop.request_stop();
  });
  auto t = [&]() -> io::task<result<void>> { co_return co_await io::sleep_for(10s).cancel_on(stop.get_token()); };
  auto res = r.run(t());
  other.join();
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error(), errc::cancelled);
}

// A stop from another thread reaches the ring as a posted cancel naming the operation by its
// address. When the operation completes before that message runs, the cancel must not hit
// the next operation placed at the same address (here: the same loop's next recv, with a
// token nobody stops), which must end by its own timeout.
TEST(ring, a_late_cross_thread_cancel_does_not_hit_a_later_operation) {
  io::ring r;
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  io::unique_fd a(sv[0]), b(sv[1]);
  ASSERT_EQ(::write(b.get(), "x", 1), 1);  // the first recv completes at once
  std::stop_source first;
  std::vector<result<std::size_t>> got;
  auto reader = [&]() -> io::task<void> {
    for (int i = 0; i < 2; ++i) {
      std::stop_source mine;
      std::stop_token tok = i == 0 ? first.get_token() : mine.get_token();
      std::byte buf[8];
      got.push_back(co_await io::recv(a.get(), buf).timeout(300ms).cancel_on(tok));
    }
  };
  auto stopper = [&]() -> io::task<void> {
    // Its nop completes in the same batch as the reader's recv, just before it: the stop
    // comes while the recv is done but its coroutine has not resumed.
    co_await io::nop();
    std::thread([&] { first.request_stop(); }).join();
  };
  r.run([&]() -> io::task<void> { co_await io::when_all(stopper(), reader()); }());
  ASSERT_EQ(got.size(), 2u);
  EXPECT_TRUE(got[0]) << got[0].error().message();
  ASSERT_FALSE(got[1]);
  EXPECT_EQ(got[1].error(), errc::timed_out) << got[1].error().message();
}

// An operation with a timeout takes two submission entries; a ring asked for one gets two,
// rather than waiting for ever for a second free entry.
TEST(ring, a_one_entry_ring_still_runs_operations_with_a_timeout) {
  EXPECT_EXIT(
      {
        ::alarm(5);
        io::ring one(io::ring::options{.entries = 1});
        auto t = []() -> io::task<bool> { co_return bool(co_await io::nop().timeout(1s)); };
        std::_Exit(one.run(t()) ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(ring, cross_thread_post_runs_on_ring_thread_in_order) {
  io::ring r;
  std::vector<int> seen;
  std::thread::id ring_thread = std::this_thread::get_id();
  std::atomic<bool> wrong_thread{false};
  std::coroutine_handle<> waiter;
  constexpr int n = 10000;
  std::thread poster([&] {
    for (int i = 0; i < n; ++i)
      r.post([&, i] {
        if (std::this_thread::get_id() != ring_thread) wrong_thread = true;
        seen.push_back(i);
        if (i == n - 1) r.schedule(waiter);
      });
  });
  struct wait_all {
    std::coroutine_handle<>* w;
    bool await_ready() { return false; }
    void await_suspend(std::coroutine_handle<> h) { *w = h; }
    void await_resume() {}
  };
  auto t = [&]() -> io::task<void> { co_await wait_all{&waiter}; };
  r.run(t());
  poster.join();
  EXPECT_FALSE(wrong_thread);
  ASSERT_EQ(seen.size(), std::size_t(n));
  for (int i = 0; i < n; ++i) ASSERT_EQ(seen[i], i);
}

TEST(ring, file_write_fsync_read) {
  io::ring r;
  char path[] = "/tmp/le-ring-XXXXXX";
  io::unique_fd fd(::mkstemp(path));
  ASSERT_TRUE(fd);
  ::unlink(path);
  auto t = [&]() -> io::task<std::string> {
    std::string msg = "hello journal";
    auto w = co_await io::write(fd.get(), std::as_bytes(std::span(msg)), 0);
    EXPECT_TRUE(w);
    EXPECT_TRUE(co_await io::fdatasync(fd.get()));
    std::string back(msg.size(), '\0');
    auto rd = co_await io::read(fd.get(), std::as_writable_bytes(std::span(back)), 0);
    EXPECT_TRUE(rd);
    co_return back;
  };
  EXPECT_EQ(r.run(t()), "hello journal");
}

TEST(ring, errors_come_from_errno) {
  io::ring r;
  auto t = []() -> io::task<result<std::size_t>> {
    std::byte b[4];
    co_return co_await io::read(9999, b, 0);
  };
  auto res = r.run(t());
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error(), std::errc::bad_file_descriptor);
}

// A post whose message ends the ring's run can still be returning from post() when the ring
// is destroyed: the ring must wait for it, or the poster writes its wake-up to a closed (or
// reused) descriptor and touches freed memory (the sanitizer builds catch that here).
TEST(ring, destroyed_while_the_post_that_ended_it_returns) {
  constexpr int posters = 4;
  for (int round = 0; round < 200; ++round) {
    auto r = std::make_unique<io::ring>();
    std::atomic<int> ran{0};
    std::atomic<bool> go{false};
    io::ring* target = r.get();
    std::vector<std::thread> threads;
    for (int k = 0; k < posters; ++k)
      threads.emplace_back([&, target] {
        while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
        target->post([&ran, target] {
          if (ran.fetch_add(1) + 1 == posters) target->stop();
        });
      });
    go.store(true, std::memory_order_release);
    r->run_until_stopped({});
    EXPECT_EQ(ran.load(), posters);
    r.reset();  // possibly while a poster is still inside post()
    for (auto& t : threads) t.join();
  }
}
