#include "http/message.hpp"

namespace letsencrypt::http {

namespace {
char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c; }
}  // namespace

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

std::string_view find_header(const std::vector<header>& hs, std::string_view name) noexcept {
  for (const auto& h : hs)
    if (iequals(h.name, name)) return h.value;
  return {};
}

std::vector<std::string_view> find_headers(const std::vector<header>& hs, std::string_view name) {
  std::vector<std::string_view> out;
  for (const auto& h : hs)
    if (iequals(h.name, name)) out.emplace_back(h.value);
  return out;
}

bool is_token(std::string_view s) noexcept {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) continue;
    switch (c) {
      case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+': case '-':
      case '.': case '^': case '_': case '`': case '|': case '~':
        continue;
      default:
        return false;
    }
  }
  return true;
}

bool is_field_value(std::string_view s) noexcept {
  for (unsigned char c : s)
    if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
  return true;
}

}  // namespace letsencrypt::http
