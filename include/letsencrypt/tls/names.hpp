// Host names as the SNI map stores and looks them up: one canonical spelling per name.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "letsencrypt/result.hpp"

namespace letsencrypt::tls {

/// Longest normalised name (RFC 1035 presentation form without the trailing dot).
inline constexpr std::size_t max_name_length = 253;

/// Writes the canonical form of `in` into `out` and its length into `len`, without
/// allocating: ASCII lower case, one trailing dot removed, every label 1..63 letters, digits
/// or hyphens and not starting or ending with '-', at most 253 bytes in total. Labels with
/// "--" in the third and fourth place must be IDNA A-labels ("xn--"); any non-ASCII byte is
/// rejected (U-labels must be converted to A-labels by the caller). A wildcard is accepted
/// only as a whole leftmost "*" label followed by at least two labels ("*.example.com").
/// Names whose last label is all digits are rejected: they are IP address literals (or
/// would be read as one), and SNI never carries addresses.
/// Returns false, with `out` and `len` unspecified, when the name is not acceptable.
bool normalise_into(std::string_view in, char (&out)[256], std::size_t& len) noexcept;

/// The canonical form of `name` (see normalise_into), or errc::invalid_name.
result<std::string> normalise_name(std::string_view name);

/// True when the normalised `name` is a wildcard ("*.example.com").
inline bool is_wildcard(std::string_view name) noexcept {
  return name.size() > 2 && name[0] == '*' && name[1] == '.';
}

}  // namespace letsencrypt::tls
