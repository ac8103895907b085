// resolver: the ClientHello callback that picks each handshake's certificate by SNI.
#pragma once

#include <openssl/ssl.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "letsencrypt/result.hpp"
#include "letsencrypt/tls/sni_map.hpp"

namespace letsencrypt::tls {

/// What to do with a handshake for a name the map does not hold.
enum class miss_action : std::uint8_t {
  refuse,   ///< fail the handshake with an unrecognized_name alert
  suspend,  ///< pause it (SSL_ERROR_WANT_CLIENT_HELLO_CB) until a certificate is loaded
};

/// The signature schemes a client accepts (from its signature_algorithms), by key type.
/// TLS 1.3 binds each ECDSA scheme to one curve; TLS 1.2 pairs any hash with any curve, so
/// `ecdsa_any` says whether some ECDSA scheme was offered at all.
struct client_sigalgs {
  bool ecdsa_p256 = false;  ///< ecdsa_secp256r1_sha256
  bool ecdsa_p384 = false;  ///< ecdsa_secp384r1_sha384
  bool ecdsa_p521 = false;  ///< ecdsa_secp521r1_sha512
  bool ecdsa_any = false;   ///< any ECDSA scheme OpenSSL 3 signs with by default (SHA-224 up, not SHA-1)
  bool rsa = false;         ///< any RSA PKCS#1 or RSA-PSS (rsae or pss) scheme
};

/// The host_name of a server_name extension body (RFC 6066 section 3), not yet normalised.
/// Fails with errc::protocol_error when the bytes are not a well-formed ServerNameList or hold
/// no host_name. The view points into `ext`.
result<std::string_view> parse_server_name(std::span<const unsigned char> ext) noexcept;

/// Whether the application_layer_protocol_negotiation extension body (RFC 7301) offers
/// `protocol`. Fails with errc::protocol_error when the list is malformed or empty.
result<bool> alpn_offers(std::span<const unsigned char> ext, std::string_view protocol) noexcept;

/// The families in a signature_algorithms extension body (RFC 8446 section 4.2.3). Fails with
/// errc::protocol_error when the list is malformed or empty.
result<client_sigalgs> parse_sigalgs(std::span<const unsigned char> ext) noexcept;

/// Chooses each handshake's certificate in OpenSSL's ClientHello callback.
///
/// The callback reads SNI, ALPN and signature_algorithms from the ClientHello (parsed here,
/// bounds-checked: malformed bytes fail the handshake with a decode_error alert) and:
/// - ALPN "acme-tls/1": serves the pending tls-alpn-01 certificate of the name and
///   negotiates acme-tls/1; without a pending challenge the handshake fails with a
///   no_application_protocol alert. No other handshake ever gets a challenge certificate.
/// - otherwise: serves the map's entry for the name (or its wildcard), ECDSA when the client
///   accepts ECDSA signatures and the entry has one, else RSA, else whatever it has.
/// - a name the map lacks: the miss policy decides (refuse when none is set). `suspend`
///   records the name (pending_name) and returns SSL_CLIENT_HELLO_RETRY; the caller loads a
///   certificate into the map and calls SSL_do_handshake again, which looks up again.
/// - no SNI: the default name when one is set, else the SSL_CTX's own certificate, if any.
///
/// Configuration (set_miss_policy, set_alpn_protocols, set_default_name) happens before
/// install(); challenges may be set and cleared from any thread at any time. The resolver
/// and its map must outlive every SSL_CTX it is installed in.
class resolver {
 public:
  struct counters {
    std::uint64_t hits = 0;        ///< handshakes served from the map
    std::uint64_t misses = 0;      ///< lookups that found no entry (refused or suspended)
    std::uint64_t refusals = 0;    ///< handshakes failed by the callback
    std::uint64_t challenges = 0;  ///< handshakes served a tls-alpn-01 certificate
  };

  explicit resolver(sni_map& map);
  ~resolver();
  resolver(const resolver&) = delete;
  resolver& operator=(const resolver&) = delete;

  /// Installs the ClientHello and ALPN selection callbacks into `ctx` (replacing any ALPN
  /// callback it had: list the server's protocols with set_alpn_protocols instead).
  void install(SSL_CTX* ctx);

  /// Decides for names the map lacks; called on the handshake's thread, must not block.
  void set_miss_policy(std::function<miss_action(std::string_view name)> policy);

  /// Told when the map has an entry for a handshake's name but none of its keys can be used
  /// (a deferred certificate that does not parse, or a key that is not its certificate's);
  /// the handshake is refused with an internal_error alert. `entry_name` is the entry's name
  /// ("*.example.com" for a wildcard). Called on the handshake's thread for every such
  /// handshake: it must not block and should act once per name.
  void set_unusable_key_handler(std::function<void(std::string_view entry_name)> handler);

  /// The server's own ALPN protocols in preference order ("h2", "http/1.1"); a client
  /// offering none of them gets no ALPN answer. acme-tls/1 is never taken from this list.
  void set_alpn_protocols(std::vector<std::string> protocols);

  /// The name looked up for clients that send no SNI; fails with errc::invalid_name.
  result<void> set_default_name(std::string_view name);

  /// Makes `key` the tls-alpn-01 certificate of `name` until clear_challenge (replacing any
  /// earlier one). Fails with errc::invalid_name or errc::invalid_argument (no leaf or key).
  result<void> set_challenge(std::string_view name, certified_key key);
  result<void> set_challenge(std::string_view name, std::shared_ptr<const certified_key> key);

  /// Removes the challenge of `name`; returns whether there was one.
  bool clear_challenge(std::string_view name);

  /// Whether `name` has a pending challenge.
  bool challenge_pending(std::string_view name) const;

  counters stats() const noexcept;

  /// The normalised name a suspended handshake waits for; empty when `ssl` is not
  /// suspended by a resolver. Valid until the next handshake step on `ssl` or its free.
  static std::string_view pending_name(const SSL* ssl) noexcept;

  /// Whether the handshake on `ssl` was served a tls-alpn-01 certificate.
  static bool serving_challenge(const SSL* ssl) noexcept;

 private:
  struct counter {
    alignas(64) std::atomic<std::uint64_t> value{0};
  };

  static int client_hello_cb(SSL* ssl, int* alert, void* arg);
  static int alpn_select_cb(SSL* ssl, const unsigned char** out, unsigned char* outlen,
                            const unsigned char* in, unsigned int inlen, void* arg);
  int on_client_hello(SSL* ssl, int* alert);
  int refuse(int* alert, int code) noexcept;
  std::shared_ptr<const certified_key> challenge_for(std::string_view name) const;

  sni_map& map_;
  std::function<miss_action(std::string_view)> miss_policy_;
  std::function<void(std::string_view)> unusable_key_;
  std::vector<std::string> alpn_;
  std::string default_name_;
  mutable std::mutex challenge_mutex_;
  std::map<std::string, std::shared_ptr<const certified_key>, std::less<>> challenges_;
  counter hits_, misses_, refusals_, challenges_served_;
};

}  // namespace letsencrypt::tls
