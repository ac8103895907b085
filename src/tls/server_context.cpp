#include "letsencrypt/tls/server_context.hpp"

#include <openssl/err.h>

#include <string_view>

#include "letsencrypt/tls/error.hpp"
#include "letsencrypt/tls/stream.hpp"
#include "tls/ktls.hpp"
#include "tls/libctx.hpp"

namespace letsencrypt::tls {

result<ssl_ctx_ptr> make_server_context(const server_context_options& o) {
  if (o.min_version != TLS1_2_VERSION && o.min_version != TLS1_3_VERSION) return errc::invalid_argument;
  ERR_clear_error();
  ssl_ctx_ptr ctx(SSL_CTX_new_ex(detail::library_context(), nullptr, TLS_server_method()));
  if (!ctx) return tls_error();
  if (SSL_CTX_set_min_proto_version(ctx.get(), o.min_version) != 1 ||
      SSL_CTX_set_ciphersuites(ctx.get(), o.ciphersuites.c_str()) != 1 ||
      SSL_CTX_set_cipher_list(ctx.get(), o.tls12_ciphers.c_str()) != 1 ||
      SSL_CTX_set1_groups_list(ctx.get(), o.groups.c_str()) != 1 ||
      SSL_CTX_set_num_tickets(ctx.get(), o.tickets_per_handshake) != 1)
    return tls_error(tls_errc::internal_error);
  // OpenSSL 3.0 drops names it does not know as long as one is left: hold it to every name.
  std::size_t tls13 = 0, tls12 = 0;
  STACK_OF(SSL_CIPHER)* have = SSL_CTX_get_ciphers(ctx.get());
  for (int i = 0; i < sk_SSL_CIPHER_num(have); ++i) {
    const SSL_CIPHER* c = sk_SSL_CIPHER_value(have, i);
    if (std::string_view(SSL_CIPHER_get_version(c)) == "TLSv1.3")
      ++tls13;
    else
      ++tls12;
  }
  std::size_t wanted = 0;
  for (std::string_view rest = o.ciphersuites; !rest.empty();) {
    const auto colon = rest.find(':');
    if (!rest.substr(0, colon).empty()) ++wanted;
    rest = colon == std::string_view::npos ? std::string_view{} : rest.substr(colon + 1);
  }
  if (wanted == 0 || tls13 != wanted) return errc::invalid_argument;
  if (o.min_version == TLS1_2_VERSION && tls12 == 0) return errc::invalid_argument;
  SSL_CTX_set_options(ctx.get(), SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION |
                                     SSL_OP_NO_COMPRESSION);
  if (o.tickets_per_handshake == 0) SSL_CTX_set_options(ctx.get(), SSL_OP_NO_TICKET);
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
  // Streams hand their write side to the kernel when it has TLS; elsewhere nothing is kept.
  if (ktls_available()) detail::keep_write_secrets(ctx.get());
  return ctx;
}

}  // namespace letsencrypt::tls
