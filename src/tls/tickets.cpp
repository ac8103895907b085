#include "letsencrypt/tls/tickets.hpp"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstring>
#include <system_error>

#include "letsencrypt/tls/error.hpp"

namespace letsencrypt::tls {
namespace {

int ctx_index() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// A copy of key material, wiped when it goes.
template <class T>
struct wiped {
  T v;
  ~wiped() { OPENSSL_cleanse(&v, sizeof v); }
};

bool fresh_key(ticket_keys::key& k) {
  return RAND_bytes(k.name.data(), int(k.name.size())) == 1 && RAND_bytes(k.aes.data(), int(k.aes.size())) == 1 &&
         RAND_bytes(k.hmac.data(), int(k.hmac.size())) == 1;
}

}  // namespace

ticket_keys::ticket_keys() {
  if (!fresh_key(shadow_.current)) {
    OPENSSL_cleanse(&shadow_, sizeof shadow_);  // no destructor runs after a throw
    ERR_clear_error();
    throw std::system_error(make_error_code(tls_errc::internal_error), "ticket key generation");
  }
  publish(shadow_);
  // Why: given OpenSSL's built-in EVP_aes_256_cbc(), every EVP_EncryptInit_ex and
  // EVP_DecryptInit_ex looks the cipher up again by name, in the default library context
  // with its default properties, for every ticket issued and every ticket presented. This is
  // that lookup, made once: a later change of the default properties does not reach it.
  ERR_set_mark();
  cipher_ = EVP_CIPHER_fetch(nullptr, "AES-256-CBC", "");
  ERR_pop_to_mark();
}

ticket_keys::~ticket_keys() {
  EVP_CIPHER_free(cipher_);
  OPENSSL_cleanse(&shadow_, sizeof shadow_);
  // Volatile, so that the stores are not dropped as dead: the object ends right after them.
  for (auto& w : data_) static_cast<volatile std::atomic<std::uint64_t>&>(w).store(0, std::memory_order_relaxed);
}

void ticket_keys::publish(const key_set& s) noexcept {
  static_assert(sizeof(key) % 8 == 0);
  std::uint64_t buf[words] = {};
  std::memcpy(buf, &s.current, sizeof(key));
  std::memcpy(reinterpret_cast<unsigned char*>(buf) + sizeof(key), &s.previous, sizeof(key));
  buf[words - 1] = s.has_previous ? 1 : 0;
  // Sequence lock: odd while writing; readers retry when the count moved under them.
  std::uint64_t q = seq_.load(std::memory_order_relaxed);
  seq_.store(q + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  for (std::size_t i = 0; i < words; ++i) data_[i].store(buf[i], std::memory_order_relaxed);
  seq_.store(q + 2, std::memory_order_release);
  OPENSSL_cleanse(buf, sizeof buf);
}

ticket_keys::key_set ticket_keys::snapshot() const noexcept {
  std::uint64_t buf[words];
  for (;;) {
    std::uint64_t q1 = seq_.load(std::memory_order_acquire);
    if (q1 & 1) continue;
    for (std::size_t i = 0; i < words; ++i) buf[i] = data_[i].load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (seq_.load(std::memory_order_relaxed) == q1) break;
  }
  key_set s;
  std::memcpy(&s.current, buf, sizeof(key));
  std::memcpy(&s.previous, reinterpret_cast<unsigned char*>(buf) + sizeof(key), sizeof(key));
  s.has_previous = buf[words - 1] != 0;
  OPENSSL_cleanse(buf, sizeof buf);
  return s;
}

result<void> ticket_keys::rotate() {
  std::lock_guard lk(writer_);
  wiped<key> next;
  if (!fresh_key(next.v)) return tls_error();
  shadow_.previous = shadow_.current;
  shadow_.has_previous = true;
  shadow_.current = next.v;
  publish(shadow_);
  generation_.fetch_add(1, std::memory_order_relaxed);
  return ok();
}

result<void> ticket_keys::install(SSL_CTX* ctx) {
  if (!ctx) return errc::invalid_argument;
  ERR_clear_error();
  if (SSL_CTX_set_ex_data(ctx, ctx_index(), this) != 1) return tls_error();
  if (SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, &ticket_keys::callback) != 1) return tls_error();
  return ok();
}

ticket_keys::counters ticket_keys::stats() const noexcept {
  return {issued_.load(std::memory_order_relaxed), resumed_current_.load(std::memory_order_relaxed),
          resumed_previous_.load(std::memory_order_relaxed), unknown_.load(std::memory_order_relaxed)};
}

int ticket_keys::callback(SSL* ssl, unsigned char* name, unsigned char* iv, EVP_CIPHER_CTX* cctx,
                          EVP_MAC_CTX* hctx, int enc) {
  auto* self = static_cast<ticket_keys*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_index()));
  if (!self) return -1;
  const wiped<key_set> copy{self->snapshot()};  // the handshake's copy of the keys
  const key_set& ks = copy.v;
  const EVP_CIPHER* const cipher = self->cipher_ ? self->cipher_ : EVP_aes_256_cbc();
  auto set_keys = [&](const key& k, bool encrypt) {
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, const_cast<unsigned char*>(k.hmac.data()),
                                          k.hmac.size()),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0), OSSL_PARAM_construct_end()};
    if (EVP_MAC_CTX_set_params(hctx, params) != 1) return false;
    if (encrypt) return EVP_EncryptInit_ex(cctx, cipher, nullptr, k.aes.data(), iv) == 1;
    return EVP_DecryptInit_ex(cctx, cipher, nullptr, k.aes.data(), iv) == 1;
  };
  if (enc == 1) {
    if (RAND_bytes(iv, EVP_MAX_IV_LENGTH) != 1) return -1;
    std::memcpy(name, ks.current.name.data(), ks.current.name.size());
    if (!set_keys(ks.current, true)) return -1;
    self->issued_.fetch_add(1, std::memory_order_relaxed);
    return 1;
  }
  if (std::memcmp(name, ks.current.name.data(), ks.current.name.size()) == 0) {
    if (!set_keys(ks.current, false)) return -1;
    self->resumed_current_.fetch_add(1, std::memory_order_relaxed);
    return 1;
  }
  if (ks.has_previous && std::memcmp(name, ks.previous.name.data(), ks.previous.name.size()) == 0) {
    if (!set_keys(ks.previous, false)) return -1;
    self->resumed_previous_.fetch_add(1, std::memory_order_relaxed);
    return 2;  // valid, but ask OpenSSL to issue a ticket under the current key
  }
  self->unknown_.fetch_add(1, std::memory_order_relaxed);
  return 0;  // unknown key: full handshake
}

}  // namespace letsencrypt::tls
