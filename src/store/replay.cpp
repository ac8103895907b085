// Replay of a journal image: apply every intact record, tell a torn tail from corruption.
#include <cstring>

#include <fmt/format.h>

#include "letsencrypt/store/replay.hpp"

namespace letsencrypt::store {

replay_result replay(std::span<const std::byte> image) {
  replay_result rr;
  const std::size_t size = image.size();
  if (size == 0) return rr;
  const std::size_t m = std::min(size, journal_magic.size());
  if (std::memcmp(image.data(), journal_magic.data(), m) != 0) {
    rr.error = make_error_code(errc::corrupt);
    rr.message = "not a journal file (bad magic at offset 0)";
    return rr;
  }
  if (size < journal_magic.size()) {
    rr.torn_bytes = size;  // crashed while writing the header of a new file
    return rr;
  }
  std::size_t off = journal_magic.size();
  rr.good_end = off;
  while (off < size) {
    decoded d = decode(image.subspan(off));
    if (d.status == decode_status::ok) {
      if (auto a = rr.state.apply(d.rec); !a) {
        rr.error = a.error();
        rr.error_offset = off;
        rr.message = fmt::format("{} record at offset {} applies to nothing ({})",
                                 type_name(type_of(d.rec)), off, a.error().message());
        return rr;
      }
      if (auto* cp = std::get_if<checkpoint_record>(&d.rec)) {
        ++rr.checkpoints;
        rr.generation = cp->generation;
      }
      ++rr.records;
      off += d.size;
      rr.good_end = off;
      continue;
    }
    if (d.status == decode_status::unsupported) {
      rr.error = make_error_code(errc::unsupported);
      rr.error_offset = off;
      rr.message = fmt::format("record of unknown type {} at offset {} (written by a newer version?)",
                               std::to_integer<int>(image[off + 8]), off);
      return rr;
    }
    // Damage at `off`. Only a crash mid-append leaves damage at the very end; an intact
    // record anywhere after it means the file was damaged in place, which we refuse to hide.
    for (std::size_t p = off + 1; p + record_header_size <= size; ++p) {
      if (auto st = decode(image.subspan(p)).status;
          st == decode_status::ok || st == decode_status::unsupported) {
        rr.error = make_error_code(errc::corrupt);
        rr.error_offset = off;
        rr.message = fmt::format(
            "damaged record at offset {} ({}) followed by an intact record at offset {}", off,
            d.status == decode_status::incomplete ? "truncated" : "bad CRC or framing", p);
        return rr;
      }
    }
    rr.torn_bytes = size - off;
    break;
  }
  rr.live_records = rr.state.live_records();
  return rr;
}

}  // namespace letsencrypt::store
