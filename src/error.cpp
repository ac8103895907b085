#include "letsencrypt/error.hpp"

#include <cerrno>

namespace letsencrypt {
namespace {

class library_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "letsencrypt"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::ok: return "success";
      case errc::invalid_argument: return "invalid argument";
      case errc::invalid_name: return "invalid host name";
      case errc::timed_out: return "deadline exceeded";
      case errc::cancelled: return "operation cancelled";
      case errc::closed: return "connection closed by peer";
      case errc::message_too_large: return "message exceeds the size limit";
      case errc::protocol_error: return "protocol error";
      case errc::not_found: return "not found";
      case errc::not_allowed: return "not allowed by host policy";
      case errc::rate_limited: return "rate limited";
      case errc::busy: return "resource busy";
      case errc::corrupt: return "data corrupt";
      case errc::unsupported: return "unsupported";
      case errc::shutting_down: return "shutting down";
    }
    return "unknown letsencrypt error " + std::to_string(ev);
  }
  bool equivalent(int code, const std::error_condition& cond) const noexcept override {
    switch (static_cast<errc>(code)) {
      case errc::timed_out: return cond == std::errc::timed_out;
      case errc::cancelled: return cond == std::errc::operation_canceled;
      case errc::invalid_argument: return cond == std::errc::invalid_argument;
      default: return default_error_condition(code) == cond;
    }
  }
};

}  // namespace

const std::error_category& library_category() noexcept {
  static const library_category_impl instance;
  return instance;
}

std::error_code errno_error(int negative_errno) noexcept {
  int e = -negative_errno;
  if (e == ETIME || e == ETIMEDOUT) return errc::timed_out;
  if (e == ECANCELED) return errc::cancelled;
  return {e, std::system_category()};
}

}  // namespace letsencrypt
