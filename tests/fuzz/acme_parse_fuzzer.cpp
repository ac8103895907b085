// libFuzzer target for the ACME response parsers (build with -fsanitize=fuzzer).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "letsencrypt/acme/client.hpp"
#include "letsencrypt/acme/types.hpp"

namespace acme = letsencrypt::acme;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  (void)acme::parse_directory(in);
  (void)acme::parse_account(in);
  (void)acme::parse_order(in);
  (void)acme::parse_authorization(in);
  (void)acme::parse_challenge(in);
  (void)acme::parse_renewal_info(in);
  (void)acme::parse_problem(in);
  (void)acme::parse_retry_after(in.substr(0, 64));
  (void)acme::parse_rfc3339(in.substr(0, 64));
  (void)acme::base64url_decode(in);
  acme::http_response r;
  r.status = 400;
  r.body = std::string(in);
  r.headers.emplace_back("Link", std::string(in));
  (void)acme::error_from_response(r);
  (void)acme::link_targets(r, "alternate");
  return 0;
}
