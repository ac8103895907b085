// Challenge solvers that connect the ACME client to what answers the CA: the resolver's
// tls-alpn-01 slot, the http-01 token store, and a user's DNS hook.
#pragma once

#include <functional>
#include <string_view>

#include "http/handlers.hpp"
#include "letsencrypt/acme/client.hpp"
#include "letsencrypt/tls/resolver.hpp"

namespace letsencrypt::manager_detail {

/// tls-alpn-01: a fresh RFC 8737 certificate in the resolver's challenge slot for the name.
class tls_alpn01_solver final : public acme::challenge_solver {
 public:
  explicit tls_alpn01_solver(tls::resolver& r) : r_(r) {}
  io::task<result<void>> present(const acme::challenge_info& c) override;
  io::task<result<void>> cleanup(const acme::challenge_info& c) override;

 private:
  tls::resolver& r_;
};

/// http-01: the key authorization published under /.well-known/acme-challenge/<token>.
class http01_solver final : public acme::challenge_solver {
 public:
  explicit http01_solver(http::acme_http01_tokens& t) : t_(t) {}
  io::task<result<void>> present(const acme::challenge_info& c) override;
  io::task<result<void>> cleanup(const acme::challenge_info& c) override;

 private:
  http::acme_http01_tokens& t_;
};

/// Sets (present = true) or removes the TXT record `name` = `value`; may block.
using dns_hook = std::function<bool(std::string_view name, std::string_view value, bool present)>;

/// dns-01 through a hook, run on the io worker thread so a slow DNS API never blocks a ring.
class dns01_solver final : public acme::challenge_solver {
 public:
  explicit dns01_solver(dns_hook h) : hook_(std::move(h)) {}
  io::task<result<void>> present(const acme::challenge_info& c) override { return call(c, true); }
  io::task<result<void>> cleanup(const acme::challenge_info& c) override { return call(c, false); }

 private:
  io::task<result<void>> call(const acme::challenge_info& c, bool present);
  dns_hook hook_;
};

}  // namespace letsencrypt::manager_detail
