#include <gtest/gtest.h>

#include <string>

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

}  // namespace
