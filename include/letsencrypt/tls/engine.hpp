// engine: drives one OpenSSL connection without doing any I/O. The caller moves ciphertext
// between the engine and the network; the engine never copies it except into OpenSSL.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <system_error>
#include <vector>

#include "letsencrypt/result.hpp"
#include "letsencrypt/tls/handles.hpp"

namespace letsencrypt::tls {

enum class role { client, server };

/// What an engine operation needs next.
enum class status {
  done,              ///< the operation finished (read: `bytes` of plaintext are in the buffer)
  want_input,        ///< feed() more ciphertext from the peer, then call the operation again
  have_output,       ///< send pending_output(), consume_output() it, then call again
  want_certificate,  ///< the ClientHello callback asked for a retry (SSL_CLIENT_HELLO_RETRY):
                     ///< resolve the certificate, then call handshake() again
  closed,            ///< the peer sent close_notify; no more plaintext will come
  error,             ///< failed for good; error() says why. pending_output() may hold an
                     ///< alert worth sending before the socket is closed
};

struct [[nodiscard]] op_result {
  status state;
  std::size_t bytes = 0;  ///< plaintext read or written when state == done
};

/// One TLS connection over an in-memory transport (a custom BIO, not a BIO pair).
///
/// Input: feed(span) lends the engine the bytes just received; OpenSSL copies straight out of
/// that span when it reads. The span must stay valid until input_pending() is 0 or the
/// caller calls keep_input(), which copies only the unconsumed remainder.
/// Output: OpenSSL's writes append to one buffer; the caller sends pending_output() and
/// consume_output()s what the kernel took. The span of pending_output() stays valid until the
/// next engine operation (which may append) or consume_output. lend_output() instead keeps
/// the span valid across engine operations until it is all consumed (what they write waits
/// in a second buffer meanwhile), so a send may be in flight while another coroutine reads
/// or writes.
///
/// Not movable (the BIO points at the engine). Single-threaded: one thread at a time.
class engine {
 public:
  /// A client or server engine over a new SSL from `ctx`. The SSL_CTX is up-ref'd by
  /// OpenSSL. Fails with tls_error() when OpenSSL cannot allocate.
  static result<std::unique_ptr<engine>> create(SSL_CTX* ctx, role r);
  /// An engine over an SSL the caller configured (SNI, ALPN, verification, session).
  static result<std::unique_ptr<engine>> create(ssl_ptr ssl, role r);

  ~engine();
  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;

  /// Lends the engine received ciphertext (see the class comment for its lifetime). Bytes
  /// still unconsumed from an earlier feed are read first.
  void feed(std::span<const std::byte> data);
  /// Records that the peer closed its side of the transport (recv returned 0).
  void feed_eof() noexcept { eof_ = true; }
  /// Bytes fed but not yet consumed by OpenSSL.
  std::size_t input_pending() const noexcept;
  /// Copies the unconsumed part of the lent span into the engine, so the caller may reuse
  /// its buffer. A no-op when everything was consumed.
  void keep_input();

  std::span<const std::byte> pending_output() const noexcept {
    return {out_.data() + out_head_, out_.size() - out_head_};
  }
  /// pending_output(), held still: the bytes stay where they are, even when later operations
  /// write more, until consume_output() has taken them all.
  std::span<const std::byte> lend_output() noexcept {
    lent_ = out_head_ < out_.size();
    return pending_output();
  }
  /// Marks the first `n` bytes of pending_output() as sent. Once all of it is, output written
  /// while it was lent becomes pending_output().
  void consume_output(std::size_t n) noexcept;

  /// Advances the handshake. After any operation pending_output() may be non-empty (even
  /// with done or error): send it before waiting for input.
  op_result handshake();
  /// Decrypts into `buf`. done with bytes > 0, want_input, have_output (post-handshake
  /// messages such as key updates need an answer), closed, or error.
  op_result read(std::span<std::byte> buf);
  /// Encrypts all of `buf` into the output buffer (the transport never blocks OpenSSL, so a
  /// write is never partial): done with bytes == buf.size(), or error. The caller sends.
  op_result write(std::span<const std::byte> buf);
  /// Queues close_notify: have_output until it is consumed, then done. Does not wait for the
  /// peer's close_notify.
  op_result shutdown();

  bool handshake_done() const noexcept;
  /// Why the engine failed (set when an operation returned status::error).
  std::error_code error() const noexcept { return error_; }
  /// The alert description the peer sent (SSL_AD_*), or -1.
  int peer_alert() const noexcept { return peer_alert_; }
  /// The certificate verification result (X509_V_*) for a client that verifies its peer.
  long verify_result() const noexcept;

  SSL* native() const noexcept { return ssl_.get(); }
  role side() const noexcept { return role_; }
  /// TLS records OpenSSL has begun writing through this engine, from the first
  /// (ServerHello or ClientHello) on. Kernel TLS takes over the write side with the next
  /// record's sequence number, counted from the write key's start.
  std::uint64_t records_written() const noexcept { return records_written_; }
  /// Records written after the last ChangeCipherSpec record: in TLS 1.2, those under the
  /// current write key.
  std::uint64_t records_since_change_cipher_spec() const noexcept { return records_since_ccs_; }
  /// The engine whose BIO `ssl` writes to, or null when it is not an engine's.
  static const engine* of(const SSL* ssl) noexcept;

  /// The process-wide BIO method of engines (created once; never freed).
  static const BIO_METHOD* bio_method();

 private:
  engine(ssl_ptr ssl, role r, BIO* bio) noexcept;
  op_result finish(int rc, bool for_read);
  op_result fail(std::error_code ec);
  void count_records(const unsigned char* p, std::size_t n) noexcept;

  static int bio_read(BIO* b, char* dst, std::size_t n, std::size_t* got);
  static int bio_write(BIO* b, const char* src, std::size_t n, std::size_t* put);
  static long bio_ctrl(BIO* b, int cmd, long num, void* ptr);

  ssl_ptr ssl_;
  role role_;
  std::span<const std::byte> in_;
  std::vector<std::byte> kept_;   // owned copy of input when the caller asked keep_input()
  std::size_t kept_head_ = 0;
  std::vector<std::byte> out_;
  std::size_t out_head_ = 0;
  bool lent_ = false;               // out_ must not move: writes go to spill_
  std::vector<std::byte> spill_;
  std::uint64_t records_written_ = 0;
  std::uint64_t records_since_ccs_ = 0;
  std::size_t record_left_ = 0;   // bytes of the record being written still to come
  unsigned char header_[5]{};     // the next record's header, as far as it has come
  std::size_t header_have_ = 0;
  bool eof_ = false;
  bool failed_ = false;
  int peer_alert_ = -1;
  std::error_code error_;
};

}  // namespace letsencrypt::tls
