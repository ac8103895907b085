#include "http/parser.hpp"

#include <utility>

namespace letsencrypt::http {

namespace detail {

namespace {

const http_parser_settings& settings() {
  static const http_parser_settings s = [] {
    http_parser_settings x;
    http_parser_settings_init(&x);
    return x;
  }();
  return s;
}

void trim_trailing_space(std::string& s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.pop_back();
}

}  // namespace

parser_base::parser_base(http_parser_type type, const limits& l) : type_(type), limits_(l) { reset_base(); }

void parser_base::reset_base() {
  http_parser_init(&p_, type_);
  p_.data = this;
  target_.clear();
  headers_.clear();
  body_.clear();
  keep_alive_ = false;
  in_value_ = false;
  done_ = false;
  started_ = false;
  head_consumed_ = 0;
  headers_done_ = false;
  stop_ = stop_at::none;
  chunked_ = in_chunk_line_ = false;
  line_ctl_ = 0;
  last_[0] = last_[1] = 0;
  failure_ = parse_failure::none;
  detail_.clear();
  error_ = {};
}

int parser_base::fail(parse_failure f, std::string why) {
  failure_ = f;
  detail_ = std::move(why);
  error_ = make_error_code(f == parse_failure::malformed ? errc::protocol_error
                           : f == parse_failure::closed_early ? errc::closed
                                                               : errc::message_too_large);
  return -1;
}

int parser_base::on_message_begin(http_parser*) { return 0; }

int parser_base::on_url(http_parser* p, const char* at, std::size_t n) {
  auto* self = static_cast<parser_base*>(p->data);
  self->target_.append(at, n);
  return 0;
}

int parser_base::on_status(http_parser*, const char*, std::size_t) { return 0; }

int parser_base::on_header_field(http_parser* p, const char* at, std::size_t n) {
  auto* self = static_cast<parser_base*>(p->data);
  if (self->headers_done_) return 0;  // a trailer field: never merged into the headers (RFC 9110 6.5.1)
  if (self->in_value_ || self->headers_.empty()) {
    if (self->headers_.size() >= self->limits_.max_headers)
      return self->fail(parse_failure::too_many_headers,
                        "more than " + std::to_string(self->limits_.max_headers) + " header lines");
    self->headers_.emplace_back();
    self->in_value_ = false;
  }
  self->headers_.back().name.append(at, n);
  return 0;
}

int parser_base::on_header_value(http_parser* p, const char* at, std::size_t n) {
  auto* self = static_cast<parser_base*>(p->data);
  if (self->headers_done_) return 0;
  self->in_value_ = true;
  self->headers_.back().value.append(at, n);
  return 0;
}

int parser_base::on_headers_complete(http_parser* p) {
  auto* self = static_cast<parser_base*>(p->data);
  self->headers_done_ = true;
  // The system's http_parser may be built lenient (HTTP_PARSER_STRICT=0), which lets
  // spaces into header names; a name that is not a token could smuggle a second meaning.
  for (auto& h : self->headers_) {
    if (!is_token(h.name)) return self->fail(parse_failure::malformed, "invalid header name");
    if (!is_field_value(h.value)) return self->fail(parse_failure::malformed, "invalid header value");
    trim_trailing_space(h.value);
  }
  if ((p->flags & F_CONTENTLENGTH) && p->content_length > self->limits_.max_body_bytes && !self->skip_body_ &&
      !(self->type_ == HTTP_RESPONSE && (p->status_code < 200 || p->status_code == 204 || p->status_code == 304)))
    return self->fail(parse_failure::body_too_large,
                      "Content-Length " + std::to_string(p->content_length) + " over the limit of " +
                          std::to_string(self->limits_.max_body_bytes) + " bytes");
  self->stop_ = stop_at::headers;
  http_parser_pause(p, 1);
  if (self->type_ != HTTP_RESPONSE) return 0;
  // A response to HEAD announces a body it does not carry; 1xx, 204 and 304 never have one.
  const unsigned st = p->status_code;
  return self->skip_body_ || st < 200 || st == 204 || st == 304 ? 1 : 0;
}

int parser_base::on_chunk_header(http_parser* p) {
  static_cast<parser_base*>(p->data)->stop_ = stop_at::chunk_header;
  http_parser_pause(p, 1);
  return 0;
}

int parser_base::on_chunk_complete(http_parser* p) {
  if (p->flags & F_TRAILING) return 0;  // the end of the trailer section: checked at the message's end
  static_cast<parser_base*>(p->data)->stop_ = stop_at::chunk_end;
  http_parser_pause(p, 1);
  return 0;
}

bool parser_base::check_framing(std::span<const char> used, std::span<const char> rest) {
  if (in_chunk_line_)
    for (unsigned char c : used) line_ctl_ += (c < 0x20 && c != '\t') || c == 0x7f;
  if (used.size() >= 2) last_[0] = used[used.size() - 2];
  else if (used.size() == 1) last_[0] = last_[1];
  if (!used.empty()) last_[1] = used.back();
  const bool crlf = last_[0] == '\r' && last_[1] == '\n';
  switch (std::exchange(stop_, stop_at::none)) {
    case stop_at::none:
      break;
    case stop_at::headers:  // the parser stopped on the byte that ends the header section
      if (rest.empty() || rest[0] != '\n') return fail(parse_failure::malformed, "header section not ended by LF"), false;
      chunked_ = (p_.flags & F_CHUNKED) && !(p_.flags & F_SKIPBODY);
      in_chunk_line_ = chunked_;
      line_ctl_ = -1;  // that LF is consumed with the first chunk-size line
      break;
    case stop_at::chunk_header:
      if (line_ctl_ != 2 || !crlf) return fail(parse_failure::malformed, "malformed chunk-size line"), false;
      in_chunk_line_ = false;
      break;
    case stop_at::chunk_end:
      if (!crlf) return fail(parse_failure::malformed, "chunk data not followed by CRLF"), false;
      in_chunk_line_ = true;
      line_ctl_ = 0;
      break;
  }
  if (done_ && chunked_ && last_[1] != '\n') return fail(parse_failure::malformed, "trailer section not ended by LF"), false;
  return true;
}

int parser_base::on_body(http_parser* p, const char* at, std::size_t n) {
  auto* self = static_cast<parser_base*>(p->data);
  if (self->body_.size() + n > self->limits_.max_body_bytes)
    return self->fail(parse_failure::body_too_large,
                      "body larger than " + std::to_string(self->limits_.max_body_bytes) + " bytes");
  self->body_.append(at, n);
  return 0;
}

int parser_base::on_message_complete(http_parser* p) {
  auto* self = static_cast<parser_base*>(p->data);
  self->done_ = true;
  self->keep_alive_ = http_should_keep_alive(p) != 0 && !p->upgrade;
  // Stops the parser at the message boundary so pipelined bytes stay with the caller.
  http_parser_pause(p, 1);
  return 0;
}

const http_parser_settings& parser_base::callbacks() {
  static const http_parser_settings cbs = [] {
    http_parser_settings s = settings();
    s.on_message_begin = &parser_base::on_message_begin;
    s.on_url = &parser_base::on_url;
    s.on_status = &parser_base::on_status;
    s.on_header_field = &parser_base::on_header_field;
    s.on_header_value = &parser_base::on_header_value;
    s.on_headers_complete = &parser_base::on_headers_complete;
    s.on_body = &parser_base::on_body;
    s.on_message_complete = &parser_base::on_message_complete;
    s.on_chunk_header = &parser_base::on_chunk_header;
    s.on_chunk_complete = &parser_base::on_chunk_complete;
    return s;
  }();
  return cbs;
}

result<std::size_t> parser_base::feed_bytes(std::span<const char> data) {
  if (failure_ != parse_failure::none) return error_;
  if (done_ || data.empty()) return std::size_t{0};
  started_ = true;
  std::size_t total = 0;
  while (!data.empty() && !done_) {
    // Until the header section ends, the parser sees no more than what is left of the header
    // budget, so the limit holds however the bytes were split (blank lines included).
    std::size_t chunk = data.size();
    if (!headers_done_) chunk = std::min(chunk, limits_.max_header_bytes - head_consumed_);
    if (chunk == 0) {  // only with max_header_bytes == 0; a zero length would mean end of stream
      fail(parse_failure::headers_too_large, "header section larger than 0 bytes");
      return error_;
    }
    std::size_t n = http_parser_execute(&p_, &callbacks(), data.data(), chunk);
    auto e = HTTP_PARSER_ERRNO(&p_);
    if (e != HPE_OK && e != HPE_PAUSED) {
      if (failure_ == parse_failure::none) {
        if (e == HPE_HEADER_OVERFLOW)
          fail(parse_failure::headers_too_large, "header section too large");
        else
          fail(parse_failure::malformed, std::string("malformed HTTP message: ") + http_errno_description(e));
      }
      return error_;
    }
    if (!check_framing(data.first(n), data.subspan(n, chunk - n))) return error_;
    if (e == HPE_PAUSED && !done_) {
      http_parser_pause(&p_, 0);  // stopped for check_framing
    } else if (!done_ && n != chunk) {
      fail(parse_failure::malformed, "protocol upgrade or CONNECT is not supported");
      return error_;
    }
    if (!headers_done_) {
      head_consumed_ += n;
      if (head_consumed_ >= limits_.max_header_bytes) {
        fail(parse_failure::headers_too_large,
             "header section larger than " + std::to_string(limits_.max_header_bytes) + " bytes");
        return error_;
      }
    }
    total += n;
    data = data.subspan(n);
  }
  return total;
}

result<void> parser_base::finish_bytes() {
  if (failure_ != parse_failure::none) return error_;
  if (done_) return ok();
  if (!started_) {
    fail(parse_failure::closed_early, "connection closed before a message began");
    return error_;
  }
  http_parser_execute(&p_, &callbacks(), nullptr, 0);
  if (done_) return ok();
  if (failure_ == parse_failure::none)
    fail(parse_failure::closed_early, headers_done_ ? "connection closed in the middle of the body"
                                                    : "connection closed in the middle of the header");
  return error_;
}

}  // namespace detail

request_parser::request_parser(const limits& l) : parser_base(HTTP_REQUEST, l) {}

request request_parser::take() {
  request r;
  r.method = http_method_str(static_cast<http_method>(p_.method));
  r.target = std::move(target_);
  r.headers = std::move(headers_);
  r.body = std::move(body_);
  r.keep_alive = keep_alive_;
  reset_base();
  return r;
}

response_parser::response_parser(const limits& l) : parser_base(HTTP_RESPONSE, l) {}

response response_parser::take() {
  response r;
  r.status = static_cast<int>(p_.status_code);
  r.headers = std::move(headers_);
  r.body = std::move(body_);
  r.keep_alive = keep_alive_;
  reset_base();
  return r;
}

}  // namespace letsencrypt::http
