// Kernel TLS for the write side of a TLS 1.3 server connection: what the kernel needs
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

/// Makes every connection of the server context `ctx` keep its TLS 1.3 application write
/// secret, taken from OpenSSL's key-log callback when the server's write key changes to it,
/// with the number of records its engine had written by then, until take_ktls_tx() or the
/// SSL's end. Returns false, changing nothing, when `ctx` already has a key-log callback (a
/// context whose keys are logged for its owner is left as it is) or no ex_data index can be
/// made. Contexts that do not use engines keep nothing.
bool keep_write_secrets(SSL_CTX* ctx) noexcept;

/// Takes `ssl`'s kept secret (wiping it) and derives the kernel's parameters for the
/// records that follow: the key and IV of RFC 8446, 7.3, and the sequence number
/// `records_written` minus the records written before the key changed (the tickets sent
/// since). nullopt when nothing was kept, the connection is not TLS 1.3 with
/// TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384 or TLS_CHACHA20_POLY1305_SHA256, or it
/// negotiated a maximum fragment length (kernel records are always full size). No I/O.
std::optional<ktls_tx_params> take_ktls_tx(SSL* ssl, std::uint64_t records_written) noexcept;

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
