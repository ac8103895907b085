// The persistent state of a manager (account, allowlist, certificates, rate limiters), the
// meaning of each journal record, and its JSON form (Marshal / Unmarshal). Free of I/O.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "letsencrypt/result.hpp"
#include "letsencrypt/store/record.hpp"

namespace letsencrypt::store {

/// The state rebuilt by replaying records. Certificates are shared between the names they
/// cover: `certs` maps every name to its certificate, so one certificate for a.example and
/// b.example appears under both keys with the same pointer, and a certificate's `names` are
/// always exactly the keys that point to it (a later certificate or a removal that takes
/// some of its names leaves a copy holding the rest). Change it only through apply().
struct state {
  std::optional<account_record> account;
  std::optional<std::vector<std::string>> hosts;  ///< nullopt: no allowlist
  std::map<std::string, std::shared_ptr<const cert_record>> certs;
  std::map<std::string, rate_limit_record> rate_limits;  ///< by bucket name

  /// Applies one record. Fails with errc::invalid_argument (and leaves the state unchanged)
  /// for a record that has no meaning: a certificate without names or with an empty name,
  /// a removal without names, a rate limit without a bucket name.
  result<void> apply(const record& r);

  /// How many records a snapshot holds (account, allowlist, distinct certificates, limiters).
  std::size_t live_records() const noexcept;

  /// Whether nothing has been recorded (no account, no allowlist, no certificate, no limiter).
  bool empty() const noexcept;

  /// The distinct certificates, each once, in name order of their first name.
  std::vector<std::shared_ptr<const cert_record>> distinct_certs() const;

  /// Records that rebuild exactly this state when applied to an empty one (used by
  /// compaction and by import). A certificate that lost some of its names to later
  /// certificates is written with only the names it still holds.
  std::vector<record> snapshot() const;

  friend bool operator==(const state& a, const state& b);

  std::size_t distinct_certs_ = 0;  ///< maintained by apply()
};

/// Checks that a record has a meaning (what apply() refuses), without a state.
result<void> validate(const record& r);

/// Writes the whole state as JSON text (it contains private keys: keep it private).
/// Format: {"format":"letsencrypt-state-1","account":{...}|null,"hosts":[...]|null,
///          "certs":[{"names":[...],"chain":"PEM","key":"PEM","not_after":unix,
///                    "ari_start":unix,"ari_end":unix,"ari_cert_id":"..."}],
///          "rate_limits":[{"bucket":"...","tokens":1.5,"last_refill_ms":unix_ms}]}
std::string marshal(const state& s);

/// Where unmarshal found its input.
enum class json_format { native, go_cache };

struct unmarshal_report {
  json_format format = json_format::native;
  std::string message;  ///< on failure, what was wrong and where (never key material)
};

/// Parses text written by marshal, or a cache file written by Go's rsc.io/letsencrypt
/// (fields Email, Reg{URI/uri, Body{contact, agreement}}, Key, Hosts, Certs{host:{Cert,Key}}).
/// For a Go cache each host becomes a certificate record whose not_after is read from the
/// leaf certificate with OpenSSL; Email becomes the contact "mailto:<Email>" and a non-empty
/// Reg.Body.agreement means the ToS were agreed. Fails with errc::protocol_error for bad JSON
/// or wrong field types, errc::invalid_argument for a certificate that does not parse (no
/// entry is skipped silently); `report->message` then says which entry.
result<state> unmarshal(std::string_view json, unmarshal_report* report = nullptr);

/// The notAfter of the first certificate in a PEM chain, or errc::invalid_argument.
result<unix_seconds> pem_not_after(std::string_view chain_pem);

}  // namespace letsencrypt::store
