#include "manager/limits.hpp"

#include <algorithm>
#include <cmath>

namespace letsencrypt::manager_detail {

void token_bucket::refill(sys_clock::time_point now) noexcept {
  if (now <= st_.last_refill) {
    st_.last_refill = now;  // the wall clock stepped back: refill from here, not from the future
    return;
  }
  const double gained = std::chrono::duration<double>(now - st_.last_refill) /
                        std::chrono::duration<double>(cfg_.interval);
  st_.tokens = std::min(double(cfg_.burst), st_.tokens + gained);
  st_.last_refill = now;
}

bool token_bucket::try_take(sys_clock::time_point now) noexcept {
  refill(now);
  if (st_.tokens < 1.0) return false;
  st_.tokens -= 1.0;
  return true;
}

sys_clock::duration token_bucket::wait_time(sys_clock::time_point now) noexcept {
  refill(now);
  if (st_.tokens >= 1.0) return sys_clock::duration::zero();
  auto missing = std::chrono::duration<double>(cfg_.interval) * (1.0 - st_.tokens);
  return std::chrono::ceil<sys_clock::duration>(missing);
}

void token_bucket::restore(state s, sys_clock::time_point now) noexcept {
  if (!std::isfinite(s.tokens) || s.tokens < 0) s.tokens = 0;
  s.tokens = std::min(s.tokens, double(cfg_.burst));
  if (s.last_refill > now) s.last_refill = now;
  st_ = s;
}

sys_clock::time_point renewal_time(sys_clock::time_point not_before, sys_clock::time_point not_after,
                                   std::optional<std::pair<sys_clock::time_point, sys_clock::time_point>> ari,
                                   double random01) noexcept {
  random01 = std::clamp(random01, 0.0, 1.0);
  if (ari && ari->second > ari->first) {
    auto span = ari->second - ari->first;
    return ari->first + std::chrono::duration_cast<sys_clock::duration>(span * random01);
  }
  if (ari) return ari->first;
  if (not_after <= not_before) return not_before;
  return not_before + (not_after - not_before) * 2 / 3;
}

std::chrono::seconds backoff(unsigned failures, double random01, std::chrono::seconds cap) noexcept {
  if (failures == 0) return std::chrono::seconds(0);
  const unsigned shift = std::min(failures - 1, 20u);
  auto step = std::min<std::chrono::seconds>(std::chrono::seconds(60L << shift), cap);
  random01 = std::clamp(random01, 0.0, 1.0);
  return std::chrono::seconds(static_cast<long>(double(step.count()) * (0.5 + 0.5 * random01)));
}

}  // namespace letsencrypt::manager_detail
