#include "manager/solvers.hpp"

#include "letsencrypt/io/event.hpp"
#include "letsencrypt/io/net.hpp"
#include "letsencrypt/tls/challenge_cert.hpp"

namespace letsencrypt::manager_detail {

io::task<result<void>> tls_alpn01_solver::present(const acme::challenge_info& c) {
  LE_CO_TRY(cert, tls::make_tls_alpn01_certificate(c.identifier.value, c.key_authorization));
  co_return r_.set_challenge(c.identifier.value, std::move(cert));
}

io::task<result<void>> tls_alpn01_solver::cleanup(const acme::challenge_info& c) {
  r_.clear_challenge(c.identifier.value);
  co_return ok();
}

io::task<result<void>> http01_solver::present(const acme::challenge_info& c) {
  co_return t_.set(c.token, c.key_authorization);
}

io::task<result<void>> http01_solver::cleanup(const acme::challenge_info& c) {
  t_.remove(c.token);
  co_return ok();
}

io::task<result<void>> dns01_solver::call(const acme::challenge_info& c, bool present) {
  if (!hook_) co_return errc::unsupported;
  struct state {
    const dns_hook* hook;
    std::string name, value;
    bool present;
    bool ok = false;
    io::event done;
  } st{&hook_, c.dns_txt_name, c.dns_txt_value, present};
  io::run_on_worker([s = &st] {
    s->ok = (*s->hook)(s->name, s->value, s->present);
    s->done.set();
  });
  co_await st.done.wait();
  if (!st.ok) co_return errc::not_allowed;
  co_return ok();
}

}  // namespace letsencrypt::manager_detail
