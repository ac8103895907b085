// ticket_keys: session ticket keys (TLS 1.3 and 1.2) shared by every shard, rotated on a
// schedule, read by handshakes on all threads without a lock.
#pragma once

#include <openssl/ssl.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>

#include "letsencrypt/result.hpp"

namespace letsencrypt::tls {

/// Holds the current and the previous ticket key. New tickets are encrypted with the current
/// key; tickets under either key are accepted, those under the previous one with a request to
/// renew (the client gets a fresh ticket). rotate() makes a new current key and demotes the
/// old one, so a ticket stays valid for one full rotation period after the one it was issued
/// in. Keys live only in memory: a restart invalidates every ticket, by design.
///
/// Readers (the OpenSSL callback on any shard) copy the key set under a sequence lock made of
/// atomics: no mutex, no allocation, no reference counting on the handshake path.
class ticket_keys {
 public:
  /// Generates the first key. Throws std::system_error when the RNG fails (setup only).
  ticket_keys();
  /// Wipes the keys.
  ~ticket_keys();
  ticket_keys(const ticket_keys&) = delete;
  ticket_keys& operator=(const ticket_keys&) = delete;

  /// Makes `ctx` use these keys (SSL_CTX_set_tlsext_ticket_key_evp_cb). The ticket_keys must
  /// outlive `ctx` and every SSL made from it. Install it in every SSL_CTX a handshake may
  /// switch to (SSL_set_SSL_CTX from an SNI callback), since OpenSSL asks the current one.
  /// Fails with errc::invalid_argument for a null ctx, or tls_error().
  result<void> install(SSL_CTX* ctx);

  /// New current key; the current one becomes the previous one; the previous is forgotten.
  /// Thread-safe (writers serialise on a mutex). Fails only when the RNG does.
  result<void> rotate();

  /// Number of rotations so far.
  std::uint64_t generation() const noexcept { return generation_.load(std::memory_order_relaxed); }

  /// Tickets encrypted, decrypted with the current key, with the previous key, and refused.
  struct counters {
    std::uint64_t issued = 0, resumed_current = 0, resumed_previous = 0, unknown = 0;
  };
  counters stats() const noexcept;

  /// 16-byte key name, 32-byte AES-256 key, 32-byte HMAC-SHA256 key.
  struct key {
    std::array<unsigned char, 16> name{};
    std::array<unsigned char, 32> aes{};
    std::array<unsigned char, 32> hmac{};
  };
  struct key_set {
    key current;
    key previous;
    bool has_previous = false;
  };

  /// A consistent copy of the key set (what a handshake sees).
  key_set snapshot() const noexcept;

 private:
  static constexpr std::size_t words = (sizeof(key) * 2) / 8 + 1;
  static int callback(SSL* ssl, unsigned char* name, unsigned char* iv, EVP_CIPHER_CTX* cctx,
                      EVP_MAC_CTX* hctx, int enc);
  void publish(const key_set& s) noexcept;

  std::atomic<std::uint64_t> seq_{0};
  std::array<std::atomic<std::uint64_t>, words> data_{};
  std::atomic<std::uint64_t> generation_{0};
  mutable std::atomic<std::uint64_t> issued_{0}, resumed_current_{0}, resumed_previous_{0}, unknown_{0};
  std::mutex writer_;
  key_set shadow_;  // the writer's copy, guarded by writer_
  // AES-256-CBC, fetched once at construction as OpenSSL would fetch it for every ticket
  // (null: it could not be, and OpenSSL does fetch it every time).
  EVP_CIPHER* cipher_ = nullptr;
};

}  // namespace letsencrypt::tls
