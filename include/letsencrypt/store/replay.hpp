// Replay of a journal image held in memory: rebuilds the state and classifies damage.
// Free of I/O, so it is tested and fuzzed on byte buffers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <system_error>

#include "letsencrypt/store/state.hpp"

namespace letsencrypt::store {

/// The first bytes of every journal file.
inline constexpr std::string_view journal_magic{"LEJRNL\x00\x01", 8};

struct replay_result {
  store::state state;
  std::uint64_t records = 0;      ///< intact records applied
  std::uint64_t live_records = 0; ///< records a snapshot of `state` would need
  std::uint64_t checkpoints = 0;
  std::uint64_t generation = 0;   ///< from the last checkpoint
  std::uint64_t good_end = 0;     ///< offset just past the last intact record
  std::uint64_t torn_bytes = 0;   ///< bytes after good_end that form a torn tail
  /// Set when the image cannot be used as it is: errc::corrupt for damage followed by
  /// intact records (or a bad magic), errc::unsupported for an intact record of a type this
  /// version does not know (a newer version wrote it), errc::invalid_argument for a record
  /// that applies to nothing. `error_offset` and `message` say where.
  std::error_code error;
  std::uint64_t error_offset = 0;
  std::string message;
};

/// Replays a whole journal image. An empty image is an empty state. Damage after which no
/// intact record follows is a torn tail (a crash mid-write): replay stops at good_end and
/// reports torn_bytes. Damage followed by an intact record is corruption and sets `error`;
/// so does an intact record of an unknown type, wherever it is, which is never cut off.
/// A prefix of the magic alone counts as a torn tail of an empty journal.
replay_result replay(std::span<const std::byte> image);

}  // namespace letsencrypt::store
