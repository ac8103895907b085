#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <map>
#include <new>
#include <thread>

#include "letsencrypt/tls/engine.hpp"
#include "letsencrypt/tls/tickets.hpp"
#include "memory_pair.hpp"
#include "test_certs.hpp"

using namespace letsencrypt;
using namespace letsencrypt::tls;
using letsencrypt::testing::test_certs;

namespace {

// A whole connection in memory, offering `session` when given; returns the session the
// client ends with (after reading the server's tickets) and whether it was a resumption.
std::pair<ssl_session_ptr, bool> connect(SSL_CTX* cctx, SSL_CTX* sctx, SSL_SESSION* session, int version) {
  auto o = letsencrypt::testing::connect_in_memory(cctx, sctx, "tickets.test", version, session);
  return {std::move(o.session), o.reused};
}

}  // namespace

TEST(tickets, resumption_survives_one_rotation_not_two) {
  test_certs certs;
  auto leaf = certs.issue({"tickets.test"});
  auto cctx = certs.client_context();
  // With the server's session cache on (the default) and off: tickets need no cache.
  std::vector<std::pair<long, int>> cases = {{SSL_SESS_CACHE_SERVER, TLS1_3_VERSION},
                                             {SSL_SESS_CACHE_SERVER, TLS1_2_VERSION},
                                             {SSL_SESS_CACHE_OFF, TLS1_3_VERSION},
                                             {SSL_SESS_CACHE_OFF, TLS1_2_VERSION}};
  for (auto [mode, version] : cases) {
    SCOPED_TRACE(version);
    SCOPED_TRACE(mode);
    auto sctx = test_certs::server_context(leaf);
    SSL_CTX_set_session_cache_mode(sctx.get(), mode);
    ticket_keys keys;
    ASSERT_TRUE(keys.install(sctx.get()));
    auto [s1, r1] = connect(cctx.get(), sctx.get(), nullptr, version);
    ASSERT_TRUE(s1);
    EXPECT_FALSE(r1);
    ASSERT_TRUE(SSL_SESSION_is_resumable(s1.get()));

    // Same key: resumed.
    auto [s2, r2] = connect(cctx.get(), sctx.get(), s1.get(), version);
    EXPECT_TRUE(r2);

    // One rotation: the ticket is under the previous key, still accepted.
    auto before = keys.stats();
    ASSERT_TRUE(keys.rotate());
    auto [s3, r3] = connect(cctx.get(), sctx.get(), s1.get(), version);
    EXPECT_TRUE(r3);
    EXPECT_EQ(keys.stats().resumed_previous, before.resumed_previous + 1);

    // Two rotations: the ticket's key is gone; a full handshake follows, and the new ticket
    // (issued under the current key) resumes.
    ASSERT_TRUE(keys.rotate());
    auto [s4, r4] = connect(cctx.get(), sctx.get(), s1.get(), version);
    EXPECT_FALSE(r4);
    auto [s5, r5] = connect(cctx.get(), sctx.get(), s4.get(), version);
    EXPECT_TRUE(r5);
    EXPECT_EQ(keys.generation(), 2u);
    EXPECT_GT(keys.stats().unknown, 0u);
    EXPECT_GT(keys.stats().resumed_current, 0u);
  }
}

TEST(tickets, readers_see_consistent_keys_while_rotating) {
  ticket_keys keys;
  std::atomic<bool> stop{false};
  std::vector<std::vector<ticket_keys::key_set>> seen(2);
  std::array<std::atomic<std::size_t>, 2> taken{};  // seen[t].size(), for the writer to read
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&, t] {
      while (!stop.load(std::memory_order_relaxed) && seen[t].size() < 200000) {
        seen[t].push_back(keys.snapshot());
        taken[t].store(seen[t].size(), std::memory_order_relaxed);
      }
    });
  }
  std::vector<ticket_keys::key> published;
  published.push_back(keys.snapshot().current);
  // Rotation starts once both readers run and goes on until each has taken 1000 snapshots
  // while it did: on a loaded machine a reader may be scheduled only after 3000 rotations.
  while (taken[0].load() == 0 || taken[1].load() == 0) std::this_thread::yield();
  const std::size_t at_start[2] = {taken[0].load(), taken[1].load()};
  std::size_t rotations = 0;
  while (rotations < 3000 || ((taken[0].load() < at_start[0] + 1000 || taken[1].load() < at_start[1] + 1000) &&
                              rotations < 100000)) {
    ASSERT_TRUE(keys.rotate());
    published.push_back(keys.snapshot().current);
    ++rotations;
  }
  stop = true;
  for (auto& r : readers) r.join();
  EXPECT_EQ(keys.generation(), rotations);
  // Every snapshot must be exactly one published set: current = published[i] in full and
  // previous = published[i - 1]; a torn copy would mix words of two sets.
  std::map<std::array<unsigned char, 16>, std::size_t> index;
  for (std::size_t i = 0; i < published.size(); ++i) index[published[i].name] = i;
  std::size_t checked = 0;
  for (auto& v : seen) {
    for (auto& s : v) {
      auto it = index.find(s.current.name);
      ASSERT_NE(it, index.end());
      std::size_t i = it->second;
      ASSERT_EQ(s.current.aes, published[i].aes);
      ASSERT_EQ(s.current.hmac, published[i].hmac);
      ASSERT_EQ(s.has_previous, i > 0);
      if (i > 0) {
        ASSERT_EQ(s.previous.name, published[i - 1].name);
        ASSERT_EQ(s.previous.aes, published[i - 1].aes);
        ASSERT_EQ(s.previous.hmac, published[i - 1].hmac);
      }
      ++checked;
    }
  }
  EXPECT_GE(checked, 2000u);
}

TEST(tickets, destroying_the_keys_wipes_them) {
  alignas(ticket_keys) unsigned char storage[sizeof(ticket_keys)];
  auto* keys = new (storage) ticket_keys;
  ASSERT_TRUE(keys->rotate());
  const ticket_keys::key_set s = keys->snapshot();
  const auto holds = [&](const std::array<unsigned char, 32>& secret) {
    return std::search(std::begin(storage), std::end(storage), secret.begin(), secret.end()) != std::end(storage);
  };
  // Both keys of both sets are in the object while it lives (the writer's copy at least).
  ASSERT_TRUE(s.has_previous);
  for (const auto* k : {&s.current, &s.previous}) {
    ASSERT_TRUE(holds(k->aes));
    ASSERT_TRUE(holds(k->hmac));
  }
  // The bytes are read after the object's end through the buffer that held it. The
  // destructor is compiled in the library, out of this test's sight, so its stores are done.
  keys->~ticket_keys();
  for (const auto* k : {&s.current, &s.previous}) {
    EXPECT_FALSE(holds(k->aes));
    EXPECT_FALSE(holds(k->hmac));
  }
}
