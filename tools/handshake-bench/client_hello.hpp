// A captured TLS ClientHello that can be re-emitted with another SNI name and fresh random,
// session id and X25519 key share, so a flood client replays hellos without doing crypto.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "letsencrypt/result.hpp"

namespace letsencrypt::bench {

/// A parsed ClientHello record. parse() keeps the bytes between the handshake header and the
/// extensions and every extension body; build() writes a complete record again.
class client_hello_template {
 public:
  /// Parses one TLS record holding one whole ClientHello (as an OpenSSL client writes its
  /// first flight). Fails with errc::protocol_error when the bytes are not that, or when the
  /// hello carries a pre_shared_key extension (a resumption hello cannot be replayed).
  static result<client_hello_template> parse(std::span<const std::byte> record);

  /// Appends a ClientHello record to `out` with the server_name set to `name` (omitted when
  /// empty) and the random, a 32-byte legacy session id and every X25519 key share filled
  /// from `rng` (any 64-bit generator). The key share is not a real public key of ours: the
  /// server's key exchange still runs in full, which is all the flood needs.
  template <class Rng>
  void build(std::string_view name, Rng& rng, std::vector<std::byte>& out) const {
    std::size_t start = out.size();
    build_fixed(name, out);
    auto fill = [&](std::size_t off, std::size_t len) {
      for (std::size_t i = 0; i < len; i += 8) {
        std::uint64_t r = rng();
        for (std::size_t j = 0; j < 8 && i + j < len; ++j)
          out[start + off + i + j] = static_cast<std::byte>(r >> (8 * j));
      }
    };
    fill(random_offset, 32);
    if (session_id_len_ == 32) fill(random_offset + 33, 32);
    for (std::size_t off : last_share_offsets_) fill(off, 32);
  }

  /// Whether the hello offers an X25519 key share (the flood's premise).
  bool has_x25519_share() const noexcept { return has_x25519_; }
  std::size_t extension_count() const noexcept { return extensions_.size(); }

 private:
  static constexpr std::size_t random_offset = 5 + 4 + 2;  // record, handshake header, version

  struct extension {
    std::uint16_t type;
    std::vector<std::byte> body;
    std::vector<std::size_t> x25519_key_offsets;  // offsets of 32-byte keys inside body
  };

  // Writes the record without randomising it; remembers where the key shares landed.
  void build_fixed(std::string_view name, std::vector<std::byte>& out) const;

  std::vector<std::byte> fixed_;  // legacy_version .. compression methods
  std::vector<extension> extensions_;
  std::size_t session_id_len_ = 0;
  bool has_x25519_ = false;
  mutable std::vector<std::size_t> last_share_offsets_;  // relative to the record start
};

}  // namespace letsencrypt::bench
