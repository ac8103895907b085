#include "letsencrypt/manager.hpp"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include <algorithm>
#include <optional>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "http/handlers.hpp"
#include "http/server.hpp"
#include "letsencrypt/acme/client.hpp"
#include "letsencrypt/acme/csr.hpp"
#include "letsencrypt/io/event.hpp"
#include "letsencrypt/io/net.hpp"
#include "letsencrypt/io/shard.hpp"
#include "letsencrypt/store/journal.hpp"
#include "letsencrypt/store/state.hpp"
#include "letsencrypt/store/watch.hpp"
#include "letsencrypt/tls/acceptor.hpp"
#include "letsencrypt/tls/challenge_cert.hpp"
#include "letsencrypt/tls/error.hpp"
#include "letsencrypt/tls/handles.hpp"
#include "letsencrypt/tls/names.hpp"
#include "letsencrypt/tls/resolver.hpp"
#include "letsencrypt/tls/server_context.hpp"
#include "letsencrypt/tls/sni_map.hpp"
#include "letsencrypt/tls/tickets.hpp"
#include "manager/limits.hpp"
#include "manager/solvers.hpp"
#include "manager/test_access.hpp"

namespace letsencrypt {

using manager_detail::backoff;
using manager_detail::renewal_time;
using manager_detail::sys_clock;
using manager_detail::token_bucket;

namespace {

constexpr std::string_view ca_bucket_name = "ca_requests";
constexpr std::string_view names_bucket_name = "new_names";

void default_log(log_level lvl, std::string_view line) {
  static const char* const names[] = {"debug", "info", "warning", "error"};
  fmt::print(stderr, "letsencrypt {}: {}\n", names[static_cast<int>(lvl)], line);
}

// What the renewal scheduler knows of one served certificate.
struct cert_meta {
  std::vector<std::string> names;
  sys_clock::time_point not_before;
  sys_clock::time_point not_after;
  sys_clock::time_point due;          // when to renew (fixed once per certificate)
  sys_clock::time_point next_attempt; // due, or later after failures
  unsigned failures = 0;
  std::string ari_cert_id;
  bool warned = false;
  // ARI: the window the CA last suggested (whole seconds, as the journal keeps it), and when
  // to ask again (max: never).
  std::optional<std::pair<sys_clock::time_point, sys_clock::time_point>> ari_window;
  sys_clock::time_point ari_poll = sys_clock::time_point::max();
  bool unusable = false;  // a handshake found its key unusable; replaced by a renewal
};

// ARI windows as the journal keeps them: whole seconds, so a CA's fractional seconds do not
// read as a move after every restart.
std::pair<sys_clock::time_point, sys_clock::time_point> whole_seconds(
    std::pair<sys_clock::time_point, sys_clock::time_point> w) {
  return {std::chrono::floor<std::chrono::seconds>(w.first), std::chrono::floor<std::chrono::seconds>(w.second)};
}

// A certificate record as the SNI map wants it (parsed, or deferred until its first
// handshake), plus its validity period.
struct loaded_cert {
  std::shared_ptr<const tls::certified_key> key;
  std::shared_ptr<const tls::deferred_key> deferred;
  sys_clock::time_point not_before;
  sys_clock::time_point not_after;
};

// Chain certificates parsed once and shared by every certificate they issued: a CA signs
// with a handful of intermediates, and each parsed copy costs about 5 KiB. Thread-safe;
// bounded (past the bound, certificates are parsed without being kept).
class issuer_cache {
 public:
  // The parsed certificate of `der` (a new reference), or null when it does not parse.
  tls::x509_ptr get(const std::string& der) {
    std::lock_guard lk(mu_);
    if (auto it = parsed_.find(der); it != parsed_.end()) return tls::up_ref(it->second.get());
    auto x = tls::parse_certificate_der(der);
    if (!x) return nullptr;
    if (parsed_.size() < max_entries) parsed_.emplace(der, tls::up_ref(x->get()));
    return std::move(*x);
  }

 private:
  static constexpr std::size_t max_entries = 64;
  std::mutex mu_;
  std::map<std::string, tls::x509_ptr, std::less<>> parsed_;
};

// The leaf's DER and the chain after it, parsed through `issuers`.
result<std::pair<std::string, std::vector<tls::x509_ptr>>> split_chain(std::string_view chain_pem, issuer_cache& issuers) {
  LE_TRY(certs, tls::pem_blocks_der(chain_pem, "CERTIFICATE"));
  std::vector<tls::x509_ptr> rest;
  for (std::size_t i = 1; i < certs.size(); ++i) {
    auto x = issuers.get(certs[i]);
    if (!x) return tls::tls_errc::bad_pem;
    rest.push_back(std::move(x));
  }
  return std::pair{std::move(certs[0]), std::move(rest)};
}

std::vector<X509*> raw(const std::vector<tls::x509_ptr>& v) {
  std::vector<X509*> out;
  out.reserve(v.size());
  for (const auto& x : v) out.push_back(x.get());
  return out;
}

// Key blocks decoded from PEM, cleansed when they go.
struct key_blocks {
  std::vector<std::string> der;
  ~key_blocks() {
    for (auto& k : der) OPENSSL_cleanse(k.data(), k.size());
  }
};

// A certificate record parsed now (a fresh issuance, or a cached key that is not PKCS#8).
// A PKCS#8 key goes through load_certified_key_der, which keeps an EC key in the
// certificate's own key object; any other key is read by OpenSSL.
result<loaded_cert> load_cert(std::string_view chain_pem, std::string_view key_pem, issuer_cache& issuers) {
  LE_TRY(split, split_chain(chain_pem, issuers));
  const std::vector<X509*> chain = raw(split.second);
  result<std::shared_ptr<const tls::certified_key>> ck = tls::tls_errc::bad_pem;
  {
    key_blocks keys;
    if (auto k = tls::pem_blocks_der(key_pem, "PRIVATE KEY")) keys.der = std::move(*k);
    if (keys.der.size() == 1) ck = tls::load_certified_key_der(split.first, keys.der[0], chain);
  }
  if (!ck) {
    LE_TRY(leaf, tls::parse_certificate_der(split.first));
    LE_TRY(key, tls::load_private_key_pem(key_pem));
    ck = tls::make_certified_key(leaf.get(), key.get(), chain);
    if (!ck) return ck.error();
  }
  X509* const leaf = (*ck)->leaf.get();
  LE_TRY(nb, tls::to_time_point(X509_get0_notBefore(leaf)));
  LE_TRY(na, tls::to_time_point(X509_get0_notAfter(leaf)));
  return loaded_cert{std::move(*ck), nullptr, nb, na};
}

// A cached certificate without parsing it: the leaf and its PKCS#8 key stay DER until the
// first handshake for one of its names (tls::deferred_key), and the validity is read from the
// DER, so a manager with many certificates starts in a fraction of the time and memory.
// Fails for a key that is not PKCS#8 (the caller then parses it all) and for text that does
// not decode.
result<loaded_cert> defer_cert(std::string_view chain_pem, std::string_view key_pem, issuer_cache& issuers,
                               const std::shared_ptr<tls::deferred_cache>& cache) {
  key_blocks keys;
  LE_TRY(der, tls::pem_blocks_der(key_pem, "PRIVATE KEY"));
  keys.der = std::move(der);
  if (keys.der.size() != 1) return errc::invalid_argument;
  LE_TRY(split, split_chain(chain_pem, issuers));
  LE_TRY(validity, tls::certificate_validity(split.first));
  LE_TRY(d, tls::deferred_key::make(std::move(split.first), std::move(keys.der[0]), raw(split.second), cache));
  return loaded_cert{nullptr, std::move(d), validity.first, validity.second};
}

}  // namespace

struct manager::impl {
  explicit impl(letsencrypt::config c);
  ~impl();

  // --- configuration and shared state (any thread) ---
  letsencrypt::config cfg_;
  std::mt19937_64 rng_{std::random_device{}()};
  std::mutex rng_mu_;
  double random01() {
    std::lock_guard lk(rng_mu_);
    return std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
  }
  void log(log_level lvl, std::string_view line) const {
    if (cfg_.log)
      cfg_.log(lvl, line);
    else
      default_log(lvl, line);
  }

  tls::sni_map map_;
  tls::resolver resolver_{map_};
  issuer_cache issuers_;
  std::shared_ptr<tls::deferred_cache> parsed_cache_;  // null: no limit
  http::acme_http01_tokens tokens_;
  store::change_notifier notifier_;

  mutable std::mutex mu_;  // guards everything below up to the control-shard section
  store::state mirror_;    // the durable state (or the in-memory one without a journal)
  std::function<bool(std::string_view)> policy_;
  struct pending {
    io::event done;
    std::error_code ec;
  };
  std::map<std::string, std::shared_ptr<pending>, std::less<>> inflight_;
  std::map<std::string, sys_clock::time_point, std::less<>> refused_until_;
  std::map<std::string, std::shared_ptr<cert_meta>, std::less<>> meta_;  // by name
  manager_stats stats_{};

  // --- event loops ---
  io::shard_group shards_;
  io::shard& control() { return shards_[0]; }
  bool on_own_shard() const {
    io::ring* r = io::ring::current();
    for (unsigned i = 0; i < const_cast<io::shard_group&>(shards_).size(); ++i)
      if (r == &const_cast<io::shard_group&>(shards_)[i].loop()) return true;
    return false;
  }
  /// Runs `t` on the control shard and blocks the calling (non-shard) thread for its result.
  template <class T>
  T block_on(io::task<T> t) {
    std::promise<T> p;
    auto fut = p.get_future();
    control().spawn([](io::task<T> inner, std::promise<T>* out) -> io::task<void> {
      out->set_value(co_await std::move(inner));
    }(std::move(t), &p));
    return fut.get();
  }

  // --- control shard only ---
  std::unique_ptr<store::journal> journal_;
  // Shared: each issuance keeps its own reference across awaits, so replacing or dropping
  // client_ (an account the CA no longer knows) never frees a client another one is using.
  std::shared_ptr<acme::client> client_;
  std::function<bool(std::string_view)> tos_prompt_;
  std::string account_email_;
  token_bucket ca_bucket_;
  token_bucket names_bucket_;
  std::stop_source renew_wake_;
  bool renewal_started_ = false;
  std::stop_source background_stop_;

  // --- serving ---
  std::mutex serve_mu_;
  tls::ssl_ctx_ptr server_ctx_;
  std::unique_ptr<tls::ticket_keys> tickets_;
  std::unique_ptr<http::server> https_server_;
  std::unique_ptr<tls::acceptor> https_;
  std::unique_ptr<http::http_service> http_;
  std::promise<void> serving_done_;
  bool serving_ = false;

  // Policy.
  bool allowed(std::string_view name) const;
  tls::miss_action on_miss(std::string_view name);

  // Issuance.
  /// Waits until `host` has a certificate (obtaining one if policy allows), or `stop`.
  io::task<result<void>> cert(std::string host, std::stop_token stop = {});
  io::task<void> run_issuance(std::string name, std::shared_ptr<pending> p, bool renewal);
  io::task<result<void>> issue(const std::string& name, bool renewal);
  io::task<result<void>> ensure_account();
  io::task<result<void>> ensure_account_locked();
  bool account_busy_ = false;
  std::shared_ptr<io::event> account_done_ = std::make_shared<io::event>();
  io::task<result<void>> create_account(std::string email, std::function<bool(std::string_view)> prompt);
  acme::client_options client_options() const;
  acme::http_fetch fetch_override_;  // tests only (manager_test_access), set before any order
  // Asks renewalInfo (an unauthenticated GET) without an account: polling never registers one.
  std::shared_ptr<acme::client> ari_client_;
  io::task<result<void>> persist(store::record r);
  io::task<void> persist_bucket(std::string_view name, const token_bucket& b);
  void install_cert(const store::cert_record& rec, const loaded_cert& lc, bool from_cache);
  // The SNI map's updates for every name of `rec`, appended to `ups`.
  static void add_updates(std::vector<tls::sni_update>& ups, const store::cert_record& rec, const loaded_cert& lc);
  // The renewal bookkeeping for `rec`.
  void record_meta(const store::cert_record& rec, const loaded_cert& lc, bool from_cache);
  result<void> load_state(const store::state& s);

  // Renewal.
  void start_renewal();
  io::task<void> renewal_loop();
  io::task<void> poll_renewal_info(std::shared_ptr<cert_meta> m);
  void on_unusable_key(std::string_view entry_name);
  void wake_renewal() {
    // renew_wake_ belongs to the control shard (the loop replaces it): post, never touch.
    control().post([this] { renew_wake_.request_stop(); });
  }
  std::chrono::seconds ari_interval() const {
    return std::clamp<std::chrono::seconds>(cfg_.ari_poll_interval, std::chrono::seconds(1), std::chrono::hours(24));
  }

  // Serving.
  result<void> start_serving(http::handler h, bool with_http);
};

manager::impl::impl(letsencrypt::config c)
    : cfg_(std::move(c)),
      shards_(cfg_.shards),
      ca_bucket_(cfg_.ca_requests, sys_clock::now()),
      names_bucket_(cfg_.new_names, sys_clock::now()) {
  resolver_.set_miss_policy([this](std::string_view name) { return on_miss(name); });
  resolver_.set_unusable_key_handler([this](std::string_view name) { on_unusable_key(name); });
  resolver_.set_alpn_protocols({"http/1.1"});
  if (cfg_.parsed_certificates_limit > 0) parsed_cache_ = tls::deferred_cache::make(cfg_.parsed_certificates_limit);
}

manager::impl::~impl() {
  {
    std::lock_guard lk(serve_mu_);
    if (https_) https_->stop();
    if (http_) http_->stop();
  }
  background_stop_.request_stop();
  shards_.stop();  // the control scope's stop wakes the renewal loop  // waits for every task (renewal loop, issuances) to unwind
}

bool manager::impl::allowed(std::string_view raw) const {
  auto name = tls::normalise_name(raw);
  if (!name) return false;
  std::function<bool(std::string_view)> policy;
  {
    std::lock_guard lk(mu_);
    if (mirror_.hosts) {
      bool listed = false;
      for (const auto& h : *mirror_.hosts) {
        if (h == *name) listed = true;
        // "*.example.com" allows exactly one more label.
        if (h.size() > 2 && h[0] == '*' && name->size() > h.size() - 1 &&
            name->ends_with(std::string_view(h).substr(1)) &&
            name->substr(0, name->size() - (h.size() - 1)).find('.') == std::string::npos)
          listed = true;
      }
      if (!listed) return false;
    }
    policy = policy_;
  }
  return !policy || policy(*name);
}

tls::miss_action manager::impl::on_miss(std::string_view name) {
  if (!allowed(name)) return tls::miss_action::refuse;
  {
    std::lock_guard lk(mu_);
    auto it = refused_until_.find(name);
    if (it != refused_until_.end() && it->second > sys_clock::now()) return tls::miss_action::refuse;
  }
  return tls::miss_action::suspend;
}

acme::client_options manager::impl::client_options() const {
  acme::client_options o;
  o.directory_url = cfg_.directory_url;
  o.ca_pem = cfg_.ca_root_pem;
  o.stop = background_stop_.get_token();
  if (fetch_override_) o.fetch = fetch_override_;
  o.challenge_preference.clear();
  for (auto c : cfg_.challenges) {
    switch (c) {
      case challenge_type::tls_alpn_01: o.challenge_preference.push_back("tls-alpn-01"); break;
      case challenge_type::http_01: o.challenge_preference.push_back("http-01"); break;
      case challenge_type::dns_01: o.challenge_preference.push_back("dns-01"); break;
    }
  }
  return o;
}

io::task<result<void>> manager::impl::persist(store::record r) {
  if (journal_) {
    auto seq = co_await journal_->append(r);
    if (!seq) {
      log(log_level::error, fmt::format("journal append failed: {}", seq.error().message()));
      // The change still takes effect in memory; it is lost at restart.
    }
  }
  {
    std::lock_guard lk(mu_);
    (void)mirror_.apply(r);
  }
  notifier_.notify();
  co_return ok();
}

io::task<void> manager::impl::persist_bucket(std::string_view name, const token_bucket& b) {
  auto s = b.snapshot();
  store::rate_limit_record rec;
  rec.bucket = std::string(name);
  rec.tokens = s.tokens;
  rec.last_refill = std::chrono::time_point_cast<std::chrono::milliseconds>(s.last_refill);
  (void)co_await persist(std::move(rec));
}

void manager::impl::add_updates(std::vector<tls::sni_update>& ups, const store::cert_record& rec,
                                const loaded_cert& lc) {
  for (const auto& n : rec.names) {
    tls::sni_update u{n, {}, {}};
    if (lc.key) u.keys.push_back(lc.key);
    if (lc.deferred) u.deferred.push_back(lc.deferred);
    ups.push_back(std::move(u));
  }
}

void manager::impl::install_cert(const store::cert_record& rec, const loaded_cert& lc, bool from_cache) {
  std::vector<tls::sni_update> ups;
  add_updates(ups, rec, lc);
  (void)map_.apply(std::move(ups));
  record_meta(rec, lc, from_cache);
}

void manager::impl::record_meta(const store::cert_record& rec, const loaded_cert& lc, bool from_cache) {
  auto m = std::make_shared<cert_meta>();
  m->names = rec.names;
  m->not_before = lc.not_before;
  m->not_after = lc.not_after;
  std::optional<std::pair<sys_clock::time_point, sys_clock::time_point>> ari;
  const bool has_window = rec.ari_start.time_since_epoch().count() != 0 || rec.ari_end.time_since_epoch().count() != 0;
  if (has_window && rec.ari_end >= rec.ari_start)
    ari = std::pair<sys_clock::time_point, sys_clock::time_point>{rec.ari_start, rec.ari_end};
  m->due = renewal_time(lc.not_before, lc.not_after, ari, random01());
  m->next_attempt = m->due;
  m->ari_cert_id = rec.ari_cert_id;
  m->ari_window = ari;
  {
    // A fresh certificate's window was just asked for; certificates loaded at start-up are
    // asked about soon, spread so that many of them do not reach the CA at once. A record
    // without an identifier (an import) gets one computed at its first poll.
    const auto interval = ari_interval();
    const auto spread = std::min<sys_clock::duration>(interval, std::chrono::hours(1));
    m->ari_poll = sys_clock::now() + (from_cache ? std::chrono::duration_cast<sys_clock::duration>(spread * random01())
                                                 : std::chrono::duration_cast<sys_clock::duration>(interval));
  }
  std::lock_guard lk(mu_);
  for (const auto& n : rec.names) {
    meta_[n] = m;
    refused_until_.erase(n);
  }
  if (from_cache) ++stats_.loaded_from_cache;
}

result<void> manager::impl::load_state(const store::state& s) {
  std::vector<tls::sni_update> ups;
  std::vector<std::pair<std::shared_ptr<const store::cert_record>, loaded_cert>> loaded;
  for (const auto& c : s.distinct_certs()) {
    // Parsed by the first handshake for one of its names; a key that is not PKCS#8 (Go's
    // package wrote "EC PRIVATE KEY") is parsed now.
    auto lc = defer_cert(c->chain_pem, c->key_pem, issuers_, parsed_cache_);
    if (!lc) lc = load_cert(c->chain_pem, c->key_pem, issuers_);
    if (!lc) {
      log(log_level::error, fmt::format("cached certificate for {} does not load: {}", fmt::join(c->names, ","),
                                        lc.error().message()));
      continue;
    }
    // A name the map refuses would fail the whole batch: such a record goes alone, as
    // it would have been installed by itself.
    if (!std::all_of(c->names.begin(), c->names.end(), [](const std::string& n) { return bool(tls::normalise_name(n)); })) {
      install_cert(*c, *lc, true);
      continue;
    }
    add_updates(ups, *c, *lc);
    loaded.emplace_back(c, std::move(*lc));
  }
  // The bookkeeping first, so a handshake that finds a new entry also finds its record
  // (a key that fails asks for a renewal through it). Then one write for the whole cache:
  // a write copies each shard it changes, so a write per certificate would copy a shard
  // once per certificate (minutes at 100k names).
  for (const auto& [rec, lc] : loaded) record_meta(*rec, lc, true);
  (void)map_.apply(std::move(ups));
  // The buckets are the control shard's, which takes from them with no lock: restored there,
  // after whatever it is doing, rather than from this thread at the same time.
  std::vector<std::pair<std::string, token_bucket::state>> buckets;
  for (const auto& [name, rl] : s.rate_limits) buckets.emplace_back(name, token_bucket::state{rl.tokens, rl.last_refill});
  if (!buckets.empty())
    control().post([this, buckets = std::move(buckets)] {
      const auto now = sys_clock::now();
      for (const auto& [name, st] : buckets) {
        if (name == ca_bucket_name) ca_bucket_.restore(st, now);
        if (name == names_bucket_name) names_bucket_.restore(st, now);
      }
    });
  {
    std::lock_guard lk(mu_);
    mirror_ = s;
  }
  if (!s.empty()) notifier_.notify();
  wake_renewal();  // the loop may be asleep on an empty schedule
  return ok();
}

io::task<result<void>> manager::impl::create_account(std::string email, std::function<bool(std::string_view)> prompt) {
  LE_CO_TRY(key, acme::account_key::generate_p256());
  LE_CO_TRY(pem, key.private_pem());
  auto client = std::make_shared<acme::client>(client_options(), std::move(key));
  acme::account_options ao;
  if (!email.empty()) ao.contact.push_back("mailto:" + email);
  ao.accept_terms = prompt ? prompt : [](std::string_view) { return true; };
  ao.eab_kid = cfg_.eab_kid;
  ao.eab_hmac_key = cfg_.eab_hmac_key;
  if (!ca_bucket_.try_take(sys_clock::now())) co_return errc::rate_limited;
  co_await persist_bucket(ca_bucket_name, ca_bucket_);
  auto acct = co_await client->register_account(ao);
  if (!acct) {
    log(log_level::error, fmt::format("account registration failed: {}", acct.error().message()));
    co_return acct.error().code;
  }
  store::account_record rec;
  rec.key_pem = std::move(pem);
  rec.url = acct->url;
  rec.contact = acct->contact;
  rec.tos_agreed = acct->terms_of_service_agreed;
  LE_CO_TRY_VOID(co_await persist(std::move(rec)));
  log(log_level::info, fmt::format("registered ACME account {}", acct->url));
  client_ = std::move(client);
  co_return ok();
}

io::task<result<void>> manager::impl::ensure_account() {
  // One account creation at a time: concurrent issuances wait for the first one's outcome
  // rather than registering accounts of their own (and replacing client_ under each other).
  while (account_busy_) {
    auto ev = account_done_;
    co_await ev->wait();
  }
  if (client_ && !client_->account_url().empty()) co_return ok();
  account_busy_ = true;
  account_done_ = std::make_shared<io::event>();
  auto r = co_await ensure_account_locked();
  account_busy_ = false;
  account_done_->set();
  co_return r;
}

io::task<result<void>> manager::impl::ensure_account_locked() {
  std::optional<store::account_record> acct;
  {
    std::lock_guard lk(mu_);
    acct = mirror_.account;
  }
  if (acct && !acct->url.empty()) {
    auto key = acme::account_key::from_pem(acct->key_pem);
    if (key) {
      client_ = std::make_shared<acme::client>(client_options(), std::move(*key));
      client_->set_account_url(acct->url);
      co_return ok();
    }
    // Go's package made P-384 account keys, which ACME signing here does not use (ES256 or
    // RS256): keep the imported certificates and register a new account for new orders.
    log(log_level::warning, fmt::format("account key of {} cannot sign ({}); registering a new account", acct->url,
                                        key.error().message()));
  }
  co_return co_await create_account(account_email_.empty() ? cfg_.email : account_email_, tos_prompt_);
}

io::task<result<void>> manager::impl::issue(const std::string& name, bool renewal) {
  auto now = sys_clock::now();
  bool known;
  std::string replaces;
  {
    std::lock_guard lk(mu_);
    auto it = meta_.find(name);
    known = it != meta_.end() || mirror_.certs.count(name);
    if (renewal && it != meta_.end()) replaces = it->second->ari_cert_id;
  }
  if (!known && !renewal) {
    if (!names_bucket_.try_take(now)) {
      log(log_level::warning, fmt::format("not obtaining a certificate for {}: new-name rate limit", name));
      co_return errc::rate_limited;
    }
    co_await persist_bucket(names_bucket_name, names_bucket_);
  }
  if (!ca_bucket_.try_take(now)) {
    if (!renewal) {
      log(log_level::warning, fmt::format("not obtaining a certificate for {}: CA request rate limit", name));
      co_return errc::rate_limited;
    }
    auto wait = ca_bucket_.wait_time(now);
    auto s = co_await io::sleep_for(wait).cancel_on(background_stop_.get_token());
    if (!s) co_return s.error();
    (void)ca_bucket_.try_take(sys_clock::now());
  }
  co_await persist_bucket(ca_bucket_name, ca_bucket_);
  LE_CO_TRY_VOID(co_await ensure_account());

  manager_detail::tls_alpn01_solver alpn(resolver_);
  manager_detail::http01_solver http01(tokens_);
  manager_detail::dns01_solver dns01(cfg_.dns_hook);
  acme::order_request req;
  req.names = {name};
  req.replaces = replaces;
  req.key_type = cfg_.key == key_type::rsa_2048 ? acme::cert_key_type::rsa2048 : acme::cert_key_type::p256;
  req.solvers["tls-alpn-01"] = &alpn;
  req.solvers["http-01"] = &http01;
  if (cfg_.dns_hook) req.solvers["dns-01"] = &dns01;
  {
    std::lock_guard lk(mu_);
    ++stats_.orders;
  }
  auto client = client_;
  auto issued = co_await client->obtain(req);
  if (!issued) {
    if (issued.error().code == acme::errc::account_does_not_exist && client_ == client) client_.reset();
    co_return unexpected(issued.error().code);
  }
  auto lc = load_cert(issued->chain.pem, issued->key_pem, issuers_);
  if (!lc) co_return lc.error();

  store::cert_record rec;
  rec.names = {name};
  rec.chain_pem = issued->chain.pem;
  rec.key_pem = issued->key_pem;
  rec.not_after = std::chrono::time_point_cast<std::chrono::seconds>(lc->not_after);
  if (auto id = acme::ari_certificate_id(issued->chain.pem)) rec.ari_cert_id = *id;
  if (auto ri = co_await client->get_renewal_info(issued->chain.pem)) {
    rec.ari_start = std::chrono::time_point_cast<std::chrono::seconds>(ri->window_start);
    rec.ari_end = std::chrono::time_point_cast<std::chrono::seconds>(ri->window_end);
  }
  // Durable first, then served: a crash never loses a certificate that handshakes saw.
  LE_CO_TRY_VOID(co_await persist(rec));
  {
    // Counted before it is served, so whoever sees the new certificate sees the count too.
    std::lock_guard lk(mu_);
    ++stats_.issued;
    if (renewal) ++stats_.renewed;
  }
  install_cert(rec, *lc, false);
  log(log_level::info, fmt::format("{} certificate for {} (expires {:%Y-%m-%d %H:%M:%S} UTC)",
                                   renewal ? "renewed" : "obtained", name,
                                   std::chrono::floor<std::chrono::seconds>(lc->not_after)));
  renew_wake_.request_stop();  // the scheduler recomputes its next wake-up
  co_return ok();
}

io::task<void> manager::impl::run_issuance(std::string name, std::shared_ptr<pending> p, bool renewal) {
  auto r = co_await issue(name, renewal);
  {
    std::lock_guard lk(mu_);
    inflight_.erase(name);
    if (!r) {
      ++stats_.failures;
      // A failed name is refused for a while so a stream of handshakes cannot hammer the CA.
      if (!renewal) {
        auto now = sys_clock::now();
        // A flood of random names must not grow this without bound: drop expired entries.
        if (refused_until_.size() >= 4096)
          std::erase_if(refused_until_, [now](const auto& kv) { return kv.second <= now; });
        if (refused_until_.size() < 65536) refused_until_[name] = now + std::chrono::seconds(60);
      }
    }
  }
  if (!r) {
    p->ec = r.error();
    log(log_level::error, fmt::format("{} of certificate for {} failed: {}", renewal ? "renewal" : "issuance", name,
                                      r.error().message()));
  }
  p->done.set();
}

io::task<result<void>> manager::impl::cert(std::string host, std::stop_token stop) {
  auto name = tls::normalise_name(host);
  if (!name) co_return name.error();
  if (map_.lookup(*name)) co_return ok();
  if (!allowed(*name)) {
    std::lock_guard lk(mu_);
    ++stats_.refused;
    co_return errc::not_allowed;
  }
  if (stop.stop_requested()) co_return errc::cancelled;  // a stopping server orders nothing
  std::shared_ptr<pending> p;
  bool start = false;
  {
    std::lock_guard lk(mu_);
    auto it = inflight_.find(*name);
    if (it != inflight_.end()) {
      p = it->second;
    } else {
      p = std::make_shared<pending>();
      inflight_.emplace(*name, p);
      start = true;
    }
  }
  if (start) control().spawn(run_issuance(*name, p, false));
  if (!co_await p->done.wait(std::move(stop))) co_return errc::cancelled;
  if (p->ec) co_return p->ec;
  co_return ok();
}

io::task<void> manager::impl::poll_renewal_info(std::shared_ptr<cert_meta> m) {
  const auto interval = ari_interval();
  // Every way out below leaves the next question at least this far ahead, counted from when
  // this one ends: a failing or slow CA is never asked in a loop.
  auto ask_again_in = [&m](sys_clock::duration d) { m->ari_poll = sys_clock::now() + d; };
  ask_again_in(interval);
  const std::string name = m->names.front();
  if (m->ari_cert_id.empty()) {
    std::string chain;
    {
      std::lock_guard lk(mu_);
      auto it = mirror_.certs.find(name);
      if (it != mirror_.certs.end()) chain = it->second->chain_pem;
    }
    auto id = acme::ari_certificate_id(chain);
    if (!id) {
      m->ari_poll = sys_clock::time_point::max();  // no authority key id: ARI cannot name it
      co_return;
    }
    m->ari_cert_id = *id;
  }
  if (!ari_client_) {
    auto key = acme::account_key::generate_p256();
    if (!key) co_return;
    ari_client_ = std::make_shared<acme::client>(client_options(), std::move(*key));
  }
  auto client = ari_client_;
  {
    std::lock_guard lk(mu_);
    ++stats_.ari_polls;
  }
  auto ri = co_await client->get_renewal_info_by_id(m->ari_cert_id);
  if (!ri) {
    if (ri.error().code == errc::unsupported) {
      ask_again_in(std::chrono::hours(24));  // the CA has no ARI (for now)
    } else {
      ask_again_in(interval);
      log(log_level::warning, fmt::format("renewal window of {} not available from the CA: {}", name, ri.error().message()));
    }
    co_return;
  }
  if (ri->retry_after > std::chrono::seconds(0)) {
    const auto floor = std::min<std::chrono::seconds>(std::chrono::minutes(1), interval);
    ask_again_in(std::clamp<std::chrono::seconds>(ri->retry_after, floor, std::chrono::hours(24)));
  } else {
    ask_again_in(interval);
  }
  const auto window = whole_seconds({ri->window_start, ri->window_end});
  if (m->ari_window == window) co_return;
  m->ari_window = window;
  m->due = renewal_time(m->not_before, m->not_after, window, random01());
  // A renewal already backing off keeps its backoff unless the CA now wants it sooner.
  if (m->failures == 0 || m->due < m->next_attempt) m->next_attempt = m->due;
  log(log_level::info,
      fmt::format("the CA moved the renewal window of {} to {:%Y-%m-%d %H:%M:%S} .. {:%Y-%m-%d %H:%M:%S} UTC; renewing at "
                  "{:%Y-%m-%d %H:%M:%S} UTC{}",
                  name, std::chrono::floor<std::chrono::seconds>(window.first),
                  std::chrono::floor<std::chrono::seconds>(window.second),
                  std::chrono::floor<std::chrono::seconds>(std::max(m->due, sys_clock::now())),
                  ri->explanation_url.empty() ? "" : " (" + ri->explanation_url + ")"));
  // Kept across restarts: the record of this same certificate, with the new window (and its
  // identifier, which an imported record lacked).
  std::optional<store::cert_record> rec;
  {
    std::lock_guard lk(mu_);
    auto it = mirror_.certs.find(name);
    if (it != mirror_.certs.end() && (it->second->ari_cert_id == m->ari_cert_id || it->second->ari_cert_id.empty()))
      rec = *it->second;
  }
  if (rec) {
    rec->ari_cert_id = m->ari_cert_id;
    rec->ari_start = std::chrono::time_point_cast<std::chrono::seconds>(window.first);
    rec->ari_end = std::chrono::time_point_cast<std::chrono::seconds>(window.second);
    (void)co_await persist(std::move(*rec));
  }
  std::lock_guard lk(mu_);
  ++stats_.ari_moves;
}

void manager::impl::on_unusable_key(std::string_view entry_name) {
  std::shared_ptr<cert_meta> m;
  {
    std::lock_guard lk(mu_);
    auto it = meta_.find(entry_name);
    if (it == meta_.end() || it->second->unusable) return;  // once per certificate
    it->second->unusable = true;
    m = it->second;
  }
  log(log_level::error, fmt::format("the certificate for {} cannot be used (it does not parse, or its key is not its "
                                    "own); its handshakes fail until a renewal replaces it, starting now",
                                    entry_name));
  // next_attempt belongs to the control shard.
  control().post([this, m] {
    m->next_attempt = sys_clock::now();
    renew_wake_.request_stop();
  });
}

void manager::impl::start_renewal() {
  control().post([this] {
    if (renewal_started_) return;
    renewal_started_ = true;
    control().scope().spawn(renewal_loop());
  });
}

io::task<void> manager::impl::renewal_loop() {
  // At most this many renewalInfo requests between two looks at what is due, so polling a
  // large cache (or a slow CA) never holds renewals back.
  constexpr std::size_t max_polls_per_pass = 32;
  auto stop = control().scope().stop_token();
  while (!stop.stop_requested()) {
    // The CA's word first: a window it moved may make a certificate due now.
    std::vector<std::shared_ptr<cert_meta>> polls;
    {
      const auto now = sys_clock::now();
      std::lock_guard lk(mu_);
      std::set<cert_meta*> seen;
      for (auto& [n, m] : meta_)
        if (seen.insert(m.get()).second && m->ari_poll <= now) polls.push_back(m);
    }
    const bool more_polls = polls.size() > max_polls_per_pass;
    if (more_polls) {
      std::partial_sort(polls.begin(), polls.begin() + max_polls_per_pass, polls.end(),
                        [](const auto& a, const auto& b) { return a->ari_poll < b->ari_poll; });
      polls.resize(max_polls_per_pass);
    }
    for (auto& m : polls) {
      co_await poll_renewal_info(m);
      if (stop.stop_requested()) co_return;
    }

    const auto now = sys_clock::now();
    std::vector<std::shared_ptr<cert_meta>> due;
    sys_clock::time_point next = now + std::chrono::hours(1);
    {
      std::lock_guard lk(mu_);
      std::set<cert_meta*> seen;
      for (auto& [n, m] : meta_) {
        if (!seen.insert(m.get()).second) continue;
        if (m->next_attempt <= now)
          due.push_back(m);
        else
          next = std::min(next, m->next_attempt);
        next = std::min(next, m->ari_poll);
      }
    }
    bool renewed_any = false;
    for (auto& m : due) {
      std::string name;
      std::shared_ptr<pending> p;
      {
        std::lock_guard lk(mu_);
        // A renewal orders one name: renew the first name this certificate still serves
        // (an earlier renewal may have taken the others).
        for (const auto& n : m->names)
          if (auto it = meta_.find(n); it != meta_.end() && it->second == m) {
            name = n;
            break;
          }
        if (name.empty()) continue;
        if (inflight_.count(name)) {  // an issuance for it is under way: look again shortly
          next = std::min(next, sys_clock::now() + std::chrono::seconds(1));
          continue;
        }
        p = std::make_shared<pending>();
        inflight_.emplace(name, p);
      }
      renewed_any = true;
      co_await run_issuance(name, p, true);
      if (p->ec) {
        m->failures++;
        auto wait = backoff(m->failures, random01(), cfg_.max_backoff);
        m->next_attempt = sys_clock::now() + wait;
        auto left = m->not_after - sys_clock::now();
        if (left < (m->not_after - m->not_before) / 10 || left < std::chrono::hours(24 * 7)) {
          log(log_level::error,
              fmt::format("CERTIFICATE FOR {} EXPIRES IN {} AND CANNOT BE RENEWED: {} (next attempt in {})", name,
                          std::chrono::duration_cast<std::chrono::seconds>(left), p->ec.message(), wait));
        }
      }
      if (stop.stop_requested()) co_return;
    }
    // A renewal changed meta_, or polls are left: look again before sleeping.
    if (renewed_any || more_polls) continue;
    renew_wake_ = std::stop_source();
    std::stop_callback forward(stop, [src = renew_wake_]() mutable { src.request_stop(); });
    (void)co_await io::sleep_for(std::max(next - sys_clock::now(), sys_clock::duration(std::chrono::milliseconds(10))))
        .cancel_on(renew_wake_.get_token());
  }
}

}  // namespace letsencrypt

namespace letsencrypt {

void manager_test_access::set_acme_fetch(manager& m, acme::http_fetch f) { m.impl_->fetch_override_ = std::move(f); }

result<void> manager::impl::start_serving(http::handler h, bool with_http) {
  std::lock_guard lk(serve_mu_);
  if (serving_) return errc::busy;
  LE_TRY(ctx, tls::make_server_context());
  if (cfg_.configure_tls && !cfg_.configure_tls(ctx.get())) {
    log(log_level::error, "configure_tls refused the HTTPS server's TLS context");
    return errc::invalid_argument;
  }
  resolver_.install(ctx.get());
  tickets_ = std::make_unique<tls::ticket_keys>();
  LE_TRY_VOID(tickets_->install(ctx.get()));

  https_server_ = std::make_unique<http::server>(std::move(h));
  tls::acceptor_config ac;
  ac.host = cfg_.listen_host;
  ac.port = cfg_.https_port;
  ac.handshake_timeout = cfg_.handshake_timeout;
  ac.on_client_hello_retry = [this](SSL* ssl, std::stop_token stop) -> io::task<void> {
    std::string name(tls::resolver::pending_name(ssl));
    // The outcome shows in the retried handshake: the map has the name, or the miss
    // policy refuses it (a failed name is refused for a while). A stopped server stops
    // waiting; the issuance goes on in the background and is kept.
    (void)co_await cert(std::move(name), std::move(stop));
  };
  auto* srv = https_server_.get();
  auto acc = std::make_unique<tls::acceptor>(shards_, ctx.get(), ac, [srv](tls::stream& s) -> io::task<void> {
    // Challenge handshakes (acme-tls/1) carry no HTTP.
    if (tls::resolver::serving_challenge(s.native())) co_return;
    co_await srv->serve(s);
  });
  LE_TRY_VOID(acc->start());
  if (with_http) {
    auto hs = http::serve_http(shards_, cfg_.listen_host, cfg_.http_port,
                               http::acme_redirect_handler(
                                   tokens_, [this](std::string_view host) { return allowed(host); }, acc->port()));
    if (!hs) {
      acc->stop();
      return hs.error();
    }
    http_ = std::move(*hs);
  }
  https_ = std::move(acc);
  server_ctx_ = std::move(ctx);
  serving_ = true;
  serving_done_ = std::promise<void>();
  log(log_level::info, fmt::format("serving HTTPS on {}:{}{}", cfg_.listen_host, https_->port(),
                                   http_ ? fmt::format(" and HTTP on {}:{}", cfg_.listen_host, http_->port()) : ""));
  start_renewal();
  return ok();
}

manager::manager() : manager(letsencrypt::config{}) {}
manager::manager(letsencrypt::config c) : impl_(std::make_unique<impl>(std::move(c))) { impl_->start_renewal(); }
manager::~manager() {
  // First end the background work (CA requests, polling), then the servers: a connection
  // waiting for an issuance would otherwise hold stop() until the CA request timed out.
  impl_->background_stop_.request_stop();
  stop();
}

result<void> manager::cache_file(const std::string& path) {
  store::journal_options o;
  // A previous process killed with appends in flight holds the lock until the kernel has torn
  // down its ring: wait briefly instead of failing a restart.
  o.lock_timeout = std::chrono::seconds(2);
  auto* im = impl_.get();
  o.log = [im](std::string_view line) { im->log(log_level::warning, line); };
  store::open_report rep;
  auto j = store::journal::open(path, o, &rep);
  if (!j) {
    im->log(log_level::error, fmt::format("cache file: {}", rep.message.empty() ? j.error().message() : rep.message));
    return j.error();
  }
  LE_TRY_VOID(im->load_state((*j)->state()));
  im->notifier_.set_version(std::max<std::uint64_t>(im->notifier_.version(), (*j)->state().empty() ? 0 : 1));
  // The journal is used only on the control shard from now on.
  std::promise<void> moved;
  im->control().post([im, jj = std::move(*j), &moved]() mutable {
    im->journal_ = std::move(jj);
    moved.set_value();
  });
  moved.get_future().wait();
  im->log(log_level::info, fmt::format("cache file {}: {} records, {} certificates", path, rep.records, im->map_.size()));
  return ok();
}

io::task<result<void>> manager::cert(std::string host) { return impl_->cert(std::move(host)); }

result<void> manager::cert_sync(const std::string& host) {
  if (impl_->on_own_shard()) return errc::invalid_argument;
  return impl_->block_on(impl_->cert(host));
}

void manager::install(SSL_CTX* ctx) { impl_->resolver_.install(ctx); }
std::string_view manager::pending_name(const SSL* ssl) noexcept { return tls::resolver::pending_name(ssl); }

io::task<result<void>> manager::register_account(std::string email, std::function<bool(std::string_view)> prompt) {
  auto* im = impl_.get();
  struct runner {
    static io::task<result<void>> run(impl* im, std::string email, std::function<bool(std::string_view)> prompt) {
      bool have;
      {
        std::lock_guard lk(im->mu_);
        have = im->mirror_.account.has_value();
      }
      if (have || (im->client_ && !im->client_->account_url().empty())) co_return errc::busy;  // already registered
      im->tos_prompt_ = std::move(prompt);
      im->account_email_ = std::move(email);
      co_return co_await im->ensure_account();
    }
  };
  // Account state lives on the control shard.
  io::ring* home = io::ring::current();
  co_await im->control().loop().enter();
  auto r = co_await runner::run(im, std::move(email), std::move(prompt));
  if (home) co_await home->enter();
  co_return r;
}

result<void> manager::register_account_sync(const std::string& email, std::function<bool(std::string_view)> prompt) {
  if (impl_->on_own_shard()) return errc::invalid_argument;
  return impl_->block_on(register_account(email, std::move(prompt)));
}

bool manager::registered() const {
  std::lock_guard lk(impl_->mu_);
  return impl_->mirror_.account.has_value();
}

result<void> manager::set_hosts(std::vector<std::string> hosts) {
  std::vector<std::string> norm;
  for (const auto& h : hosts) {
    LE_TRY(n, tls::normalise_name(h));
    norm.push_back(std::move(n));
  }
  store::hosts_record rec;
  rec.hosts = norm;
  {
    std::lock_guard lk(impl_->mu_);
    impl_->mirror_.hosts = norm;  // effective at once; persisted below
  }
  auto* im = impl_.get();
  im->control().spawn([](impl* i, store::record r) -> io::task<void> { (void)co_await i->persist(std::move(r)); }(im, rec));
  return ok();
}

void manager::set_host_policy(std::function<bool(std::string_view)> policy) {
  std::lock_guard lk(impl_->mu_);
  impl_->policy_ = std::move(policy);
}

std::string manager::marshal() const {
  std::lock_guard lk(impl_->mu_);
  return store::marshal(impl_->mirror_);
}

result<void> manager::unmarshal(std::string_view json) {
  store::unmarshal_report rep;
  auto s = store::unmarshal(json, &rep);
  if (!s) {
    impl_->log(log_level::error, fmt::format("unmarshal: {}", rep.message));
    return s.error();
  }
  LE_TRY_VOID(impl_->load_state(*s));
  auto* im = impl_.get();
  auto records = s->snapshot();
  im->control().spawn([](impl* i, std::vector<store::record> rs) -> io::task<void> {
    for (auto& r : rs) (void)co_await i->persist(std::move(r));
  }(im, std::move(records)));
  return ok();
}

std::uint64_t manager::watch(std::function<void()> cb) { return impl_->notifier_.watch(std::move(cb)); }
void manager::unwatch(std::uint64_t id) { impl_->notifier_.unwatch(id); }
io::task<result<std::uint64_t>> manager::changed(std::uint64_t since) { co_return co_await impl_->notifier_.changed(since); }
std::uint64_t manager::state_version() const noexcept { return impl_->notifier_.version(); }

result<void> manager::start(http::handler handler, bool with_http) {
  return impl_->start_serving(std::move(handler), with_http);
}

result<void> manager::serve(http::handler handler) {
  LE_TRY_VOID(start(std::move(handler), true));
  impl_->serving_done_.get_future().wait();
  return ok();
}

result<void> manager::serve_https(http::handler handler) {
  LE_TRY_VOID(start(std::move(handler), false));
  impl_->serving_done_.get_future().wait();
  return ok();
}

void manager::stop() {
  std::lock_guard lk(impl_->serve_mu_);
  if (!impl_->serving_) return;
  if (impl_->https_) impl_->https_->stop();
  if (impl_->http_) impl_->http_->stop();
  impl_->https_.reset();
  impl_->http_.reset();
  impl_->serving_ = false;
  impl_->serving_done_.set_value();
}

std::uint16_t manager::https_port() const noexcept {
  std::lock_guard lk(impl_->serve_mu_);
  return impl_->https_ ? impl_->https_->port() : 0;
}
std::uint16_t manager::http_port() const noexcept {
  std::lock_guard lk(impl_->serve_mu_);
  return impl_->http_ ? impl_->http_->port() : 0;
}

const letsencrypt::config& manager::configuration() const noexcept { return impl_->cfg_; }

manager_stats manager::stats() const {
  std::lock_guard lk(impl_->mu_);
  auto s = impl_->stats_;
  s.certificates = impl_->map_.size();
  if (impl_->parsed_cache_) s.parsed_evictions = impl_->parsed_cache_->evictions();
  return s;
}

http::handler redirect_http(std::function<bool(std::string_view)> policy, std::uint16_t https_port) {
  return http::redirect_to_https(std::move(policy), https_port);
}

}  // namespace letsencrypt
