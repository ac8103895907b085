#include <gtest/gtest.h>

#include <atomic>
#include <future>

#include "letsencrypt/io/event.hpp"
#include "letsencrypt/io/ops.hpp"
#include "letsencrypt/io/scope.hpp"
#include "letsencrypt/io/shard.hpp"

using namespace letsencrypt;
using namespace std::chrono_literals;

TEST(event, waiters_on_one_ring_resume_after_set) {
  io::ring r;
  io::event ev;
  int woke = 0;
  auto waiter = [&]() -> io::task<void> {
    co_await ev.wait();
    ++woke;
  };
  auto setter = [&]() -> io::task<void> {
    co_await io::sleep_for(5ms);
    EXPECT_EQ(woke, 0);
    ev.set();
  };
  r.run(io::when_all(waiter(), waiter(), setter()));
  EXPECT_EQ(woke, 2);
  // Awaiting a set event completes at once.
  r.run(waiter());
  EXPECT_EQ(woke, 3);
}

TEST(event, waiters_resume_on_their_own_ring_when_set_from_another_thread) {
  io::shard_group g(2);
  io::event ev;
  std::promise<bool> p0, p1;
  auto waiter = [&](unsigned s, std::promise<bool>* p) -> io::task<void> {
    co_await ev.wait();
    p->set_value(io::ring::current() == &g[s].loop());
  };
  g[0].spawn(waiter(0, &p0));
  g[1].spawn(waiter(1, &p1));
  std::this_thread::sleep_for(10ms);
  ev.set();  // from the test thread, which has no ring
  EXPECT_TRUE(p0.get_future().get());
  EXPECT_TRUE(p1.get_future().get());
}
