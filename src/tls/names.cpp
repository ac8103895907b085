#include "letsencrypt/tls/names.hpp"

namespace letsencrypt::tls {

namespace {

constexpr bool is_ldh(unsigned char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

}  // namespace

bool normalise_into(std::string_view in, char (&out)[256], std::size_t& len) noexcept {
  if (!in.empty() && in.back() == '.') in.remove_suffix(1);
  if (in.empty() || in.size() > max_name_length) return false;

  std::size_t labels = 0;
  std::size_t label_start = 0;
  bool wildcard = false;
  bool last_label_digits = true;
  for (std::size_t i = 0; i <= in.size(); ++i) {
    if (i == in.size() || in[i] == '.') {
      const std::size_t n = i - label_start;
      if (n == 0 || n > 63) return false;
      const char* label = out + label_start;
      if (n == 1 && label[0] == '*') {
        if (labels != 0) return false;  // '*' only as the leftmost label
        wildcard = true;
      } else {
        if (label[0] == '*' || label[0] == '-' || label[n - 1] == '-') return false;
        // RFC 5891 reserves "??--" labels; of those only IDNA A-labels are names.
        if (n >= 4 && label[2] == '-' && label[3] == '-' && !(label[0] == 'x' && label[1] == 'n'))
          return false;
        last_label_digits = true;
        for (std::size_t k = 0; k < n; ++k) {
          if (label[k] < '0' || label[k] > '9') {
            last_label_digits = false;
            break;
          }
        }
      }
      ++labels;
      label_start = i + 1;
      if (i < in.size()) out[i] = '.';
      continue;
    }
    unsigned char c = static_cast<unsigned char>(in[i]);
    if (c >= 'A' && c <= 'Z') c = static_cast<unsigned char>(c - 'A' + 'a');
    if (!is_ldh(c) && !(c == '*' && i == 0)) return false;
    out[i] = static_cast<char>(c);
  }
  if (last_label_digits) return false;  // "1.2.3.4", "127.1", "10": address literals
  if (wildcard && labels < 3) return false;  // "*" and "*.com" match too much
  len = in.size();
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
