// Error codes of the library: one std::error_code category per concern.
#pragma once

#include <string>
#include <system_error>

namespace letsencrypt {

/// General library errors. Subsystems (tls, acme, store) add their own categories.
enum class errc {
  ok = 0,
  invalid_argument = 1,  ///< a caller passed a value the API does not accept
  invalid_name,          ///< a host name that is not a valid DNS name (after normalisation)
  timed_out,             ///< a deadline passed before the operation finished
  cancelled,             ///< the operation was cancelled by its stop token
  closed,                ///< the peer closed the connection (end of stream)
  message_too_large,     ///< a peer sent more than the configured limit
  protocol_error,        ///< a peer broke the protocol (malformed HTTP, JSON, ...)
  not_found,             ///< no entry for the given key
  not_allowed,           ///< refused by the host allowlist or policy
  rate_limited,          ///< a local token bucket is empty
  busy,                  ///< a resource is held by someone else (e.g. a locked file)
  corrupt,               ///< stored data failed its integrity check
  unsupported,           ///< the peer or the kernel lacks a needed feature
  shutting_down,         ///< the owner is stopping and takes no new work
};

const std::error_category& library_category() noexcept;

inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), library_category()};
}

/// Maps a negative errno (as io_uring reports it in cqe->res) to an error code.
/// ETIME (a timeout's expiry) becomes errc::timed_out and ECANCELED errc::cancelled,
/// so callers test one value whatever produced it.
std::error_code errno_error(int negative_errno) noexcept;

}  // namespace letsencrypt

template <>
struct std::is_error_code_enum<letsencrypt::errc> : std::true_type {};
