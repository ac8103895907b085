// sni_map: host name -> certificates, read by every handshake without locks or allocation.
#pragma once

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <system_error>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "letsencrypt/result.hpp"
#include "letsencrypt/tls/handles.hpp"

namespace letsencrypt::tls {

/// The public key algorithm of a certificate, used to answer clients by their
/// signature_algorithms.
enum class key_kind : std::uint8_t { ecdsa, rsa };

/// A leaf certificate, its private key and the intermediates sent after it. Shared as
/// std::shared_ptr<const certified_key> and never changed once published, so a handshake
/// keeps a consistent set even when the name's entry is replaced meanwhile.
struct certified_key {
  x509_ptr leaf;
  evp_pkey_ptr key;
  std::vector<x509_ptr> chain;
  key_kind kind = key_kind::ecdsa;
  std::chrono::system_clock::time_point not_after{};
};

/// Puts `k` (certificate, key and chain) on the connection, as the ClientHello callback
/// does; OpenSSL takes its own references, so `k` may be dropped right after. Returns false
/// when OpenSSL refuses it (its error queue says why) or a stack cannot be allocated.
bool use_certified_key(SSL* ssl, const certified_key& k) noexcept;

/// Builds a certified_key taking new references to the given objects (the caller keeps its
/// own). `kind` and `not_after` are read from the certificate. Fails with
/// errc::invalid_argument when leaf or key is null, the key is neither EC nor RSA, or the key
/// does not belong to the certificate.
result<std::shared_ptr<const certified_key>> make_certified_key(X509* leaf, EVP_PKEY* key,
                                                                std::span<X509* const> chain = {});

/// Parses a leaf certificate (DER) and its PKCS#8 private key (DER: what to_pem writes as
/// "BEGIN PRIVATE KEY", base64-decoded) into a certified_key, as parse_certificate_der,
/// load_private_key_der and make_certified_key do. For a P-256, P-384 or P-521 key that
/// carries its public key (as OpenSSL and the Manager write them), the certificate's own
/// public key object becomes the key pair: `key` is X509_get0_pubkey(leaf), which then holds
/// the private key too. That saves a second key object and curve group (about 2 KiB per
/// certificate) and the private key's curve set-up. Fails with tls_errc::bad_pem when either
/// does not parse, and as make_certified_key does when the key does not belong to the
/// certificate. The key bytes are not copied; the caller cleanses them.
result<std::shared_ptr<const certified_key>> load_certified_key_der(std::string_view leaf_der,
                                                                    std::string_view key_der,
                                                                    std::span<X509* const> chain = {});

class deferred_key;

/// Bounds how many deferred_keys sharing it hold their parsed form at once. Without one, a
/// deferred certificate stays parsed from its first handshake on, so a client that asks for
/// every name (a crawler, a scanner) brings a server with many names to the memory of
/// parsing them all. With one, the parsed forms beyond `capacity` are dropped and parsed
/// again by their next handshake. Which to drop is chosen by CLOCK: a key used again since
/// its parse, and since the hand last passed it, is spared once; a key parsed and not used
/// since goes first, so one pass over every name displaces its own parses, not the names in
/// use. Thread-safe; keys keep the
/// cache alive, so it may be dropped by its creator at any time.
class deferred_cache {
 public:
  /// A cache keeping at most `capacity` keys parsed (at least 1).
  static std::shared_ptr<deferred_cache> make(std::size_t capacity);

  std::size_t capacity() const noexcept { return capacity_; }
  /// Keys counted against capacity(): parsed now, or dropped by their owner since and not
  /// yet replaced.
  std::size_t size() const;
  /// Parsed forms dropped to make room, since creation.
  std::uint64_t evictions() const noexcept { return evictions_.load(std::memory_order_relaxed); }

  deferred_cache(const deferred_cache&) = delete;
  deferred_cache& operator=(const deferred_cache&) = delete;

 private:
  friend class deferred_key;
  explicit deferred_cache(std::size_t capacity) : capacity_(capacity < 1 ? 1 : capacity) {}
  // Counts `k` (just parsed) and returns the key whose parsed form it displaces, if any.
  std::shared_ptr<const deferred_key> admit(const std::shared_ptr<const deferred_key>& k);

  const std::size_t capacity_;
  mutable std::mutex mu_;
  std::vector<std::weak_ptr<const deferred_key>> ring_;  // guarded by mu_
  std::size_t hand_ = 0;                                  // guarded by mu_
  std::atomic<std::uint64_t> evictions_{0};
};

/// A certificate and key kept as DER until a handshake needs them. OpenSSL 3.0 holds a
/// parsed P-256 certificate with its key in about 5 KiB, and parsing both takes tens of
/// microseconds (load_certified_key_der): a server with many names, most of them rarely
/// asked for, loads in a fraction of the time and memory this way. The first
/// handshake for the name parses (concurrent handshakes wait for that parse) and later ones
/// use the parsed key, as with a certified_key, until a deferred_cache drops it.
class deferred_key : public std::enable_shared_from_this<deferred_key> {
 public:
  /// Keeps `leaf_der` and the PKCS#8 private key `key_der` (what to_pem writes as
  /// "BEGIN PRIVATE KEY", base64-decoded); the chain is shared by reference. Only the key's
  /// algorithm is read now. With a `cache`, the parsed form counts against it and the DER is
  /// kept to parse again; without one, the parsed form stays and the DER is dropped. Fails
  /// with errc::invalid_argument for an empty certificate, a key that is not PKCS#8, or a
  /// key that is neither EC nor RSA. The key bytes are a secret: they are cleansed when
  /// dropped.
  static result<std::shared_ptr<const deferred_key>> make(std::string leaf_der, std::string key_der,
                                                          std::span<X509* const> chain = {},
                                                          std::shared_ptr<deferred_cache> cache = {});
  /// The same with a parsed key shared by many certificates (a new reference is taken).
  static result<std::shared_ptr<const deferred_key>> make(std::string leaf_der, EVP_PKEY* key,
                                                          std::span<X509* const> chain = {},
                                                          std::shared_ptr<deferred_cache> cache = {});
  ~deferred_key();
  deferred_key(const deferred_key&) = delete;
  deferred_key& operator=(const deferred_key&) = delete;

  /// The key kind read from the key, before any parsing.
  key_kind kind() const noexcept { return kind_; }

  /// The parsed certificate and key, parsed now if they are not held (callers on other
  /// threads wait for that parse). The caller's reference keeps them alive after the cache
  /// drops them. Null when the bytes do not parse, the key does not match the certificate
  /// or is not of kind(); error() says which, and later calls fail the same way at once.
  /// Never throws (allocation failure reads as an error and is tried again next time).
  std::shared_ptr<const certified_key> get() const noexcept;

  /// Whether the parsed form is held now.
  bool parsed() const noexcept;
  /// The error of the last parse, if it failed.
  std::error_code error() const noexcept;

 private:
  deferred_key() = default;
  // Parses into parsed_ or error_; runs with mu_ held.
  void parse_locked() const noexcept;
  // Drops the parsed form (the cache chose this key to make room).
  void evict() const noexcept;

  key_kind kind_ = key_kind::ecdsa;
  std::shared_ptr<deferred_cache> cache_;
  mutable std::mutex mu_;  // guards everything below
  mutable std::shared_ptr<const certified_key> parsed_;
  mutable std::error_code error_;
  mutable std::string leaf_der_;
  mutable std::string key_der_;  // empty when shared_key_ is set
  mutable evp_pkey_ptr shared_key_;
  mutable std::vector<x509_ptr> chain_;
  mutable std::atomic<bool> used_{false};     // the CLOCK reference bit, read by the cache
  mutable std::atomic<bool> settled_{false};  // parsed_ and error_ final: no cache, or an error
  friend class deferred_cache;
};

/// What the map holds for one name: one certificate per key kind at most, parsed or
/// deferred.
struct sni_entry {
  std::string name;  ///< normalised; "*.example.com" for a wildcard entry
  std::vector<std::shared_ptr<const certified_key>> keys;
  /// Certificates parsed on use; a kind present in `keys` is not looked up here.
  std::vector<std::shared_ptr<const deferred_key>> deferred;

  /// The parsed key of that kind, or null (deferred keys are not parsed).
  const certified_key* find(key_kind k) const noexcept {
    for (const auto& c : keys)
      if (c->kind == k) return c.get();
    return nullptr;
  }

  /// The key of that kind, parsing a deferred one if needed; null when there is none or it
  /// does not parse. The reference keeps a deferred key's parsed form alive after a
  /// deferred_cache drops it.
  std::shared_ptr<const certified_key> get(key_kind k) const noexcept {
    for (const auto& c : keys)
      if (c->kind == k) return c;
    for (const auto& d : deferred)
      if (d->kind() == k) return d->get();
    return nullptr;
  }
};

/// One change for sni_map::apply: set the entry of `name` (keys or deferred not empty) or
/// remove it (both empty).
struct sni_update {
  std::string name;
  std::vector<std::shared_ptr<const certified_key>> keys;
  std::vector<std::shared_ptr<const deferred_key>> deferred = {};
};

struct sni_map_test_access;

/// Host name -> sni_entry, sharded by hash. Every shard is an immutable open-addressing
/// table published through one atomic pointer; a write copies the shard's table, changes the
/// copy and publishes it, so the next lookup on any thread sees the change.
///
/// Readers (lookup, visit) take no lock and allocate nothing. Memory is reclaimed by epochs:
/// a lookup enters the current epoch on a per-thread stripe counter before it loads a table
/// pointer and leaves it when done (a guard object). That exit is the reader's quiescent
/// point, so ring threads need no explicit announcement: a thread between lookups is always
/// quiescent. A replaced table is retired with the epoch of its unlinking and freed once the
/// global epoch is two ahead, which the writer advances only when no reader is left in the
/// epoch it leaves behind. Writers serialise on a mutex.
///
/// The first 64 reading threads each own a stripe and update it with plain stores; the
/// ordering a reader would need a fence for is supplied by the writer instead, through
/// membarrier(2), which makes every running thread of the process execute a full barrier
/// (as liburcu's memb flavour does). Further threads, and every thread on a kernel without
/// membarrier, share the remaining stripes with atomic read-modify-writes. Should membarrier
/// start failing after it was registered (a seccomp filter installed later), replaced tables
/// are kept rather than freed (synchronize() then returns without them).
///
/// Entries are shared_ptr, so a caller that copied one (lookup) keeps it past replacement.
/// The map must outlive every reader; it must not be destroyed during a lookup.
class sni_map {
 public:
  /// `shards` is rounded up to a power of two. A write copies one shard, so more shards make
  /// single writes cheaper on large maps; fewer make shards large enough for huge pages
  /// (from 8193 names per shard), which makes lookups in large maps faster. With the
  /// default, a write to a 1M-name map copies about 2 MiB.
  explicit sni_map(std::size_t shards = 64);
  ~sni_map();
  sni_map(const sni_map&) = delete;
  sni_map& operator=(const sni_map&) = delete;

  /// Sets the entry of `name` to exactly `keys` (insert or replace). Fails with
  /// errc::invalid_name for an invalid name and errc::invalid_argument when `keys` is empty
  /// or holds a null pointer.
  result<void> set(std::string_view name, std::vector<std::shared_ptr<const certified_key>> keys);

  /// Adds `key` to the entry of `name`, replacing the key of the same kind (so a name can
  /// have an ECDSA and an RSA certificate). Errors as for set.
  result<void> insert(std::string_view name, std::shared_ptr<const certified_key> key);

  /// Removes the entry of `name`; returns whether there was one, or errc::invalid_name.
  result<bool> remove(std::string_view name);

  /// Applies many updates, copying each touched shard once (for loading large sets). All
  /// names are checked first; on an invalid one nothing changes and errc::invalid_name is
  /// returned.
  result<void> apply(std::span<const sni_update> updates);

  /// As apply above, but takes each update's name and key vectors into the map instead of
  /// copying them, and leaves `updates` empty. A bulk load then leaves no freed copies among
  /// the certificates it loaded (about 100 bytes of heap per name kept in use or left as
  /// holes). When any update is refused, nothing changes and `updates` is left as it was.
  result<void> apply(std::vector<sni_update>&& updates);

  /// The entry for `name`, else for its one-level wildcard ("a.b.example" ->
  /// "*.b.example"), else null; null also for an invalid name. Lock-free, allocation-free.
  std::shared_ptr<const sni_entry> lookup(std::string_view name) const noexcept;

  /// Calls `f(const sni_entry&)` with the entry lookup would return, without touching its
  /// reference count, and returns whether there was one. `f` runs inside the read-side
  /// critical section: it must be short, must not call writers of this map, and must not keep
  /// references to the entry (copy the shared_ptrs of keys it wants to keep).
  template <class F>
  bool visit(std::string_view name, F&& f) const noexcept(noexcept(f(std::declval<const sni_entry&>()))) {
    read_guard g(*this);
    const std::shared_ptr<const sni_entry>* e = find_guarded(name);
    if (!e) return false;
    f(**e);
    return true;
  }

  /// visit() for a name already in normalise_into()'s form, for callers that normalised it
  /// for their own use (the ClientHello callback): the name is not checked or copied again,
  /// so one in any other form finds nothing.
  template <class F>
  bool visit_normalised(std::string_view normalised, F&& f) const
      noexcept(noexcept(f(std::declval<const sni_entry&>()))) {
    read_guard g(*this);
    const std::shared_ptr<const sni_entry>* e = find_normalised(normalised);
    if (!e) return false;
    f(**e);
    return true;
  }

  /// Number of names (wildcards count as one).
  std::size_t size() const noexcept { return size_.load(std::memory_order_relaxed); }

  /// Frees retired tables whose readers have all left; returns how many were freed.
  /// Writers call it themselves; calling it on a timer bounds memory after the last write.
  std::size_t collect();

  /// Waits until every table retired so far is freed (readers in flight finish first), or
  /// returns early if membarrier fails (see above).
  void synchronize();

  /// Tables freed since construction, and tables retired but not yet freed.
  std::uint64_t reclaimed_tables() const noexcept { return reclaimed_.load(std::memory_order_relaxed); }
  std::size_t retired_tables() const;

 private:
  friend struct sni_map_test_access;  // tests: a forced hash collision
  struct table;
  struct stripe {
    alignas(64) std::array<std::atomic<std::uint64_t>, 2> readers{};
  };
  static constexpr std::size_t owned_stripes = 64;
  static constexpr std::size_t shared_stripes = 8;
  static constexpr std::size_t stripe_count = owned_stripes + shared_stripes;

  class read_guard {
   public:
    explicit read_guard(const sni_map& m) noexcept;
    ~read_guard();
    read_guard(const read_guard&) = delete;
    read_guard& operator=(const read_guard&) = delete;

   private:
    std::atomic<std::uint64_t>* counter_;
    bool owned_;
  };

  using entry_ptr = std::shared_ptr<const sni_entry>;
  const entry_ptr* find_guarded(std::string_view name) const noexcept;
  const entry_ptr* find_normalised(std::string_view normalised) const noexcept;
  const entry_ptr* find_exact(std::string_view normalised, std::uint64_t hash) const noexcept;
  std::uint64_t hash(std::string_view s) const noexcept;
  std::size_t shard_of(std::uint64_t h) const noexcept;
  struct change;
  // With write_mutex_ held:
  void apply_locked(std::span<change> changes);
  void publish(std::size_t shard, std::unique_ptr<table> t);
  bool try_advance();
  std::size_t collect_locked();

  std::size_t shard_count_;
  std::uint64_t seed_;
  std::uint64_t seed2_;
  std::unique_ptr<std::atomic<table*>[]> shards_;
  mutable std::array<stripe, stripe_count> stripes_{};
  std::atomic<std::uint64_t> epoch_{2};
  std::atomic<std::size_t> size_{0};
  std::atomic<std::uint64_t> reclaimed_{0};

  mutable std::mutex write_mutex_;
  struct retired {
    std::unique_ptr<table> t;
    std::uint64_t epoch;
  };
  std::vector<retired> retired_;
  bool barrier_failed_ = false;  // the last membarrier failed (with write_mutex_)
};

}  // namespace letsencrypt::tls
