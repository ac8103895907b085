#include <gtest/gtest.h>

#include <atomic>
#include <future>

#include "letsencrypt/io/ops.hpp"
#include "letsencrypt/io/shard.hpp"

using namespace letsencrypt;
using namespace std::chrono_literals;

TEST(shard, each_shard_runs_on_its_own_thread_with_its_own_ring) {
  io::shard_group g(2);
  ASSERT_EQ(g.size(), 2u);
  std::promise<std::pair<std::thread::id, io::ring*>> p0, p1;
  g[0].post([&] { p0.set_value({std::this_thread::get_id(), io::ring::current()}); });
  g[1].post([&] { p1.set_value({std::this_thread::get_id(), io::ring::current()}); });
  auto a = p0.get_future().get();
  auto b = p1.get_future().get();
  EXPECT_NE(a.first, b.first);
  EXPECT_NE(a.first, std::this_thread::get_id());
  EXPECT_EQ(a.second, &g[0].loop());
  EXPECT_EQ(b.second, &g[1].loop());
}

TEST(shard, shards_hand_each_other_work_by_message) {
  io::shard_group g(2);
  std::promise<int> done;
  // Shard 0 asks shard 1 to compute, shard 1 answers back on shard 0.
  g[0].post([&] {
    g[1].post([&] {
      int v = 41;
      g[0].post([&, v] {
        EXPECT_EQ(io::ring::current(), &g[0].loop());
        done.set_value(v + 1);
      });
    });
  });
  EXPECT_EQ(done.get_future().get(), 42);
}

TEST(shard, stop_waits_for_spawned_tasks_to_unwind) {
  std::atomic<int> unwound{0};
  std::atomic<int> started{0};
  {
    io::shard_group g(2);
    // The lambda outlives the tasks; their parameters, not captures, carry per-task state.
    auto sleeper = [&](io::shard* sh) -> io::task<void> {
      struct guard {
        std::atomic<int>* n;
        ~guard() { ++*n; }
      } gd{&unwound};
      ++started;
      auto r = co_await io::sleep_for(60s).cancel_on(sh->scope().stop_token());
      EXPECT_EQ(r.error(), errc::cancelled);
    };
    for (unsigned s = 0; s < g.size(); ++s)
      for (int i = 0; i < 5; ++i) g[s].spawn(sleeper(&g[s]));
    while (started < 10) std::this_thread::sleep_for(1ms);
    g.stop();
    EXPECT_EQ(unwound.load(), 10);
  }
}

TEST(shard, enter_moves_a_coroutine_between_rings) {
  io::shard_group g(1);
  io::ring r;
  auto t = [&]() -> io::task<bool> {
    co_await g[0].loop().enter();
    bool on_shard = io::ring::current() == &g[0].loop();
    co_await r.enter();
    co_return on_shard && io::ring::current() == &r;
  };
  EXPECT_TRUE(r.run(t()));
}
