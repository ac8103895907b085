// tls::stream: TLS over a connected socket on the ring, as an io::byte_stream, built on the
// I/O-free engine; and the client side's connect().
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "letsencrypt/io/buffer_pool.hpp"
#include "letsencrypt/io/event.hpp"
#include "letsencrypt/io/ops.hpp"
#include "letsencrypt/io/stream.hpp"
#include "letsencrypt/io/task.hpp"
#include "letsencrypt/io/unique_fd.hpp"
#include "letsencrypt/result.hpp"
#include "letsencrypt/tls/engine.hpp"
#include "letsencrypt/tls/handles.hpp"

namespace letsencrypt::tls {

/// Called when the server's ClientHello callback returned SSL_CLIENT_HELLO_RETRY: the task
/// completes once the handshake may be retried (the certificate it waited for is ready or
/// known to be missing). The SNI resolver records in the SSL's ex_data what it waits for.
/// Only this connection waits; the thread serves others meanwhile. The stop token is the
/// connection's: a handler that waits for long (an issuance) ends its wait when it fires, so
/// stopping a server does not wait for a certificate nobody will be served.
using client_hello_retry = std::function<io::task<void>(SSL*, std::stop_token)>;

/// TLS on a connected TCP socket, server or client side. Every operation takes an absolute
/// deadline (errc::timed_out when it passes) and honours the stop token given by
/// set_stop_token (errc::cancelled). Full duplex once the handshake is done: one read_some
/// and one write_all (or shutdown) may run at the same time, from coroutines on the
/// stream's ring, so a proxy can pump both directions; any other overlap fails with
/// errc::busy (two reads, two writes, anything during the handshake). A write whose
/// records queue behind a send the read side started (an answer to a key update) takes
/// that send over, so each operation is bound by its own deadline. Not movable; hold it by
/// unique_ptr or in place.
///
/// Ciphertext is received into the stream's buffer, or into a buffer of an io::buffer_pool
/// when set_buffer_pool() was called, and lent to the engine without a copy.
///
/// Kernel TLS: OpenSSL enables it by itself only on a socket BIO (SSL_OP_ENABLE_KTLS with
/// SSL_set_fd), which the engine's BIO is not. A server stream whose context keeps write
/// secrets (make_server_context does so where ktls_available() is true) hands its write
/// side to the kernel once handshake() has finished and the tickets are sent, when the
/// connection is TLS 1.3 or 1.2 with an AES-GCM or ChaCha20-Poly1305 suite: the key and IV
/// come from the traffic secret (RFC 8446, 7.3) or TLS 1.2's key block (RFC 5246, 6.3), the
/// sequence number from the records the engine has written since the key changed. From then
/// on write_all sends plaintext and the kernel makes the records; shutdown sends close_notify
/// as a kernel alert record and leaves the FIN to the descriptor's close, because the kernel
/// may still hold records TCP has not taken, which an earlier FIN would cut off. Reading
/// stays with OpenSSL. A key update the peer asks to be answered (RFC 8446 wants the answer
/// before our next data record), or any record OpenSSL would send (an alert, a ticket or key
/// update asked of native()), cannot be, since OpenSSL's write state is stale: the data read
/// with the request is delivered, then reads and writes fail with
/// tls_errc::ktls_cannot_answer (shutdown still sends close_notify). Record padding
/// (SSL_CTX_set_record_padding_callback, _set_block_padding) and a smaller
/// max_send_fragment are OpenSSL's and do not apply to the kernel's records. When the kernel
/// refuses (no tls module), the stream goes on in user space as before; ktls_active() says
/// which.
class stream final : public io::byte_stream {
 public:
  /// A stream over `fd` driven by `eng` (role decided by the engine).
  stream(io::unique_fd fd, std::unique_ptr<engine> eng) noexcept;
  /// A server-side stream for an accepted socket. Fails when OpenSSL cannot make the SSL.
  static result<std::unique_ptr<stream>> server(io::unique_fd fd, SSL_CTX* ctx);
  ~stream() override;
  stream(const stream&) = delete;
  stream& operator=(const stream&) = delete;

  /// Receive from this pool (the pool must outlive the stream and belong to the same ring).
  /// When the pool is empty (ENOBUFS) the stream falls back to its own buffer.
  void set_buffer_pool(io::buffer_pool* pool) noexcept { pool_ = pool; }
  /// Every later operation is cancelled when `st` is stopped.
  void set_stop_token(std::stop_token st) noexcept { stop_ = std::move(st); }
  void set_client_hello_retry(client_hello_retry fn) { retry_ = std::move(fn); }
  /// The token given to set_stop_token (handlers use it for their own waits).
  std::stop_token stop_token() const noexcept { return stop_; }

  /// Runs the handshake to its end; the time spent in the first call of the client-hello
  /// retry handler does not count against `deadline` (the handler bounds its own waits).
  /// Errors: the engine's (tls_errc or OpenSSL codes),
  /// errc::timed_out, errc::cancelled, errc::closed (the peer hung up), tls_errc::
  /// no_retry_handler (want_certificate without a handler), or a socket error. On a TLS
  /// failure the alert OpenSSL queued is sent, best effort, before returning.
  io::task<result<void>> handshake(io::clock::time_point deadline);

  /// Reads at least one byte of plaintext; 0 at close_notify. A transport end without
  /// close_notify is tls_errc::unexpected_eof (a truncation the caller must not trust).
  io::task<result<std::size_t>> read_some(std::span<std::byte> buf, io::clock::time_point deadline) override;
  io::task<result<void>> write_all(std::span<const std::byte> buf, io::clock::time_point deadline) override;
  /// Sends close_notify (when the handshake finished and nothing failed) and then a TCP FIN;
  /// does not wait for the peer's close_notify. The descriptor is closed by the destructor.
  io::task<result<void>> shutdown(io::clock::time_point deadline) override;

  SSL* native() const noexcept { return eng_->native(); }
  engine& tls_engine() noexcept { return *eng_; }
  int fd() const noexcept { return fd_.get(); }
  /// The protocol ALPN chose (empty when none).
  std::string_view alpn_selected() const noexcept;
  /// The peer's leaf certificate (not up-ref'd: valid while the stream lives), or nullptr.
  X509* peer_certificate() const noexcept;
  /// The SNI the client sent (server side), or empty.
  std::string_view server_name() const noexcept;
  bool handshake_done() const noexcept { return eng_->handshake_done(); }
  /// The kernel makes this stream's outgoing records (see the class comment).
  bool ktls_active() const noexcept { return ktls_tx_; }

 private:
  struct busy_guard;
  /// Sends the engine's output. `yields`: a write may take this flush over (the read side's).
  io::task<result<void>> flush(io::clock::time_point deadline, bool yields = false);
  io::task<result<void>> fill(io::clock::time_point deadline);
  io::task<void> send_alert();
  /// Hands the write side to the kernel's TLS when the connection allows it.
  void try_ktls() noexcept;
  io::task<result<void>> send_ktls_close_notify(io::clock::time_point deadline);
  /// Marks the running send as ended and wakes the operation waiting for it.
  void end_flush();
  void release_input() noexcept;

  io::unique_fd fd_;
  std::unique_ptr<engine> eng_;
  io::buffer_pool* pool_ = nullptr;
  io::pooled_buffer held_;            // the pooled buffer the engine is reading from
  std::vector<std::byte> rbuf_;       // the stream's own receive buffer
  std::stop_token stop_;
  client_hello_retry retry_;
  bool reading_ = false;
  bool writing_ = false;
  bool exclusive_ = false;           // handshake, or any operation before it finished
  bool established_ = false;         // the handshake finished once
  bool flushing_ = false;            // a send of the engine's output is in flight
  std::shared_ptr<io::event> flushed_;  // set when that send ends (made only if awaited)
  bool flush_yields_ = false;        // the running flush is the read side's
  bool take_over_ = false;           // a write asked it to stop and waits to send the rest
  std::stop_source flush_stop_;      // stops the read side's send for the taker
  bool fin_sent_ = false;
  bool ktls_tx_ = false;             // the kernel makes the outgoing records
  bool ktls_stuck_ = false;          // OpenSSL has records to send that cannot be sent
};

/// Settings of the client side. `ca_pem` empty: the system trust store.
struct client_config {
  std::string ca_pem;              ///< trusted roots (PEM), empty for the system store
  std::vector<std::string> alpn;   ///< protocols to offer, in order of preference
  std::string sni_override;        ///< SNI to send instead of `host` (the name verified too)
};

/// A client SSL_CTX for `cfg`: TLS 1.2+ without renegotiation, peer verification on, roots
/// and ALPN set.
/// Fails with tls_errc::bad_pem for unusable ca_pem, errc::invalid_argument for a bad ALPN.
result<ssl_ctx_ptr> make_client_context(const client_config& cfg);

/// Connects to host:port (a name or a numeric address), runs the handshake with SNI and
/// verification of the chain and of the name (`sni_override` when given, else `host`;
/// addresses are verified as IP SANs and send no SNI), all before `deadline`. Makes a new
/// SSL_CTX for each call; use the overload below to share one.
io::task<result<std::unique_ptr<stream>>> connect(std::string host, std::uint16_t port, const client_config& cfg,
                                                  io::clock::time_point deadline);
/// The same with the caller's SSL_CTX (from make_client_context); `cfg` gives sni_override
/// and alpn is taken from the context. The context must outlive the call; the stream holds
/// its own reference.
io::task<result<std::unique_ptr<stream>>> connect(std::string host, std::uint16_t port, SSL_CTX* ctx,
                                                  std::string sni_override, io::clock::time_point deadline,
                                                  std::stop_token stop = {});

/// Whether the kernel accepts the "tls" upper-layer protocol on a TCP socket (kTLS). Probed
/// once per process on a connected loopback socket and cached; false on any failure.
bool ktls_available() noexcept;

}  // namespace letsencrypt::tls
