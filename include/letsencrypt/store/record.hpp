// Journal records and their binary codec. Everything here is free of I/O.
//
// A record on disk is framed as
//   u32 payload length (LE) | u32 CRC32C (LE) | u8 type | payload
// where the CRC covers the length bytes, the type byte and the payload, so a damaged length
// or type is detected as well as a damaged payload.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "letsencrypt/result.hpp"

namespace letsencrypt::store {

/// CRC32C (Castagnoli, reflected, as in iSCSI/ext4). Continues from `crc` (0 to start).
/// Uses the SSE4.2 crc32 instruction when the CPU has it, else a table.
std::uint32_t crc32c(std::span<const std::byte> data, std::uint32_t crc = 0) noexcept;
std::uint32_t crc32c(std::string_view data, std::uint32_t crc = 0) noexcept;
/// The portable table implementation (tests compare it with the hardware path).
std::uint32_t crc32c_portable(std::span<const std::byte> data, std::uint32_t crc = 0) noexcept;

using unix_seconds = std::chrono::sys_seconds;
using unix_millis = std::chrono::sys_time<std::chrono::milliseconds>;

/// The ACME account: its private key (PEM), its URL at the CA, contacts and ToS agreement.
struct account_record {
  std::string key_pem;
  std::string url;
  std::vector<std::string> contact;
  bool tos_agreed = false;
  friend bool operator==(const account_record&, const account_record&) = default;
};

/// The host allowlist. nullopt means no allowlist (any host may be asked for, as with Go's
/// nil Hosts); an empty vector allows no host.
struct hosts_record {
  std::optional<std::vector<std::string>> hosts;
  friend bool operator==(const hosts_record&, const hosts_record&) = default;
};

/// One issued certificate. It replaces any earlier certificate for each of its names.
struct cert_record {
  std::vector<std::string> names;  ///< at least one
  std::string chain_pem;           ///< leaf first
  std::string key_pem;
  unix_seconds not_after{};
  unix_seconds ari_start{};        ///< ARI suggested window; both zero when the CA gave none
  unix_seconds ari_end{};
  std::string ari_cert_id;         ///< base64url(AKI) "." base64url(serial), RFC 9773
  friend bool operator==(const cert_record&, const cert_record&) = default;
};

/// Drops the certificates of the given names.
struct remove_record {
  std::vector<std::string> names;
  friend bool operator==(const remove_record&, const remove_record&) = default;
};

/// A token bucket's state.
struct rate_limit_record {
  std::string bucket;
  double tokens = 0;
  unix_millis last_refill{};
  friend bool operator==(const rate_limit_record&, const rate_limit_record&) = default;
};

/// Marks the end of a snapshot written by compaction; it does not change the state.
struct checkpoint_record {
  std::uint64_t generation = 0;  ///< how many compactions the journal has been through
  unix_seconds written{};
  friend bool operator==(const checkpoint_record&, const checkpoint_record&) = default;
};

using record = std::variant<account_record, hosts_record, cert_record, remove_record,
                            rate_limit_record, checkpoint_record>;

/// The on-disk type byte of each alternative (never reuse a value).
enum class record_type : std::uint8_t {
  account = 1,
  hosts = 2,
  cert = 3,
  remove = 4,
  rate_limit = 5,
  checkpoint = 6,
};

record_type type_of(const record& r) noexcept;
std::string_view type_name(record_type t) noexcept;

inline constexpr std::size_t record_header_size = 9;
/// Payloads larger than this are refused by encode and treated as damage by decode.
inline constexpr std::uint32_t max_payload_size = 64u << 20;

/// Appends the framed record to `out`. Fails with errc::message_too_large when the payload
/// would exceed max_payload_size, leaving `out` unchanged.
result<void> encode(const record& r, std::vector<std::byte>& out);

/// What decode found at the start of a buffer.
enum class decode_status {
  ok,           ///< a whole, intact record
  incomplete,   ///< the buffer ends inside the record (possibly a torn tail)
  bad,          ///< damaged: CRC mismatch, oversize, or malformed payload
  unsupported,  ///< intact (its CRC matches) but of a type this version does not know
};

struct decoded {
  decode_status status = decode_status::bad;
  record rec;
  std::size_t size = 0;  ///< bytes consumed when ok
};

/// Decodes the record at the start of `data`. Never reads past `data`.
decoded decode(std::span<const std::byte> data);

}  // namespace letsencrypt::store
