#include <gtest/gtest.h>

#include <cmath>

#include "manager/limits.hpp"

using namespace letsencrypt;
using namespace letsencrypt::manager_detail;
using namespace std::chrono_literals;

TEST(token_bucket, go_defaults_burst_then_one_per_interval) {
  auto t0 = sys_clock::time_point{} + 1000h;
  token_bucket b({1min, 20}, t0);
  for (int i = 0; i < 20; ++i) EXPECT_TRUE(b.try_take(t0)) << i;
  EXPECT_FALSE(b.try_take(t0));
  EXPECT_EQ(b.wait_time(t0), sys_clock::duration(1min));
  EXPECT_FALSE(b.try_take(t0 + 59s));
  EXPECT_TRUE(b.try_take(t0 + 60s));
  EXPECT_FALSE(b.try_take(t0 + 61s));
  // A long idle period refills only up to the burst.
  for (int i = 0; i < 20; ++i) EXPECT_TRUE(b.try_take(t0 + 100h)) << i;
  EXPECT_FALSE(b.try_take(t0 + 100h));
}

TEST(token_bucket, restore_clamps_to_config_and_clock) {
  auto t0 = sys_clock::time_point{} + 1000h;
  token_bucket b({3h, 20}, t0);
  b.restore({500.0, t0 + 10h}, t0);  // more than the burst, refilled "in the future"
  EXPECT_EQ(b.snapshot().tokens, 20.0);
  EXPECT_EQ(b.snapshot().last_refill, t0);
  b.restore({0.5, t0 - 90min}, t0);
  EXPECT_TRUE(b.try_take(t0));  // 0.5 + 0.5 refilled
  EXPECT_FALSE(b.try_take(t0));
  b.restore({std::nan(""), t0}, t0);
  EXPECT_FALSE(b.try_take(t0));
}

// The wall clock steps back (an NTP correction after it ran a day ahead): refilling goes on
// from the corrected time, rather than waiting for the clock to pass the old time again.
TEST(token_bucket, a_clock_stepped_back_does_not_stop_the_refill) {
  auto t0 = sys_clock::time_point{} + 1000h;
  token_bucket b({1min, 1}, t0);
  EXPECT_TRUE(b.try_take(t0 + 24h));
  EXPECT_FALSE(b.try_take(t0 + 1h));  // back to the right time: the token was taken
  EXPECT_FALSE(b.try_take(t0 + 1h + 59s));
  EXPECT_TRUE(b.try_take(t0 + 1h + 1min));
}

TEST(renewal_time, two_thirds_of_lifetime_without_ari) {
  auto nb = sys_clock::time_point{} + 1000h;
  auto na = nb + 90 * 24h;
  EXPECT_EQ(renewal_time(nb, na, std::nullopt, 0.3), nb + 60 * 24h);
}

TEST(renewal_time, inside_ari_window_when_offered) {
  auto nb = sys_clock::time_point{} + 1000h;
  auto na = nb + 90 * 24h;
  auto ws = nb + 10 * 24h, we = nb + 12 * 24h;
  for (double r : {0.0, 0.25, 0.5, 0.999}) {
    auto t = renewal_time(nb, na, std::pair{ws, we}, r);
    EXPECT_GE(t, ws);
    EXPECT_LE(t, we);
  }
  EXPECT_EQ(renewal_time(nb, na, std::pair{ws, we}, 0.5), ws + 24h);
  // A degenerate window means its start.
  EXPECT_EQ(renewal_time(nb, na, std::pair{we, ws}, 0.5), we);
}

TEST(backoff, doubles_with_jitter_and_is_capped) {
  EXPECT_EQ(backoff(0, 0.5, 24h), 0s);
  EXPECT_EQ(backoff(1, 1.0, 24h), 60s);
  EXPECT_EQ(backoff(1, 0.0, 24h), 30s);
  EXPECT_EQ(backoff(2, 1.0, 24h), 120s);
  EXPECT_EQ(backoff(5, 1.0, 24h), 960s);
  EXPECT_EQ(backoff(30, 1.0, 24h), std::chrono::seconds(24h));
  EXPECT_EQ(backoff(1000, 0.0, 24h), std::chrono::seconds(12h));
}
