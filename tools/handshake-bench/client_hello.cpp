#include "client_hello.hpp"

namespace letsencrypt::bench {

namespace {

constexpr std::uint16_t ext_server_name = 0;
constexpr std::uint16_t ext_pre_shared_key = 41;
constexpr std::uint16_t ext_key_share = 51;
constexpr std::uint16_t group_x25519 = 0x001d;

// Bounds-checked big-endian reader over a byte span.
struct reader {
  std::span<const std::byte> s;
  std::size_t pos = 0;
  bool ok = true;

  std::size_t left() const noexcept { return s.size() - pos; }
  std::uint32_t num(std::size_t n) noexcept {
    if (left() < n) {
      ok = false;
      return 0;
    }
    std::uint32_t v = 0;
    for (std::size_t i = 0; i < n; ++i) v = (v << 8) | std::to_integer<std::uint32_t>(s[pos + i]);
    pos += n;
    return v;
  }
  std::span<const std::byte> take(std::size_t n) noexcept {
    if (left() < n) {
      ok = false;
      return {};
    }
    auto r = s.subspan(pos, n);
    pos += n;
    return r;
  }
};

void put(std::vector<std::byte>& out, std::uint32_t v, std::size_t n) {
  for (std::size_t i = n; i > 0; --i) out.push_back(static_cast<std::byte>(v >> (8 * (i - 1))));
}

}  // namespace

result<client_hello_template> client_hello_template::parse(std::span<const std::byte> record) {
  reader r{record};
  if (r.num(1) != 22) return errc::protocol_error;  // handshake record
  r.num(2);
  std::size_t rec_len = r.num(2);
  if (!r.ok || r.left() != rec_len) return errc::protocol_error;
  if (r.num(1) != 1) return errc::protocol_error;  // client_hello
  std::size_t hs_len = r.num(3);
  if (!r.ok || r.left() != hs_len) return errc::protocol_error;

  client_hello_template t;
  std::size_t fixed_start = r.pos;
  r.num(2);     // legacy_version
  r.take(32);   // random
  t.session_id_len_ = r.num(1);
  r.take(t.session_id_len_);
  r.take(r.num(2));  // cipher suites
  r.take(r.num(1));  // compression methods
  if (!r.ok) return errc::protocol_error;
  t.fixed_.assign(record.begin() + static_cast<std::ptrdiff_t>(fixed_start),
                  record.begin() + static_cast<std::ptrdiff_t>(r.pos));

  std::size_t ext_len = r.num(2);
  if (!r.ok || r.left() != ext_len) return errc::protocol_error;
  while (r.left() > 0) {
    extension e;
    e.type = static_cast<std::uint16_t>(r.num(2));
    auto body = r.take(r.num(2));
    if (!r.ok) return errc::protocol_error;
    if (e.type == ext_pre_shared_key) return errc::protocol_error;
    e.body.assign(body.begin(), body.end());
    if (e.type == ext_key_share) {
      reader k{body};
      std::size_t list = k.num(2);
      if (!k.ok || k.left() != list) return errc::protocol_error;
      while (k.left() > 0) {
        std::uint32_t group = k.num(2);
        std::size_t len = k.num(2);
        std::size_t at = k.pos;
        k.take(len);
        if (!k.ok) return errc::protocol_error;
        if (group == group_x25519 && len == 32) {
          e.x25519_key_offsets.push_back(at);
          t.has_x25519_ = true;
        }
      }
    }
    t.extensions_.push_back(std::move(e));
  }
  return t;
}

void client_hello_template::build_fixed(std::string_view name, std::vector<std::byte>& out) const {
  std::size_t ext_total = 0;
  for (const auto& e : extensions_) {
    if (e.type == ext_server_name) {
      if (!name.empty()) ext_total += 4 + 5 + name.size();
    } else {
      ext_total += 4 + e.body.size();
    }
  }
  std::size_t hs_len = fixed_.size() + 2 + ext_total;
  std::size_t start = out.size();
  out.reserve(start + 9 + hs_len);
  put(out, 22, 1);
  put(out, 0x0301, 2);  // legacy record version of a first ClientHello
  put(out, static_cast<std::uint32_t>(4 + hs_len), 2);
  put(out, 1, 1);
  put(out, static_cast<std::uint32_t>(hs_len), 3);
  out.insert(out.end(), fixed_.begin(), fixed_.end());
  put(out, static_cast<std::uint32_t>(ext_total), 2);
  last_share_offsets_.clear();
  for (const auto& e : extensions_) {
    if (e.type == ext_server_name) {
      if (name.empty()) continue;
      put(out, ext_server_name, 2);
      put(out, static_cast<std::uint32_t>(5 + name.size()), 2);
      put(out, static_cast<std::uint32_t>(3 + name.size()), 2);  // server_name_list
      put(out, 0, 1);                                             // host_name
      put(out, static_cast<std::uint32_t>(name.size()), 2);
      for (char c : name) out.push_back(static_cast<std::byte>(c));
      continue;
    }
    put(out, e.type, 2);
    put(out, static_cast<std::uint32_t>(e.body.size()), 2);
    std::size_t body_at = out.size() - start;
    out.insert(out.end(), e.body.begin(), e.body.end());
    for (std::size_t off : e.x25519_key_offsets) last_share_offsets_.push_back(body_at + off);
  }
}

}  // namespace letsencrypt::bench
