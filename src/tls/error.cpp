#include "letsencrypt/tls/error.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

namespace letsencrypt::tls {
namespace {

constexpr int openssl_base = 1 << 23;  // ERR_PACK(lib >= 1, 0, 0) is never below this

class tls_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "tls"; }
  std::string message(int ev) const override {
    if (ev >= openssl_base) {
      char buf[256];
      ERR_error_string_n(static_cast<unsigned long>(ev), buf, sizeof buf);
      return buf;
    }
    switch (static_cast<tls_errc>(ev)) {
      case tls_errc::ok: return "success";
      case tls_errc::handshake_failed: return "TLS handshake failed";
      case tls_errc::alert_received: return "TLS alert received from peer";
      case tls_errc::certificate_verify_failed: return "peer certificate verification failed";
      case tls_errc::no_certificate: return "no certificate for the requested name";
      case tls_errc::unexpected_eof: return "connection ended without TLS close_notify";
      case tls_errc::protocol_error: return "malformed or corrupted TLS data";
      case tls_errc::bad_pem: return "PEM text holds no usable certificate or key";
      case tls_errc::key_mismatch: return "private key does not match the certificate";
      case tls_errc::internal_error: return "TLS library internal error";
      case tls_errc::no_retry_handler: return "ClientHello retry requested without a handler";
      case tls_errc::ktls_cannot_answer: return "peer asked for a key update on a kernel TLS connection";
    }
    return "unknown tls error " + std::to_string(ev);
  }
};

}  // namespace

const std::error_category& tls_category() noexcept {
  static const tls_category_impl instance;
  return instance;
}

std::error_code tls_error(tls_errc fallback) noexcept {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return fallback;
  if (ERR_SYSTEM_ERROR(e)) return {static_cast<int>(ERR_GET_REASON(e)), std::system_category()};
  // ERR_PACK keeps the library in bits 23..30 and the reason below, so the code fits an int.
  return {static_cast<int>(e & 0x7fffffffUL), tls_category()};
}

tls_errc classify(const std::error_code& ec) noexcept {
  if (!ec) return tls_errc::ok;
  if (ec.category() != tls_category()) return tls_errc::handshake_failed;
  int v = ec.value();
  if (v < openssl_base) return static_cast<tls_errc>(v);
  unsigned long e = static_cast<unsigned long>(v);
  int lib = ERR_GET_LIB(e);
  int reason = ERR_GET_REASON(e);
  if (lib == ERR_LIB_SSL) {
    if (reason >= SSL_AD_REASON_OFFSET && reason < SSL_AD_REASON_OFFSET + 256) return tls_errc::alert_received;
    switch (reason) {
      case SSL_R_CERTIFICATE_VERIFY_FAILED: return tls_errc::certificate_verify_failed;
      case SSL_R_UNEXPECTED_EOF_WHILE_READING: return tls_errc::unexpected_eof;
      case SSL_R_NO_CERTIFICATE_SET:
      case SSL_R_NO_CERTIFICATE_ASSIGNED:
      case SSL_R_MISSING_SIGNING_CERT:
      case SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM:
        return tls_errc::no_certificate;
      case SSL_R_WRONG_VERSION_NUMBER:
      case SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC:
      case SSL_R_BAD_RECORD_TYPE:
      case SSL_R_PACKET_LENGTH_TOO_LONG:
      case SSL_R_RECORD_LENGTH_MISMATCH:
      case SSL_R_LENGTH_MISMATCH:
      case SSL_R_BAD_PACKET_LENGTH:
      case SSL_R_UNEXPECTED_MESSAGE:
      case SSL_R_UNEXPECTED_RECORD:
      case SSL_R_HTTP_REQUEST:
      case SSL_R_HTTPS_PROXY_REQUEST:
      case SSL_R_BAD_EXTENSION:
      case SSL_R_LENGTH_TOO_SHORT:
      case SSL_R_BAD_LENGTH:
      case SSL_R_UNSUPPORTED_PROTOCOL:
        return tls_errc::protocol_error;
      default: break;
    }
  }
  if (lib == ERR_LIB_PEM) return tls_errc::bad_pem;
  if (lib == ERR_LIB_X509 && reason == X509_R_KEY_VALUES_MISMATCH) return tls_errc::key_mismatch;
  return tls_errc::handshake_failed;
}

}  // namespace letsencrypt::tls
