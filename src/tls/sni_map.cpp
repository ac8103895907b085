#include "letsencrypt/tls/sni_map.hpp"

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <ctime>
#include <thread>

#include "letsencrypt/tls/error.hpp"
#include "letsencrypt/tls/names.hpp"

namespace letsencrypt::tls {

namespace {

struct slot {
  std::uint64_t hash = 0;
  std::shared_ptr<const sni_entry> entry;  // null: empty slot
};

// Readers of any map spread over the stripes by thread, so two ring threads rarely share a
// counter's cache line. Assigned once per thread; a trivially destructible thread_local, so
// no allocation and no exit-time work.
std::size_t stripe_index() noexcept {
  static std::atomic<std::size_t> next{0};
  thread_local std::size_t mine = next.fetch_add(1, std::memory_order_relaxed);
  return mine;
}

inline std::uint64_t load_le(const char* p, std::size_t n) noexcept {
  std::uint64_t v = 0;
  std::memcpy(&v, p, n);
  return v;
}

inline std::uint64_t mix(std::uint64_t h) noexcept {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

std::chrono::system_clock::time_point not_after_of(X509* cert) {
  auto t = to_time_point(X509_get0_notAfter(cert));
  return t ? *t : std::chrono::system_clock::time_point{};
}

// OpenSSL decodes a certificate's extensions and signature details lazily, under the
// certificate's write lock, on the first call that needs them: this does it now, so the
// first handshake for a name does not (about 4 us there, and a lock shards would contend
// on). Invalid extensions are the handshake's to judge; their errors leave the queue as
// found.
void fill_lazy_caches(X509* cert) noexcept {
  ERR_set_mark();
  X509_check_purpose(cert, -1, 0);
  ERR_pop_to_mark();
}

// The kind of a parsed key, for the keys the map serves.
result<key_kind> pkey_kind(EVP_PKEY* key) noexcept {
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_EC: return key_kind::ecdsa;
    case EVP_PKEY_RSA:
    case EVP_PKEY_RSA_PSS: return key_kind::rsa;
    default: return errc::invalid_argument;
  }
}

}  // namespace

struct sni_map::table {
  std::size_t mask = 0;
  std::size_t count = 0;
  std::unique_ptr<slot[]> slots;

  explicit table(std::size_t entries) {
    std::size_t cap = std::bit_ceil(std::max<std::size_t>(8, entries * 2));
    mask = cap - 1;
    slots = std::make_unique<slot[]>(cap);
  }

  void put(std::uint64_t h, std::shared_ptr<const sni_entry> e) {
    std::size_t i = static_cast<std::size_t>(h) & mask;
    while (slots[i].entry) i = (i + 1) & mask;
    slots[i].hash = h;
    slots[i].entry = std::move(e);
    ++count;
  }

  // Replaces the entry of the same name or adds one; the table is not yet published.
  void upsert(std::uint64_t h, std::shared_ptr<const sni_entry> e) {
    std::size_t i = static_cast<std::size_t>(h) & mask;
    while (slots[i].entry) {
      if (slots[i].hash == h && slots[i].entry->name == e->name) {
        slots[i].entry = std::move(e);
        return;
      }
      i = (i + 1) & mask;
    }
    slots[i].hash = h;
    slots[i].entry = std::move(e);
    ++count;
  }

  // Linear probing without tombstones: later slots of the run move back over the hole.
  bool erase(std::uint64_t h, std::string_view name) {
    std::size_t i = static_cast<std::size_t>(h) & mask;
    for (;; i = (i + 1) & mask) {
      if (!slots[i].entry) return false;
      if (slots[i].hash == h && slots[i].entry->name == name) break;
    }
    std::size_t j = i;
    for (;;) {
      j = (j + 1) & mask;
      if (!slots[j].entry) break;
      const std::size_t home = static_cast<std::size_t>(slots[j].hash) & mask;
      const bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
      if (stays) continue;
      slots[i] = std::move(slots[j]);
      i = j;
    }
    slots[i] = slot{};
    --count;
    return true;
  }

  const slot* find(std::string_view name, std::uint64_t h) const noexcept {
    std::size_t i = static_cast<std::size_t>(h) & mask;
    for (;;) {
      const slot& s = slots[i];
      if (!s.entry) return nullptr;
      if (s.hash == h && s.entry->name == name) return &s;
      i = (i + 1) & mask;
    }
  }
};

result<std::shared_ptr<const certified_key>> make_certified_key(X509* leaf, EVP_PKEY* key,
                                                                std::span<X509* const> chain) {
  if (!leaf || !key) return errc::invalid_argument;
  auto ck = std::make_shared<certified_key>();
  LE_TRY(kind, pkey_kind(key));
  ck->kind = kind;
  if (X509_check_private_key(leaf, key) != 1) {
    ERR_clear_error();
    return errc::invalid_argument;
  }
  fill_lazy_caches(leaf);
  ck->leaf = up_ref(leaf);
  ck->key = up_ref(key);
  for (X509* c : chain) {
    if (!c) return errc::invalid_argument;
    fill_lazy_caches(c);
    ck->chain.push_back(up_ref(c));
  }
  ck->not_after = not_after_of(leaf);
  return std::shared_ptr<const certified_key>(std::move(ck));
}

bool use_certified_key(SSL* ssl, const certified_key& k) noexcept {
  // A stack per call: keeping one in each certified_key measured no faster
  // (bench_sni bm_install_on_ssl) and costs about 100 bytes per certificate.
  x509_stack_ptr chain;
  if (!k.chain.empty()) {
    auto st = to_stack(k.chain);
    if (!st) return false;
    chain = std::move(*st);
  }
  return SSL_use_cert_and_key(ssl, k.leaf.get(), k.key.get(), chain.get(), 1) == 1;
}

namespace {

// The key algorithm of a PKCS#8 PrivateKeyInfo, read from its AlgorithmIdentifier without
// decoding the key itself.
result<key_kind> pkcs8_kind(std::string_view der) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  std::unique_ptr<PKCS8_PRIV_KEY_INFO, decltype(&PKCS8_PRIV_KEY_INFO_free)> info(
      d2i_PKCS8_PRIV_KEY_INFO(nullptr, &p, static_cast<long>(der.size())), &PKCS8_PRIV_KEY_INFO_free);
  ERR_clear_error();
  if (!info) return errc::invalid_argument;
  const ASN1_OBJECT* alg = nullptr;
  if (PKCS8_pkey_get0(&alg, nullptr, nullptr, nullptr, info.get()) != 1) return errc::invalid_argument;
  switch (OBJ_obj2nid(alg)) {
    case NID_X9_62_id_ecPublicKey: return key_kind::ecdsa;
    case NID_rsaEncryption:
    case NID_rsassaPss: return key_kind::rsa;
    default: return errc::invalid_argument;
  }
}

}  // namespace

result<std::shared_ptr<const deferred_key>> deferred_key::make(std::string leaf_der, std::string key_der,
                                                               std::span<X509* const> chain) {
  // The key text is a secret: whatever happens below, the caller's copy moved here is
  // cleansed by the destructor or right here.
  std::shared_ptr<deferred_key> d(new deferred_key);
  d->key_der_ = std::move(key_der);
  if (leaf_der.empty()) return errc::invalid_argument;
  LE_TRY(kind, pkcs8_kind(d->key_der_));
  for (X509* c : chain)
    if (!c) return errc::invalid_argument;
  d->kind_ = kind;
  d->leaf_der_ = std::move(leaf_der);
  for (X509* c : chain) d->chain_.push_back(up_ref(c));
  return std::shared_ptr<const deferred_key>(std::move(d));
}

result<std::shared_ptr<const deferred_key>> deferred_key::make(std::string leaf_der, EVP_PKEY* key,
                                                               std::span<X509* const> chain) {
  if (leaf_der.empty() || !key) return errc::invalid_argument;
  LE_TRY(kind, pkey_kind(key));
  for (X509* c : chain)
    if (!c) return errc::invalid_argument;
  std::shared_ptr<deferred_key> d(new deferred_key);
  d->kind_ = kind;
  d->leaf_der_ = std::move(leaf_der);
  d->shared_key_ = up_ref(key);
  for (X509* c : chain) d->chain_.push_back(up_ref(c));
  return std::shared_ptr<const deferred_key>(std::move(d));
}

deferred_key::~deferred_key() {
  if (!key_der_.empty()) OPENSSL_cleanse(key_der_.data(), key_der_.size());
}

std::error_code deferred_key::error() const noexcept {
  return done_.load(std::memory_order_acquire) ? error_ : std::error_code{};
}

const certified_key* deferred_key::get() const noexcept {
  if (!done_.load(std::memory_order_acquire)) {
    try {
      std::call_once(once_, [this] { parse(); });
    } catch (...) {  // call_once itself failing (the thread library): no key
      return nullptr;
    }
  }
  return parsed_.get();
}

void deferred_key::parse() const noexcept {
  // Runs once, under call_once: no other thread reads the members until done_ is set.
  try {
    const auto* p = reinterpret_cast<const unsigned char*>(leaf_der_.data());
    x509_ptr leaf(d2i_X509(nullptr, &p, static_cast<long>(leaf_der_.size())));
    evp_pkey_ptr own;
    EVP_PKEY* key = shared_key_.get();
    if (!key) {
      p = reinterpret_cast<const unsigned char*>(key_der_.data());
      own.reset(d2i_AutoPrivateKey(nullptr, &p, static_cast<long>(key_der_.size())));
      key = own.get();
    }
    ERR_clear_error();
    if (!leaf || !key) {
      error_ = tls_errc::bad_pem;
    } else {
      std::vector<X509*> chain;
      chain.reserve(chain_.size());
      for (const auto& c : chain_) chain.push_back(c.get());
      auto ck = make_certified_key(leaf.get(), key, chain);
      if (!ck)
        error_ = tls_errc::key_mismatch;
      else if ((*ck)->kind != kind_)
        error_ = errc::invalid_argument;
      else
        parsed_ = std::move(*ck);
    }
  } catch (const std::bad_alloc&) {
    error_ = std::make_error_code(std::errc::not_enough_memory);
  }
  // Parsed or not, the bytes are no longer needed: a failed parse fails the same way again.
  OPENSSL_cleanse(key_der_.data(), key_der_.size());
  std::string().swap(key_der_);
  std::string().swap(leaf_der_);
  shared_key_.reset();
  chain_.clear();
  chain_.shrink_to_fit();
  done_.store(true, std::memory_order_release);
}

sni_map::sni_map(std::size_t shards)
    : shard_count_(std::bit_ceil(std::clamp<std::size_t>(shards, 1, 1u << 16))),
      shards_(std::make_unique<std::atomic<table*>[]>(shard_count_)) {
  // A random seed keeps the table layout (and so probe lengths) unpredictable from outside.
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&seed_), sizeof seed_) != 1)
    seed_ = reinterpret_cast<std::uintptr_t>(this) * 0x9e3779b97f4a7c15ULL;
  for (std::size_t i = 0; i < shard_count_; ++i) shards_[i].store(nullptr, std::memory_order_relaxed);
}

sni_map::~sni_map() {
  for (std::size_t i = 0; i < shard_count_; ++i) delete shards_[i].load(std::memory_order_relaxed);
}

std::uint64_t sni_map::hash(std::string_view s) const noexcept {
  std::uint64_t h = seed_ ^ (s.size() * 0x9e3779b97f4a7c15ULL);
  const char* p = s.data();
  std::size_t n = s.size();
  while (n >= 8) {
    h = (h ^ mix(load_le(p, 8))) * 0x9e3779b97f4a7c15ULL;
    p += 8;
    n -= 8;
  }
  if (n) h = (h ^ mix(load_le(p, n) ^ 0xa5)) * 0x9e3779b97f4a7c15ULL;
  h = mix(h);
  return h;
}

std::size_t sni_map::shard_of(std::uint64_t h) const noexcept {
  // The slot index uses the low bits; the shard takes bits from the top half.
  return static_cast<std::size_t>(h >> 40) & (shard_count_ - 1);
}

sni_map::read_guard::read_guard(const sni_map& m) noexcept {
  stripe& st = m.stripes_[stripe_index() % stripe_count];
  for (;;) {
    const std::uint64_t e = m.epoch_.load(std::memory_order_seq_cst);
    std::atomic<std::uint64_t>* c = &st.readers[e & 1];
    c->fetch_add(1, std::memory_order_seq_cst);
    // Entered only if the epoch did not move meanwhile: a writer that advanced past `e`
    // may not have seen this counter, so try again in the new epoch.
    if (m.epoch_.load(std::memory_order_seq_cst) == e) {
      counter_ = c;
      return;
    }
    c->fetch_sub(1, std::memory_order_release);
  }
}

sni_map::read_guard::~read_guard() { counter_->fetch_sub(1, std::memory_order_release); }

auto sni_map::find_exact(std::string_view normalised, std::uint64_t h) const noexcept -> const entry_ptr* {
  const table* t = shards_[shard_of(h)].load(std::memory_order_acquire);
  if (!t) return nullptr;
  const slot* s = t->find(normalised, h);
  return s ? &s->entry : nullptr;
}

auto sni_map::find_guarded(std::string_view name) const noexcept -> const entry_ptr* {
  char buf[256];
  std::size_t len = 0;
  if (!normalise_into(name, buf, len)) return nullptr;
  std::string_view n(buf, len);
  if (const entry_ptr* e = find_exact(n, hash(n))) return e;
  if (is_wildcard(n)) return nullptr;
  // One level only: "a.b.example" -> "*.b.example", never "*.example".
  const std::size_t dot = n.find('.');
  if (dot == std::string_view::npos || dot == 0) return nullptr;
  buf[dot - 1] = '*';
  std::string_view w(buf + dot - 1, len - dot + 1);
  return find_exact(w, hash(w));
}

std::shared_ptr<const sni_entry> sni_map::lookup(std::string_view name) const noexcept {
  read_guard g(*this);
  const entry_ptr* e = find_guarded(name);
  return e ? *e : nullptr;  // a reference count increment, no allocation
}


struct sni_map::change {
  std::uint64_t hash;
  std::size_t shard;
  std::string name;
  std::shared_ptr<const sni_entry> entry;  // null: remove
};

namespace {

bool valid_keys(const std::vector<std::shared_ptr<const certified_key>>& keys) {
  if (keys.empty()) return false;
  for (const auto& k : keys)
    if (!k || !k->leaf || !k->key) return false;
  return true;
}

bool valid_update(const sni_update& u) {
  if (u.keys.empty() && u.deferred.empty()) return true;  // a removal
  if (!u.keys.empty() && !valid_keys(u.keys)) return false;
  for (const auto& d : u.deferred)
    if (!d) return false;
  return true;
}

}  // namespace

void sni_map::apply_locked(std::span<change> changes) {
  // Later updates of the same name win, so keep the callers' order inside each shard.
  std::stable_sort(changes.begin(), changes.end(),
                   [](const change& a, const change& b) { return a.shard < b.shard; });
  std::size_t i = 0;
  while (i < changes.size()) {
    const std::size_t s = changes[i].shard;
    std::size_t end = i;
    while (end < changes.size() && changes[end].shard == s) ++end;
    const table* old = shards_[s].load(std::memory_order_relaxed);
    const std::size_t old_count = old ? old->count : 0;
    auto t = std::make_unique<table>(old_count + (end - i));
    if (old)
      for (std::size_t k = 0; k <= old->mask; ++k)
        if (old->slots[k].entry) t->put(old->slots[k].hash, old->slots[k].entry);
    for (std::size_t k = i; k < end; ++k) {
      change& c = changes[k];
      if (c.entry)
        t->upsert(c.hash, std::move(c.entry));
      else
        t->erase(c.hash, c.name);
    }
    if (t->count == 0) {
      t.reset();
    } else if (t->count * 8 < t->mask + 1 && t->mask + 1 > 16) {
      auto smaller = std::make_unique<table>(t->count);
      for (std::size_t k = 0; k <= t->mask; ++k)
        if (t->slots[k].entry) smaller->put(t->slots[k].hash, std::move(t->slots[k].entry));
      t = std::move(smaller);
    }
    const std::size_t new_count = t ? t->count : 0;
    if (new_count >= old_count)
      size_.fetch_add(new_count - old_count, std::memory_order_relaxed);
    else
      size_.fetch_sub(old_count - new_count, std::memory_order_relaxed);
    publish(s, std::move(t));
    i = end;
  }
}

void sni_map::publish(std::size_t shard, std::unique_ptr<table> t) {
  table* old = shards_[shard].exchange(t.release(), std::memory_order_seq_cst);
  if (!old) return;
  // Readers that can still see `old` entered at or before the epoch read here (see
  // read_guard), so it is safe to free once the epoch is two ahead.
  retired_.push_back({std::unique_ptr<table>(old), epoch_.load(std::memory_order_seq_cst)});
}

bool sni_map::try_advance() {
  const std::uint64_t e = epoch_.load(std::memory_order_seq_cst);
  // Readers still in epoch e-1 count on the parity of e+1; they block the step to e+1.
  const std::size_t parity = (e + 1) & 1;
  for (const stripe& st : stripes_)
    if (st.readers[parity].load(std::memory_order_seq_cst) != 0) return false;
  epoch_.store(e + 1, std::memory_order_seq_cst);
  return true;
}

std::size_t sni_map::collect_locked() {
  if (retired_.empty()) return 0;
  for (int k = 0; k < 2 && try_advance(); ++k) {
  }
  const std::uint64_t e = epoch_.load(std::memory_order_seq_cst);
  std::size_t freed = 0;
  std::erase_if(retired_, [&](const retired& r) {
    if (r.epoch + 2 > e) return false;
    ++freed;
    return true;
  });
  reclaimed_.fetch_add(freed, std::memory_order_relaxed);
  return freed;
}

std::size_t sni_map::collect() {
  std::lock_guard lock(write_mutex_);
  return collect_locked();
}

void sni_map::synchronize() {
  for (;;) {
    {
      std::lock_guard lock(write_mutex_);
      collect_locked();
      if (retired_.empty()) return;
    }
    std::this_thread::yield();
  }
}

std::size_t sni_map::retired_tables() const {
  std::lock_guard lock(write_mutex_);
  return retired_.size();
}

result<void> sni_map::apply(std::span<const sni_update> updates) {
  std::vector<change> changes;
  changes.reserve(updates.size());
  for (const sni_update& u : updates) {
    LE_TRY(n, normalise_name(u.name));
    if (!valid_update(u)) return errc::invalid_argument;
    const std::uint64_t h = hash(n);
    std::shared_ptr<const sni_entry> e;
    if (!u.keys.empty() || !u.deferred.empty())
      e = std::make_shared<const sni_entry>(sni_entry{n, u.keys, u.deferred});
    changes.push_back({h, shard_of(h), std::move(n), std::move(e)});
  }
  std::lock_guard lock(write_mutex_);
  apply_locked(changes);
  collect_locked();
  return ok();
}

result<void> sni_map::set(std::string_view name, std::vector<std::shared_ptr<const certified_key>> keys) {
  LE_TRY(n, normalise_name(name));
  if (!valid_keys(keys)) return errc::invalid_argument;
  const std::uint64_t h = hash(n);
  auto e = std::make_shared<const sni_entry>(sni_entry{n, std::move(keys)});
  change c{h, shard_of(h), std::move(n), std::move(e)};
  std::lock_guard lock(write_mutex_);
  apply_locked({&c, 1});
  collect_locked();
  return ok();
}

result<void> sni_map::insert(std::string_view name, std::shared_ptr<const certified_key> key) {
  LE_TRY(n, normalise_name(name));
  if (!key || !key->leaf || !key->key) return errc::invalid_argument;
  const std::uint64_t h = hash(n);
  std::lock_guard lock(write_mutex_);
  // Writers are serialised and only writers free tables, so no read guard is needed here.
  std::vector<std::shared_ptr<const certified_key>> keys;
  std::vector<std::shared_ptr<const deferred_key>> deferred;
  if (const entry_ptr* cur = find_exact(n, h)) {
    for (const auto& k : (*cur)->keys)
      if (k->kind != key->kind) keys.push_back(k);
    for (const auto& d : (*cur)->deferred)
      if (d->kind() != key->kind) deferred.push_back(d);
  }
  keys.push_back(std::move(key));
  auto e = std::make_shared<const sni_entry>(sni_entry{n, std::move(keys), std::move(deferred)});
  change c{h, shard_of(h), std::move(n), std::move(e)};
  apply_locked({&c, 1});
  collect_locked();
  return ok();
}

result<bool> sni_map::remove(std::string_view name) {
  LE_TRY(n, normalise_name(name));
  const std::uint64_t h = hash(n);
  std::lock_guard lock(write_mutex_);
  if (!find_exact(n, h)) return false;
  change c{h, shard_of(h), std::move(n), nullptr};
  apply_locked({&c, 1});
  collect_locked();
  return true;
}

}  // namespace letsencrypt::tls
