// libFuzzer target for the HTTP parsers: the first byte picks the parser and a split point,
// the rest is the input. Build with clang -fsanitize=fuzzer (the `fuzzers` meson option).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "http/parser.hpp"

using namespace letsencrypt::http;

namespace {

template <class Parser>
void drive(std::string_view in, std::size_t split) {
  limits l;
  l.max_header_bytes = 1024;
  l.max_body_bytes = 4096;
  Parser p(l);
  std::string_view pieces[2] = {in.substr(0, split), in.substr(split)};
  for (std::string_view piece : pieces) {
    while (!piece.empty()) {
      auto used = p.feed(piece);
      if (!used) return;
      if (*used > piece.size()) __builtin_trap();
      if (*used == 0 && !p.done()) __builtin_trap();  // no progress would be a hang
      piece.remove_prefix(*used);
      if (p.done()) (void)p.take();
    }
  }
  (void)p.finish();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::size_t split = in.empty() ? 0 : (data[0] >> 1) % (in.size() + 1);
  if (data[0] & 1)
    drive<response_parser>(in, split);
  else
    drive<request_parser>(in, split);
  return 0;
}
