// OpenSSL objects as unique_ptr with function deleters, up-ref helpers and PEM/key helpers.
#pragma once

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <chrono>
#include <memory>
#include <utility>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "letsencrypt/result.hpp"

namespace letsencrypt::tls {

namespace detail {
/// A deleter that calls a free function of OpenSSL.
template <class T, void (*Free)(T*)>
struct free_fn {
  void operator()(T* p) const noexcept { Free(p); }
};
inline void free_x509_stack(STACK_OF(X509) * s) noexcept { sk_X509_pop_free(s, X509_free); }
inline void free_bio(BIO* b) noexcept { BIO_free_all(b); }
}  // namespace detail

using ssl_ptr = std::unique_ptr<SSL, detail::free_fn<SSL, SSL_free>>;
using ssl_ctx_ptr = std::unique_ptr<SSL_CTX, detail::free_fn<SSL_CTX, SSL_CTX_free>>;
using x509_ptr = std::unique_ptr<X509, detail::free_fn<X509, X509_free>>;
using evp_pkey_ptr = std::unique_ptr<EVP_PKEY, detail::free_fn<EVP_PKEY, EVP_PKEY_free>>;
using x509_stack_ptr = std::unique_ptr<STACK_OF(X509), detail::free_fn<STACK_OF(X509), detail::free_x509_stack>>;
using bio_ptr = std::unique_ptr<BIO, detail::free_fn<BIO, detail::free_bio>>;
using ssl_session_ptr = std::unique_ptr<SSL_SESSION, detail::free_fn<SSL_SESSION, SSL_SESSION_free>>;

/// Takes a new reference on `p` (nullptr gives an empty pointer); both owners may free.
x509_ptr up_ref(X509* p) noexcept;
evp_pkey_ptr up_ref(EVP_PKEY* p) noexcept;
ssl_ctx_ptr up_ref(SSL_CTX* p) noexcept;

/// Copies a chain by taking a new reference on each certificate (no deep copy).
std::vector<x509_ptr> copy_chain(std::span<const x509_ptr> chain);

/// A STACK_OF(X509) holding new references on each certificate of `chain`, for APIs such as
/// SSL_CTX_set1_chain. Fails with errc::invalid_argument only on allocation failure.
result<x509_stack_ptr> to_stack(std::span<const x509_ptr> chain);

/// Parses one DER certificate, the whole of `der`. Fails with tls_errc::bad_pem when the
/// bytes are not one certificate (trailing bytes included), or with the OpenSSL error when
/// memory runs out. OpenSSL 3.0's d2i_X509 spends most of its time (about 60 of 90 us for a
/// P-256 certificate here) setting up a decoder for the public key; here the key is decoded
/// in the library's own context, whose decoders are only those a certificate's key can need
/// (EC, RSA, RSA-PSS, Ed25519, Ed448), in about 30 us. A key of another type is decoded as
/// d2i_X509 does. The certificate verifies and is verified against like any other. When
/// OpenSSL's default context has FIPS properties on, or a provider besides default and base
/// (one the application loaded), it is parsed as d2i_X509 parses.
result<x509_ptr> parse_certificate_der(std::string_view der);

/// Parses every CERTIFICATE block of `pem`, leaf first as written, as
/// parse_certificate_der does. Fails with tls_errc::bad_pem when the text holds no
/// certificate or a block does not parse.
result<std::vector<x509_ptr>> load_certificate_chain_pem(std::string_view pem);

/// The DER of every PEM block of `pem` labelled `label` ("CERTIFICATE", "PRIVATE KEY"...),
/// in order: base64-decoded, not parsed. Blocks with other labels are skipped. Fails with
/// tls_errc::bad_pem when the text holds no such block or a block does not decode. Key
/// blocks are secrets: the caller cleanses what it is given.
result<std::vector<std::string>> pem_blocks_der(std::string_view pem, std::string_view label);

/// `t` as a time point. Times from the year 2200 on (RFC 5280's 99991231235959Z, "no
/// well-defined expiration") read as the start of 2200: system_clock cannot count past 2262.
/// Fails with errc::invalid_argument for a null or malformed time.
result<std::chrono::system_clock::time_point> to_time_point(const ASN1_TIME* t);

/// notBefore and notAfter of a DER certificate, read from its TBSCertificate without parsing
/// the rest (a parse decodes the public key too: 90 us by d2i_X509, 30 us by
/// parse_certificate_der). Fails with tls_errc::bad_pem when the bytes are not a
/// certificate's header up to its validity.
result<std::pair<std::chrono::system_clock::time_point, std::chrono::system_clock::time_point>>
certificate_validity(std::string_view der);

/// Parses the first private key of `pem` (PKCS#8, traditional RSA or EC; unencrypted), into
/// the library's own context when there is one (see parse_certificate_der), so that its
/// certificates and server contexts use it without OpenSSL copying it between contexts.
/// Fails with tls_errc::bad_pem when there is none or it does not parse.
result<evp_pkey_ptr> load_private_key_pem(std::string_view pem);

/// Parses an unencrypted PKCS#8 private key (DER, what "BEGIN PRIVATE KEY" holds). An EC key
/// on P-256, P-384 or P-521 that carries its public key, as OpenSSL and Go write them, is
/// read directly (about 13 us; OpenSSL 3.0's decoders take about 320 us); any other goes
/// through OpenSSL. Fails with tls_errc::bad_pem when it does not parse.
result<evp_pkey_ptr> load_private_key_der(std::string_view der);

/// The certificate as PEM text.
result<std::string> to_pem(X509* cert);
/// The certificates of `chain`, concatenated as PEM text, in order.
result<std::string> to_pem(std::span<const x509_ptr> chain);
/// The private key as unencrypted PKCS#8 PEM ("BEGIN PRIVATE KEY"). The text is a secret:
/// never log it.
result<std::string> to_pem(EVP_PKEY* key);
/// The public half of `key` as SubjectPublicKeyInfo PEM ("BEGIN PUBLIC KEY").
result<std::string> public_key_pem(EVP_PKEY* key);

/// A fresh ECDSA key on P-256 (prime256v1).
result<evp_pkey_ptr> generate_ec_p256_key();
/// A fresh RSA key of `bits` bits (2048 or more; smaller sizes fail with invalid_argument).
result<evp_pkey_ptr> generate_rsa_key(unsigned bits = 2048);

}  // namespace letsencrypt::tls
