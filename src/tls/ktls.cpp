#include "tls/ktls.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/obj_mac.h>
#include <openssl/rand.h>
#include <openssl/tls1.h>
#include <sys/socket.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <new>
#include <string_view>

#include "letsencrypt/tls/engine.hpp"
#include "tls/libctx.hpp"
#include "tls/tls13_kdf.hpp"


// Why the key log: OpenSSL 3.0 gives no other way to a TLS 1.3 traffic secret, and it turns
// kernel TLS on by itself only for a socket BIO, which the engine's is not. In TLS 1.3 the
// callback runs right after the server's Finished has been handed to the BIO and the write
// key has changed (OpenSSL flushes, then changes the key), so the records the engine has
// counted by then are exactly those under earlier keys. In TLS 1.2 it runs while the
// server's Finished is made, when its ChangeCipherSpec may still sit in OpenSSL's handshake
// buffer, so the count there comes from the engine's ChangeCipherSpec instead.

namespace letsencrypt::tls::detail {
namespace {

constexpr std::string_view server_secret_label = "SERVER_TRAFFIC_SECRET_0 ";  // TLS 1.3
constexpr std::string_view master_secret_label = "CLIENT_RANDOM ";             // TLS 1.2
constexpr std::size_t max_secret = 48;

struct kept_secret {
  std::array<unsigned char, max_secret> bytes{};
  std::size_t size = 0;
  std::uint64_t records_before = 0;
  ~kept_secret() { OPENSSL_cleanse(bytes.data(), bytes.size()); }
};

void free_kept(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) { delete static_cast<kept_secret*>(ptr); }

int secret_index() noexcept {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, &free_kept);
  return index;
}

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// "SERVER_TRAFFIC_SECRET_0 <client random> <secret>" or "CLIENT_RANDOM <client random>
// <master secret>", the secret in hex.
void keep_secret(const SSL* ssl, const char* line) {
  const std::string_view l(line);
  if (!(l.starts_with(server_secret_label) || l.starts_with(master_secret_label)) || SSL_is_server(ssl) != 1) return;
  const engine* e = engine::of(ssl);
  if (!e) return;
  const std::string_view hex = l.substr(l.rfind(' ') + 1);
  if (hex.size() % 2 != 0 || hex.size() / 2 > max_secret || hex.empty()) return;
  auto* k = new (std::nothrow) kept_secret;
  if (!k) return;
  k->size = hex.size() / 2;
  for (std::size_t i = 0; i < k->size; ++i) {
    const int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      delete k;
      return;
    }
    k->bytes[i] = static_cast<unsigned char>(hi << 4 | lo);
  }
  k->records_before = e->records_written();
  SSL* s = const_cast<SSL*>(ssl);  // ex_data is the SSL's own bookkeeping
  delete static_cast<kept_secret*>(SSL_get_ex_data(s, secret_index()));
  if (SSL_set_ex_data(s, secret_index(), k) != 1) delete k;
}

void put_be64(unsigned char* out, std::uint64_t v) noexcept {
  for (int i = 7; i >= 0; --i, v >>= 8) out[i] = static_cast<unsigned char>(v);
}

}  // namespace

ktls_tx_params::~ktls_tx_params() { OPENSSL_cleanse(info.data(), info.size()); }

bool keep_write_secrets(SSL_CTX* ctx) noexcept {
  if (!ctx || SSL_CTX_get_keylog_callback(ctx) || secret_index() < 0) return false;
  SSL_CTX_set_keylog_callback(ctx, &keep_secret);
  return true;
}

namespace {

// The kernel's layout of `cipher_type` filled from `key`, the 12-byte nonce base `iv` (AES-GCM:
// 4 bytes of salt, then 8 the kernel starts its explicit or implicit part from) and `seq`.
template <class Info>
void fill_info(ktls_tx_params& p, unsigned short version, unsigned short cipher_type, const unsigned char* key,
               const unsigned char* iv, std::uint64_t seq) noexcept {
  Info i{};
  static_assert(sizeof i <= sizeof p.info);
  i.info.version = version;
  i.info.cipher_type = cipher_type;
  std::memcpy(i.key, key, sizeof i.key);
  std::memcpy(i.salt, iv, sizeof i.salt);
  std::memcpy(i.iv, iv + sizeof i.salt, sizeof i.iv);
  put_be64(i.rec_seq, seq);
  std::memcpy(p.info.data(), &i, sizeof i);
  p.size = sizeof i;
  OPENSSL_cleanse(&i, sizeof i);
}

// TLS 1.2's key block (RFC 5246, 6.3) from the master secret: TLS1-PRF over the suite's
// handshake digest, seeded with "key expansion", the server's random and the client's.
bool key_block(SSL* ssl, std::span<const unsigned char> master, std::span<unsigned char> out) noexcept {
  const EVP_MD* md = SSL_CIPHER_get_handshake_digest(SSL_get_current_cipher(ssl));
  if (!md) return false;
  constexpr std::string_view label = "key expansion";
  std::array<unsigned char, label.size() + 2 * SSL3_RANDOM_SIZE> seed{};
  std::memcpy(seed.data(), label.data(), label.size());
  if (SSL_get_server_random(ssl, seed.data() + label.size(), SSL3_RANDOM_SIZE) != SSL3_RANDOM_SIZE ||
      SSL_get_client_random(ssl, seed.data() + label.size() + SSL3_RANDOM_SIZE, SSL3_RANDOM_SIZE) != SSL3_RANDOM_SIZE)
    return false;
  EVP_KDF* kdf = EVP_KDF_fetch(library_context(), "TLS1-PRF", nullptr);
  EVP_KDF_CTX* ctx = kdf ? EVP_KDF_CTX_new(kdf) : nullptr;
  EVP_KDF_free(kdf);
  if (!ctx) return false;
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, const_cast<char*>(EVP_MD_get0_name(md)), 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, const_cast<unsigned char*>(master.data()),
                                        master.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, seed.data(), seed.size()),
      OSSL_PARAM_construct_end(),
  };
  const bool ok = EVP_KDF_derive(ctx, out.data(), out.size(), params) == 1;
  EVP_KDF_CTX_free(ctx);
  return ok;
}

}  // namespace

std::optional<ktls_tx_params> take_ktls_tx(const engine& e) noexcept {
  SSL* ssl = e.native();
  if (!ssl || secret_index() < 0) return std::nullopt;
  // Taken out of the SSL, so it is wiped when this returns whatever the outcome.
  const std::unique_ptr<kept_secret> k(static_cast<kept_secret*>(SSL_get_ex_data(ssl, secret_index())));
  if (!k) return std::nullopt;
  SSL_set_ex_data(ssl, secret_index(), nullptr);

  const int version = SSL_version(ssl);
  const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl);
  SSL_SESSION* session = SSL_get_session(ssl);
  if ((version != TLS1_3_VERSION && version != TLS1_2_VERSION) || !cipher || !session ||
      SSL_SESSION_get_max_fragment_length(session) != TLSEXT_max_fragment_length_DISABLED ||
      e.records_written() < k->records_before)
    return std::nullopt;
  unsigned short cipher_type = 0;
  std::size_t key_size = 0;
  switch (SSL_CIPHER_get_cipher_nid(cipher)) {
    case NID_aes_128_gcm: cipher_type = TLS_CIPHER_AES_GCM_128; key_size = 16; break;
    case NID_aes_256_gcm: cipher_type = TLS_CIPHER_AES_GCM_256; key_size = 32; break;
    case NID_chacha20_poly1305: cipher_type = TLS_CIPHER_CHACHA20_POLY1305; key_size = 32; break;
    default: return std::nullopt;
  }
  const std::span<const unsigned char> secret(k->bytes.data(), k->size);
  std::array<unsigned char, 32> key{};
  std::array<unsigned char, 12> iv{};  // the nonce base: salt first for AES-GCM
  std::uint64_t seq = 0;
  bool derived = false;
  if (version == TLS1_3_VERSION) {
    const hkdf_hash hash = cipher_type == TLS_CIPHER_AES_GCM_256 ? hkdf_hash::sha384 : hkdf_hash::sha256;
    derived = k->size == hkdf_hash_size(hash) &&
              hkdf_expand_label(hash, secret, "key", std::span(key).first(key_size)) &&
              hkdf_expand_label(hash, secret, "iv", iv);
    seq = e.records_written() - k->records_before;
  } else {
    // client key, server key, client IV, server IV: 4 bytes of IV for AES-GCM (the explicit
    // part of its nonce is per record), 12 for ChaCha20-Poly1305.
    const std::size_t iv_size = cipher_type == TLS_CIPHER_CHACHA20_POLY1305 ? 12 : 4;
    std::array<unsigned char, 2 * 32 + 2 * 12> block{};
    const std::size_t block_size = 2 * key_size + 2 * iv_size;
    derived = k->size == SSL_MAX_MASTER_KEY_LENGTH && key_block(ssl, secret, std::span(block).first(block_size));
    if (derived) {
      std::memcpy(key.data(), block.data() + key_size, key_size);
      std::memcpy(iv.data(), block.data() + 2 * key_size + iv_size, iv_size);
      if (iv_size == 4) derived = RAND_bytes(iv.data() + 4, 8) == 1;
    }
    OPENSSL_cleanse(block.data(), block.size());
    seq = e.records_since_change_cipher_spec();
  }
  std::optional<ktls_tx_params> p;
  if (derived) {
    p.emplace();
    const auto v = static_cast<unsigned short>(version == TLS1_3_VERSION ? TLS_1_3_VERSION : TLS_1_2_VERSION);
    if (cipher_type == TLS_CIPHER_AES_GCM_128)
      fill_info<tls12_crypto_info_aes_gcm_128>(*p, v, cipher_type, key.data(), iv.data(), seq);
    else if (cipher_type == TLS_CIPHER_AES_GCM_256)
      fill_info<tls12_crypto_info_aes_gcm_256>(*p, v, cipher_type, key.data(), iv.data(), seq);
    else
      fill_info<tls12_crypto_info_chacha20_poly1305>(*p, v, cipher_type, key.data(), iv.data(), seq);
  }
  OPENSSL_cleanse(key.data(), key.size());
  OPENSSL_cleanse(iv.data(), iv.size());
  return p;
}

int send_ktls_alert(int fd, unsigned char level, unsigned char description) noexcept {
  // The record type rides in a control message; the two bytes go whole or not at all.
  unsigned char alert[2] = {level, description};
  alignas(cmsghdr) unsigned char control[CMSG_SPACE(sizeof(unsigned char))] = {};
  iovec iov{alert, sizeof alert};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_TLS;
  c->cmsg_type = TLS_SET_RECORD_TYPE;
  c->cmsg_len = CMSG_LEN(sizeof(unsigned char));
  *CMSG_DATA(c) = 21;  // alert
  return ::sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0 ? 0 : errno;
}

namespace {
std::atomic<ktls_attach_fn> attach_override{nullptr};
}

void set_ktls_attach_for_testing(ktls_attach_fn fn) noexcept { attach_override.store(fn); }

bool attach_ktls_tx(int fd, const ktls_tx_params& p) noexcept {
  if (p.size == 0) return false;
  if (ktls_attach_fn f = attach_override.load(std::memory_order_relaxed)) return f(fd, p);
  if (::setsockopt(fd, SOL_TCP, TCP_ULP, "tls", sizeof("tls")) != 0) return false;
  return ::setsockopt(fd, SOL_TLS, TLS_TX, p.info.data(), static_cast<socklen_t>(p.size)) == 0;
}

}  // namespace letsencrypt::tls::detail
