#include "letsencrypt/tls/engine.hpp"

#include <openssl/err.h>

#include <algorithm>
#include <cstring>

#include "letsencrypt/tls/error.hpp"

namespace letsencrypt::tls {

namespace {
constexpr std::size_t output_reserve = 16 * 1024 + 512;  // one full record and its overhead
int bio_type = 0;  // written once, inside bio_method()'s initialisation
}

const BIO_METHOD* engine::bio_method() {
  static BIO_METHOD* method = [] {
    bio_type = BIO_get_new_index() | BIO_TYPE_SOURCE_SINK;
    BIO_METHOD* m = BIO_meth_new(bio_type, "letsencrypt engine");
    if (!m) return m;
    BIO_meth_set_read_ex(m, &engine::bio_read);
    BIO_meth_set_write_ex(m, &engine::bio_write);
    BIO_meth_set_ctrl(m, &engine::bio_ctrl);
    BIO_meth_set_create(m, [](BIO* b) {
      BIO_set_init(b, 1);
      return 1;
    });
    return m;
  }();
  return method;
}

result<std::unique_ptr<engine>> engine::create(SSL_CTX* ctx, role r) {
  if (!ctx) return errc::invalid_argument;
  ERR_clear_error();
  ssl_ptr ssl(SSL_new(ctx));
  if (!ssl) return tls_error();
  return create(std::move(ssl), r);
}

result<std::unique_ptr<engine>> engine::create(ssl_ptr ssl, role r) {
  if (!ssl) return errc::invalid_argument;
  const BIO_METHOD* m = bio_method();
  if (!m) return tls_error();
  ERR_clear_error();
  BIO* bio = BIO_new(m);
  if (!bio) return tls_error();
  return std::unique_ptr<engine>(new engine(std::move(ssl), r, bio));
}

engine::engine(ssl_ptr ssl, role r, BIO* bio) noexcept : ssl_(std::move(ssl)), role_(r) {
  BIO_set_data(bio, this);
  SSL_set_bio(ssl_.get(), bio, bio);  // one reference, used for both directions
  // Read-ahead lets OpenSSL take whole received segments at once, so a fed span is usually
  // consumed by the first call and the caller can reuse its buffer at once.
  SSL_set_read_ahead(ssl_.get(), 1);
  if (r == role::server)
    SSL_set_accept_state(ssl_.get());
  else
    SSL_set_connect_state(ssl_.get());
}

engine::~engine() {
  // The BIO may outlive us only through the SSL, which dies with us; cut the link anyway so
  // a stray callback finds no engine.
  if (BIO* b = SSL_get_rbio(ssl_.get())) BIO_set_data(b, nullptr);
}

void engine::feed(std::span<const std::byte> data) {
  if (!in_.empty()) keep_input();
  in_ = data;
}

std::size_t engine::input_pending() const noexcept { return (kept_.size() - kept_head_) + in_.size(); }

void engine::keep_input() {
  if (in_.empty()) return;
  if (kept_head_ == kept_.size()) {
    kept_.clear();
    kept_head_ = 0;
  }
  kept_.insert(kept_.end(), in_.begin(), in_.end());
  in_ = {};
}

void engine::consume_output(std::size_t n) noexcept {
  out_head_ += std::min(n, out_.size() - out_head_);
  if (out_head_ == out_.size()) {
    // A large write grew the buffer; an idle connection should not keep that much.
    if (out_.capacity() > 4 * output_reserve) std::vector<std::byte>().swap(out_);
    out_.clear();
    out_head_ = 0;
    lent_ = false;
    if (!spill_.empty()) out_.swap(spill_);
  }
}

bool engine::handshake_done() const noexcept { return SSL_is_init_finished(ssl_.get()) == 1; }

long engine::verify_result() const noexcept { return SSL_get_verify_result(ssl_.get()); }

op_result engine::fail(std::error_code ec) {
  failed_ = true;
  error_ = ec;
  return {status::error};
}

op_result engine::finish(int rc, bool for_read) {
  int e = SSL_get_error(ssl_.get(), rc);
  switch (e) {
    case SSL_ERROR_WANT_READ:
      if (!pending_output().empty()) return {status::have_output};
      return {status::want_input};
    case SSL_ERROR_WANT_WRITE:
      return {status::have_output};
    case SSL_ERROR_WANT_CLIENT_HELLO_CB:
      return {status::want_certificate};
    case SSL_ERROR_ZERO_RETURN:
      ERR_clear_error();
      if (for_read) return {status::closed};
      return fail(tls_errc::unexpected_eof);
    case SSL_ERROR_SYSCALL:
      // Our BIO makes no system calls: this is the transport's end without close_notify.
      ERR_clear_error();
      return fail(eof_ ? tls_errc::unexpected_eof : tls_errc::internal_error);
    case SSL_ERROR_SSL: {
      unsigned long first = ERR_peek_error();
      int reason = ERR_GET_REASON(first);
      if (ERR_GET_LIB(first) == ERR_LIB_SSL) {
        if (reason >= SSL_AD_REASON_OFFSET && reason < SSL_AD_REASON_OFFSET + 256) {
          peer_alert_ = reason - SSL_AD_REASON_OFFSET;
          ERR_clear_error();
          return fail(tls_errc::alert_received);
        }
        if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
          ERR_clear_error();
          return fail(tls_errc::certificate_verify_failed);
        }
        if (reason == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
          ERR_clear_error();
          return fail(tls_errc::unexpected_eof);
        }
      }
      return fail(tls_error(tls_errc::handshake_failed));
    }
    default:
      return fail(tls_error(tls_errc::internal_error));
  }
}

op_result engine::handshake() {
  if (failed_) return {status::error};
  if (!handshake_done()) {
    ERR_clear_error();
    int rc = SSL_do_handshake(ssl_.get());
    if (rc != 1) return finish(rc, false);
  }
  if (!pending_output().empty()) return {status::have_output};
  return {status::done};
}

op_result engine::read(std::span<std::byte> buf) {
  if (failed_) return {status::error};
  if (buf.empty()) return {status::done, 0};
  ERR_clear_error();
  std::size_t n = 0;
  int rc = SSL_read_ex(ssl_.get(), buf.data(), buf.size(), &n);
  if (rc == 1) return {status::done, n};
  return finish(rc, true);
}

op_result engine::write(std::span<const std::byte> buf) {
  if (failed_) return {status::error};
  if (buf.empty()) return {status::done, 0};
  ERR_clear_error();
  std::size_t n = 0;
  int rc = SSL_write_ex(ssl_.get(), buf.data(), buf.size(), &n);
  if (rc == 1) return {status::done, n};
  return finish(rc, false);
}

op_result engine::shutdown() {
  if (failed_) return {status::error};
  if (handshake_done() && !(SSL_get_shutdown(ssl_.get()) & SSL_SENT_SHUTDOWN)) {
    ERR_clear_error();
    int rc = SSL_shutdown(ssl_.get());
    if (rc < 0) return finish(rc, false);
  }
  if (!pending_output().empty()) return {status::have_output};
  return {status::done};
}

int engine::bio_read(BIO* b, char* dst, std::size_t n, std::size_t* got) {
  BIO_clear_retry_flags(b);
  *got = 0;
  auto* e = static_cast<engine*>(BIO_get_data(b));
  if (!e) return 0;
  std::size_t done = 0;
  if (e->kept_head_ < e->kept_.size()) {
    std::size_t k = std::min(n, e->kept_.size() - e->kept_head_);
    std::memcpy(dst, e->kept_.data() + e->kept_head_, k);
    e->kept_head_ += k;
    done += k;
    if (e->kept_head_ == e->kept_.size()) {
      e->kept_.clear();
      e->kept_head_ = 0;
    }
  }
  if (done < n && !e->in_.empty()) {
    std::size_t k = std::min(n - done, e->in_.size());
    std::memcpy(dst + done, e->in_.data(), k);
    e->in_ = e->in_.subspan(k);
    done += k;
  }
  if (done == 0) {
    if (!e->eof_) BIO_set_retry_read(b);
    return 0;
  }
  *got = done;
  return 1;
}

const engine* engine::of(const SSL* ssl) noexcept {
  const BIO_METHOD* m = bio_method();
  BIO* b = ssl ? SSL_get_wbio(ssl) : nullptr;
  if (!m || !b || BIO_method_type(b) != bio_type) return nullptr;
  return static_cast<const engine*>(BIO_get_data(b));
}

void engine::count_records(const unsigned char* p, std::size_t n) noexcept {
  while (n > 0) {
    if (record_left_ > 0) {
      const std::size_t k = std::min(n, record_left_);
      record_left_ -= k;
      p += k;
      n -= k;
      continue;
    }
    header_[header_have_++] = *p++;
    --n;
    if (header_have_ == sizeof header_) {
      ++records_written_;
      records_since_ccs_ = header_[0] == SSL3_RT_CHANGE_CIPHER_SPEC ? 0 : records_since_ccs_ + 1;
      record_left_ = static_cast<std::size_t>(header_[3]) << 8 | header_[4];
      header_have_ = 0;
    }
  }
}

int engine::bio_write(BIO* b, const char* src, std::size_t n, std::size_t* put) {
  BIO_clear_retry_flags(b);
  auto* e = static_cast<engine*>(BIO_get_data(b));
  if (!e) return 0;
  e->count_records(reinterpret_cast<const unsigned char*>(src), n);
  // A lent buffer is being sent from: appending could move it, so new bytes wait behind it.
  std::vector<std::byte>& out = e->lent_ ? e->spill_ : e->out_;
  if (out.capacity() == 0) out.reserve(output_reserve);
  const auto* p = reinterpret_cast<const std::byte*>(src);
  out.insert(out.end(), p, p + n);
  *put = n;
  return 1;
}

long engine::bio_ctrl(BIO* b, int cmd, long, void*) {
  auto* e = static_cast<engine*>(BIO_get_data(b));
  switch (cmd) {
    case BIO_CTRL_FLUSH: return 1;
    case BIO_CTRL_EOF: return e && e->eof_ && e->input_pending() == 0;
    case BIO_CTRL_PENDING: return e ? static_cast<long>(e->input_pending()) : 0;
    case BIO_CTRL_WPENDING: return 0;
    default: return 0;
  }
}

}  // namespace letsencrypt::tls
