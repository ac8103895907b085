// result<T>: a value or an error, for paths where exceptions are not welcome.
#pragma once

#include <cassert>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>

#include "letsencrypt/error.hpp"

namespace letsencrypt {

/// Wraps an error for construction of any result<T, E>: `return unexpected(ec);`.
template <class E>
struct unexpected {
  E error;
  explicit unexpected(E e) : error(std::move(e)) {}
};
template <class E>
unexpected(E) -> unexpected<E>;

/// Either a T or an error E (std::error_code by default), like C++23 std::expected.
/// Reading value() of an error, or error() of a value, is a programming error (asserted).
template <class T, class E = std::error_code>
class [[nodiscard]] result {
 public:
  using value_type = T;
  using error_type = E;

  template <class U = T, std::enable_if_t<std::is_constructible_v<T, U&&> &&
                                              !std::is_same_v<std::decay_t<U>, result>,
                                          int> = 0>
  result(U&& v) : v_(std::in_place_index<0>, std::forward<U>(v)) {}
  template <class G>
  result(unexpected<G> u) : v_(std::in_place_index<1>, std::move(u.error)) {}
  result(E e) requires(!std::is_constructible_v<T, E>) : v_(std::in_place_index<1>, std::move(e)) {}
  template <class Enum>
    requires(std::is_error_code_enum_v<Enum> && std::is_same_v<E, std::error_code>)
  result(Enum e) : v_(std::in_place_index<1>, make_error_code(e)) {}

  bool has_value() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  T& value() & { assert(has_value()); return *std::get_if<0>(&v_); }
  const T& value() const& { assert(has_value()); return *std::get_if<0>(&v_); }
  T&& value() && { assert(has_value()); return std::move(*std::get_if<0>(&v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const E& error() const& { assert(!has_value()); return *std::get_if<1>(&v_); }
  E&& error() && { assert(!has_value()); return std::move(*std::get_if<1>(&v_)); }

  template <class U>
  T value_or(U&& fallback) const& { return has_value() ? value() : T(std::forward<U>(fallback)); }

 private:
  std::variant<T, E> v_;
};

/// result<void>: success, or an error.
template <class E>
class [[nodiscard]] result<void, E> {
 public:
  using value_type = void;
  using error_type = E;

  result() = default;
  template <class G>
  result(unexpected<G> u) : e_(std::move(u.error)), ok_(false) {}
  result(E e) : e_(std::move(e)), ok_(false) {}
  template <class Enum>
    requires(std::is_error_code_enum_v<Enum> && std::is_same_v<E, std::error_code>)
  result(Enum e) : e_(make_error_code(e)), ok_(false) {}

  bool has_value() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }
  void value() const { assert(ok_); }
  const E& error() const& { assert(!ok_); return e_; }
  E&& error() && { assert(!ok_); return std::move(e_); }

 private:
  E e_{};
  bool ok_ = true;
};

/// For result<void, std::error_code>, a success whose error_code is still tested by callers.
inline result<void> ok() { return {}; }

}  // namespace letsencrypt

/// Returns the error of `expr` (a result) from the enclosing function, else yields its value.
#define LE_TRY(var, expr)                                                   \
  auto var##_result_ = (expr);                                              \
  if (!var##_result_) return ::letsencrypt::unexpected(std::move(var##_result_).error()); \
  auto var = std::move(var##_result_).value()

#define LE_TRY_VOID(expr)                                                   \
  do {                                                                      \
    auto le_try_r_ = (expr);                                                \
    if (!le_try_r_) return ::letsencrypt::unexpected(std::move(le_try_r_).error()); \
  } while (0)

/// The same as LE_TRY / LE_TRY_VOID, inside a coroutine returning task<result<...>>.
#define LE_CO_TRY(var, expr)                                                \
  auto var##_result_ = (expr);                                              \
  if (!var##_result_) co_return ::letsencrypt::unexpected(std::move(var##_result_).error()); \
  auto var = std::move(var##_result_).value()

#define LE_CO_TRY_VOID(expr)                                                \
  do {                                                                      \
    auto le_try_r_ = (expr);                                                \
    if (!le_try_r_) co_return ::letsencrypt::unexpected(std::move(le_try_r_).error()); \
  } while (0)
