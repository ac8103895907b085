#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "fixtures.hpp"
#include "letsencrypt/store/record.hpp"
#include "letsencrypt/store/replay.hpp"

using namespace letsencrypt;
using namespace letsencrypt::store;
using namespace std::chrono_literals;

namespace {

std::vector<record> one_of_each() {
  std::vector<record> v;
  v.emplace_back(account_record{"-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n",
                                "https://ca.example/acct/1", {"mailto:a@example.org", "mailto:b@x"},
                                true});
  v.emplace_back(hosts_record{std::vector<std::string>{"a.example", "b.example"}});
  v.emplace_back(hosts_record{std::nullopt});
  v.emplace_back(hosts_record{std::vector<std::string>{}});
  cert_record c;
  c.names = {"a.example", "b.example"};
  c.chain_pem = "chain";
  c.key_pem = "key";
  c.not_after = unix_seconds(1'900'000'000s);
  c.ari_start = unix_seconds(1'890'000'000s);
  c.ari_end = unix_seconds(1'890'100'000s);
  c.ari_cert_id = "aki.serial";
  v.emplace_back(c);
  v.emplace_back(remove_record{{"b.example"}});
  v.emplace_back(rate_limit_record{"new-host", 19.25, unix_millis(1'700'000'000'123ms)});
  v.emplace_back(checkpoint_record{7, unix_seconds(1'700'000'000s)});
  return v;
}

std::vector<std::byte> image_of(const std::vector<record>& recs) {
  std::vector<std::byte> img(journal_magic.size());
  std::memcpy(img.data(), journal_magic.data(), journal_magic.size());
  for (auto& r : recs) EXPECT_TRUE(encode(r, img));
  return img;
}

}  // namespace

TEST(crc32c, check_value) {
  EXPECT_EQ(crc32c(std::string_view("123456789")), 0xE3069283u);
  EXPECT_EQ(crc32c_portable(std::as_bytes(std::span("123456789", 9))), 0xE3069283u);
  EXPECT_EQ(crc32c(std::string_view("")), 0u);
}

TEST(crc32c, hardware_matches_table_and_continues) {
  std::mt19937 rng(1);
  std::vector<std::byte> data(4099);
  for (auto& b : data) b = std::byte(rng() & 0xff);
  for (std::size_t n : {0u, 1u, 7u, 8u, 9u, 63u, 64u, 1000u, 4099u}) {
    auto s = std::span(data).first(n);
    EXPECT_EQ(crc32c(s), crc32c_portable(s)) << n;
    for (std::size_t cut : {std::size_t(0), n / 3, n}) {
      EXPECT_EQ(crc32c(s.subspan(cut), crc32c(s.first(cut))), crc32c(s)) << n << " " << cut;
    }
  }
}

TEST(codec, round_trips_every_record_type) {
  auto recs = one_of_each();
  std::set<record_type> seen;
  for (auto& r : recs) {
    std::vector<std::byte> buf;
    ASSERT_TRUE(encode(r, buf));
    auto d = decode(buf);
    ASSERT_EQ(d.status, decode_status::ok) << type_name(type_of(r));
    EXPECT_EQ(d.size, buf.size());
    EXPECT_EQ(d.rec, r) << type_name(type_of(r));
    seen.insert(type_of(r));
    // Every strict prefix is incomplete, never a record.
    for (std::size_t n = 0; n < buf.size(); ++n) {
      EXPECT_EQ(decode(std::span(buf).first(n)).status, decode_status::incomplete) << n;
    }
  }
  EXPECT_EQ(seen.size(), 6u);
}

TEST(codec, real_certificate_round_trips) {
  record r = store_test::cert_record_for({"www.example.org", "example.org"});
  std::vector<std::byte> buf;
  ASSERT_TRUE(encode(r, buf));
  auto d = decode(buf);
  ASSERT_EQ(d.status, decode_status::ok);
  EXPECT_EQ(d.rec, r);
}

TEST(codec, every_bit_flip_is_detected) {
  auto img = image_of(one_of_each());
  const auto good = replay(img);
  ASSERT_FALSE(good.error);
  ASSERT_EQ(good.records, one_of_each().size());
  for (std::size_t bit = 0; bit < img.size() * 8; ++bit) {
    auto bad = img;
    bad[bit / 8] ^= std::byte(1u << (bit % 8));
    auto rr = replay(bad);
    // Either refused, or a (shorter) torn tail: never the same records silently.
    const bool detected = rr.error || rr.torn_bytes > 0;
    ASSERT_TRUE(detected) << "bit " << bit;
    if (rr.error) {
      EXPECT_FALSE(rr.message.empty());
    }
    EXPECT_LT(rr.records, good.records) << "bit " << bit;
  }
}

TEST(replay, torn_tail_of_every_length_is_cut_at_last_good_record) {
  auto recs = one_of_each();
  auto img = image_of(recs);
  // Offsets where each record ends.
  std::vector<std::size_t> ends;
  std::size_t off = journal_magic.size();
  for (auto& r : recs) {
    std::vector<std::byte> b;
    ASSERT_TRUE(encode(r, b));
    off += b.size();
    ends.push_back(off);
  }
  for (std::size_t n = 0; n <= img.size(); ++n) {
    auto rr = replay(std::span(img).first(n));
    ASSERT_FALSE(rr.error) << n << ": " << rr.message;
    std::size_t whole = 0;
    while (whole < ends.size() && ends[whole] <= n) ++whole;
    EXPECT_EQ(rr.records, whole) << n;
    const std::size_t good_end = n < journal_magic.size() ? 0 : (whole ? ends[whole - 1] : journal_magic.size());
    EXPECT_EQ(rr.good_end, good_end) << n;
    EXPECT_EQ(rr.good_end + rr.torn_bytes, n) << n;
  }
}

TEST(replay, corruption_in_the_middle_names_the_offset) {
  auto recs = one_of_each();
  auto img = image_of(recs);
  std::vector<std::byte> first;
  ASSERT_TRUE(encode(recs[0], first));
  const std::size_t second = journal_magic.size() + first.size();
  img[second + record_header_size + 2] ^= std::byte{0x40};  // payload of record 2
  auto rr = replay(img);
  EXPECT_EQ(rr.error, make_error_code(errc::corrupt));
  EXPECT_EQ(rr.error_offset, second);
  EXPECT_NE(rr.message.find(std::to_string(second)), std::string::npos) << rr.message;
}

TEST(replay, zero_filled_tail_is_torn) {
  auto img = image_of(one_of_each());
  const auto n = img.size();
  img.resize(n + 4096);
  auto rr = replay(img);
  EXPECT_FALSE(rr.error);
  EXPECT_EQ(rr.good_end, n);
  EXPECT_EQ(rr.torn_bytes, 4096u);
}

TEST(replay, not_a_journal_is_refused) {
  std::string s = R"({"Email":"","Certs":null})";
  auto rr = replay(std::as_bytes(std::span(s.data(), s.size())));
  EXPECT_EQ(rr.error, make_error_code(errc::corrupt));
}

TEST(replay, record_without_meaning_is_an_error) {
  auto img = image_of({cert_record{}});  // no names
  auto rr = replay(img);
  EXPECT_EQ(rr.error, make_error_code(errc::invalid_argument));
  EXPECT_EQ(rr.error_offset, journal_magic.size());
}

TEST(replay, fuzz_random_and_mutated_inputs_fail_cleanly) {
  std::mt19937_64 rng(12345);
  auto base = image_of(one_of_each());
  for (int i = 0; i < 3000; ++i) {
    std::vector<std::byte> in;
    switch (i % 4) {
      case 0: {  // random bytes after the magic
        in.assign(base.begin(), base.begin() + 8);
        std::size_t n = rng() % 300;
        for (std::size_t k = 0; k < n; ++k) in.push_back(std::byte(rng() & 0xff));
        break;
      }
      case 1: {  // a few random byte changes
        in = base;
        for (int k = 0, m = 1 + int(rng() % 4); k < m; ++k) in[rng() % in.size()] = std::byte(rng() & 0xff);
        break;
      }
      case 2: {  // a splice of two prefixes
        in.assign(base.begin(), base.begin() + std::ptrdiff_t(rng() % base.size()));
        auto from = rng() % base.size();
        in.insert(in.end(), base.begin() + std::ptrdiff_t(from), base.end());
        break;
      }
      default: {  // a huge length in a header, with a valid CRC
        in = base;
        in.resize(8 + record_header_size + 8);
        std::uint32_t len = 0xfffffff0u - std::uint32_t(rng() % 64);
        std::memcpy(in.data() + 8, &len, 4);
      }
    }
    auto rr = replay(in);
    if (rr.error) {
      EXPECT_FALSE(rr.message.empty());
      EXPECT_LE(rr.error_offset, in.size());
    } else {
      EXPECT_EQ(rr.good_end + rr.torn_bytes, std::max<std::size_t>(in.size(), 0));
    }
    // Decoding any suffix must never read out of bounds (ASan checks).
    auto off = rng() % (in.size() + 1);
    (void)decode(std::span(in).subspan(off));
  }
}

TEST(codec, oversized_payload_is_refused_by_encode) {
  cert_record c;
  c.names = {"a"};
  c.chain_pem.assign(max_payload_size + 1, 'x');
  std::vector<std::byte> buf{std::byte{1}};
  auto r = encode(c, buf);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), make_error_code(errc::message_too_large));
  EXPECT_EQ(buf.size(), 1u);
}
