// libFuzzer target: certificate and key bytes as a cache or a directory may hold them, into
// the readers that run before or instead of OpenSSL's full parse. They must fail cleanly.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "letsencrypt/tls/handles.hpp"
#include "letsencrypt/tls/sni_map.hpp"

using namespace letsencrypt;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  (void)tls::certificate_validity(bytes);
  (void)tls::pem_blocks_der(bytes, "CERTIFICATE");
  (void)tls::load_private_key_der(bytes);
  (void)tls::parse_certificate_der(bytes);
  // A certificate then a PKCS#8 key, split where the last two bytes (little-endian) say, so
  // that a seed made of a real pair (leaf || key || le16(leaf size)) reaches the key check.
  if (size >= 2) {
    const std::size_t pair = size - 2;
    const std::size_t split = (data[pair] | std::size_t{data[pair + 1]} << 8) % (pair + 1);
    if (auto d = tls::deferred_key::make(bytes.substr(0, split), bytes.substr(split, pair - split)))
      (void)(*d)->get();
  }
  return 0;
}
