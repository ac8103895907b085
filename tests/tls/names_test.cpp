#include <gtest/gtest.h>

#include <optional>
#include <random>
#include <string>
#include <vector>

#include "letsencrypt/tls/names.hpp"

using namespace letsencrypt;

namespace {

struct good_case {
  std::string in;
  std::string out;
};

TEST(names, accepts_and_normalises) {
  const std::string l63(63, 'a');
  const std::string max_name = l63 + "." + l63 + "." + l63 + "." + std::string(61, 'b');  // 253
  const good_case cases[] = {
      {"example.com", "example.com"},
      {"Example.COM", "example.com"},
      {"example.com.", "example.com"},
      {"WWW.Example.Com.", "www.example.com"},
      {"localhost", "localhost"},
      {"a", "a"},
      {"a-b.c-d.example", "a-b.c-d.example"},
      {"xn--bcher-kva.example", "xn--bcher-kva.example"},
      {"XN--BCHER-KVA.EXAMPLE", "xn--bcher-kva.example"},
      {"*.example.com", "*.example.com"},
      {"*.EXAMPLE.com.", "*.example.com"},
      {"1.example.com", "1.example.com"},
      {"123.456.example", "123.456.example"},
      {"0x7f.example", "0x7f.example"},
      {"a.b.c.d.e.f.g", "a.b.c.d.e.f.g"},
      {l63 + ".example", l63 + ".example"},
      {max_name, max_name},
      {max_name + ".", max_name},
  };
  for (const auto& c : cases) {
    auto r = tls::normalise_name(c.in);
    ASSERT_TRUE(r) << c.in << ": " << r.error().message();
    EXPECT_EQ(*r, c.out) << c.in;
    char buf[256];
    std::size_t len = 0;
    ASSERT_TRUE(tls::normalise_into(c.in, buf, len)) << c.in;
    EXPECT_EQ(std::string(buf, len), c.out);
  }
}

TEST(names, rejects_invalid) {
  const std::string l63(63, 'a');
  const std::string too_long = l63 + "." + l63 + "." + l63 + "." + std::string(62, 'b');  // 254
  const std::string bad[] = {
      "",
      ".",
      "..",
      "example..com",
      ".example.com",
      "example.com..",
      std::string(64, 'a') + ".example",
      too_long,
      too_long + ".",
      "-example.com",
      "example-.com",
      "a.-b.com",
      "exa_mple.com",
      "exa mple.com",
      "example.com/",
      "ex:ample.com",
      "b\xc3\xbc" "cher.example",  // UTF-8 U-label
      "\xff.example",
      std::string("nul\0.example", 12),
      "ab--cd.example",  // reserved R-LDH label that is not an A-label
      "xn--.example",
      "*",
      "*.com",
      "*.*.example.com",
      "a.*.example.com",
      "*a.example.com",
      "a*.example.com",
      "**.example.com",
      "1.2.3.4",
      "127.0.0.1",
      "127.0.0.1.",
      "10",
      "127.1",
      "::1",
      "[::1]",
      "fe80::1%eth0",
      "example.123",
  };
  for (const auto& b : bad) {
    auto r = tls::normalise_name(b);
    EXPECT_FALSE(r) << "accepted: " << b;
    if (!r) {
      EXPECT_EQ(r.error(), make_error_code(errc::invalid_name));
    }
    char buf[256];
    std::size_t len = 0;
    EXPECT_FALSE(tls::normalise_into(b, buf, len)) << b;
  }
}

TEST(names, wildcard_predicate) {
  EXPECT_TRUE(tls::is_wildcard("*.example.com"));
  EXPECT_FALSE(tls::is_wildcard("example.com"));
  EXPECT_FALSE(tls::is_wildcard("*"));
}


// The rules again, written the plain way (split into labels, check each): normalise_into
// must agree with it on every input, including the hostile ones a ClientHello can carry.
std::optional<std::string> reference_normalise(std::string s) {
  if (!s.empty() && s.back() == '.') s.pop_back();
  if (s.empty() || s.size() > 253) return std::nullopt;
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  std::vector<std::string> labels;
  std::string cur;
  for (char c : s) {
    if (c == '.') {
      labels.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  labels.push_back(cur);
  for (std::size_t k = 0; k < labels.size(); ++k) {
    const std::string& l = labels[k];
    if (l == "*") {
      if (k != 0) return std::nullopt;
      continue;
    }
    if (l.empty() || l.size() > 63) return std::nullopt;
    for (char c : l)
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return std::nullopt;
    if (l.front() == '-' || l.back() == '-') return std::nullopt;
    if (l.size() >= 4 && l.substr(2, 2) == "--" && l.substr(0, 2) != "xn") return std::nullopt;
  }
  if (labels.back().find_first_not_of("0123456789") == std::string::npos) return std::nullopt;
  if (labels.front() == "*" && labels.size() < 3) return std::nullopt;
  return s;
}

TEST(names, agrees_with_the_plain_reading_of_the_rules) {
  std::mt19937_64 rng(20261130);
  const std::string alphabet = "abcxnXN019-.*_ \xff\x80";
  auto random_name = [&] {
    std::string s;
    if (rng() % 2) {  // label-shaped: mostly valid, so the accepting paths are exercised
      const std::size_t labels = 1 + rng() % 5;
      for (std::size_t k = 0; k < labels; ++k) {
        if (k) s += '.';
        const std::size_t len = rng() % 8 == 0 ? 60 + rng() % 6 : rng() % 7;
        for (std::size_t j = 0; j < len; ++j) s += alphabet[rng() % 13];
      }
      if (rng() % 8 == 0) s = "*." + s;
      if (rng() % 8 == 0) s += '.';
    } else {
      const std::size_t len = rng() % 24;
      for (std::size_t j = 0; j < len; ++j) s += alphabet[rng() % alphabet.size()];
    }
    if (rng() % 16 == 0) s.insert(s.size() / 2, std::string(1, '\0'));
    return s;
  };
  std::size_t accepted = 0;
  for (int n = 0; n < 200000; ++n) {
    const std::string in = random_name();
    const auto want = reference_normalise(in);
    char buf[256];
    std::size_t len = 0;
    const bool got = tls::normalise_into(in, buf, len);
    ASSERT_EQ(got, want.has_value()) << "input: " << in;
    if (got) {
      ASSERT_EQ(std::string(buf, len), *want) << "input: " << in;
      ++accepted;
    }
  }
  // Both sides of the decision were reached many times.
  EXPECT_GT(accepted, 10000u);
  EXPECT_LT(accepted, 190000u);
}

}  // namespace
