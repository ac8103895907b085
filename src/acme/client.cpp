#include "letsencrypt/acme/client.hpp"

#include <algorithm>
#include <cctype>

#include "acme/order_machine.hpp"
#include "acme/transport.hpp"
#include "letsencrypt/io/ops.hpp"

namespace letsencrypt::acme {
namespace {

// Attempts at downloading an issued certificate before the order is given up.
constexpr int max_download_tries = 3;

bool iequal(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  return true;
}

bool is_success(int status) { return status >= 200 && status < 300; }

// The media type without parameters, lower case.
std::string media_type(std::string_view v) {
  auto semi = v.find(';');
  if (semi != std::string_view::npos) v = v.substr(0, semi);
  while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  std::string out(v);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

template <class T>
acme_result<T> parsed(result<T> r) {
  if (!r) return unexpected(error(r.error()));
  return std::move(r).value();
}

std::string string_array(const std::vector<std::string>& v) {
  std::string out = "[";
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i) out += ",";
    append_json_string(out, v[i]);
  }
  return out + "]";
}

// The DER of the first certificate in a PEM text.
result<std::string> first_cert_der(std::string_view pem) {
  auto blocks = split_pem_chain(pem);
  if (blocks.empty()) return letsencrypt::errc::invalid_argument;
  std::string_view b = blocks.front();
  auto start = b.find('\n');
  auto end = b.find("-----END");
  if (start == std::string_view::npos || end == std::string_view::npos || end < start) return letsencrypt::errc::invalid_argument;
  std::string b64;
  for (char c : b.substr(start, end - start)) {
    if (c == '+') b64.push_back('-');
    else if (c == '/') b64.push_back('_');
    else if (c == '=' || std::isspace(static_cast<unsigned char>(c))) continue;
    else b64.push_back(c);
  }
  return base64url_decode(b64);
}

}  // namespace

std::string_view http_response::header(std::string_view name) const noexcept {
  for (const auto& h : headers)
    if (iequal(h.first, name)) return h.second;
  return {};
}

std::vector<std::string_view> http_response::headers_named(std::string_view name) const {
  std::vector<std::string_view> out;
  for (const auto& h : headers)
    if (iequal(h.first, name)) out.push_back(h.second);
  return out;
}

error error_from_response(const http_response& r) {
  error e;
  e.http_status = r.status;
  auto p = parse_problem(r.body);
  if (p && (media_type(r.header("Content-Type")) == "application/problem+json" || p->type.starts_with("urn:ietf:params:acme:error:"))) {
    e.code = make_error_code(problem_code(p->type));
    e.problem = std::move(p).value();
  } else {
    e.code = make_error_code(errc::http_status);
  }
  if (auto ra = r.header("Retry-After"); !ra.empty()) e.retry_after = parse_retry_after(ra);
  return e;
}

std::vector<std::string> link_targets(const http_response& r, std::string_view rel) {
  std::vector<std::string> out;
  for (std::string_view v : r.headers_named("Link")) {
    // A header may hold several comma-separated links: <url>; rel="x", <url2>; rel="y"
    while (!v.empty()) {
      auto lt = v.find('<');
      if (lt == std::string_view::npos) break;
      auto gt = v.find('>', lt);
      if (gt == std::string_view::npos) break;
      std::string_view target = v.substr(lt + 1, gt - lt - 1);
      auto next = v.find('<', gt);
      std::string_view params = v.substr(gt + 1, next == std::string_view::npos ? std::string_view::npos : next - gt - 1);
      auto rp = params.find("rel=");
      if (rp != std::string_view::npos) {
        std::string_view val = params.substr(rp + 4);
        if (!val.empty() && val.front() == '"') {
          val.remove_prefix(1);
          val = val.substr(0, val.find('"'));
        } else {
          val = val.substr(0, std::min(val.find(';'), val.find(',')));
        }
        // rel may list several space-separated relation types.
        std::size_t pos = 0;
        while (pos <= val.size()) {
          auto sp = val.find(' ', pos);
          std::string_view one = val.substr(pos, sp == std::string_view::npos ? std::string_view::npos : sp - pos);
          if (iequal(one, rel)) {
            out.emplace_back(target);
            break;
          }
          if (sp == std::string_view::npos) break;
          pos = sp + 1;
        }
      }
      if (next == std::string_view::npos) break;
      v = v.substr(next);
    }
  }
  return out;
}

struct client::transport_state {
  http_fetch fetch;
};

client::client(client_options options, account_key key)
    : options_(std::move(options)), key_(std::move(key)), transport_(std::make_unique<transport_state>()) {
  transport_->fetch = options_.fetch ? options_.fetch : make_default_fetch(options_);
}

client::~client() = default;

io::task<acme_result<http_response>> client::send(http_request r) {
  if (options_.stop.stop_requested()) co_return unexpected(error(letsencrypt::errc::cancelled));
  auto res = co_await transport_->fetch(std::move(r), options_.stop);
  if (!res) co_return unexpected(error(res.error()));
  keep_nonce(*res);
  co_return std::move(res).value();
}

void client::keep_nonce(const http_response& r) {
  auto n = r.header("Replay-Nonce");
  // RFC 8555 §6.5.1: base64url characters only; anything else is not a usable nonce.
  if (n.empty() || n.size() > 256) return;
  for (char c : n)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return;
  constexpr std::size_t pool_cap = 8;
  if (nonces_.size() >= pool_cap) nonces_.erase(nonces_.begin());
  nonces_.emplace_back(n);
}

io::task<acme_result<std::string>> client::take_nonce() {
  if (nonces_.empty()) {
    LE_CO_TRY(dir, co_await get_directory());
    http_request req{"HEAD", dir.new_nonce, {}, {}};
    LE_CO_TRY(resp, co_await send(std::move(req)));
    if (!is_success(resp.status)) co_return unexpected(error_from_response(resp));
    if (nonces_.empty()) co_return unexpected(error(errc::bad_response));
  }
  std::string n = std::move(nonces_.back());
  nonces_.pop_back();
  co_return n;
}

io::task<acme_result<directory>> client::get_directory() {
  if (directory_) co_return *directory_;
  http_request req{"GET", options_.directory_url, {}, {}};
  LE_CO_TRY(resp, co_await send(std::move(req)));
  if (!is_success(resp.status)) co_return unexpected(error_from_response(resp));
  auto d = parse_directory(resp.body);
  if (!d) co_return unexpected(error(d.error()));
  directory_ = std::move(d).value();
  co_return *directory_;
}

io::task<acme_result<client::reply>> client::post(std::string url, std::string payload, const account_key* jwk_signer,
                                                  std::string_view accept) {
  const account_key& signer = jwk_signer ? *jwk_signer : key_;
  std::string_view kid = jwk_signer ? std::string_view() : std::string_view(account_url_);
  error last(errc::too_many_bad_nonces);
  for (int attempt = 0; attempt < std::max(1, options_.bad_nonce_attempts); ++attempt) {
    LE_CO_TRY(nonce, co_await take_nonce());
    auto body = sign_jws(signer, payload, jws_params{.nonce = nonce, .url = url, .kid = kid});
    if (!body) co_return unexpected(error(body.error()));
    http_request req{"POST", url, {{"Content-Type", "application/jose+json"}}, std::move(body).value()};
    if (!accept.empty()) req.headers.emplace_back("Accept", std::string(accept));
    LE_CO_TRY(resp, co_await send(std::move(req)));
    if (is_success(resp.status)) {
      std::string location(resp.header("Location"));
      co_return reply{std::move(resp), std::move(location)};
    }
    error e = error_from_response(resp);
    if (e.code != make_error_code(errc::bad_nonce)) co_return unexpected(std::move(e));
    // The nonce from this very response is fresh; the loop takes it.
    ++bad_nonces_;
    last = std::move(e);
  }
  if (last.code == make_error_code(errc::bad_nonce)) last.code = make_error_code(errc::too_many_bad_nonces);
  co_return unexpected(std::move(last));
}

io::task<acme_result<void>> client::pause(io::duration d) {
  auto r = co_await io::sleep_for(d).cancel_on(options_.stop);
  if (!r) co_return unexpected(error(r.error()));
  co_return acme_result<void>{};
}

io::task<acme_result<account>> client::register_account(const account_options& opts) {
  LE_CO_TRY(dir, co_await get_directory());
  std::string payload = "{";
  bool agreed = false;
  if (!dir.terms_of_service.empty()) {
    if (opts.accept_terms) {
      if (!opts.accept_terms(dir.terms_of_service)) co_return unexpected(error(errc::terms_not_accepted));
      agreed = true;
    }
  } else if (opts.accept_terms) {
    agreed = true;  // nothing to show; the caller is willing to agree
  }
  payload += agreed ? R"("termsOfServiceAgreed":true)" : R"("termsOfServiceAgreed":false)";
  if (!opts.contact.empty()) payload += R"(,"contact":)" + string_array(opts.contact);
  if (!opts.eab_kid.empty()) {
    auto eab = eab_jws(key_, opts.eab_kid, opts.eab_hmac_key, dir.new_account);
    if (!eab) co_return unexpected(error(eab.error()));
    payload += R"(,"externalAccountBinding":)" + *eab;
  } else if (dir.external_account_required) {
    co_return unexpected(error(errc::eab_required));
  }
  payload += "}";
  LE_CO_TRY(rep, co_await post(dir.new_account, payload, &key_));
  co_return adopt_account(rep);
}

acme_result<account> client::adopt_account(const reply& rep) {
  if (rep.location.empty()) return unexpected(error(errc::bad_response));
  auto acct = parsed(parse_account(rep.http.body));
  if (!acct) return acct;
  acct->url = rep.location;
  account_url_ = rep.location;
  return acct;
}

io::task<acme_result<account>> client::find_account() {
  LE_CO_TRY(dir, co_await get_directory());
  LE_CO_TRY(rep, co_await post(dir.new_account, R"({"onlyReturnExisting":true})", &key_));
  co_return adopt_account(rep);
}

io::task<acme_result<account>> client::fetch_account() {
  if (account_url_.empty()) co_return unexpected(error(errc::account_does_not_exist));
  LE_CO_TRY(rep, co_await post(account_url_, ""));
  LE_CO_TRY(acct, parsed(parse_account(rep.http.body)));
  acct.url = account_url_;
  co_return acct;
}

io::task<acme_result<account>> client::update_contact(std::vector<std::string> contact) {
  if (account_url_.empty()) co_return unexpected(error(errc::account_does_not_exist));
  LE_CO_TRY(rep, co_await post(account_url_, R"({"contact":)" + string_array(contact) + "}"));
  LE_CO_TRY(acct, parsed(parse_account(rep.http.body)));
  acct.url = account_url_;
  co_return acct;
}

io::task<acme_result<void>> client::change_key(account_key new_key) {
  if (account_url_.empty()) co_return unexpected(error(errc::account_does_not_exist));
  LE_CO_TRY(dir, co_await get_directory());
  if (dir.key_change.empty()) co_return unexpected(error(letsencrypt::errc::unsupported));
  auto inner = key_change_inner(new_key, key_, account_url_, dir.key_change);
  if (!inner) co_return unexpected(error(inner.error()));
  LE_CO_TRY(rep, co_await post(dir.key_change, std::move(inner).value()));
  (void)rep;
  key_ = std::move(new_key);
  co_return acme_result<void>{};
}

io::task<acme_result<account>> client::deactivate_account() {
  if (account_url_.empty()) co_return unexpected(error(errc::account_does_not_exist));
  LE_CO_TRY(rep, co_await post(account_url_, R"({"status":"deactivated"})"));
  LE_CO_TRY(acct, parsed(parse_account(rep.http.body)));
  acct.url = account_url_;
  co_return acct;
}

io::task<acme_result<order>> client::new_order(const order_request& req) {
  if (req.names.empty()) co_return unexpected(error(letsencrypt::errc::invalid_argument));
  if (account_url_.empty()) co_return unexpected(error(errc::account_does_not_exist));
  LE_CO_TRY(dir, co_await get_directory());
  std::string payload = R"({"identifiers":[)";
  for (std::size_t i = 0; i < req.names.size(); ++i) {
    if (i) payload += ",";
    payload += R"({"type":"dns","value":)";
    append_json_string(payload, req.names[i]);
    payload += "}";
  }
  payload += "]";
  if (!req.profile.empty() && dir.has_profile(req.profile)) {
    payload += R"(,"profile":)";
    append_json_string(payload, req.profile);
  }
  if (!req.replaces.empty() && !dir.renewal_info.empty()) {
    payload += R"(,"replaces":)";
    append_json_string(payload, req.replaces);
  }
  payload += "}";
  LE_CO_TRY(rep, co_await post(dir.new_order, payload));
  if (rep.location.empty()) co_return unexpected(error(errc::bad_response));
  LE_CO_TRY(o, parsed(parse_order(rep.http.body)));
  o.url = rep.location;
  co_return o;
}

io::task<acme_result<order>> client::get_order(std::string url) {
  LE_CO_TRY(rep, co_await post(url, ""));
  LE_CO_TRY(o, parsed(parse_order(rep.http.body)));
  o.url = std::move(url);
  co_return o;
}

io::task<acme_result<authorization>> client::get_authorization(std::string url) {
  LE_CO_TRY(rep, co_await post(url, ""));
  LE_CO_TRY(a, parsed(parse_authorization(rep.http.body)));
  a.url = std::move(url);
  co_return a;
}

io::task<acme_result<challenge>> client::respond_challenge(std::string url) {
  LE_CO_TRY(rep, co_await post(url, "{}"));
  co_return parsed(parse_challenge(rep.http.body));
}

io::task<acme_result<authorization>> client::deactivate_authorization(std::string url) {
  LE_CO_TRY(rep, co_await post(url, R"({"status":"deactivated"})"));
  LE_CO_TRY(a, parsed(parse_authorization(rep.http.body)));
  a.url = std::move(url);
  co_return a;
}

namespace {
// The next polling interval: exponential, lengthened to the CA's Retry-After when it gave a
// longer one (up to poll_max_retry_after). A shorter one is not taken: Retry-After: 0, or a
// date in the past, would otherwise have the client poll back to back until the deadline.
io::duration next_interval(const http_response& r, io::duration& current, const client_options& o) {
  io::duration d = current;
  current = std::min(current * 2, o.poll_max);
  if (auto ra = parse_retry_after(r.header("Retry-After")))
    d = std::max<io::duration>(d, std::min<io::duration>(*ra, o.poll_max_retry_after));
  return d;
}
}  // namespace

io::task<acme_result<order>> client::wait_order(std::string url, io::clock::time_point deadline,
                                                io::duration first_wait) {
  io::duration interval = options_.poll_initial;
  if (first_wait > io::duration::zero()) {
    // RFC 8555 7.4: a client polling a processing order honours the CA's Retry-After.
    const io::duration d = std::min<io::duration>(first_wait, options_.poll_max_retry_after);
    if (io::clock::now() + d > deadline) {
      // The order may still become valid: say when, so a caller can come back to it.
      acme::error e(errc::order_timeout);
      e.retry_after = std::chrono::ceil<std::chrono::seconds>(first_wait);
      co_return unexpected(std::move(e));
    }
    LE_CO_TRY_VOID(co_await pause(d));
  }
  while (true) {
    LE_CO_TRY(rep, co_await post(url, ""));
    LE_CO_TRY(o, parsed(parse_order(rep.http.body)));
    o.url = url;
    if (o.status != status::pending && o.status != status::processing) co_return o;
    io::duration d = next_interval(rep.http, interval, options_);
    if (io::clock::now() + d > deadline) co_return unexpected(error(errc::order_timeout));
    LE_CO_TRY_VOID(co_await pause(d));
  }
}

io::task<acme_result<authorization>> client::wait_authorization(std::string url, io::clock::time_point deadline) {
  io::duration interval = options_.poll_initial;
  while (true) {
    LE_CO_TRY(rep, co_await post(url, ""));
    LE_CO_TRY(a, parsed(parse_authorization(rep.http.body)));
    a.url = url;
    if (a.status != status::pending) co_return a;
    io::duration d = next_interval(rep.http, interval, options_);
    if (io::clock::now() + d > deadline) co_return unexpected(error(errc::order_timeout));
    LE_CO_TRY_VOID(co_await pause(d));
  }
}

io::task<acme_result<order>> client::finalize(const order& o, std::string_view csr_der) {
  std::string payload = R"({"csr":")" + base64url(csr_der) + R"("})";
  LE_CO_TRY(rep, co_await post(o.finalize, payload));
  LE_CO_TRY(r, parsed(parse_order(rep.http.body)));
  r.url = o.url;
  if (auto ra = parse_retry_after(rep.http.header("Retry-After"))) r.retry_after = *ra;
  co_return r;
}

io::task<acme_result<certificate_chain>> client::download_one(std::string url, std::vector<std::string>* alternates) {
  LE_CO_TRY(rep, co_await post(url, "", nullptr, "application/pem-certificate-chain"));
  auto ct = media_type(rep.http.header("Content-Type"));
  if (!ct.empty() && ct != "application/pem-certificate-chain") co_return unexpected(error(errc::bad_response));
  if (split_pem_chain(rep.http.body).empty()) co_return unexpected(error(errc::bad_response));
  if (alternates) *alternates = link_targets(rep.http, "alternate");
  co_return certificate_chain{std::move(rep.http.body), std::move(url)};
}

io::task<acme_result<certificate_chain>> client::download_certificate(std::string url, std::vector<std::string>* alternates) {
  co_return co_await download_one(std::move(url), alternates);
}

io::task<acme_result<issued_certificate>> client::obtain(const order_request& req) {
  auto deadline = io::clock::now() + options_.order_timeout;
  co_return co_await obtain_impl(req, deadline);
}

io::task<acme_result<issued_certificate>> client::obtain_impl(const order_request& req, io::clock::time_point deadline) {
  std::vector<std::string> types;
  for (const auto& type : options_.challenge_preference)
    if (auto s = req.solvers.find(type); s != req.solvers.end() && s->second) types.push_back(type);
  order_machine m(req.names, std::move(types), key_.thumbprint(), options_.max_alternate_chains);
  // Only the machine decides; this loop does what it says and tells it what came back.
  bool past_deadline = false;
  while (true) {
    if (!past_deadline && io::clock::now() >= deadline) {
      // The waits stop at the deadline themselves; this bounds the steps between them.
      past_deadline = true;
      m.abort(error(errc::order_timeout));
    }
    const order_step step = m.next();
    using k = order_step::kind;
    switch (step.what) {
      case k::new_order: {
        // The names as the machine compares them: lower case, no trailing dot, no repeats.
        order_request normalised = req;
        normalised.names = m.names();
        m.on_new_order(co_await new_order(normalised));
        break;
      }
      case k::fetch_authorization:
        m.on_authorization(co_await get_authorization(std::string(step.url)));
        break;
      case k::present: {
        auto presented = co_await req.solvers.find(step.challenge->type)->second->present(*step.challenge);
        acme_result<void> r{};
        if (!presented) r = unexpected(error(presented.error()));
        m.on_presented(std::move(r));
        break;
      }
      case k::respond:
        m.on_responded(co_await respond_challenge(std::string(step.url)));
        break;
      case k::wait_authorization:
        m.on_authorization_settled(co_await wait_authorization(std::string(step.url), deadline));
        break;
      case k::cleanup:
        // Its outcome is the solver's to report; the issuance's outcome does not change.
        (void)co_await req.solvers.find(step.challenge->type)->second->cleanup(*step.challenge);
        m.on_cleaned_up();
        break;
      case k::wait_ready:
        m.on_order(co_await wait_order(std::string(step.url), deadline));
        break;
      case k::wait_valid:
        // The finalize reply's Retry-After says when the certificate may be ready.
        m.on_order(co_await wait_order(std::string(step.url), deadline, m.current_order().retry_after));
        break;
      case k::make_csr: {
        auto r = make_csr(m.csr_names(), req.key_type);
        m.on_csr(r ? acme_result<csr_bundle>(std::move(r).value()) : acme_result<csr_bundle>(unexpected(error(r.error()))));
        break;
      }
      case k::finalize:
        m.on_order(co_await finalize(m.current_order(), m.csr_der()));
        break;
      case k::download: {
        // The certificate is issued: a download that fails for a passing reason (a 5xx, a
        // timeout) is tried again, as the CA's Retry-After says, rather than giving up the
        // certificate and its key and ordering another one.
        std::vector<std::string> alternates;
        auto chain = co_await download_one(std::string(step.url), &alternates);
        for (int tries = 1; !chain && tries < max_download_tries && classify(chain.error()) == action::retry_call;
             ++tries) {
          const io::duration wait = std::min<io::duration>(
              std::max<io::duration>(chain.error().retry_after.value_or(std::chrono::seconds(0)), options_.poll_max),
              options_.poll_max_retry_after);
          if (io::clock::now() + wait > deadline || !co_await pause(wait)) break;
          chain = co_await download_one(std::string(step.url), &alternates);
        }
        m.on_download(std::move(chain), std::move(alternates));
        break;
      }
      case k::download_alternate:
        m.on_alternate(co_await download_one(std::string(step.url), nullptr));
        break;
      case k::done:
        co_return m.take_certificate();
      case k::failed:
        co_return unexpected(m.failure());
    }
  }
}

io::task<acme_result<renewal_info>> client::get_renewal_info(std::string_view cert_pem) {
  // A CA without ARI says so whatever the certificate.
  LE_CO_TRY(dir, co_await get_directory());
  if (dir.renewal_info.empty()) co_return unexpected(error(letsencrypt::errc::unsupported));
  auto id = ari_certificate_id(cert_pem);
  if (!id) co_return unexpected(error(id.error()));
  co_return co_await get_renewal_info_by_id(*id);
}

io::task<acme_result<renewal_info>> client::get_renewal_info_by_id(std::string_view cert_id) {
  // The identifier becomes a path segment: base64url "." base64url (RFC 9773), nothing else.
  const auto dot = cert_id.find('.');
  const bool well_formed = cert_id.size() <= 512 && dot != std::string_view::npos && dot > 0 &&
                           dot + 1 < cert_id.size() && cert_id.find('.', dot + 1) == std::string_view::npos &&
                           std::all_of(cert_id.begin(), cert_id.end(), [](char c) {
                             return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                                    c == '-' || c == '_' || c == '.';
                           });
  if (!well_formed) co_return unexpected(error(letsencrypt::errc::invalid_argument));
  LE_CO_TRY(dir, co_await get_directory());
  if (dir.renewal_info.empty()) co_return unexpected(error(letsencrypt::errc::unsupported));
  std::string url = dir.renewal_info;
  if (url.empty() || url.back() != '/') url.push_back('/');
  url += cert_id;
  http_request req{"GET", url, {}, {}};
  LE_CO_TRY(resp, co_await send(std::move(req)));
  if (!is_success(resp.status)) co_return unexpected(error_from_response(resp));
  auto ri = parsed(parse_renewal_info(resp.body));
  if (!ri) co_return ri;
  if (auto ra = parse_retry_after(resp.header("Retry-After"))) ri->retry_after = *ra;
  co_return ri;
}

io::task<acme_result<void>> client::revoke(std::string_view cert_pem, revocation_reason reason) {
  if (account_url_.empty()) co_return unexpected(error(errc::account_does_not_exist));
  co_return co_await revoke_impl(cert_pem, nullptr, reason);
}

io::task<acme_result<void>> client::revoke_with_certificate_key(std::string_view cert_pem, const account_key& cert_key,
                                                                revocation_reason reason) {
  co_return co_await revoke_impl(cert_pem, &cert_key, reason);
}

io::task<acme_result<void>> client::revoke_impl(std::string_view cert_pem, const account_key* cert_key,
                                                revocation_reason reason) {
  LE_CO_TRY(dir, co_await get_directory());
  if (dir.revoke_cert.empty()) co_return unexpected(error(letsencrypt::errc::unsupported));
  auto der = first_cert_der(cert_pem);
  if (!der) co_return unexpected(error(der.error()));
  std::string payload = R"({"certificate":")" + base64url(*der) + R"(","reason":)" +
                        std::to_string(static_cast<int>(reason)) + "}";
  LE_CO_TRY(rep, co_await post(dir.revoke_cert, payload, cert_key));
  (void)rep;
  co_return acme_result<void>{};
}

}  // namespace letsencrypt::acme
