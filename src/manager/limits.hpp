// Token buckets and renewal timing: the manager's policy, free of I/O and clocks of its own.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

#include "letsencrypt/config.hpp"

namespace letsencrypt::manager_detail {

using sys_clock = std::chrono::system_clock;

/// A token bucket on the wall clock, so its state can be persisted and survive restarts.
class token_bucket {
 public:
  struct state {
    double tokens;
    sys_clock::time_point last_refill;
  };

  token_bucket(rate_limit cfg, sys_clock::time_point now) noexcept
      : cfg_(cfg), st_{double(cfg.burst), now} {}

  /// Takes one token if one is available at `now`.
  bool try_take(sys_clock::time_point now) noexcept;
  /// How long from `now` until a token is available (zero if one is).
  sys_clock::duration wait_time(sys_clock::time_point now) noexcept;

  state snapshot() const noexcept { return st_; }
  /// Restores a persisted state, clamped to the configured burst (the configuration may
  /// have changed since it was saved) and to a sane clock (a refill time in the future).
  void restore(state s, sys_clock::time_point now) noexcept;

 private:
  void refill(sys_clock::time_point now) noexcept;
  rate_limit cfg_;
  state st_;
};

/// When a certificate should be renewed: inside the ARI window when the CA offered one
/// (a uniformly random point, RFC 9773 §4.2), else at 2/3 of its lifetime. `random01` is in
/// [0, 1). A time already past means "now".
sys_clock::time_point renewal_time(sys_clock::time_point not_before, sys_clock::time_point not_after,
                                   std::optional<std::pair<sys_clock::time_point, sys_clock::time_point>> ari_window,
                                   double random01) noexcept;

/// Delay before retry number `failures` (1 = first retry): 1 min doubling, capped, with
/// jitter in [50%, 100%] of the step so a fleet does not retry in lockstep.
std::chrono::seconds backoff(unsigned failures, double random01, std::chrono::seconds cap) noexcept;

}  // namespace letsencrypt::manager_detail
