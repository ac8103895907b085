// TLS errors: the library's own TLS conditions and OpenSSL's error queue as std::error_code.
#pragma once

#include <string>
#include <system_error>

namespace letsencrypt::tls {

/// TLS conditions the library names itself. Values are small; codes taken from OpenSSL's
/// error queue (see tls_error) share tls_category() with values of 1 << 23 and above, so
/// both print readable messages through the same category.
enum class tls_errc {
  ok = 0,
  handshake_failed = 1,       ///< the handshake failed for a reason OpenSSL did not name
  alert_received,             ///< the peer sent a fatal alert (engine::peer_alert() says which)
  certificate_verify_failed,  ///< the peer's certificate chain or name did not verify
  no_certificate,             ///< no certificate for the requested name (or none configured)
  unexpected_eof,             ///< the transport ended without close_notify
  protocol_error,             ///< a malformed or corrupted record or handshake message
  bad_pem,                    ///< PEM text that holds no usable certificate or key
  key_mismatch,               ///< a private key that does not match its certificate
  internal_error,             ///< OpenSSL failed without a queued error (allocation, ...)
  no_retry_handler,           ///< a ClientHello callback asked for a retry nobody can serve
  ktls_cannot_answer,         ///< the peer asked for a reply (a key update) on a connection
                              ///< whose records the kernel now writes
};

/// The category of tls_errc and of OpenSSL's packed error codes.
const std::error_category& tls_category() noexcept;

inline std::error_code make_error_code(tls_errc e) noexcept {
  return {static_cast<int>(e), tls_category()};
}

/// Takes the earliest error on the calling thread's OpenSSL error queue, clears the queue,
/// and returns it as a code of tls_category() whose message() is OpenSSL's text
/// ("error:0A000086:SSL routines::certificate verify failed"). A system error recorded by
/// OpenSSL becomes a std::system_category() code. An empty queue yields `fallback`.
std::error_code tls_error(tls_errc fallback = tls_errc::internal_error) noexcept;

/// Classifies any code (tls_errc, an OpenSSL code from tls_error, or another category) into
/// the nearest tls_errc, for counters and decisions; codes that are not TLS codes give
/// tls_errc::handshake_failed.
tls_errc classify(const std::error_code& ec) noexcept;

}  // namespace letsencrypt::tls

template <>
struct std::is_error_code_enum<letsencrypt::tls::tls_errc> : std::true_type {};
