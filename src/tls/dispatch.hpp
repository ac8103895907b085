// Provider functions as OSSL_DISPATCH tables hold them.
#pragma once

#include <openssl/core.h>

namespace letsencrypt::tls::detail {

/// `f` as the `void (*)()` an OSSL_DISPATCH entry holds; the cast is how providers are
/// written, and OpenSSL casts it back by the entry's function id.
template <typename Fn>
void (*as_dispatch(Fn* f))() {
  return reinterpret_cast<void (*)()>(f);
}

/// The function with id `id` in the dispatch table `table` (null-terminated), or null when
/// the table is null or has none.
inline void (*find_function(const OSSL_DISPATCH* table, int id))() {
  for (const OSSL_DISPATCH* d = table; d && d->function_id != 0; ++d)
    if (d->function_id == id) return d->function;
  return nullptr;
}

}  // namespace letsencrypt::tls::detail
