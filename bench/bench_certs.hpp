// A throwaway CA and its leaf certificates, shared by the benchmarks that need certificates.
#pragma once

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <memory>
#include <string>

#include "letsencrypt/tls/handles.hpp"
#include "letsencrypt/tls/sni_map.hpp"

namespace letsencrypt::bench {

/// Throws std::runtime_error(what): benchmark set-up has no way to go on.
[[noreturn]] void fail(const char* what);

/// What a leaf carries besides its subject and key.
enum class leaf_shape {
  san_only,  ///< a subject alternative name
  typical,   ///< as tools/gen-certs and CAs issue them: basic constraints, key usage, extended
             ///< key usage, subject alternative name, authority key identifier
};

/// A certificate for `subject_key` naming `dns`, signed by `issuer_key` (self-signed CA when
/// `issuer` is null), round-tripped through DER as certificates loaded from storage are.
tls::x509_ptr mint(EVP_PKEY* subject_key, const std::string& dns, X509* issuer, EVP_PKEY* issuer_key,
                   leaf_shape shape = leaf_shape::san_only);

struct throwaway_ca {
  tls::evp_pkey_ptr key{EVP_EC_gen("P-256")};
  tls::x509_ptr cert = mint(key.get(), "bench CA", nullptr, key.get());

  /// A leaf for `dns` with a fresh P-256 key, chained to this CA.
  std::shared_ptr<const tls::certified_key> leaf(const std::string& dns,
                                                 leaf_shape shape = leaf_shape::san_only) const;
};

/// The process's one throwaway CA.
const throwaway_ca& ca();

}  // namespace letsencrypt::bench
