// libFuzzer target for acme::order_machine (build with -Dfuzzers=true and clang): the input
// is a sequence of CA replies separated by NUL bytes, each parsed by the parser the step
// uses and fed to the machine. Traps when the machine runs on without end, cleans up a
// challenge present() was not called for (a failed present() counts as called), or ends
// with such a challenge not cleaned up.
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include "acme/order_machine.hpp"
#include "letsencrypt/acme/types.hpp"

namespace acme = letsencrypt::acme;

namespace {

struct replies {
  std::string_view rest;
  std::string_view next() {
    const auto nul = rest.find('\0');
    std::string_view doc = rest.substr(0, nul);
    rest = nul == std::string_view::npos ? std::string_view() : rest.substr(nul + 1);
    return doc;
  }
  // A reply that did not parse reaches the machine as the parser's error, as in the client.
  template <class T>
  static acme::acme_result<T> as_reply(letsencrypt::result<T> r) {
    if (!r) return letsencrypt::unexpected(acme::error(r.error()));
    return std::move(r).value();
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  replies in{std::string_view(reinterpret_cast<const char*>(data), size)};
  acme::order_machine m({"a.test", "*.b.test"}, {"tls-alpn-01", "http-01", "dns-01"}, "thumbprint", 2);
  std::multiset<std::string> live;
  using k = acme::order_step::kind;
  for (int i = 0; i < 400; ++i) {
    const acme::order_step s = m.next();
    auto url = [&](acme::acme_result<acme::order> o) {
      if (o) o->url = "https://ca.test/order";
      return o;
    };
    switch (s.what) {
      case k::new_order: m.on_new_order(url(replies::as_reply(acme::parse_order(in.next())))); break;
      case k::fetch_authorization: m.on_authorization(replies::as_reply(acme::parse_authorization(in.next()))); break;
      case k::present: {
        const bool ok = !in.next().empty();
        // A present() that failed may have done part of its work: it is cleaned up too.
        live.insert(s.challenge->url);
        m.on_presented(ok ? acme::acme_result<void>{} : acme::acme_result<void>(letsencrypt::unexpected(acme::error(letsencrypt::errc::not_allowed))));
        break;
      }
      case k::respond: m.on_responded(replies::as_reply(acme::parse_challenge(in.next()))); break;
      case k::wait_authorization:
        m.on_authorization_settled(replies::as_reply(acme::parse_authorization(in.next())));
        break;
      case k::cleanup: {
        auto it = live.find(s.challenge->url);
        if (it == live.end()) __builtin_trap();
        live.erase(it);
        m.on_cleaned_up();
        break;
      }
      case k::wait_ready:
      case k::finalize:
      case k::wait_valid: m.on_order(url(replies::as_reply(acme::parse_order(in.next())))); break;
      case k::make_csr: {
        auto csr = acme::make_csr(m.csr_names());
        if (!csr) __builtin_trap();
        m.on_csr(std::move(csr).value());
        break;
      }
      case k::download: m.on_download(acme::certificate_chain{std::string(in.next()), "u"}, {"https://ca.test/alt"}); break;
      case k::download_alternate: m.on_alternate(acme::certificate_chain{std::string(in.next()), "u"}); break;
      case k::done:
      case k::failed:
        if (!live.empty()) __builtin_trap();
        return 0;
    }
  }
  __builtin_trap();  // the machine must end: every step consumes a reply or moves on
}
