// acme::client: an RFC 8555 client (with RFC 8737 tls-alpn-01 and RFC 9773 ARI) over the
// library's HTTP/1.1 client and TLS stream, or over any transport given as a function.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "letsencrypt/acme/csr.hpp"
#include "letsencrypt/acme/error.hpp"
#include "letsencrypt/acme/jws.hpp"
#include "letsencrypt/acme/types.hpp"
#include "letsencrypt/io/ops.hpp"
#include "letsencrypt/io/task.hpp"

namespace letsencrypt::acme {

inline constexpr std::string_view lets_encrypt_production = "https://acme-v02.api.letsencrypt.org/directory";
inline constexpr std::string_view lets_encrypt_staging = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// One HTTP exchange as the client sees it (the transport's view, independent of src/http).
struct http_request {
  std::string method;
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

struct http_response {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  /// The first header called `name` (ASCII case-insensitive), "" when absent.
  std::string_view header(std::string_view name) const noexcept;
  std::vector<std::string_view> headers_named(std::string_view name) const;
};

/// A transport: sends one request and returns the whole response, or a transport error
/// (timed_out, closed, message_too_large, a socket or TLS error). It must end with
/// errc::cancelled soon after `stop` is requested.
using http_fetch = std::function<io::task<result<http_response>>(http_request, std::stop_token stop)>;

/// What a solver needs to answer one challenge.
struct challenge_info {
  acme::identifier identifier;  ///< the name being validated (without "*." for wildcards)
  bool wildcard = false;
  std::string type;             ///< "http-01", "tls-alpn-01" or "dns-01"
  std::string url;              ///< the challenge URL
  std::string token;
  std::string key_authorization;
  std::string dns_txt_name;     ///< "_acme-challenge.<identifier>" (dns-01)
  std::string dns_txt_value;    ///< base64url(SHA-256(key_authorization)) (dns-01)
};

/// Makes a challenge answerable (serve /.well-known/acme-challenge/<token>, install the
/// acme-tls/1 certificate, publish the TXT record) and removes it again. present() returns
/// once the CA may validate; cleanup() is called once for every present() that returned,
/// whether it succeeded or not (a failed one may have done part of its work), whatever the
/// order's outcome, so it must accept a challenge that was never fully presented. Both run
/// on the client's ring thread.
struct challenge_solver {
  virtual ~challenge_solver() = default;
  virtual io::task<result<void>> present(const challenge_info& c) = 0;
  virtual io::task<result<void>> cleanup(const challenge_info& c) = 0;
};

struct client_options {
  /// The CA's directory; Let's Encrypt production by default.
  std::string directory_url = std::string(lets_encrypt_production);
  /// PEM trust anchors for the CA's HTTPS certificate; empty: the system trust store.
  std::string ca_pem;
  /// Largest response (headers / body) accepted from the CA.
  std::size_t max_header_bytes = 64 * 1024;
  std::size_t max_body_bytes = 1 << 20;
  /// Deadline of each HTTP request (connect, send and read).
  io::duration request_timeout = std::chrono::seconds(30);
  /// Deadline of a whole obtain() (order, challenges, finalize, download).
  io::duration order_timeout = std::chrono::minutes(5);
  /// Attempts per request when the CA answers badNonce (each with a fresh nonce).
  int bad_nonce_attempts = 5;
  /// Polling of authorizations and orders: first interval, growth factor 2, cap. A
  /// Retry-After from the CA lengthens an interval (up to poll_max_retry_after); a shorter
  /// one (0, a date in the past) does not shorten it.
  io::duration poll_initial = std::chrono::milliseconds(50);
  io::duration poll_max = std::chrono::seconds(3);
  io::duration poll_max_retry_after = std::chrono::seconds(60);
  /// Challenge types in order of preference; only types with a solver are used.
  std::vector<std::string> challenge_preference = {"tls-alpn-01", "http-01", "dns-01"};
  /// Alternate chains (Link rel="alternate") downloaded at most.
  std::size_t max_alternate_chains = 4;
  /// Ends every request and wait with errc::cancelled when stopped.
  std::stop_token stop;
  /// A custom transport; when empty the client uses http::client with a TLS connector
  /// (ca_pem, or the system store) for https URLs and plain TCP for http URLs.
  http_fetch fetch;
};

struct account_options {
  std::vector<std::string> contact;  ///< e.g. "mailto:admin@example.com"
  /// Asked with the directory's termsOfService URL (when it has one); false aborts with
  /// errc::terms_not_accepted. Empty: the terms are not agreed (a CA may refuse).
  std::function<bool(std::string_view tos_url)> accept_terms;
  /// External account binding (RFC 8555 §7.3.4): kid and base64url HMAC key from the CA.
  std::string eab_kid;
  std::string eab_hmac_key;
};

/// Revocation reasons (RFC 5280 §5.3.1) that ACME CAs accept.
enum class revocation_reason : int {
  unspecified = 0,
  key_compromise = 1,
  superseded = 4,
  cessation_of_operation = 5,
};

struct certificate_chain {
  std::string pem;  ///< leaf first, then intermediates
  std::string url;
};

struct order_request {
  std::vector<std::string> names;  ///< DNS names; "*.example.com" for wildcards
  /// A profile name; sent only when the directory advertises it (else ignored).
  std::string profile;
  /// The RFC 9773 identifier of the certificate this one replaces (ARI renewals);
  /// sent only when the directory has renewalInfo.
  std::string replaces;
  cert_key_type key_type = cert_key_type::p256;
  /// Solvers by challenge type ("http-01", ...). Not owned; they must outlive obtain().
  std::map<std::string, challenge_solver*, std::less<>> solvers;
};

struct issued_certificate {
  certificate_chain chain;                      ///< the CA's default chain
  std::vector<certificate_chain> alternates;    ///< Link rel="alternate" chains
  std::string key_pem;                          ///< the certificate's private key (a secret)
  acme::order order;                            ///< the final order (url, profile, replaces)
};

/// An ACME client for one account key and one CA. Use it from one ring thread; the
/// directory is fetched on first need and cached. Every method returns acme::error: the
/// code, the CA's problem document, the HTTP status and Retry-After when there were any;
/// classify() says whether to retry, restart the order or stop.
class client {
 public:
  /// Takes the account key. Nothing is sent until the first call.
  client(client_options options, account_key key);
  ~client();
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  const account_key& key() const noexcept { return key_; }
  /// The account URL (kid); empty until register/find succeeds or set_account_url.
  const std::string& account_url() const noexcept { return account_url_; }
  /// Uses a known account URL (e.g. restored from a journal) without a lookup.
  void set_account_url(std::string url) { account_url_ = std::move(url); }

  /// The directory (fetched once, then cached).
  io::task<acme_result<directory>> get_directory();

  /// Creates the account (or returns the existing one for this key): newAccount with the
  /// contacts, termsOfServiceAgreed after the prompt, and EAB when configured. Fails with
  /// eab_required when the directory demands EAB and none is set.
  io::task<acme_result<account>> register_account(const account_options& opts);
  /// Looks up the account of this key (onlyReturnExisting); account_does_not_exist if none.
  io::task<acme_result<account>> find_account();
  /// The account object (POST-as-GET of the account URL).
  io::task<acme_result<account>> fetch_account();
  /// Replaces the contacts of the account.
  io::task<acme_result<account>> update_contact(std::vector<std::string> contact);
  /// Rolls the account over to `new_key` (RFC 8555 §7.3.5); on success the client signs with
  /// the new key. On failure the old key stays in use.
  io::task<acme_result<void>> change_key(account_key new_key);
  /// Deactivates the account (irreversible).
  io::task<acme_result<account>> deactivate_account();

  /// newOrder for `names` (profile and replaces as described in order_request).
  io::task<acme_result<order>> new_order(const order_request& req);
  io::task<acme_result<order>> get_order(std::string url);
  io::task<acme_result<authorization>> get_authorization(std::string url);
  /// Tells the CA the challenge is ready (POST {}).
  io::task<acme_result<challenge>> respond_challenge(std::string url);
  io::task<acme_result<authorization>> deactivate_authorization(std::string url);
  /// Polls the order until it leaves pending/processing (or `deadline`: order_timeout). The
  /// first poll waits `first_wait` (a Retry-After the CA already gave, such as finalize's;
  /// capped by poll_max_retry_after); order_timeout at once when that passes the deadline.
  io::task<acme_result<order>> wait_order(std::string url, io::clock::time_point deadline,
                                          io::duration first_wait = {});
  /// Polls the authorization until it leaves pending.
  io::task<acme_result<authorization>> wait_authorization(std::string url, io::clock::time_point deadline);
  /// Sends the CSR (DER) to the order's finalize URL. The reply's Retry-After, if any, is in
  /// the returned order's retry_after.
  io::task<acme_result<order>> finalize(const order& o, std::string_view csr_der);
  /// Downloads a certificate chain (application/pem-certificate-chain) and lists the
  /// Link rel="alternate" URLs in `alternates` (when non-null).
  io::task<acme_result<certificate_chain>> download_certificate(std::string url,
                                                                std::vector<std::string>* alternates = nullptr);

  /// The whole issuance: new order, solve every pending authorization with the preferred
  /// challenge that has a solver (all presented, then answered, then polled), wait for
  /// ready, finalize with a fresh key's CSR, wait for valid, download the chain and its
  /// alternates. Bounded by order_timeout. Needs an account (register/find/set first).
  /// Errors: order_invalid with the failing challenge's problem, no_supported_challenge,
  /// order_timeout, cancelled, or any request's error.
  io::task<acme_result<issued_certificate>> obtain(const order_request& req);

  /// ARI (RFC 9773): the suggested renewal window for the certificate (first PEM block).
  /// unsupported when the directory has no renewalInfo.
  io::task<acme_result<renewal_info>> get_renewal_info(std::string_view cert_pem);
  /// The same by the certificate's RFC 9773 identifier (ari_certificate_id).
  io::task<acme_result<renewal_info>> get_renewal_info_by_id(std::string_view cert_id);

  /// Revokes the certificate (first PEM block), signed by the account key.
  io::task<acme_result<void>> revoke(std::string_view cert_pem, revocation_reason reason = revocation_reason::unspecified);
  /// Revokes the certificate, signed by its own key (jwk in the header); no account needed.
  io::task<acme_result<void>> revoke_with_certificate_key(std::string_view cert_pem, const account_key& cert_key,
                                                          revocation_reason reason = revocation_reason::unspecified);

  /// Nonces waiting in the pool (tests).
  std::size_t pooled_nonces() const noexcept { return nonces_.size(); }
  /// badNonce answers received so far (tests, metrics).
  std::size_t bad_nonces_seen() const noexcept { return bad_nonces_; }

 private:
  struct reply {
    http_response http;
    std::string location;
  };
  io::task<acme_result<http_response>> send(http_request r);
  io::task<acme_result<std::string>> take_nonce();
  void keep_nonce(const http_response& r);
  /// Signs and POSTs `payload` ("" = POST-as-GET) to url with kid (or jwk when `signer`
  /// is given or there is no account), retrying badNonce with a fresh nonce.
  io::task<acme_result<reply>> post(std::string url, std::string payload, const account_key* jwk_signer = nullptr,
                                    std::string_view accept = {});
  /// The account a newAccount reply describes (URL from its Location), made this client's.
  acme_result<account> adopt_account(const reply& rep);
  io::task<acme_result<void>> pause(io::duration d);
  io::task<acme_result<certificate_chain>> download_one(std::string url, std::vector<std::string>* alternates);
  io::task<acme_result<void>> revoke_impl(std::string_view cert_pem, const account_key* cert_key, revocation_reason reason);
  io::task<acme_result<issued_certificate>> obtain_impl(const order_request& req, io::clock::time_point deadline);

  client_options options_;
  account_key key_;
  std::string account_url_;
  std::optional<directory> directory_;
  std::vector<std::string> nonces_;
  std::size_t bad_nonces_ = 0;
  struct transport_state;
  std::unique_ptr<transport_state> transport_;
};

/// An error for a non-2xx response: its problem document when the body is one (code from
/// the problem type), else http_status; Retry-After parsed. Exposed for tests.
error error_from_response(const http_response& r);

/// The targets of `Link: <url>;rel="alternate"` (or another rel) headers.
std::vector<std::string> link_targets(const http_response& r, std::string_view rel);

}  // namespace letsencrypt::acme
