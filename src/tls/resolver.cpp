#include "letsencrypt/tls/resolver.hpp"

#include <openssl/err.h>
#include <openssl/tls1.h>

#include <algorithm>
#include <cstring>

#include "letsencrypt/tls/challenge_cert.hpp"
#include "letsencrypt/tls/names.hpp"

namespace letsencrypt::tls {

namespace {

inline std::size_t be16(const unsigned char* p) noexcept {
  return static_cast<std::size_t>(p[0]) << 8 | p[1];
}

// Per-handshake state, allocated only for the rare paths (suspend, challenge) and freed
// with the SSL through the ex_data free callback.
struct handshake_state {
  std::string pending;
  bool challenge = false;
};

void free_state(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
  delete static_cast<handshake_state*>(ptr);
}

int state_index() noexcept {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, free_state);
  return index;
}

handshake_state* find_state(const SSL* ssl) noexcept {
  const int idx = state_index();
  if (idx < 0) return nullptr;
  return static_cast<handshake_state*>(SSL_get_ex_data(ssl, idx));
}

handshake_state* make_state(SSL* ssl) noexcept {
  if (handshake_state* s = find_state(ssl)) return s;
  const int idx = state_index();
  if (idx < 0) return nullptr;
  auto* s = new (std::nothrow) handshake_state;
  if (!s) return nullptr;
  if (SSL_set_ex_data(ssl, idx, s) != 1) {
    delete s;
    return nullptr;
  }
  return s;
}

// TLS SignatureScheme code points by key type (RFC 8446 4.2.3 and the TLS 1.2 pairs).
// ecdsa_sha1 (0x0203) is left out: OpenSSL 3 signs no SHA-1 at its default security level,
// so a client offering that alone for ECDSA cannot be served an ECDSA key.
bool is_ecdsa_scheme(std::size_t s) noexcept {
  return s == 0x0403 || s == 0x0503 || s == 0x0603 || s == 0x0303;
}

// Whether a TLS 1.2 client's supported_groups lists the curve of `key` (an EC key): in TLS
// 1.2 an ECDSA certificate serves only on a curve the client named (RFC 8422 5.1.1), and
// OpenSSL fails the handshake otherwise. A client that sends no such extension takes any.
bool client_names_curve(SSL* ssl, EVP_PKEY* key) noexcept {
  const unsigned char* ext = nullptr;
  std::size_t len = 0;
  if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_supported_groups, &ext, &len) != 1) return true;
  char group[32];
  std::size_t group_len = 0;
  if (EVP_PKEY_get_group_name(key, group, sizeof group, &group_len) != 1) return false;
  const std::string_view g(group, group_len);
  const std::size_t want = g == "prime256v1" || g == "P-256"   ? 0x0017
                           : g == "secp384r1" || g == "P-384" ? 0x0018
                           : g == "secp521r1" || g == "P-521" ? 0x0019
                                                              : 0;
  if (want == 0 || len < 2 || be16(ext) != len - 2) return false;
  for (std::size_t p = 2; p + 1 < len; p += 2)
    if (be16(ext + p) == want) return true;
  return false;
}
bool is_rsa_scheme(std::size_t s) noexcept {
  return s == 0x0401 || s == 0x0501 || s == 0x0601 || s == 0x0201 || s == 0x0301 ||
         (s >= 0x0804 && s <= 0x0806) || (s >= 0x0809 && s <= 0x080b);
}

// Whether the client can verify a signature by `key` (an EC key), and take it on its curve.
bool accepts_ecdsa(SSL* ssl, const client_sigalgs& algs, EVP_PKEY* key, bool tls13) noexcept {
  if (!tls13) return algs.ecdsa_any && client_names_curve(ssl, key);
  switch (EVP_PKEY_get_bits(key)) {
    case 256: return algs.ecdsa_p256;
    case 384: return algs.ecdsa_p384;
    case 521: return algs.ecdsa_p521;
    default: return false;
  }
}

// A deferred certificate is parsed here, on the first handshake that needs it; the RSA one
// only when the ECDSA one does not suit the client.
std::shared_ptr<const certified_key> choose(SSL* ssl, const sni_entry& e, const client_sigalgs& algs,
                                            bool tls13) noexcept {
  auto ec = e.get(key_kind::ecdsa);
  if (ec && accepts_ecdsa(ssl, algs, ec->key.get(), tls13)) return ec;
  auto rsa = e.get(key_kind::rsa);
  if (rsa && algs.rsa) return rsa;
  return ec ? ec : rsa;
}

}  // namespace

result<std::string_view> parse_server_name(std::span<const unsigned char> ext) noexcept {
  if (ext.size() < 2 || be16(ext.data()) != ext.size() - 2) return errc::protocol_error;
  std::size_t p = 2;
  std::string_view host;
  while (p < ext.size()) {
    if (ext.size() - p < 3) return errc::protocol_error;
    const unsigned type = ext[p];
    const std::size_t len = be16(ext.data() + p + 1);
    p += 3;
    if (ext.size() - p < len) return errc::protocol_error;
    if (type == 0 && host.empty()) {  // host_name; RFC 6066 allows one of each type
      if (len == 0) return errc::protocol_error;
      host = std::string_view(reinterpret_cast<const char*>(ext.data() + p), len);
    }
    p += len;
  }
  if (host.empty()) return errc::protocol_error;
  return host;
}

result<bool> alpn_offers(std::span<const unsigned char> ext, std::string_view protocol) noexcept {
  if (ext.size() < 3 || be16(ext.data()) != ext.size() - 2) return errc::protocol_error;
  bool found = false;
  std::size_t p = 2;
  while (p < ext.size()) {
    const std::size_t len = ext[p++];
    if (len == 0 || ext.size() - p < len) return errc::protocol_error;
    if (len == protocol.size() && std::memcmp(ext.data() + p, protocol.data(), len) == 0) found = true;
    p += len;
  }
  return found;
}

result<client_sigalgs> parse_sigalgs(std::span<const unsigned char> ext) noexcept {
  if (ext.size() < 4 || be16(ext.data()) != ext.size() - 2 || ext.size() % 2 != 0)
    return errc::protocol_error;
  client_sigalgs out;
  for (std::size_t p = 2; p < ext.size(); p += 2) {
    const std::size_t s = be16(ext.data() + p);
    out.ecdsa_p256 = out.ecdsa_p256 || s == 0x0403;
    out.ecdsa_p384 = out.ecdsa_p384 || s == 0x0503;
    out.ecdsa_p521 = out.ecdsa_p521 || s == 0x0603;
    out.ecdsa_any = out.ecdsa_any || is_ecdsa_scheme(s);
    out.rsa = out.rsa || is_rsa_scheme(s);
  }
  return out;
}

resolver::resolver(sni_map& map) : map_(map) { (void)state_index(); }

resolver::~resolver() = default;

void resolver::install(SSL_CTX* ctx) {
  SSL_CTX_set_client_hello_cb(ctx, &resolver::client_hello_cb, this);
  SSL_CTX_set_alpn_select_cb(ctx, &resolver::alpn_select_cb, this);
}

void resolver::set_miss_policy(std::function<miss_action(std::string_view)> policy) {
  miss_policy_ = std::move(policy);
}

void resolver::set_unusable_key_handler(std::function<void(std::string_view)> handler) {
  unusable_key_ = std::move(handler);
}

void resolver::set_alpn_protocols(std::vector<std::string> protocols) {
  std::erase_if(protocols, [](const std::string& p) {
    return p.empty() || p.size() > 255 || p == acme_tls_alpn_protocol;
  });
  alpn_ = std::move(protocols);
}

result<void> resolver::set_default_name(std::string_view name) {
  LE_TRY(n, normalise_name(name));
  default_name_ = std::move(n);
  return ok();
}

result<void> resolver::set_challenge(std::string_view name, certified_key key) {
  return set_challenge(name, std::make_shared<const certified_key>(std::move(key)));
}

result<void> resolver::set_challenge(std::string_view name, std::shared_ptr<const certified_key> key) {
  LE_TRY(n, normalise_name(name));
  if (is_wildcard(n)) return errc::invalid_name;
  if (!key || !key->leaf || !key->key) return errc::invalid_argument;
  std::lock_guard lock(challenge_mutex_);
  challenges_.insert_or_assign(std::move(n), std::move(key));
  return ok();
}

bool resolver::clear_challenge(std::string_view name) {
  auto n = normalise_name(name);
  if (!n) return false;
  std::lock_guard lock(challenge_mutex_);
  return challenges_.erase(*n) > 0;
}

bool resolver::challenge_pending(std::string_view name) const {
  auto n = normalise_name(name);
  return n && challenge_for(*n) != nullptr;
}

std::shared_ptr<const certified_key> resolver::challenge_for(std::string_view normalised) const {
  std::lock_guard lock(challenge_mutex_);
  auto it = challenges_.find(normalised);
  return it == challenges_.end() ? nullptr : it->second;
}

resolver::counters resolver::stats() const noexcept {
  counters c;
  c.hits = hits_.value.load(std::memory_order_relaxed);
  c.misses = misses_.value.load(std::memory_order_relaxed);
  c.refusals = refusals_.value.load(std::memory_order_relaxed);
  c.challenges = challenges_served_.value.load(std::memory_order_relaxed);
  return c;
}

std::string_view resolver::pending_name(const SSL* ssl) noexcept {
  const handshake_state* s = ssl ? find_state(ssl) : nullptr;
  return s ? std::string_view(s->pending) : std::string_view{};
}

bool resolver::serving_challenge(const SSL* ssl) noexcept {
  const handshake_state* s = ssl ? find_state(ssl) : nullptr;
  return s && s->challenge;
}

int resolver::client_hello_cb(SSL* ssl, int* alert, void* arg) {
  auto* self = static_cast<resolver*>(arg);
  // No exception may cross OpenSSL's C frames; a throwing miss policy fails the handshake.
  try {
    return self->on_client_hello(ssl, alert);
  } catch (...) {
    return self->refuse(alert, SSL_AD_INTERNAL_ERROR);
  }
}

int resolver::refuse(int* alert, int code) noexcept {
  refusals_.value.fetch_add(1, std::memory_order_relaxed);
  *alert = code;
  return SSL_CLIENT_HELLO_ERROR;
}

int resolver::on_client_hello(SSL* ssl, int* alert) {
  if (handshake_state* s = find_state(ssl)) {
    s->challenge = false;
    s->pending.clear();
  }

  // SNI. The name is normalised into a stack buffer: nothing here allocates on a hit.
  char buf[256];
  std::size_t len = 0;
  const unsigned char* ext = nullptr;
  std::size_t ext_len = 0;
  if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &ext, &ext_len) == 1) {
    auto host = parse_server_name({ext, ext_len});
    if (!host) return refuse(alert, SSL_AD_DECODE_ERROR);
    if (!normalise_into(*host, buf, len) || is_wildcard({buf, len}))
      return refuse(alert, SSL_AD_UNRECOGNIZED_NAME);
  } else if (!default_name_.empty()) {
    std::memcpy(buf, default_name_.data(), default_name_.size());
    len = default_name_.size();
  }
  const std::string_view name(buf, len);

  // ALPN: only tls-alpn-01 validation changes the certificate.
  bool acme = false;
  if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &ext,
                                &ext_len) == 1) {
    auto offered = alpn_offers({ext, ext_len}, acme_tls_alpn_protocol);
    if (!offered) return refuse(alert, SSL_AD_DECODE_ERROR);
    acme = *offered;
  }
  if (acme) {
    auto key = name.empty() ? nullptr : challenge_for(name);
    if (!key) return refuse(alert, SSL_AD_NO_APPLICATION_PROTOCOL);
    handshake_state* s = make_state(ssl);
    if (!s || !use_certified_key(ssl, *key)) return refuse(alert, SSL_AD_INTERNAL_ERROR);
    s->challenge = true;
    challenges_served_.value.fetch_add(1, std::memory_order_relaxed);
    return SSL_CLIENT_HELLO_SUCCESS;
  }

  if (name.empty()) return SSL_CLIENT_HELLO_SUCCESS;  // the SSL_CTX's own certificate, if any

  // Without signature_algorithms a TLS 1.2 client implies SHA-1 with the cipher's key type;
  // RSA is the safe answer then.
  client_sigalgs algs;
  algs.rsa = true;
  if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_signature_algorithms, &ext, &ext_len) == 1) {
    auto parsed = parse_sigalgs({ext, ext_len});
    if (!parsed) return refuse(alert, SSL_AD_DECODE_ERROR);
    algs = *parsed;
  }

  // A client offering TLS 1.3 may still settle on 1.2, where any ECDSA scheme fits any
  // curve; the curve-bound answer is the one that works for both.
  const bool tls13 =
      SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_supported_versions, &ext, &ext_len) == 1;
  bool set_ok = false;
  char entry_name[256];
  std::size_t entry_len = 0;
  const bool found = map_.visit_normalised(name, [&](const sni_entry& e) noexcept {
    const auto k = choose(ssl, e, algs, tls13);
    set_ok = k && use_certified_key(ssl, *k);
    if (!set_ok) {
      entry_len = std::min(e.name.size(), sizeof entry_name);
      std::memcpy(entry_name, e.name.data(), entry_len);
    }
  });
  if (found) {
    if (!set_ok) {
      if (unusable_key_) unusable_key_(std::string_view(entry_name, entry_len));
      return refuse(alert, SSL_AD_INTERNAL_ERROR);
    }
    hits_.value.fetch_add(1, std::memory_order_relaxed);
    return SSL_CLIENT_HELLO_SUCCESS;
  }

  misses_.value.fetch_add(1, std::memory_order_relaxed);
  const miss_action action = miss_policy_ ? miss_policy_(name) : miss_action::refuse;
  if (action == miss_action::suspend) {
    handshake_state* s = make_state(ssl);
    if (!s) return refuse(alert, SSL_AD_INTERNAL_ERROR);
    s->pending.assign(name);
    return SSL_CLIENT_HELLO_RETRY;
  }
  return refuse(alert, SSL_AD_UNRECOGNIZED_NAME);
}

int resolver::alpn_select_cb(SSL* ssl, const unsigned char** out, unsigned char* outlen,
                             const unsigned char* in, unsigned int inlen, void* arg) {
  auto* self = static_cast<resolver*>(arg);
  const handshake_state* s = find_state(ssl);
  const bool challenge = s && s->challenge;
  // `in` is the client's wire-format list, already validated by OpenSSL; answer with a
  // pointer into it.
  auto pick = [&](std::string_view want) -> bool {
    for (unsigned int p = 0; p < inlen;) {
      const unsigned int len = in[p];
      if (p + 1 + len > inlen) return false;
      if (len == want.size() && std::memcmp(in + p + 1, want.data(), len) == 0) {
        *out = in + p + 1;
        *outlen = static_cast<unsigned char>(len);
        return true;
      }
      p += 1 + len;
    }
    return false;
  };
  if (challenge) return pick(acme_tls_alpn_protocol) ? SSL_TLSEXT_ERR_OK : SSL_TLSEXT_ERR_ALERT_FATAL;
  for (const std::string& proto : self->alpn_)
    if (pick(proto)) return SSL_TLSEXT_ERR_OK;
  return SSL_TLSEXT_ERR_NOACK;
}

}  // namespace letsencrypt::tls
