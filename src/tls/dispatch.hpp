// A provider function as an OSSL_DISPATCH entry holds it.
#pragma once

namespace letsencrypt::tls::detail {

/// `f` as the `void (*)()` an OSSL_DISPATCH entry holds; the cast is how providers are
/// written, and OpenSSL casts it back by the entry's function id.
template <typename Fn>
void (*as_dispatch(Fn* f))() {
  return reinterpret_cast<void (*)()>(f);
}

}  // namespace letsencrypt::tls::detail
