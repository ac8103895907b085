// Kernel TLS for the write side of a TLS 1.3 or 1.2 server connection: what the kernel needs
// (key, IV, next record sequence number) taken from OpenSSL without I/O, and handing it to
// a socket.
#pragma once

#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>

#ifndef TCP_ULP
#define TCP_ULP 31
#endif
#ifndef SOL_TLS
#define SOL_TLS 282
#endif

namespace letsencrypt::tls {
class engine;
}

namespace letsencrypt::tls::detail {

/// The parameters of SOL_TLS TLS_TX for one connection. Holds a traffic key: wiped when
/// destroyed, never copied.
struct ktls_tx_params {
  /// A tls12_crypto_info_aes_gcm_128, _aes_gcm_256 or _chacha20_poly1305.
  alignas(8) std::array<unsigned char, 64> info{};
  std::size_t size = 0;  // bytes of `info` that hold the parameters

  ktls_tx_params() = default;
  ktls_tx_params(const ktls_tx_params& o) noexcept : info(o.info), size(o.size) {}
  ktls_tx_params& operator=(const ktls_tx_params&) = delete;
  ~ktls_tx_params();
};

/// Makes every connection of the server context `ctx` keep the secret its write key comes
/// from, taken from OpenSSL's key-log callback: TLS 1.3's application write secret, with the
/// number of records its engine had written when the write key changed to it, or TLS 1.2's
/// master secret. Kept until take_ktls_tx() or the SSL's end. Returns false, changing
/// nothing, when `ctx` already has a key-log callback (a context whose keys are logged for
/// its owner is left as it is) or no ex_data index can be made. Contexts that do not use
/// engines keep nothing.
bool keep_write_secrets(SSL_CTX* ctx) noexcept;

/// Takes the kept secret of `e`'s connection (wiping it) and derives the kernel's parameters
/// for the records that follow. TLS 1.3: key and IV as RFC 8446, 7.3 derives them, and the
/// sequence number the records written since the key changed (the tickets sent since).
/// TLS 1.2: the server's key and IV from the key block (RFC 5246, 6.3), the sequence number
/// the records written since the server's ChangeCipherSpec, and for AES-GCM a random start
/// for the explicit nonces (OpenSSL's own start is not public; 2^64 values make a meeting of
/// the two ranges negligible). nullopt when nothing was kept, the suite is not AES-128-GCM,
/// AES-256-GCM or ChaCha20-Poly1305, or the connection negotiated a maximum fragment length
/// (kernel records are always full size). No I/O.
std::optional<ktls_tx_params> take_ktls_tx(const engine& e) noexcept;

/// Hands the write side of the connected TCP socket `fd` to the kernel's TLS: attaches the
/// "tls" upper-layer protocol and sets TLS_TX. false when the kernel refuses either (no tls
/// module, say); the socket then still sends plain bytes as before, so the caller may go on
/// with records made in user space. Two setsockopt calls; nothing blocks.
bool attach_ktls_tx(int fd, const ktls_tx_params& p) noexcept;

/// Sends an alert (`level`, `description`) on a socket whose write side is the kernel's: a
/// record of type alert, which the kernel seals. Returns 0 or the errno of a failed send
/// (EAGAIN when the socket buffer is full: it never blocks).
int send_ktls_alert(int fd, unsigned char level, unsigned char description) noexcept;

/// Replaces the kernel in attach_ktls_tx (null: the kernel again), for tests on kernels
/// without TLS: a stand-in that answers true puts a stream on its kernel-TLS path over a
/// plain socket, where its plaintext can be sealed as the kernel would seal it.
using ktls_attach_fn = bool (*)(int fd, const ktls_tx_params& p);
void set_ktls_attach_for_testing(ktls_attach_fn fn) noexcept;

}  // namespace letsencrypt::tls::detail
