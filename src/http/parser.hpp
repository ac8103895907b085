// Incremental HTTP/1.1 message parsers over Node's http_parser: no I/O, fed byte spans.
#pragma once

#include <http_parser.h>

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include "http/message.hpp"
#include "letsencrypt/result.hpp"

namespace letsencrypt::http {

/// Why a parse failed, finer than the error code (a server answers 400, 413 or 431).
enum class parse_failure { none, malformed, headers_too_large, too_many_headers, body_too_large, closed_early };

namespace detail {

/// The part common to requests and responses: header and body accumulation and limits.
class parser_base {
 public:
  parser_base(const parser_base&) = delete;
  parser_base& operator=(const parser_base&) = delete;

  /// True once a whole message has been parsed; take it before feeding more.
  bool done() const noexcept { return done_; }
  /// True once any byte of the current message has been consumed.
  bool started() const noexcept { return started_; }
  parse_failure failure() const noexcept { return failure_; }
  /// A human-readable reason for the last failure ("" when none).
  const std::string& error_detail() const noexcept { return detail_; }

 protected:
  parser_base(http_parser_type type, const limits& l);
  ~parser_base() = default;

  /// Consumes bytes up to the end of one message. Returns how many were consumed; fewer
  /// than given means the message ended (done()) and the rest belongs to the next one.
  result<std::size_t> feed_bytes(std::span<const char> data);
  result<void> finish_bytes();
  void reset_base();

  static const http_parser_settings& callbacks();
  static int on_message_begin(http_parser* p);
  static int on_url(http_parser* p, const char* at, std::size_t n);
  static int on_status(http_parser* p, const char* at, std::size_t n);
  static int on_header_field(http_parser* p, const char* at, std::size_t n);
  static int on_header_value(http_parser* p, const char* at, std::size_t n);
  static int on_headers_complete(http_parser* p);
  static int on_body(http_parser* p, const char* at, std::size_t n);
  static int on_message_complete(http_parser* p);
  static int on_chunk_header(http_parser* p);
  static int on_chunk_complete(http_parser* p);
  bool check_framing(std::span<const char> used, std::span<const char> rest);

  int fail(parse_failure f, std::string why);

  http_parser p_{};
  http_parser_type type_;
  limits limits_;
  std::string target_;  // request target
  std::vector<header> headers_;
  std::string body_;
  bool keep_alive_ = false;
  bool in_value_ = false;
  bool done_ = false;
  bool started_ = false;
  bool skip_body_ = false;
  bool headers_done_ = false;
  std::size_t head_consumed_ = 0;  // bytes consumed before the header section ended
  // The lenient system http_parser takes any byte for the LF ending the header section or
  // for the CR LF around chunk data, and never looks into chunk extensions: it pauses at
  // those places and check_framing() looks at the bytes itself.
  enum class stop_at : unsigned char { none, headers, chunk_header, chunk_end } stop_ = stop_at::none;
  bool chunked_ = false;        // the current message has a chunked body
  bool in_chunk_line_ = false;  // the parser is in a chunk-size line
  int line_ctl_ = 0;            // control bytes in that line (its CR LF included)
  char last_[2] = {0, 0};       // the last two bytes the parser consumed
  parse_failure failure_ = parse_failure::none;
  std::string detail_;
  std::error_code error_;
};

}  // namespace detail

/// Parses requests one after another from a connection's bytes (pipelining-safe: it stops at
/// the end of each message). Errors: errc::message_too_large (header bytes, header count or
/// body over the limits) or errc::protocol_error (malformed), with error_detail() saying why;
/// after an error the parser must be reset() before reuse.
class request_parser : public detail::parser_base {
 public:
  explicit request_parser(const limits& l = {});
  /// See parser_base::feed_bytes.
  result<std::size_t> feed(std::string_view data) { return feed_bytes({data.data(), data.size()}); }
  result<std::size_t> feed(std::span<const std::byte> data) {
    return feed_bytes({reinterpret_cast<const char*>(data.data()), data.size()});
  }
  /// Signals the end of the stream: completes a message delimited by it, else fails
  /// with errc::closed.
  result<void> finish() { return finish_bytes(); }
  /// Moves the parsed request out and readies the parser for the next message.
  request take();
  void reset() { reset_base(); }
};

/// Parses responses; expect_no_body(true) before the first byte of a response to HEAD (or
/// any other response without a body). A response delimited by the end of the stream is
/// completed by finish().
class response_parser : public detail::parser_base {
 public:
  explicit response_parser(const limits& l = {});
  void expect_no_body(bool v) noexcept { skip_body_ = v; }
  result<std::size_t> feed(std::string_view data) { return feed_bytes({data.data(), data.size()}); }
  result<std::size_t> feed(std::span<const std::byte> data) {
    return feed_bytes({reinterpret_cast<const char*>(data.data()), data.size()});
  }
  /// Signals the end of the stream: completes a message delimited by it, else fails
  /// with errc::closed.
  result<void> finish() { return finish_bytes(); }
  response take();
  void reset() { reset_base(); }
};

}  // namespace letsencrypt::http
