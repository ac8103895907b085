#include "letsencrypt/tls/sni_map.hpp"

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <memory>
#include <new>
#include <optional>
#include <thread>

#include <linux/membarrier.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "letsencrypt/tls/error.hpp"
#include "letsencrypt/tls/names.hpp"
#include "tls/ec_pkcs8.hpp"
#include "tls/sni_map_test_access.hpp"

namespace letsencrypt::tls {

namespace {

inline std::uint64_t load_le(const char* p, std::size_t n) noexcept {
  std::uint64_t v = 0;
  std::memcpy(&v, p, n);
  return v;
}

// memcmp(a, b, n) == 0 for the short names slots hold, without a call: words, the last one
// overlapping the one before.
inline bool same_bytes(const char* a, const char* b, std::size_t n) noexcept {
  if (n < 8) return std::memcmp(a, b, n) == 0;
  std::uint64_t diff = load_le(a + n - 8, 8) ^ load_le(b + n - 8, 8);
  for (std::size_t i = 0; i + 8 < n; i += 8) diff |= load_le(a + i, 8) ^ load_le(b + i, 8);
  return diff == 0;
}

// One cache line per slot, holding what a lookup compares: a hit reads this line and
// nothing else until it uses the entry, and a miss stops at the hash. Names up to
// inline_name bytes (almost all host names) are kept here; longer ones are compared with
// the entry's own copy.
constexpr std::size_t inline_name = 39;
struct alignas(64) slot {
  std::uint64_t hash = 0;
  std::shared_ptr<const sni_entry> entry;  // null: empty slot
  std::uint8_t len = 0;                    // the name's length when it is in `name`, else 0
  char name[inline_name];

  void set(std::uint64_t h, std::shared_ptr<const sni_entry> e) noexcept {
    hash = h;
    const std::string& n = e->name;
    len = n.size() <= inline_name ? static_cast<std::uint8_t>(n.size()) : 0;
    if (len) std::memcpy(name, n.data(), len);
    entry = std::move(e);
  }
  bool holds(std::string_view n, std::uint64_t h) const noexcept {
    if (hash != h) return false;
    if (len) return len == n.size() && same_bytes(name, n.data(), len);
    return entry->name == n;
  }
};
static_assert(sizeof(slot) == 64);

// Readers spread over the stripes by thread. A thread owns one of the first owned_stripes
// stripes (of every map) while it lives, so its counter has one writer and needs no atomic
// read-modify-write; the writer's membarrier stands in for the reader's fence. Threads past
// the 64th, or all when the kernel has no membarrier, use the shared stripes.
constexpr int stripe_unclaimed = -1;
constexpr int stripe_shared = -2;
// Trivially destructible, so readable at any time; initial-exec, so reading it is one load
// rather than a call into the dynamic linker (the library is not meant to be dlopen()ed late).
[[gnu::tls_model("initial-exec")]] thread_local int my_stripe = stripe_unclaimed;
std::atomic<std::uint64_t> claimed_stripes{0};  // bit i: stripe i has an owner

// Gives the owned stripe (value - 1) back when its thread ends, every guard on it having
// left. A pthread key rather than a thread_local's destructor: a thread whose first lookup
// runs in another key's destructor, as the thread ends, registers a thread_local destructor
// too late to be run, and its stripe would stay claimed for good; a key set then still has
// its destructor run, in the next round.
void release_stripe(void* value) noexcept {
  const auto i = reinterpret_cast<std::uintptr_t>(value) - 1;
  claimed_stripes.fetch_and(~(std::uint64_t{1} << i), std::memory_order_release);
  my_stripe = stripe_shared;
}

// The key whose destructor releases a thread's stripe; nullopt when none can be made.
std::optional<pthread_key_t> stripe_key() noexcept {
  static const std::optional<pthread_key_t> key = []() -> std::optional<pthread_key_t> {
    pthread_key_t k;
    if (pthread_key_create(&k, release_stripe) != 0) return std::nullopt;
    return k;
  }();
  return key;
}

long membarrier_call(int cmd) noexcept { return syscall(__NR_membarrier, cmd, 0, 0); }

// A child of fork() has only the forking thread: the other threads' stripes are free again.
// (A map that another thread was reading at the fork stays unreclaimable in the child, as
// any lock held at a fork stays held.)
void release_stripes_in_child() noexcept {
  claimed_stripes.store(my_stripe >= 0 ? std::uint64_t{1} << my_stripe : 0, std::memory_order_relaxed);
}

// Whether writers can order every reader with membarrier: registered once per process, by
// the first map's constructor.
bool asymmetric_fences() noexcept {
  static const bool ok = [] {
    const long cmds = membarrier_call(MEMBARRIER_CMD_QUERY);
    const bool usable = cmds > 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
                        membarrier_call(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
    if (usable) (void)pthread_atfork(nullptr, nullptr, release_stripes_in_child);
    return usable;
  }();
  return ok;
}

// A full barrier on every running thread of the process. Registration survives fork() and
// ends at exec; should the kernel still answer EPERM, register and try again.
bool barrier_all_threads() noexcept {
  if (membarrier_call(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return true;
  return errno == EPERM && membarrier_call(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0 &&
         membarrier_call(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0;
}

[[gnu::noinline]] int claim_stripe() noexcept {
  const std::optional<pthread_key_t> key = stripe_key();
  if (key && asymmetric_fences()) {
    std::uint64_t bits = claimed_stripes.load(std::memory_order_relaxed);
    while (bits != ~std::uint64_t{0}) {
      const int i = std::countr_one(bits);
      const std::uint64_t bit = std::uint64_t{1} << i;
      if (claimed_stripes.compare_exchange_weak(bits, bits | bit, std::memory_order_acquire,
                                                std::memory_order_relaxed)) {
        if (pthread_setspecific(*key, reinterpret_cast<void*>(static_cast<std::uintptr_t>(i) + 1)) == 0)
          return my_stripe = i;
        claimed_stripes.fetch_and(~bit, std::memory_order_relaxed);  // no way to give it back later
        break;
      }
    }
  }
  return my_stripe = stripe_shared;
}

// A reader enters or leaves counter `c`. On an owned stripe only this thread writes it: the
// entering store may become visible after the loads that follow it, and a writer's
// membarrier orders it before the writer looks (see try_advance). Shared stripes take atomic
// read-modify-writes.
inline void count_in(std::atomic<std::uint64_t>& c, bool owned) noexcept {
  if (owned) {
    c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    std::atomic_signal_fence(std::memory_order_seq_cst);
  } else {
    c.fetch_add(1, std::memory_order_seq_cst);
  }
}

inline void count_out(std::atomic<std::uint64_t>& c, bool owned) noexcept {
  if (owned)
    c.store(c.load(std::memory_order_relaxed) - 1, std::memory_order_release);
  else
    c.fetch_sub(1, std::memory_order_release);
}

std::size_t shared_stripe_index() noexcept {
  static std::atomic<std::size_t> next{0};
  thread_local std::size_t mine = next.fetch_add(1, std::memory_order_relaxed);
  return mine;
}

// The high and low halves of a 64x64 product, folded: each output bit depends on most
// input bits of both factors.
__extension__ typedef unsigned __int128 uint128;
inline std::uint64_t fold(std::uint64_t a, std::uint64_t b) noexcept {
  const uint128 r = static_cast<uint128>(a) * b;
  return static_cast<std::uint64_t>(r) ^ static_cast<std::uint64_t>(r >> 64);
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

namespace {

// A table's slots. Arrays of 2 MiB and more (from 8193 names in a shard) are mapped on
// their own and offered to transparent huge pages: a lookup in a large map then finds its
// slot without a TLB miss, which in a virtual machine costs more than the cache miss. Arrays
// from 64 KiB are mapped too, so the tables a bulk load replaces go back to the system
// instead of leaving holes in the heap. Smaller ones, or when mapping fails, come from
// operator new.
class slot_array {
 public:
  explicit slot_array(std::size_t cap) : cap_(cap) {
    const std::size_t bytes = cap * sizeof(slot);
    if (bytes >= huge_page && bytes % huge_page == 0)
      p_ = map_huge(bytes);
    else if (bytes >= map_from)
      p_ = map_plain(bytes);
    mapped_ = p_ != nullptr;
    if (!mapped_) p_ = static_cast<slot*>(::operator new(bytes, std::align_val_t{alignof(slot)}));
    std::uninitialized_default_construct_n(p_, cap_);
  }
  ~slot_array() {
    std::destroy_n(p_, cap_);
    if (mapped_)
      munmap(p_, cap_ * sizeof(slot));
    else
      ::operator delete(p_, std::align_val_t{alignof(slot)});
  }
  slot_array(const slot_array&) = delete;
  slot_array& operator=(const slot_array&) = delete;

  slot& operator[](std::size_t i) noexcept { return p_[i]; }
  const slot& operator[](std::size_t i) const noexcept { return p_[i]; }

  /// At least `wanted` slots, rounded up to what the array's memory holds anyway: whole
  /// pages when it is mapped, and whole huge pages from half a huge page on (from 8193 names
  /// in a shard), so a large table gets them rather than falling just short of one.
  static std::size_t capacity_for(std::size_t wanted) noexcept {
    constexpr std::size_t per_page = 4096 / sizeof(slot), per_huge = huge_page / sizeof(slot);
    if (wanted > per_huge / 2) return (wanted + per_huge - 1) / per_huge * per_huge;
    if (wanted * sizeof(slot) >= map_from) return (wanted + per_page - 1) / per_page * per_page;
    return wanted;
  }

 private:
  static constexpr std::size_t huge_page = std::size_t{2} << 20;
  static constexpr std::size_t map_from = std::size_t{64} << 10;

  static slot* map_plain(std::size_t bytes) noexcept {
    void* m = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return m == MAP_FAILED ? nullptr : static_cast<slot*>(m);
  }

  // `bytes` (a multiple of huge_page) at a huge_page boundary, or null.
  static slot* map_huge(std::size_t bytes) noexcept {
    void* m = mmap(nullptr, bytes + huge_page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return nullptr;
    const auto start = reinterpret_cast<std::uintptr_t>(m);
    const std::uintptr_t aligned = (start + huge_page - 1) & ~(huge_page - 1);
    if (aligned > start) munmap(m, aligned - start);
    const std::uintptr_t end = start + bytes + huge_page;
    if (end > aligned + bytes) munmap(reinterpret_cast<void*>(aligned + bytes), end - (aligned + bytes));
    (void)madvise(reinterpret_cast<void*>(aligned), bytes, MADV_HUGEPAGE);  // a hint: 4 KiB pages also work
    return reinterpret_cast<slot*>(aligned);
  }

  std::size_t cap_;
  slot* p_ = nullptr;
  bool mapped_ = false;
};

}  // namespace

// Slots are twice the names a table was built for (rounded up to whole pages), so it is at
// most half full once built (probes stay short) and no emptier than it need be: a
// power-of-two size would leave it between a quarter and half full, and at 100k names in 64
// shards 38% full, 40 bytes more per name. A name's first slot is the low 32 bits of its
// hash scaled to the size (the shard takes bits from the top half), so any size spreads
// names evenly.
struct sni_map::table {
  std::size_t cap;
  std::size_t count = 0;
  slot_array slots;

  explicit table(std::size_t entries)
      : cap(slot_array::capacity_for(std::max<std::size_t>(8, entries * 2))), slots(cap) {}

  std::size_t home(std::uint64_t h) const noexcept {
    return static_cast<std::size_t>(((h & 0xffffffffu) * static_cast<std::uint64_t>(cap)) >> 32);
  }
  std::size_t next(std::size_t i) const noexcept { return i + 1 == cap ? 0 : i + 1; }

  void put(std::uint64_t h, std::shared_ptr<const sni_entry> e) {
    std::size_t i = home(h);
    while (slots[i].entry) i = next(i);
    slots[i].set(h, std::move(e));
    ++count;
  }

  // Replaces the entry of the same name or adds one; the table is not yet published.
  void upsert(std::uint64_t h, std::shared_ptr<const sni_entry> e) {
    std::size_t i = home(h);
    while (slots[i].entry) {
      if (slots[i].holds(e->name, h)) {
        slots[i].entry = std::move(e);
        return;
      }
      i = next(i);
    }
    slots[i].set(h, std::move(e));
    ++count;
  }

  // Linear probing without tombstones: later slots of the run move back over the hole.
  bool erase(std::uint64_t h, std::string_view name) {
    std::size_t i = home(h);
    for (;; i = next(i)) {
      if (!slots[i].entry) return false;
      if (slots[i].holds(name, h)) break;
    }
    std::size_t j = i;
    for (;;) {
      j = next(j);
      if (!slots[j].entry) break;
      const std::size_t at = home(slots[j].hash);
      const bool stays = i <= j ? (i < at && at <= j) : (i < at || at <= j);
      if (stays) continue;
      slots[i] = std::move(slots[j]);
      i = j;
    }
    slots[i] = slot{};
    --count;
    return true;
  }

  const slot* find(std::string_view name, std::uint64_t h) const noexcept {
    std::size_t i = home(h);
    for (;;) {
      const slot& s = slots[i];
      if (!s.entry) return nullptr;
      if (s.holds(name, h)) return &s;
      i = next(i);
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

result<std::shared_ptr<const certified_key>> load_certified_key_der(std::string_view leaf_der,
                                                                    std::string_view key_der,
                                                                    std::span<X509* const> chain) {
  LE_TRY(leaf, parse_certificate_der(leaf_der));
  if (const auto fields = detail::read_ec_pkcs8_fields(key_der)) {
    if (detail::attach_ec_private_key(leaf.get(), *fields))
      return make_certified_key(leaf.get(), X509_get0_pubkey(leaf.get()), chain);
  }
  LE_TRY(key, load_private_key_der(key_der));
  return make_certified_key(leaf.get(), key.get(), chain);
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

std::shared_ptr<deferred_cache> deferred_cache::make(std::size_t capacity) {
  return std::shared_ptr<deferred_cache>(new deferred_cache(capacity));
}

std::size_t deferred_cache::size() const {
  std::lock_guard lk(mu_);
  return ring_.size();
}

std::shared_ptr<const deferred_key> deferred_cache::admit(const std::shared_ptr<const deferred_key>& k) {
  std::lock_guard lk(mu_);
  if (ring_.size() < capacity_) {
    ring_.push_back(k);
    return nullptr;
  }
  // The CLOCK hand: a slot whose key is gone is taken at once; a key used since the hand
  // last passed is spared once; the first one not used is displaced. Handshakes mark keys
  // without this lock, so after two turns the hand takes whatever it reaches.
  for (std::size_t step = 0;; ++step) {
    auto& slot = ring_[hand_];
    hand_ = (hand_ + 1) % ring_.size();
    std::shared_ptr<const deferred_key> old = slot.lock();
    if (old && step < 2 * ring_.size() && old->used_.exchange(false, std::memory_order_relaxed)) continue;
    slot = k;
    if (!old) return nullptr;
    evictions_.fetch_add(1, std::memory_order_relaxed);
    return old;
  }
}

namespace {

// Checks what both make() overloads take; the key itself is checked by the caller.
result<void> check_leaf_and_chain(const std::string& leaf_der, std::span<X509* const> chain) {
  if (leaf_der.empty()) return errc::invalid_argument;
  for (X509* c : chain)
    if (!c) return errc::invalid_argument;
  return ok();
}

}  // namespace

result<std::shared_ptr<const deferred_key>> deferred_key::make(std::string leaf_der, std::string key_der,
                                                               std::span<X509* const> chain,
                                                               std::shared_ptr<deferred_cache> cache) {
  // The key text is a secret: whatever happens below, the caller's copy moved here is
  // cleansed by the destructor.
  std::shared_ptr<deferred_key> d(new deferred_key);
  d->key_der_ = std::move(key_der);
  LE_TRY_VOID(check_leaf_and_chain(leaf_der, chain));
  LE_TRY(kind, pkcs8_kind(d->key_der_));
  d->kind_ = kind;
  d->cache_ = std::move(cache);
  d->leaf_der_ = std::move(leaf_der);
  for (X509* c : chain) d->chain_.push_back(up_ref(c));
  return std::shared_ptr<const deferred_key>(std::move(d));
}

result<std::shared_ptr<const deferred_key>> deferred_key::make(std::string leaf_der, EVP_PKEY* key,
                                                               std::span<X509* const> chain,
                                                               std::shared_ptr<deferred_cache> cache) {
  if (!key) return errc::invalid_argument;
  LE_TRY_VOID(check_leaf_and_chain(leaf_der, chain));
  LE_TRY(kind, pkey_kind(key));
  std::shared_ptr<deferred_key> d(new deferred_key);
  d->kind_ = kind;
  d->cache_ = std::move(cache);
  d->leaf_der_ = std::move(leaf_der);
  d->shared_key_ = up_ref(key);
  for (X509* c : chain) d->chain_.push_back(up_ref(c));
  return std::shared_ptr<const deferred_key>(std::move(d));
}

deferred_key::~deferred_key() {
  if (!key_der_.empty()) OPENSSL_cleanse(key_der_.data(), key_der_.size());
}

bool deferred_key::parsed() const noexcept {
  std::lock_guard lk(mu_);
  return parsed_ != nullptr;
}

std::error_code deferred_key::error() const noexcept {
  std::lock_guard lk(mu_);
  return error_;
}

std::shared_ptr<const certified_key> deferred_key::get() const noexcept {
  // Without a cache, a parse (or its failure) is final: read it without the lock.
  if (settled_.load(std::memory_order_acquire)) return parsed_;
  std::shared_ptr<const certified_key> out;
  bool admitted = false;
  {
    std::lock_guard lk(mu_);
    if (!parsed_ && !error_) {
      parse_locked();
      admitted = parsed_ && cache_;
      if (error_ || (parsed_ && !cache_)) settled_.store(true, std::memory_order_release);
    }
    out = parsed_;
  }
  if (!cache_) return out;
  // A key enters the cache unmarked and is marked by its next use: one pass of a client
  // over every name (a crawler) displaces its own parses first, not the names in use. The
  // load first keeps a hot name's line from being written by every handshake.
  if (admitted)
    used_.store(false, std::memory_order_relaxed);
  else if (out && !used_.load(std::memory_order_relaxed))
    used_.store(true, std::memory_order_relaxed);
  if (admitted) {
    // Outside mu_: the cache's lock is never taken under a key's, and the displaced key's
    // lock is taken after the cache's is released, so no two locks are ever held at once.
    try {
      if (auto old = cache_->admit(shared_from_this())) old->evict();
    } catch (const std::bad_alloc&) {  // the ring could not grow: drop this parse instead
      evict();
    }
  }
  return out;
}

void deferred_key::evict() const noexcept {
  std::shared_ptr<const certified_key> dropped;  // freed after the lock is released
  std::lock_guard lk(mu_);
  dropped.swap(parsed_);
}

void deferred_key::parse_locked() const noexcept {
  if (leaf_der_.empty()) return;  // the DER was dropped after a parse without a cache
  try {
    std::vector<X509*> chain;
    chain.reserve(chain_.size());
    for (const auto& c : chain_) chain.push_back(c.get());
    result<std::shared_ptr<const certified_key>> ck = tls_errc::bad_pem;
    if (shared_key_) {
      if (auto leaf = parse_certificate_der(leaf_der_)) ck = make_certified_key(leaf->get(), shared_key_.get(), chain);
    } else {
      ck = load_certified_key_der(leaf_der_, key_der_, chain);
    }
    ERR_clear_error();
    // make_certified_key refuses a key that is not the certificate's, or not EC or RSA, as
    // invalid_argument; anything else failed to parse.
    if (!ck)
      error_ = ck.error() == make_error_code(errc::invalid_argument) ? make_error_code(tls_errc::key_mismatch)
                                                                     : make_error_code(tls_errc::bad_pem);
    else if ((*ck)->kind != kind_)
      error_ = errc::invalid_argument;
    else
      parsed_ = std::move(*ck);
  } catch (const std::bad_alloc&) {
    return;  // nothing kept: the next handshake tries again
  }
  // Bytes that fail to parse fail the same way again; without a cache the parsed form
  // stays for good. Either way the DER is no longer needed.
  if (error_ || !cache_) {
    OPENSSL_cleanse(key_der_.data(), key_der_.size());
    std::string().swap(key_der_);
    std::string().swap(leaf_der_);
    shared_key_.reset();
    chain_.clear();
    chain_.shrink_to_fit();
  }
}

sni_map::sni_map(std::size_t shards)
    : shard_count_(std::bit_ceil(std::clamp<std::size_t>(shards, 1, 1u << 16))),
      shards_(std::make_unique<std::atomic<table*>[]>(shard_count_)) {
  // A random seed keeps the table layout (and so probe lengths) unpredictable from outside.
  std::uint64_t seeds[2];
  if (RAND_bytes(reinterpret_cast<unsigned char*>(seeds), sizeof seeds) != 1) {
    seeds[0] = reinterpret_cast<std::uintptr_t>(this) * 0x9e3779b97f4a7c15ULL;
    seeds[1] = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^ 0xa0761d6478bd642fULL;
  }
  // A zero factor would erase the other; odd factors never are.
  seed_ = seeds[0];
  seed2_ = seeds[1] | 1;
  // Registering for membarrier waits for an RCU grace period (about 12 ms here): done at
  // construction, so a ring thread's first lookup does not stall its other connections.
  (void)asymmetric_fences();
  for (std::size_t i = 0; i < shard_count_; ++i) shards_[i].store(nullptr, std::memory_order_relaxed);
}

sni_map::~sni_map() {
  for (std::size_t i = 0; i < shard_count_; ++i) delete shards_[i].load(std::memory_order_relaxed);
}

std::uint64_t sni_map::hash(std::string_view s) const noexcept {
  // A multiply-fold over 16 bytes at a time (wyhash's construction) keyed by the map's
  // random seed. Only names the map holds shape its clusters, so lookups of chosen names
  // cannot lengthen probes; the seed keeps where names land unpredictable.
  const auto* p = s.data();
  std::size_t n = s.size();
  std::uint64_t h = seed_ ^ static_cast<std::uint64_t>(n);
  std::uint64_t a = 0, b = 0;
  if (n <= 16) {
    if (n >= 8) {
      a = load_le(p, 8);
      b = load_le(p + n - 8, 8);
    } else if (n > 0) {
      a = load_le(p, n);
    }
  } else {
    while (n > 16) {
      h = fold(load_le(p, 8) ^ seed2_, load_le(p + 8, 8) ^ h);
      p += 16;
      n -= 16;
    }
    a = load_le(p + n - 16, 8);
    b = load_le(p + n - 8, 8);
  }
  return fold(seed2_ ^ s.size(), fold(a ^ seed2_, b ^ h));
}

std::size_t sni_map::shard_of(std::uint64_t h) const noexcept {
  // The slot index uses the low bits; the shard takes bits from the top half.
  return static_cast<std::size_t>(h >> 40) & (shard_count_ - 1);
}

sni_map::read_guard::read_guard(const sni_map& m) noexcept {
  int mine = my_stripe;
  if (mine == stripe_unclaimed) [[unlikely]]
    mine = claim_stripe();
  owned_ = mine >= 0;
  stripe& st = owned_ ? m.stripes_[static_cast<std::size_t>(mine)]
                      : m.stripes_[owned_stripes + shared_stripe_index() % shared_stripes];
  for (;;) {
    const std::uint64_t e = m.epoch_.load(std::memory_order_seq_cst);
    std::atomic<std::uint64_t>* c = &st.readers[e & 1];
    count_in(*c, owned_);
    // Entered only if the epoch did not move meanwhile: a writer that advanced past `e`
    // may not have seen this counter, so try again in the new epoch.
    if (m.epoch_.load(std::memory_order_seq_cst) == e) {
      counter_ = c;
      return;
    }
    count_out(*c, owned_);
  }
}

sni_map::read_guard::~read_guard() { count_out(*counter_, owned_); }

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
  return find_normalised({buf, len});
}

auto sni_map::find_normalised(std::string_view n) const noexcept -> const entry_ptr* {
  if (n.empty() || n.size() > max_name_length) return nullptr;
  if (const entry_ptr* e = find_exact(n, hash(n))) return e;
  if (is_wildcard(n)) return nullptr;
  // One level only: "a.b.example" -> "*.b.example", never "*.example".
  const std::size_t dot = n.find('.');
  if (dot == std::string_view::npos || dot == 0) return nullptr;
  char w[256];
  w[0] = '*';
  std::memcpy(w + 1, n.data() + dot, n.size() - dot);
  const std::string_view wild(w, n.size() - dot + 1);
  return find_exact(wild, hash(wild));
}

std::shared_ptr<const sni_entry> sni_map::lookup(std::string_view name) const noexcept {
  read_guard g(*this);
  const entry_ptr* e = find_guarded(name);
  return e ? *e : nullptr;  // a reference count increment, no allocation
}


struct sni_map::change {
  std::uint64_t hash;
  std::size_t shard;
  std::string removed;                     // the name, for a removal only
  std::shared_ptr<const sni_entry> entry;  // null: remove

  std::string_view name() const noexcept { return entry ? std::string_view(entry->name) : std::string_view(removed); }
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
    // Sized for the names it will hold: replacements of names already there (a renewal, a
    // reload) add none, so a table stays half full rather than a quarter.
    std::size_t added = 0;
    for (std::size_t k = i; k < end; ++k)
      if (changes[k].entry && !(old && old->find(changes[k].name(), changes[k].hash))) ++added;
    auto t = std::make_unique<table>(old_count + added);
    if (old)
      for (std::size_t k = 0; k < old->cap; ++k)
        if (old->slots[k].entry) t->put(old->slots[k].hash, old->slots[k].entry);
    for (std::size_t k = i; k < end; ++k) {
      change& c = changes[k];
      if (c.entry)
        t->upsert(c.hash, std::move(c.entry));
      else
        t->erase(c.hash, c.removed);
    }
    if (t->count == 0) {
      t.reset();
    } else if (t->count * 8 < t->cap && t->cap > 16) {
      auto smaller = std::make_unique<table>(t->count);
      for (std::size_t k = 0; k < t->cap; ++k)
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
  // Owned stripes are updated without a fence: this makes every running thread of the
  // process pass a full barrier, so a counter stored before a reader loaded a table pointer
  // is seen below, and a reader that has not stored yet loads the tables published before
  // this call. Without it nothing can be proven, so the epoch stays.
  if (asymmetric_fences() && !barrier_all_threads()) {
    barrier_failed_ = true;
    return false;
  }
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
      barrier_failed_ = false;
      collect_locked();
      // Without the barrier nothing more can be proven free; waiting would never end.
      if (retired_.empty() || barrier_failed_) return;
    }
    std::this_thread::yield();
  }
}

std::size_t sni_map::retired_tables() const {
  std::lock_guard lock(write_mutex_);
  return retired_.size();
}

result<void> sni_map::apply(std::span<const sni_update> updates) {
  // The entries need their own names and key vectors either way: copy the updates and take
  // the copies apart.
  return apply(std::vector<sni_update>(updates.begin(), updates.end()));
}

result<void> sni_map::apply(std::vector<sni_update>&& updates) {
  // Every update is checked before any is taken apart, so a refused batch is left whole.
  for (const sni_update& u : updates) {
    char buf[256];
    std::size_t len = 0;
    if (!normalise_into(u.name, buf, len)) return errc::invalid_name;
    if (!valid_update(u)) return errc::invalid_argument;
  }
  std::vector<change> changes;
  changes.reserve(updates.size());
  for (sni_update& u : updates) {
    char buf[256];
    std::size_t len = 0;
    (void)normalise_into(u.name, buf, len);
    const std::string_view n(buf, len);
    std::string name = n == u.name ? std::move(u.name) : std::string(n);
    const std::uint64_t h = hash(name);
    if (u.keys.empty() && u.deferred.empty())
      changes.push_back({h, shard_of(h), std::move(name), nullptr});
    else
      changes.push_back({h, shard_of(h), {},
                         std::make_shared<const sni_entry>(sni_entry{std::move(name), std::move(u.keys), std::move(u.deferred)})});
  }
  updates.clear();
  std::lock_guard lock(write_mutex_);
  apply_locked(changes);
  collect_locked();
  return ok();
}

result<void> sni_map::set(std::string_view name, std::vector<std::shared_ptr<const certified_key>> keys) {
  LE_TRY(n, normalise_name(name));
  if (!valid_keys(keys)) return errc::invalid_argument;
  const std::uint64_t h = hash(n);
  change c{h, shard_of(h), {}, std::make_shared<const sni_entry>(sni_entry{std::move(n), std::move(keys)})};
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
  change c{h, shard_of(h), {}, std::make_shared<const sni_entry>(sni_entry{std::move(n), std::move(keys), std::move(deferred)})};
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

int sni_map_test_access::owned_stripes_claimed() noexcept { return std::popcount(claimed_stripes.load()); }

std::size_t sni_map_test_access::slots(const sni_map& m) noexcept {
  std::size_t n = 0;
  for (std::size_t i = 0; i < m.shard_count_; ++i)
    if (const sni_map::table* t = m.shards_[i].load(std::memory_order_acquire)) n += t->cap;
  return n;
}

void sni_map_test_access::put_under_hash_of(sni_map& m, std::string_view hash_name, std::shared_ptr<const sni_entry> e) {
  const std::uint64_t h = m.hash(hash_name);
  sni_map::change c{h, m.shard_of(h), {}, std::move(e)};
  std::lock_guard lock(m.write_mutex_);
  m.apply_locked({&c, 1});
  m.collect_locked();
}

}  // namespace letsencrypt::tls
