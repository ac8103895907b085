// libFuzzer target: journal replay and JSON unmarshal on arbitrary bytes must fail cleanly.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <vector>

#include "letsencrypt/store/replay.hpp"
#include "letsencrypt/store/state.hpp"

using namespace letsencrypt::store;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // As is, and behind a valid magic so the record decoder is reached.
  auto bytes = std::as_bytes(std::span(data, size));
  (void)replay(bytes);
  std::vector<std::byte> img(journal_magic.size() + size);
  std::memcpy(img.data(), journal_magic.data(), journal_magic.size());
  if (size) std::memcpy(img.data() + journal_magic.size(), data, size);
  auto rr = replay(img);
  if (!rr.error) {
    // Whatever replays can be marshalled and parsed again (strings that are not UTF-8 come
    // back altered, so only the absence of crashes is checked).
    (void)unmarshal(marshal(rr.state));
  }
  (void)unmarshal(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
