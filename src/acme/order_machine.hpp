// acme::order_machine: the steps of one certificate issuance (RFC 8555 §7.4, RFC 8737),
// with no I/O. It says what to do next (send newOrder, fetch an authorization, present a
// challenge, ...) and is told what came back; client::obtain() is the driver that does the
// requests and runs the solvers. Everything the CA sends passes through here and is checked
// before it is acted on, so hostile or inconsistent replies are tested and fuzzed in memory.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "letsencrypt/acme/client.hpp"
#include "letsencrypt/acme/csr.hpp"
#include "letsencrypt/acme/error.hpp"
#include "letsencrypt/acme/types.hpp"

namespace letsencrypt::acme {

/// What the driver does next. `url` and `challenge` point into the machine and stay valid
/// until the next on_*() call.
struct order_step {
  enum class kind {
    new_order,            ///< POST newOrder for the requested names; then on_new_order()
    fetch_authorization,  ///< POST-as-GET `url`; then on_authorization()
    present,              ///< solver(challenge->type).present(*challenge); then on_presented()
    respond,              ///< POST {} to challenge->url; then on_responded()
    wait_authorization,   ///< poll `url` until it leaves pending; then on_authorization_settled()
    cleanup,              ///< solver(challenge->type).cleanup(*challenge); then on_cleaned_up()
    wait_ready,           ///< poll the order `url` until it leaves pending/processing; then on_order()
    make_csr,             ///< a fresh key and CSR for csr_names(); then on_csr()
    finalize,             ///< POST the CSR to `url` (the order's finalize URL); then on_order()
    wait_valid,           ///< poll the order `url`; then on_order()
    download,             ///< the chain at `url` with its alternates; then on_download()
    download_alternate,   ///< the alternate chain at `url`; then on_alternate()
    done,                 ///< take_certificate()
    failed,               ///< take_error()
  };
  kind what = kind::failed;
  std::string_view url;
  const challenge_info* challenge = nullptr;
};

/// One issuance as a state machine. Checks made on the CA's replies (each failure ends the
/// issuance with the error given, after every presented challenge was cleaned up):
/// - the order names exactly the requested identifiers (bad_response otherwise: the CSR is
///   made for the requested names only, never for names the CA added), with at most one
///   authorization per identifier;
/// - each authorization is for a requested name, pending or valid (invalid, expired, ...:
///   order_invalid), and offers a challenge of an enabled type with a base64url token
///   (no_supported_challenge / bad_response);
/// - a settled authorization is valid (order_invalid with the chosen challenge's problem);
/// - the order becomes ready, then valid with a certificate URL (order_invalid with the
///   order's problem); an order already valid before it was finalized is refused
///   (order_invalid): its certificate's key is not the one this issuance holds;
/// - the downloaded leaf certificate is for this issuance's key and names every requested
///   identifier (bad_response).
class order_machine {
 public:
  /// `names`: the DNS names requested ("*.example.com" for a wildcard; compared and sent in
  /// lower case without a trailing dot, repeats merged). `challenge_types`:
  /// the enabled challenge types that have a solver, most preferred first. `thumbprint`: the
  /// account key's RFC 7638 thumbprint (for key authorizations).
  order_machine(std::vector<std::string> names, std::vector<std::string> challenge_types, std::string thumbprint,
                std::size_t max_alternate_chains = 4);

  order_step next() const noexcept;
  const std::vector<std::string>& names() const noexcept { return names_; }
  /// The names for the CSR: the requested ones.
  std::span<const std::string> csr_names() const noexcept { return names_; }
  /// The CSR (DER) to send at the finalize step.
  std::string_view csr_der() const noexcept { return csr_ ? std::string_view(csr_->der) : std::string_view(); }
  /// The order as last seen (url, status, finalize, ...).
  const acme::order& current_order() const noexcept { return order_; }

  void on_new_order(acme_result<acme::order> r);
  void on_authorization(acme_result<authorization> r);
  void on_presented(acme_result<void> r);
  void on_responded(acme_result<challenge> r);
  void on_authorization_settled(acme_result<authorization> r);
  /// The outcome of a cleanup is not the issuance's: it is reported, not acted on.
  void on_cleaned_up();
  /// The reply of wait_ready, finalize and wait_valid.
  void on_order(acme_result<acme::order> r);
  void on_csr(acme_result<csr_bundle> r);
  void on_download(acme_result<certificate_chain> r, std::vector<std::string> alternates);
  /// An alternate chain that fails to download is left out; the issuance still succeeds.
  void on_alternate(acme_result<certificate_chain> r);

  /// Ends the issuance with `e` (the deadline passed, the caller gave up): next() still
  /// asks for the cleanup of what was presented, then says failed. An issued certificate is
  /// kept: during its download this does nothing, during alternates it ends as done. No-op
  /// once ended; the first error stays.
  void abort(error e);

  /// The certificate, once next() is done (moved out; call once).
  issued_certificate take_certificate();
  /// The error, once next() is failed.
  const error& failure() const noexcept { return error_; }

 private:
  enum class phase {
    new_order, authorizations, present, respond, settle, cleanup, wait_ready, make_csr, finalize, wait_valid,
    download, alternates, done, failed
  };
  struct work_item {
    challenge_info info;
    std::string authz_url;
    bool presented = false;
  };
  bool is_requested(std::string_view name) const noexcept;
  /// Ends the issuance with `e`: through cleanup when challenges were presented.
  void fail(error e);
  /// fail(), or during cleanup records `e` unless a failure is already recorded.
  void end_with(error e);
  /// Moves past the challenge phases to cleanup (or straight on when nothing was presented).
  void begin_cleanup();
  /// Moves the cursor to the next of `count` items; true, with the cursor back at 0, when
  /// every item has had its turn.
  bool next_item(std::size_t count) noexcept;
  bool expect(phase p);

  std::vector<std::string> names_;
  std::vector<std::string> types_;
  std::string thumbprint_;
  std::size_t max_alternates_;

  phase phase_ = phase::new_order;
  std::size_t cursor_ = 0;
  acme::order order_;
  std::vector<work_item> work_;
  std::vector<std::string> authorized_names_;  // the names of the authorizations fetched so far
  std::optional<error> pending_error_;  // set while cleaning up after a failure
  error error_;
  std::optional<csr_bundle> csr_;
  std::vector<std::string> alternate_urls_;
  issued_certificate out_;
};

/// True when `token` may be used in a key authorization and a URL path: 1..256 base64url
/// characters (RFC 8555 §8.3), no padding.
bool valid_challenge_token(std::string_view token) noexcept;

}  // namespace letsencrypt::acme
