// A log-bucketed latency histogram in the layout of HdrHistogram: exact below 2^sub_bits,
// then 2^(sub_bits-1) linear sub-buckets per power of two.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace letsencrypt::bench {

/// Counts of non-negative integer values (nanoseconds here). A value is stored in a bucket
/// whose width is at most 1/128 of the value, so every reported percentile is within 0.8%
/// of a recorded value. Values above 2^max_bits are clamped. Not thread-safe.
class histogram {
 public:
  static constexpr unsigned sub_bits = 8;
  static constexpr unsigned max_bits = 44;  // 2^44 ns: almost five hours
  static constexpr std::uint64_t full = std::uint64_t{1} << sub_bits;
  static constexpr std::uint64_t half = full / 2;
  static constexpr std::size_t bucket_count = full + (max_bits - sub_bits + 1) * half;

  histogram() : counts_(bucket_count, 0) {}

  void record(std::uint64_t v) noexcept {
    v = std::min(v, (std::uint64_t{1} << (max_bits + 1)) - 1);
    ++counts_[index_of(v)];
    ++count_;
    sum_ += v;
    min_ = std::min(min_, v);
    max_ = std::max(max_, v);
  }

  void merge(const histogram& o) noexcept {
    for (std::size_t i = 0; i < bucket_count; ++i) counts_[i] += o.counts_[i];
    count_ += o.count_;
    sum_ += o.sum_;
    min_ = std::min(min_, o.min_);
    max_ = std::max(max_, o.max_);
  }

  void reset() noexcept {
    std::fill(counts_.begin(), counts_.end(), 0);
    count_ = sum_ = max_ = 0;
    min_ = std::numeric_limits<std::uint64_t>::max();
  }

  std::uint64_t count() const noexcept { return count_; }
  std::uint64_t max() const noexcept { return max_; }
  std::uint64_t min() const noexcept { return count_ ? min_ : 0; }
  double mean() const noexcept { return count_ ? double(sum_) / double(count_) : 0.0; }

  /// The smallest bucket upper bound below which `percentile` percent of the values lie
  /// (clamped to the largest value seen); 0 for an empty histogram.
  std::uint64_t value_at(double percentile) const noexcept {
    if (count_ == 0) return 0;
    percentile = std::clamp(percentile, 0.0, 100.0);
    auto target = static_cast<std::uint64_t>(percentile / 100.0 * double(count_) + 0.5);
    target = std::clamp<std::uint64_t>(target, 1, count_);
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < bucket_count; ++i) {
      seen += counts_[i];
      if (seen >= target) return std::min(upper_of(i), max_);
    }
    return max_;
  }

  /// Calls f(lower, upper, count) for every non-empty bucket in increasing order.
  template <class F>
  void for_each_bucket(F&& f) const {
    for (std::size_t i = 0; i < bucket_count; ++i)
      if (counts_[i]) f(lower_of(i), upper_of(i), counts_[i]);
  }

  static std::size_t index_of(std::uint64_t v) noexcept {
    if (v < full) return static_cast<std::size_t>(v);
    unsigned msb = 63u - static_cast<unsigned>(std::countl_zero(v));
    unsigned shift = msb - (sub_bits - 1);
    std::uint64_t sub = v >> shift;  // in [half, full)
    return static_cast<std::size_t>(full + (shift - 1) * half + (sub - half));
  }
  static std::uint64_t lower_of(std::size_t i) noexcept {
    if (i < full) return i;
    std::uint64_t k = i - full;
    unsigned shift = static_cast<unsigned>(k / half) + 1;
    std::uint64_t sub = half + k % half;
    return sub << shift;
  }
  static std::uint64_t upper_of(std::size_t i) noexcept {
    if (i < full) return i;
    std::uint64_t k = i - full;
    unsigned shift = static_cast<unsigned>(k / half) + 1;
    std::uint64_t sub = half + k % half;
    return ((sub + 1) << shift) - 1;
  }

 private:
  std::vector<std::uint64_t> counts_;
  std::uint64_t count_ = 0;
  std::uint64_t sum_ = 0;
  std::uint64_t min_ = std::numeric_limits<std::uint64_t>::max();
  std::uint64_t max_ = 0;
};

}  // namespace letsencrypt::bench
