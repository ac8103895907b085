#include <gtest/gtest.h>

#include <stdexcept>

#include "letsencrypt/io/ring.hpp"
#include "letsencrypt/io/scope.hpp"
#include "letsencrypt/io/ops.hpp"

using namespace letsencrypt;
using namespace std::chrono_literals;

namespace {

io::task<int> forty_two() { co_return 42; }
io::task<int> add(int a) { co_return a + co_await forty_two(); }
io::task<void> throws() {
  throw std::runtime_error("boom");
  co_return;
}
io::task<int> deep(int n) {
  if (n == 0) co_return 0;
  int below = co_await deep(n - 1);
  co_return below + 1;
}

}  // namespace

TEST(task, returns_value_through_awaiter) {
  io::ring r;
  EXPECT_EQ(r.run(add(1)), 43);
}

TEST(task, lazy_until_awaited) {
  bool ran = false;
  auto make = [&]() -> io::task<void> {
    ran = true;
    co_return;
  };
  {
    auto t = make();
    EXPECT_FALSE(ran);
  }
  EXPECT_FALSE(ran);  // destroyed without running
}

TEST(task, exception_propagates_to_awaiter) {
  io::ring r;
  auto outer = []() -> io::task<std::string> {
    try {
      co_await throws();
    } catch (const std::runtime_error& e) {
      co_return std::string(e.what());
    }
    co_return std::string("no exception");
  };
  EXPECT_EQ(r.run(outer()), "boom");
}

TEST(task, symmetric_transfer_keeps_stack_flat) {
  // A million synchronously completing awaits in a loop would overflow the stack if each
  // completion resumed its awaiter by a nested call instead of symmetric transfer.
  io::ring r;
  auto loop = []() -> io::task<long> {
    long sum = 0;
    for (int i = 0; i < 1000000; ++i) sum += co_await forty_two();
    co_return sum;
  };
  EXPECT_EQ(r.run(loop()), 42000000L);
  EXPECT_EQ(r.run(deep(1000)), 1000);
}

TEST(task, result_errors_propagate) {
  io::ring r;
  auto f = []() -> io::task<result<int>> { co_return errc::not_found; };
  auto g = [&]() -> io::task<result<int>> {
    LE_CO_TRY(v, co_await f());
    co_return v + 1;
  };
  auto res = r.run(g());
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error(), errc::not_found);
}

TEST(when_all, collects_values_in_order_after_all_finish) {
  io::ring r;
  auto delayed = [](int v, std::chrono::milliseconds d) -> io::task<int> {
    auto s = co_await io::sleep_for(d);
    EXPECT_TRUE(s);
    co_return v;
  };
  std::vector<io::task<int>> ts;
  ts.push_back(delayed(1, 30ms));
  ts.push_back(delayed(2, 1ms));
  ts.push_back(delayed(3, 10ms));
  auto start = io::clock::now();
  auto v = r.run(io::when_all(std::move(ts)));
  EXPECT_EQ(v, (std::vector<int>{1, 2, 3}));
  EXPECT_GE(io::clock::now() - start, 30ms);  // waited for the slowest
}

TEST(when_all, variadic_mixes_void_and_values) {
  io::ring r;
  auto v = []() -> io::task<void> { co_await io::sleep_for(1ms); };
  auto [a, b] = r.run(io::when_all(forty_two(), v()));
  EXPECT_EQ(a, 42);
  (void)b;
}

TEST(when_all, rethrows_first_exception_after_all_finish) {
  io::ring r;
  bool slow_finished = false;
  auto slow = [&]() -> io::task<void> {
    co_await io::sleep_for(20ms);
    slow_finished = true;
  };
  std::vector<io::task<void>> ts;
  ts.push_back(throws());
  ts.push_back(slow());
  EXPECT_THROW(r.run(io::when_all(std::move(ts))), std::runtime_error);
  EXPECT_TRUE(slow_finished);
}

TEST(task_scope, join_waits_for_every_child) {
  io::ring r;
  int finished = 0;
  auto child = [&](std::chrono::milliseconds d) -> io::task<void> {
    co_await io::sleep_for(d);
    ++finished;
  };
  auto parent = [&]() -> io::task<int> {
    io::task_scope scope;
    for (int i = 0; i < 10; ++i) scope.spawn(child(std::chrono::milliseconds(1 + i * 3)));
    EXPECT_EQ(scope.live(), 10u);
    co_await scope.join();
    co_return finished;
  };
  EXPECT_EQ(r.run(parent()), 10);
}

TEST(task_scope, stop_cancels_children_which_unwind) {
  io::ring r;
  int unwound = 0;
  auto child = [&](std::stop_token st) -> io::task<void> {
    struct guard {
      int* n;
      ~guard() { ++*n; }
    } g{&unwound};
    auto res = co_await io::sleep_for(10s).cancel_on(st);
    EXPECT_EQ(res.error(), errc::cancelled);
  };
  auto parent = [&]() -> io::task<void> {
    io::task_scope scope;
    for (int i = 0; i < 5; ++i) scope.spawn(child(scope.stop_token()));
    co_await io::sleep_for(5ms);
    auto start = io::clock::now();
    scope.request_stop();
    co_await scope.join();
    EXPECT_LT(io::clock::now() - start, 1s);
  };
  r.run(parent());
  EXPECT_EQ(unwound, 5);
}

TEST(task_scope, keeps_first_child_exception) {
  io::ring r;
  auto parent = [&]() -> io::task<bool> {
    io::task_scope scope;
    scope.spawn(throws());
    co_await scope.join();
    co_return bool(scope.first_error());
  };
  EXPECT_TRUE(r.run(parent()));
}
