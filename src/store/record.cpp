// Binary codec of journal records: little-endian integers, u32-length-prefixed strings.
#include <cmath>
#include <cstring>

#include "letsencrypt/store/record.hpp"

namespace letsencrypt::store {
namespace {

struct writer {
  std::vector<std::byte>& out;
  void bytes(const void* p, std::size_t n) {
    auto* b = static_cast<const std::byte*>(p);
    out.insert(out.end(), b, b + n);
  }
  void u8(std::uint8_t v) { out.push_back(std::byte{v}); }
  void u32(std::uint32_t v) {
    unsigned char b[4] = {static_cast<unsigned char>(v), static_cast<unsigned char>(v >> 8),
                          static_cast<unsigned char>(v >> 16), static_cast<unsigned char>(v >> 24)};
    bytes(b, 4);
  }
  void u64(std::uint64_t v) {
    u32(static_cast<std::uint32_t>(v));
    u32(static_cast<std::uint32_t>(v >> 32));
  }
  void i64(std::int64_t v) { u64(static_cast<std::uint64_t>(v)); }
  void f64(double d) {
    std::uint64_t v;
    std::memcpy(&v, &d, 8);
    u64(v);
  }
  void str(std::string_view s) {
    u32(static_cast<std::uint32_t>(s.size()));
    bytes(s.data(), s.size());
  }
  void strs(const std::vector<std::string>& v) {
    u32(static_cast<std::uint32_t>(v.size()));
    for (auto& s : v) str(s);
  }
};

struct reader {
  const unsigned char* p;
  std::size_t n;
  bool ok = true;
  bool need(std::size_t k) {
    if (!ok || n < k) ok = false;
    return ok;
  }
  std::uint8_t u8() {
    if (!need(1)) return 0;
    --n;
    return *p++;
  }
  std::uint32_t u32() {
    if (!need(4)) return 0;
    std::uint32_t v = std::uint32_t(p[0]) | std::uint32_t(p[1]) << 8 | std::uint32_t(p[2]) << 16 |
                      std::uint32_t(p[3]) << 24;
    p += 4;
    n -= 4;
    return v;
  }
  std::uint64_t u64() {
    std::uint64_t lo = u32();
    std::uint64_t hi = u32();
    return lo | hi << 32;
  }
  std::int64_t i64() { return static_cast<std::int64_t>(u64()); }
  double f64() {
    std::uint64_t v = u64();
    double d;
    std::memcpy(&d, &v, 8);
    return d;
  }
  bool boolean() {
    auto v = u8();
    if (v > 1) ok = false;
    return v == 1;
  }
  std::string str() {
    std::uint32_t len = u32();
    if (!need(len)) return {};
    std::string s(reinterpret_cast<const char*>(p), len);
    p += len;
    n -= len;
    return s;
  }
  std::vector<std::string> strs() {
    std::uint32_t count = u32();
    // Each string takes at least its 4-byte length: bounds the allocation by the input.
    if (!ok || count > n / 4) {
      ok = false;
      return {};
    }
    std::vector<std::string> v;
    v.reserve(count);
    for (std::uint32_t i = 0; i < count && ok; ++i) v.push_back(str());
    return v;
  }
};

void put_payload(writer& w, const account_record& r) {
  w.str(r.key_pem);
  w.str(r.url);
  w.strs(r.contact);
  w.u8(r.tos_agreed ? 1 : 0);
}
void put_payload(writer& w, const hosts_record& r) {
  w.u8(r.hosts ? 1 : 0);
  w.strs(r.hosts ? *r.hosts : std::vector<std::string>{});
}
void put_payload(writer& w, const cert_record& r) {
  w.strs(r.names);
  w.str(r.chain_pem);
  w.str(r.key_pem);
  w.i64(r.not_after.time_since_epoch().count());
  w.i64(r.ari_start.time_since_epoch().count());
  w.i64(r.ari_end.time_since_epoch().count());
  w.str(r.ari_cert_id);
}
void put_payload(writer& w, const remove_record& r) { w.strs(r.names); }
void put_payload(writer& w, const rate_limit_record& r) {
  w.str(r.bucket);
  w.f64(r.tokens);
  w.i64(r.last_refill.time_since_epoch().count());
}
void put_payload(writer& w, const checkpoint_record& r) {
  w.u64(r.generation);
  w.i64(r.written.time_since_epoch().count());
}

std::optional<record> get_payload(record_type t, reader& rd) {
  using std::chrono::seconds;
  using std::chrono::milliseconds;
  switch (t) {
    case record_type::account: {
      account_record r;
      r.key_pem = rd.str();
      r.url = rd.str();
      r.contact = rd.strs();
      r.tos_agreed = rd.boolean();
      return r;
    }
    case record_type::hosts: {
      hosts_record r;
      bool present = rd.boolean();
      auto v = rd.strs();
      if (present) r.hosts = std::move(v);
      else if (!v.empty()) rd.ok = false;
      return r;
    }
    case record_type::cert: {
      cert_record r;
      r.names = rd.strs();
      r.chain_pem = rd.str();
      r.key_pem = rd.str();
      r.not_after = unix_seconds(seconds(rd.i64()));
      r.ari_start = unix_seconds(seconds(rd.i64()));
      r.ari_end = unix_seconds(seconds(rd.i64()));
      r.ari_cert_id = rd.str();
      return r;
    }
    case record_type::remove:
      return remove_record{rd.strs()};
    case record_type::rate_limit: {
      rate_limit_record r;
      r.bucket = rd.str();
      r.tokens = rd.f64();
      if (!std::isfinite(r.tokens)) rd.ok = false;
      r.last_refill = unix_millis(milliseconds(rd.i64()));
      return r;
    }
    case record_type::checkpoint: {
      checkpoint_record r;
      r.generation = rd.u64();
      r.written = unix_seconds(seconds(rd.i64()));
      return r;
    }
  }
  return std::nullopt;
}

std::uint32_t load_u32(const std::byte* p) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = v << 8 | std::to_integer<std::uint32_t>(p[i]);
  return v;
}

std::uint32_t frame_crc(const std::byte* len4, std::byte type, const std::byte* payload,
                        std::size_t n) {
  std::uint32_t c = crc32c(std::span(len4, 4));
  c = crc32c(std::span(&type, 1), c);
  return crc32c(std::span(payload, n), c);
}

}  // namespace

record_type type_of(const record& r) noexcept {
  return static_cast<record_type>(r.index() + 1);
}

std::string_view type_name(record_type t) noexcept {
  switch (t) {
    case record_type::account: return "account";
    case record_type::hosts: return "hosts";
    case record_type::cert: return "cert";
    case record_type::remove: return "remove";
    case record_type::rate_limit: return "rate_limit";
    case record_type::checkpoint: return "checkpoint";
  }
  return "unknown";
}

result<void> encode(const record& r, std::vector<std::byte>& out) {
  const std::size_t start = out.size();
  out.resize(start + record_header_size);
  writer w{out};
  std::visit([&](const auto& x) { put_payload(w, x); }, r);
  const std::size_t payload = out.size() - start - record_header_size;
  if (payload > max_payload_size) {
    out.resize(start);
    return errc::message_too_large;
  }
  std::byte* h = out.data() + start;
  auto len = static_cast<std::uint32_t>(payload);
  for (int i = 0; i < 4; ++i) h[i] = std::byte(static_cast<unsigned char>(len >> (8 * i)));
  h[8] = std::byte(static_cast<unsigned char>(type_of(r)));
  std::uint32_t crc = frame_crc(h, h[8], h + record_header_size, payload);
  for (int i = 0; i < 4; ++i) h[4 + i] = std::byte(static_cast<unsigned char>(crc >> (8 * i)));
  return {};
}

decoded decode(std::span<const std::byte> data) {
  decoded d;
  if (data.size() < record_header_size) {
    d.status = decode_status::incomplete;
    return d;
  }
  const std::uint32_t len = load_u32(data.data());
  const std::uint32_t crc = load_u32(data.data() + 4);
  const auto type = std::to_integer<std::uint8_t>(data[8]);
  if (len > max_payload_size) return d;  // bad
  if (data.size() - record_header_size < len) {
    d.status = decode_status::incomplete;
    return d;
  }
  const std::byte* payload = data.data() + record_header_size;
  if (frame_crc(data.data(), data[8], payload, len) != crc) return d;
  if (type < 1 || type > 6) {
    d.status = decode_status::unsupported;
    d.size = record_header_size + len;
    return d;
  }
  reader rd{reinterpret_cast<const unsigned char*>(payload), len};
  auto rec = get_payload(static_cast<record_type>(type), rd);
  if (!rec || !rd.ok || rd.n != 0) return d;
  d.status = decode_status::ok;
  d.rec = std::move(*rec);
  d.size = record_header_size + len;
  return d;
}

}  // namespace letsencrypt::store
