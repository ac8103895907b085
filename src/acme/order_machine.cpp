#include "acme/order_machine.hpp"

#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <memory>
#include <utility>

#include "letsencrypt/acme/jws.hpp"
#include "letsencrypt/tls/handles.hpp"

namespace letsencrypt::acme {
namespace {

char lower(char c) noexcept { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

// DNS names compare without case and without a trailing dot.
bool same_name(std::string_view a, std::string_view b) noexcept {
  if (!a.empty() && a.back() == '.') a.remove_suffix(1);
  if (!b.empty() && b.back() == '.') b.remove_suffix(1);
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return lower(x) == lower(y); });
}

struct gens_deleter {
  void operator()(GENERAL_NAMES* g) const noexcept { GENERAL_NAMES_free(g); }
};

// True when the chain's first certificate holds `key` and lists every name as a dNSName.
bool leaf_matches(std::string_view chain_pem, EVP_PKEY* key, std::span<const std::string> names) {
  auto chain = tls::load_certificate_chain_pem(chain_pem);
  if (!chain || chain->empty()) return false;
  X509* leaf = chain->front().get();
  if (X509_check_private_key(leaf, key) != 1) return false;
  std::unique_ptr<GENERAL_NAMES, gens_deleter> gens(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(leaf, NID_subject_alt_name, nullptr, nullptr)));
  if (!gens) return false;
  for (const auto& name : names) {
    bool found = false;
    for (int i = 0; i < sk_GENERAL_NAME_num(gens.get()) && !found; ++i) {
      const GENERAL_NAME* g = sk_GENERAL_NAME_value(gens.get(), i);
      if (g->type != GEN_DNS) continue;
      const ASN1_IA5STRING* s = g->d.dNSName;
      found = same_name(std::string_view(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                         static_cast<std::size_t>(ASN1_STRING_length(s))),
                        name);
    }
    if (!found) return false;
  }
  return true;
}

error with_problem(errc code, const std::optional<problem>& p) {
  error e(code);
  e.problem = p;
  return e;
}

}  // namespace

bool valid_challenge_token(std::string_view token) noexcept {
  return !token.empty() && token.size() <= 256 && std::all_of(token.begin(), token.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
  });
}

order_machine::order_machine(std::vector<std::string> names, std::vector<std::string> challenge_types,
                             std::string thumbprint, std::size_t max_alternate_chains)
    : types_(std::move(challenge_types)), thumbprint_(std::move(thumbprint)), max_alternates_(max_alternate_chains) {
  // The CA compares names without case and merges repeats; so does everything below.
  for (auto& n : names) {
    if (!n.empty() && n.back() == '.') n.pop_back();
    std::transform(n.begin(), n.end(), n.begin(), lower);
    if (!is_requested(n)) names_.push_back(std::move(n));
  }
  if (names_.empty()) {
    phase_ = phase::failed;
    error_ = error(letsencrypt::errc::invalid_argument);
  }
}

order_step order_machine::next() const noexcept {
  using k = order_step::kind;
  switch (phase_) {
    case phase::new_order: return {k::new_order, {}, nullptr};
    case phase::authorizations: return {k::fetch_authorization, order_.authorizations[cursor_], nullptr};
    case phase::present: return {k::present, {}, &work_[cursor_].info};
    case phase::respond: return {k::respond, work_[cursor_].info.url, &work_[cursor_].info};
    case phase::settle: return {k::wait_authorization, work_[cursor_].authz_url, &work_[cursor_].info};
    case phase::cleanup: return {k::cleanup, {}, &work_[cursor_].info};
    case phase::wait_ready: return {k::wait_ready, order_.url, nullptr};
    case phase::make_csr: return {k::make_csr, {}, nullptr};
    case phase::finalize: return {k::finalize, order_.finalize, nullptr};
    case phase::wait_valid: return {k::wait_valid, order_.url, nullptr};
    case phase::download: return {k::download, order_.certificate, nullptr};
    case phase::alternates: return {k::download_alternate, alternate_urls_[cursor_], nullptr};
    case phase::done: return {k::done, {}, nullptr};
    case phase::failed: return {k::failed, {}, nullptr};
  }
  return {k::failed, {}, nullptr};
}

bool order_machine::expect(phase p) {
  if (phase_ == p) return true;
  // A driver answering a step it was not given is a bug; end rather than act on it, still
  // cleaning up whatever was presented.
  end_with(error(letsencrypt::errc::invalid_argument));
  return false;
}

void order_machine::end_with(error e) {
  if (phase_ == phase::cleanup) {
    if (!pending_error_) pending_error_ = std::move(e);  // the first failure is the one reported
  } else if (phase_ != phase::failed && phase_ != phase::done) {
    fail(std::move(e));
  }
}

void order_machine::abort(error e) {
  // Once the certificate is issued it is kept: the download finishes (its request has its
  // own timeout), and alternates are optional.
  if (phase_ == phase::download) return;
  if (phase_ == phase::alternates) {
    phase_ = phase::done;
    return;
  }
  end_with(std::move(e));
}

bool order_machine::next_item(std::size_t count) noexcept {
  if (++cursor_ < count) return false;
  cursor_ = 0;
  return true;
}

bool order_machine::is_requested(std::string_view name) const noexcept {
  return std::any_of(names_.begin(), names_.end(), [&](const std::string& n) { return same_name(n, name); });
}

void order_machine::fail(error e) {
  if (!pending_error_) pending_error_ = std::move(e);
  begin_cleanup();
}

void order_machine::begin_cleanup() {
  cursor_ = 0;
  while (cursor_ < work_.size() && !work_[cursor_].presented) ++cursor_;
  if (cursor_ < work_.size()) {
    phase_ = phase::cleanup;
    return;
  }
  if (pending_error_) {
    error_ = std::move(*pending_error_);
    pending_error_.reset();
    phase_ = phase::failed;
    return;
  }
  phase_ = phase::wait_ready;
}

void order_machine::on_new_order(acme_result<acme::order> r) {
  if (!expect(phase::new_order)) return;
  if (!r) return fail(std::move(r).error());
  order_ = std::move(r).value();
  // The CSR names the requested identifiers; an order for anything else is not this one.
  bool same = !order_.url.empty();
  for (const auto& id : order_.identifiers) same = same && id.type == "dns" && is_requested(id.value);
  for (const auto& n : names_)
    same = same && std::any_of(order_.identifiers.begin(), order_.identifiers.end(),
                               [&](const identifier& id) { return same_name(id.value, n); });
  if (!same) return fail(error(errc::bad_response));
  cursor_ = 0;
  switch (order_.status) {
    case status::pending: {
      // One authorization per identifier (RFC 8555 §7.1.3): more, or one twice, would only
      // make a hostile CA's order long.
      auto urls = order_.authorizations;
      std::sort(urls.begin(), urls.end());
      const bool distinct = std::adjacent_find(urls.begin(), urls.end()) == urls.end();
      if (urls.empty() || urls.size() > names_.size() || !distinct) return fail(error(errc::bad_response));
      phase_ = phase::authorizations;
      return;
    }
    case status::ready:
      // Its authorizations are valid already (an order the CA reused, or names it knows).
      phase_ = order_.finalize.empty() ? phase::failed : phase::make_csr;
      if (phase_ == phase::failed) error_ = error(errc::bad_response);
      return;
    default:
      // processing or valid: finalized before, with a key this issuance does not hold;
      // invalid: dead already.
      return fail(with_problem(errc::order_invalid, order_.error));
  }
}

void order_machine::on_authorization(acme_result<authorization> r) {
  if (!expect(phase::authorizations)) return;
  if (!r) return fail(std::move(r).error());
  const authorization& a = *r;
  const std::string name = a.wildcard ? "*." + a.identifier.value : a.identifier.value;
  if (a.identifier.type != "dns" || !is_requested(name)) return fail(error(errc::bad_response));
  // Two authorizations for one name leave another name without any: the order could never
  // become ready, and would wait for order_timeout.
  if (std::any_of(authorized_names_.begin(), authorized_names_.end(),
                  [&](const std::string& n) { return same_name(n, name); }))
    return fail(error(errc::bad_response));
  authorized_names_.push_back(name);
  if (a.status != status::valid) {
    if (a.status != status::pending) return fail(error(errc::order_invalid));
    const challenge* chosen = nullptr;
    for (const auto& type : types_) {
      for (const auto& c : a.challenges)
        if (c.type == type && !c.url.empty()) {
          chosen = &c;
          break;
        }
      if (chosen) break;
    }
    if (!chosen) return fail(error(errc::no_supported_challenge));
    // The token goes into a URL path, a file name and a TXT record: base64url only.
    if (!valid_challenge_token(chosen->token)) return fail(error(errc::bad_response));
    work_item w;
    w.info.identifier = a.identifier;
    w.info.wildcard = a.wildcard;
    w.info.type = chosen->type;
    w.info.url = chosen->url;
    w.info.token = chosen->token;
    w.info.key_authorization = chosen->token + "." + thumbprint_;
    w.info.dns_txt_name = "_acme-challenge." + a.identifier.value;
    w.info.dns_txt_value = dns01_txt_value(w.info.key_authorization);
    w.authz_url = order_.authorizations[cursor_];
    work_.push_back(std::move(w));
  }
  if (!next_item(order_.authorizations.size())) return;
  // Every challenge is presented before any is answered, so the CA validates them in parallel.
  phase_ = work_.empty() ? phase::wait_ready : phase::present;
}

void order_machine::on_presented(acme_result<void> r) {
  if (!expect(phase::present)) return;
  // A present() that failed may have done part of its work (a DNS record written before
  // the API timed out): it is cleaned up like the others.
  work_[cursor_].presented = true;
  if (!r) return fail(std::move(r).error());
  if (next_item(work_.size())) phase_ = phase::respond;
}

void order_machine::on_responded(acme_result<challenge> r) {
  if (!expect(phase::respond)) return;
  if (!r) return fail(std::move(r).error());
  if (r->status == status::invalid) return fail(with_problem(errc::order_invalid, r->error));
  if (next_item(work_.size())) phase_ = phase::settle;
}

void order_machine::on_authorization_settled(acme_result<authorization> r) {
  if (!expect(phase::settle)) return;
  if (!r) return fail(std::move(r).error());
  if (r->status != status::valid) {
    error e(errc::order_invalid);
    for (const auto& c : r->challenges)
      if (c.url == work_[cursor_].info.url && c.error) e.problem = c.error;
    return fail(std::move(e));
  }
  if (next_item(work_.size())) begin_cleanup();
}

void order_machine::on_cleaned_up() {
  if (!expect(phase::cleanup)) return;
  work_[cursor_].presented = false;
  begin_cleanup();
}

void order_machine::on_order(acme_result<acme::order> r) {
  if (phase_ != phase::wait_ready && phase_ != phase::finalize && phase_ != phase::wait_valid) {
    expect(phase::wait_ready);
    return;
  }
  if (!r) return fail(std::move(r).error());
  std::string url = std::move(order_.url);
  order_ = std::move(r).value();
  order_.url = std::move(url);
  const phase was = phase_;
  if (was == phase::wait_ready) {
    if (order_.status == status::ready && !order_.finalize.empty()) {
      phase_ = phase::make_csr;
      return;
    }
    // valid here means finalized by someone else, with a key this issuance does not have.
    return fail(with_problem(errc::order_invalid, order_.error));
  }
  if (order_.status == status::valid) {
    if (order_.certificate.empty()) return fail(error(errc::bad_response));
    phase_ = phase::download;
    return;
  }
  // A finalize reply may still say processing (or, briefly, ready/pending): wait_valid polls
  // while it is pending or processing; whatever it settles on decides.
  const bool settling = order_.status == status::processing || order_.status == status::ready ||
                        order_.status == status::pending;
  if (was == phase::finalize && settling) {
    phase_ = phase::wait_valid;
    return;
  }
  fail(with_problem(errc::order_invalid, order_.error));
}

void order_machine::on_csr(acme_result<csr_bundle> r) {
  if (!expect(phase::make_csr)) return;
  if (!r) return fail(std::move(r).error());
  csr_ = std::move(r).value();
  phase_ = phase::finalize;
}

void order_machine::on_download(acme_result<certificate_chain> r, std::vector<std::string> alternates) {
  if (!expect(phase::download)) return;
  if (!r) return fail(std::move(r).error());
  if (!leaf_matches(r->pem, csr_->key.get(), names_)) return fail(error(errc::bad_response));
  out_.chain = std::move(r).value();
  alternate_urls_ = std::move(alternates);
  if (alternate_urls_.size() > max_alternates_) alternate_urls_.resize(max_alternates_);
  cursor_ = 0;
  phase_ = alternate_urls_.empty() ? phase::done : phase::alternates;
}

void order_machine::on_alternate(acme_result<certificate_chain> r) {
  if (!expect(phase::alternates)) return;
  // An alternate is offered, not required: one for another key is dropped like a failed one.
  if (r && leaf_matches(r->pem, csr_->key.get(), names_)) out_.alternates.push_back(std::move(r).value());
  if (next_item(alternate_urls_.size())) phase_ = phase::done;
}

issued_certificate order_machine::take_certificate() {
  issued_certificate out = std::move(out_);
  if (csr_) out.key_pem = std::move(csr_->key_pem);
  out.order = order_;
  return out;
}

}  // namespace letsencrypt::acme
