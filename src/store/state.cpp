// state::apply and snapshots.
#include <algorithm>
#include <cmath>
#include <unordered_set>

#include "letsencrypt/store/state.hpp"

namespace letsencrypt::store {
namespace {

bool valid_names(const std::vector<std::string>& names) {
  if (names.empty()) return false;
  for (auto& n : names)
    if (n.empty()) return false;
  std::vector<std::string_view> sorted(names.begin(), names.end());
  std::sort(sorted.begin(), sorted.end());
  return std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end();
}

}  // namespace

result<void> validate(const record& r) {
  switch (type_of(r)) {
    case record_type::rate_limit: {
      auto& rl = std::get<rate_limit_record>(r);
      if (rl.bucket.empty() || !std::isfinite(rl.tokens)) return errc::invalid_argument;
      return {};
    }
    case record_type::cert:
      if (!valid_names(std::get<cert_record>(r).names)) return errc::invalid_argument;
      return {};
    case record_type::remove:
      if (!valid_names(std::get<remove_record>(r).names)) return errc::invalid_argument;
      return {};
    default:
      return {};
  }
}

result<void> state::apply(const record& r) {
  LE_TRY_VOID(validate(r));
  switch (type_of(r)) {
    case record_type::account:
      account = std::get<account_record>(r);
      return {};
    case record_type::hosts:
      hosts = std::get<hosts_record>(r).hosts;
      return {};
    case record_type::checkpoint:
      return {};
    case record_type::rate_limit: {
      auto& rl = std::get<rate_limit_record>(r);
      rate_limits[rl.bucket] = rl;
      return {};
    }
    case record_type::cert:
    case record_type::remove:
      break;
  }
  const bool is_cert = type_of(r) == record_type::cert;
  const auto& names = is_cert ? std::get<cert_record>(r).names : std::get<remove_record>(r).names;

  // Certificates losing some names: drop them, or re-point their other names at a copy
  // that holds only the names still theirs.
  std::vector<std::shared_ptr<const cert_record>> touched;
  for (auto& n : names) {
    auto it = certs.find(n);
    if (it != certs.end() &&
        std::find(touched.begin(), touched.end(), it->second) == touched.end())
      touched.push_back(it->second);
  }
  for (auto& n : names) certs.erase(n);
  for (auto& old : touched) {
    std::vector<std::string> rest;
    for (auto& n : old->names)
      if (std::find(names.begin(), names.end(), n) == names.end()) rest.push_back(n);
    if (rest.empty()) {
      --distinct_certs_;
      continue;
    }
    auto copy = std::make_shared<cert_record>(*old);
    copy->names = std::move(rest);
    std::shared_ptr<const cert_record> c = std::move(copy);
    for (auto& n : c->names) certs[n] = c;
  }
  if (is_cert) {
    auto c = std::make_shared<const cert_record>(std::get<cert_record>(r));
    for (auto& n : c->names) certs[n] = c;
    ++distinct_certs_;
  }
  return {};
}

std::size_t state::live_records() const noexcept {
  return (account ? 1 : 0) + (hosts ? 1 : 0) + distinct_certs_ + rate_limits.size();
}

bool state::empty() const noexcept {
  return !account && !hosts && certs.empty() && rate_limits.empty();
}

std::vector<std::shared_ptr<const cert_record>> state::distinct_certs() const {
  std::vector<std::shared_ptr<const cert_record>> out;
  std::unordered_set<const cert_record*> seen;
  out.reserve(distinct_certs_);
  for (auto& [name, c] : certs)
    if (seen.insert(c.get()).second) out.push_back(c);
  return out;
}

std::vector<record> state::snapshot() const {
  std::vector<record> out;
  out.reserve(live_records());
  if (account) out.emplace_back(*account);
  if (hosts) out.emplace_back(hosts_record{*hosts});
  for (auto& c : distinct_certs()) out.emplace_back(*c);
  for (auto& [b, rl] : rate_limits) out.emplace_back(rl);
  return out;
}

bool operator==(const state& a, const state& b) {
  if (a.account != b.account || a.hosts != b.hosts || a.rate_limits != b.rate_limits ||
      a.certs.size() != b.certs.size())
    return false;
  auto i = a.certs.begin();
  auto j = b.certs.begin();
  for (; i != a.certs.end(); ++i, ++j)
    if (i->first != j->first || *i->second != *j->second) return false;
  return true;
}

}  // namespace letsencrypt::store
