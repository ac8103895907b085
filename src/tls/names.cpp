#include "letsencrypt/tls/names.hpp"

#include <array>

namespace letsencrypt::tls {

namespace {

// What each byte becomes in a normalised name: its lower-case form when labels may hold it
// (letters, digits, '-'), '.' for the separator, 0 for anything else. '*' is not here: it is
// only valid as a whole leftmost label, which is checked before the loop.
constexpr std::array<char, 256> name_bytes = [] {
  std::array<char, 256> t{};
  for (int c = 'a'; c <= 'z'; ++c) t[static_cast<std::size_t>(c)] = static_cast<char>(c);
  for (int c = 'A'; c <= 'Z'; ++c) t[static_cast<std::size_t>(c)] = static_cast<char>(c - 'A' + 'a');
  for (int c = '0'; c <= '9'; ++c) t[static_cast<std::size_t>(c)] = static_cast<char>(c);
  t['-'] = '-';
  t['.'] = '.';
  return t;
}();

// The rules one (already lower-cased) label must meet besides its characters.
bool label_ok(const char* label, std::size_t n) noexcept {
  if (n == 0 || n > 63) return false;
  if (label[0] == '-' || label[n - 1] == '-') return false;
  // RFC 5891 reserves "??--" labels; of those only IDNA A-labels are names.
  if (n >= 4 && label[2] == '-' && label[3] == '-' && !(label[0] == 'x' && label[1] == 'n')) return false;
  return true;
}

}  // namespace

bool normalise_into(std::string_view in, char (&out)[256], std::size_t& len) noexcept {
  if (!in.empty() && in.back() == '.') in.remove_suffix(1);
  if (in.empty() || in.size() > max_name_length) return false;
  const std::size_t n = in.size();

  // One pass through a byte table: every handshake's SNI goes through here.
  std::size_t i = 0;
  std::size_t labels = 0;
  const bool wildcard = in[0] == '*';
  if (wildcard) {
    if (n < 2 || in[1] != '.') return false;  // '*' only as a whole label
    out[0] = '*';
    out[1] = '.';
    i = 2;
    labels = 1;
  }
  std::size_t label_start = i;
  bool digits = true;  // the current label is all digits so far
  for (; i < n; ++i) {
    const char c = name_bytes[static_cast<unsigned char>(in[i])];
    out[i] = c;
    if (c == '.') {
      if (!label_ok(out + label_start, i - label_start)) return false;
      ++labels;
      label_start = i + 1;
      digits = true;
      continue;
    }
    if (c == 0) return false;
    digits = digits && c >= '0' && c <= '9';
  }
  if (!label_ok(out + label_start, n - label_start)) return false;
  ++labels;
  if (digits) return false;  // "1.2.3.4", "127.1", "10": address literals
  if (wildcard && labels < 3) return false;  // "*" and "*.com" match too much
  len = n;
  out[len] = '\0';
  return true;
}

result<std::string> normalise_name(std::string_view name) {
  char buf[256];
  std::size_t len = 0;
  if (!normalise_into(name, buf, len)) return errc::invalid_name;
  return std::string(buf, len);
}

}  // namespace letsencrypt::tls
