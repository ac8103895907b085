#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <future>
#include <thread>

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

// Hang, cancel, must unwind: a wait on an event nobody sets ends when its stop token fires,
// from this ring or from another thread, and resumes on the waiter's ring; a stop requested
// before the wait ends it at once; a set that comes first wins over a later stop.
TEST(event, stoppable_wait_ends_at_the_stop_and_resumes_on_its_ring) {
  io::ring r;
  io::event never, ev;
  std::stop_source same_ring, other_thread, already, late;
  already.request_stop();
  std::vector<bool> results;
  auto waiter = [&](io::event& e, std::stop_token st) -> io::task<void> {
    results.push_back(co_await e.wait(std::move(st)));
    EXPECT_EQ(io::ring::current(), &r);
  };
  auto stopper = [&]() -> io::task<void> {
    co_await io::sleep_for(5ms);
    same_ring.request_stop();
    std::thread([&] { other_thread.request_stop(); }).join();
    co_await io::sleep_for(5ms);
    ev.set();
    late.request_stop();
  };
  r.run(io::when_all(waiter(never, same_ring.get_token()), waiter(never, other_thread.get_token()),
                     waiter(never, already.get_token()), waiter(ev, late.get_token()), stopper()));
  EXPECT_EQ(results, (std::vector<bool>{false, false, false, true}));
  EXPECT_FALSE(never.is_set());
}

// set() and the stop racing from two other threads: the waiter resumes exactly once, on its
// ring, whichever wins.
TEST(event, stoppable_wait_resumes_once_when_set_and_stop_race) {
  io::shard_group g(1);
  for (int round = 0; round < 300; ++round) {
    io::event ev;
    std::stop_source stop;
    std::promise<bool> on_ring;
    std::atomic<int> resumed{0};
    std::atomic<bool> waiting{false};
    auto waiter = [&]() -> io::task<void> {
      waiting = true;
      (void)co_await ev.wait(stop.get_token());
      resumed.fetch_add(1);
      on_ring.set_value(io::ring::current() == &g[0].loop());
    };
    g[0].spawn(waiter());
    // Race against a suspended waiter (its ring asleep), not one still on its way there.
    while (!waiting) std::this_thread::yield();
    std::this_thread::sleep_for(200us);
    // Each side starts first in half the rounds.
    auto set = [&] { ev.set(); };
    auto cancel = [&] { stop.request_stop(); };
    std::thread a(round % 2 ? std::function<void()>(set) : std::function<void()>(cancel));
    std::thread b(round % 2 ? std::function<void()>(cancel) : std::function<void()>(set));
    a.join();
    b.join();
    ASSERT_TRUE(on_ring.get_future().get());
    // Let a second resumption, were there one, happen before counting.
    std::promise<void> drained;
    g[0].post([&] { drained.set_value(); });
    drained.get_future().wait();
    ASSERT_EQ(resumed.load(), 1);
  }
}
