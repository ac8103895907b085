#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <random>
#include <thread>

#include "fixtures.hpp"
#include "letsencrypt/io/ops.hpp"
#include "letsencrypt/io/ring.hpp"
#include "letsencrypt/io/scope.hpp"
#include "letsencrypt/store/journal.hpp"

using namespace letsencrypt;
using namespace letsencrypt::store;
using namespace std::chrono_literals;

namespace {

std::unique_ptr<journal> must_open(const std::string& path, journal_options o = {},
                                   open_report* rep = nullptr) {
  open_report local;
  auto j = journal::open(path, std::move(o), rep ? rep : &local);
  if (!j) ADD_FAILURE() << (rep ? rep : &local)->message;
  return j ? std::move(*j) : nullptr;
}

rate_limit_record bucket(std::uint64_t k, std::uint64_t buckets) {
  return rate_limit_record{"b" + std::to_string(k % buckets), static_cast<double>(k),
                           unix_millis(std::chrono::milliseconds(k))};
}

io::task<std::uint64_t> append_ok(journal& j, record r) {
  auto s = co_await j.append(std::move(r));
  EXPECT_TRUE(s) << (s ? "" : s.error().message());
  co_return s ? *s : 0;
}

// Appends `n` records from `n` concurrent tasks on the calling ring.
io::task<void> append_concurrently(journal& j, std::uint64_t first, std::uint64_t n,
                                   std::uint64_t buckets) {
  std::vector<io::task<std::uint64_t>> ts;
  for (std::uint64_t k = first; k < first + n; ++k) ts.push_back(append_ok(j, bucket(k, buckets)));
  co_await io::when_all(std::move(ts));
}

std::uint64_t file_size(const std::string& p) {
  struct stat st{};
  EXPECT_EQ(::stat(p.c_str(), &st), 0);
  return static_cast<std::uint64_t>(st.st_size);
}

}  // namespace

TEST(journal, creates_file_0600_and_replays_every_record_type) {
  store_test::temp_dir d;
  const auto path = d.file("cache");
  const mode_t old = ::umask(0);
  open_report rep;
  auto j = must_open(path, {}, &rep);
  ::umask(old);
  ASSERT_TRUE(j);
  EXPECT_TRUE(rep.created);
  struct stat st{};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  std::vector<record> recs{
      account_record{store_test::make_key_pem(), "https://ca/acct/1", {"mailto:a@b"}, true},
      hosts_record{std::vector<std::string>{"a.example", "b.example"}},
      store_test::cert_record_for({"a.example", "b.example"}),
      store_test::cert_record_for({"c.example"}),
      remove_record{{"c.example"}},
      rate_limit_record{"ca", 19.5, unix_millis(123456ms)},
      checkpoint_record{0, unix_seconds(99s)},
  };
  io::ring r;
  std::uint64_t last = 0;
  for (auto& rec : recs) {
    auto s = r.run(j->append(rec));
    ASSERT_TRUE(s) << s.error().message();
    EXPECT_EQ(*s, last + 1);
    last = *s;
  }
  state expect;
  for (auto& rec : recs) ASSERT_TRUE(expect.apply(rec));
  EXPECT_TRUE(j->state() == expect);
  j.reset();

  auto j2 = must_open(path, {}, &rep);
  ASSERT_TRUE(j2);
  EXPECT_FALSE(rep.created);
  EXPECT_EQ(rep.records, recs.size());
  EXPECT_EQ(rep.torn_bytes, 0u);
  EXPECT_TRUE(j2->state() == expect);
  EXPECT_EQ(j2->last_sequence(), recs.size());
}

TEST(journal, invalid_record_is_refused_without_writing) {
  store_test::temp_dir d;
  auto j = must_open(d.file("c"));
  io::ring r;
  const auto before = file_size(d.file("c"));
  auto s = r.run(j->append(cert_record{}));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error(), make_error_code(errc::invalid_argument));
  EXPECT_EQ(file_size(d.file("c")), before);
}

TEST(journal, second_opener_gets_busy_in_this_and_another_process) {
  store_test::temp_dir d;
  const auto path = d.file("cache");
  auto j = must_open(path);
  ASSERT_TRUE(j);
  open_report rep;
  auto again = journal::open(path, {}, &rep);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error(), make_error_code(errc::busy));
  EXPECT_NE(rep.message.find(path), std::string::npos) << rep.message;

  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto other = journal::open(path);
    ::_exit(!other && other.error() == make_error_code(errc::busy) ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);

  j.reset();  // the lock goes with the journal
  EXPECT_TRUE(journal::open(path));
}

// The lock belongs to the journal object, not to the open file: a copy of the descriptor
// still open elsewhere (here a forked child; in practice also an io_uring request the kernel
// frees late) must not keep the next opener out.
TEST(journal, lock_is_released_at_destruction_while_the_file_is_open_elsewhere) {
  store_test::temp_dir d;
  const auto path = d.file("cache");
  auto j = must_open(path);
  ASSERT_TRUE(j);
  int hold[2];
  ASSERT_EQ(::pipe(hold), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(hold[1]);
    char c;
    (void)!::read(hold[0], &c, 1);  // keeps the inherited descriptor until the parent closes
    ::_exit(0);
  }
  ::close(hold[0]);
  j.reset();
  open_report rep;
  auto again = journal::open(path, {}, &rep);
  EXPECT_TRUE(again) << rep.message;
  ::close(hold[1]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
}

TEST(journal, replays_100k_records) {
  store_test::temp_dir d;
  const auto path = d.file("cache");
  {
    journal_options o;
    o.compact_min_dead = 0;
    auto j = must_open(path, o);
    io::ring r;
    for (std::uint64_t round = 0; round < 100; ++round)
      r.run(append_concurrently(*j, round * 1000, 1000, 5000));
    EXPECT_EQ(j->stats().appends, 100000u);
    EXPECT_LT(j->stats().fdatasyncs, 1000u);
  }
  open_report rep;
  auto j = must_open(path, {}, &rep);
  ASSERT_TRUE(j);
  EXPECT_EQ(rep.records, 100000u);
  ASSERT_EQ(j->state().rate_limits.size(), 5000u);
  for (std::uint64_t b = 0; b < 5000; ++b)
    EXPECT_EQ(j->state().rate_limits.at("b" + std::to_string(b)).tokens, double(95000 + b));
}

TEST(journal, group_commit_batches_concurrent_appends) {
  store_test::temp_dir d;
  auto j = must_open(d.file("cache"));
  io::ring r;
  constexpr std::uint64_t n = 500;
  r.run(append_concurrently(*j, 0, n, n));
  const auto st = j->stats();
  EXPECT_EQ(st.appends, n);
  // The first append commits alone; everything issued during its fdatasync goes together.
  EXPECT_LE(st.fdatasyncs, 5u);
  EXPECT_GE(st.fdatasyncs, 1u);
  EXPECT_EQ(st.commits, st.fdatasyncs);
  EXPECT_EQ(j->state().rate_limits.size(), n);
  // Sequential appends: one fdatasync each.
  for (std::uint64_t k = 0; k < 10; ++k) ASSERT_TRUE(r.run(j->append(bucket(k, 3))));
  EXPECT_EQ(j->stats().fdatasyncs, st.fdatasyncs + 10);
}

TEST(journal, durable_before_reported_and_notifier_coalesces_batches) {
  store_test::temp_dir d;
  auto j = must_open(d.file("cache"));
  EXPECT_EQ(j->notifier().version(), 0u);
  int calls = 0;
  j->notifier().watch([&] { ++calls; });
  EXPECT_EQ(calls, 0);  // nothing recorded yet: not told at once
  io::ring r;
  auto check = [&]() -> io::task<void> {
    auto s = co_await j->append(bucket(1, 1));
    EXPECT_TRUE(s);
    // Reported done: the state and the file already hold it.
    EXPECT_EQ(j->state().rate_limits.count("b0"), 1u);
    EXPECT_EQ(j->notifier().version(), 1u);
  };
  r.run(check());
  EXPECT_EQ(calls, 1);
  r.run(append_concurrently(*j, 0, 100, 10));
  EXPECT_EQ(static_cast<std::uint64_t>(calls), j->stats().commits);
  EXPECT_LT(calls, 100);
  EXPECT_EQ(j->notifier().version(), j->stats().commits);
}

TEST(journal, watch_after_reopen_is_told_at_once) {
  store_test::temp_dir d;
  {
    auto j = must_open(d.file("cache"));
    io::ring r;
    ASSERT_TRUE(r.run(j->append(bucket(1, 1))));
  }
  auto j = must_open(d.file("cache"));
  int calls = 0;
  auto id = j->notifier().watch([&] { ++calls; });
  EXPECT_EQ(calls, 1);
  io::ring r;
  auto v = r.run([&]() -> io::task<result<std::uint64_t>> { co_return co_await j->notifier().changed(0); }());
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, 1u);
  j->notifier().unwatch(id);
  ASSERT_TRUE(r.run(j->append(bucket(2, 1))));
  EXPECT_EQ(calls, 1);
}

TEST(journal, changed_waits_for_the_next_commit_and_sees_the_latest_version) {
  store_test::temp_dir d;
  auto j = must_open(d.file("cache"));
  io::ring r;
  auto waiter = [&]() -> io::task<std::uint64_t> {
    auto v = co_await j->notifier().changed(0);
    EXPECT_TRUE(v);
    EXPECT_EQ(j->state().rate_limits.size(), 1u);  // the state is there when told
    co_return v ? *v : 0;
  };
  auto writer = [&]() -> io::task<void> {
    co_await io::sleep_for(5ms);
    EXPECT_TRUE(co_await j->append(bucket(7, 1)));
  };
  auto [v, unused] = r.run(io::when_all(waiter(), writer()));
  EXPECT_EQ(v, 1u);
}

TEST(journal, changed_hangs_then_cancel_unwinds) {
  store_test::temp_dir d;
  auto j = must_open(d.file("cache"));
  io::ring r;
  std::stop_source ss;
  auto hang = [&]() -> io::task<result<std::uint64_t>> {
    co_return co_await j->notifier().changed(j->notifier().version(), ss.get_token());
  };
  auto canceller = [&]() -> io::task<void> {
    co_await io::sleep_for(10ms);
    ss.request_stop();
  };
  auto [res, unused] = r.run(io::when_all(hang(), canceller()));
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error(), make_error_code(errc::cancelled));

  // Stop from another thread while waiting.
  std::stop_source ss2;
  auto hang2 = [&]() -> io::task<result<std::uint64_t>> {
    co_return co_await j->notifier().changed(j->notifier().version(), ss2.get_token());
  };
  std::thread t([&] {
    std::this_thread::sleep_for(20ms);
    ss2.request_stop();
  });
  auto res2 = r.run(hang2());
  t.join();
  ASSERT_FALSE(res2);
  EXPECT_EQ(res2.error(), make_error_code(errc::cancelled));
}

TEST(journal, torn_tail_of_every_length_is_cut_on_open_and_logged) {
  store_test::temp_dir d;
  const auto path = d.file("cache");
  std::uint64_t before_last = 0, full = 0;
  {
    auto j = must_open(path);
    io::ring r;
    ASSERT_TRUE(r.run(j->append(store_test::cert_record_for({"a.example"}))));
    ASSERT_TRUE(r.run(j->append(bucket(1, 1))));
    before_last = j->stats().bytes;
    ASSERT_TRUE(r.run(j->append(rate_limit_record{"last", 2, unix_millis(3ms)})));
    full = j->stats().bytes;
  }
  std::vector<char> image(full);
  {
    std::ifstream in(path, std::ios::binary);
    in.read(image.data(), static_cast<std::streamsize>(full));
  }
  for (std::uint64_t n = before_last; n < full; ++n) {
    {
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      out.write(image.data(), static_cast<std::streamsize>(n));
    }
    std::string logged;
    journal_options o;
    o.log = [&](std::string_view m) { logged += m; };
    open_report rep;
    auto j = must_open(path, o, &rep);
    ASSERT_TRUE(j);
    EXPECT_EQ(rep.records, 2u);
    EXPECT_EQ(rep.torn_bytes, n - before_last);
    EXPECT_EQ(file_size(path), before_last);
    if (n > before_last) {
      EXPECT_NE(logged.find("torn"), std::string::npos) << logged;
    }
    EXPECT_EQ(j->state().rate_limits.count("last"), 0u);
    EXPECT_EQ(logged.find("BEGIN"), std::string::npos);  // no key material in logs
    // Appends continue after the cut.
    io::ring r;
    ASSERT_TRUE(r.run(j->append(bucket(5, 1))));
  }
}

// An intact record (its CRC matches) of a type this version does not know, such as a newer
// version appends, is not a torn tail: open refuses the file and cuts nothing, wherever the
// record is.
TEST(journal, an_intact_record_of_an_unknown_type_is_refused_not_cut) {
  store_test::temp_dir d;
  const auto path = d.file("cache");
  {
    auto j = must_open(path);
    io::ring r;
    ASSERT_TRUE(r.run(j->append(bucket(1, 1))));
  }
  const std::string payload = "a record type added later";
  std::vector<std::byte> frame(record_header_size + payload.size());
  const auto len = static_cast<std::uint32_t>(payload.size());
  for (int i = 0; i < 4; ++i) frame[i] = std::byte(len >> (8 * i));
  frame[8] = std::byte{7};
  std::memcpy(frame.data() + record_header_size, payload.data(), payload.size());
  std::uint32_t crc = crc32c(std::span<const std::byte>(frame.data(), 4));
  crc = crc32c(std::span<const std::byte>(frame.data() + 8, 1), crc);
  crc = crc32c(std::span<const std::byte>(frame.data() + record_header_size, payload.size()), crc);
  for (int i = 0; i < 4; ++i) frame[4 + i] = std::byte(crc >> (8 * i));
  for (bool then_a_known_record : {false, true}) {
    int fd = ::open(path.c_str(), O_WRONLY | O_APPEND);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, frame.data(), frame.size()), static_cast<ssize_t>(frame.size()));
    ::close(fd);
    if (then_a_known_record) {
      // Move the unknown record into the middle: a known record follows it.
      std::vector<std::byte> known;
      ASSERT_TRUE(encode(bucket(2, 1), known));
      fd = ::open(path.c_str(), O_WRONLY | O_APPEND);
      ASSERT_EQ(::write(fd, known.data(), known.size()), static_cast<ssize_t>(known.size()));
      ::close(fd);
    }
    const auto size = file_size(path);
    open_report rep;
    auto j = journal::open(path, {}, &rep);
    ASSERT_FALSE(j) << then_a_known_record;
    EXPECT_EQ(j.error(), make_error_code(errc::unsupported));
    EXPECT_NE(rep.message.find("unknown type 7"), std::string::npos) << rep.message;
    EXPECT_EQ(rep.torn_bytes, 0u);
    EXPECT_EQ(file_size(path), size);  // nothing cut
    // The next case starts from a file holding the known first record only.
    ::unlink(path.c_str());
    auto fresh = must_open(path);
    io::ring r;
    ASSERT_TRUE(r.run(fresh->append(bucket(1, 1))));
  }
}

TEST(journal, corruption_in_the_middle_fails_open_naming_file_and_offset) {
  store_test::temp_dir d;
  const auto path = d.file("cache");
  {
    auto j = must_open(path);
    io::ring r;
    for (int k = 0; k < 3; ++k) ASSERT_TRUE(r.run(j->append(bucket(k, 10))));
  }
  const std::uint64_t bad = journal_magic.size() + record_header_size + 1;  // first record's payload
  int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  char c;
  ASSERT_EQ(::pread(fd, &c, 1, bad), 1);
  c ^= 0x10;
  ASSERT_EQ(::pwrite(fd, &c, 1, bad), 1);
  ::close(fd);
  const auto size = file_size(path);
  open_report rep;
  auto j = journal::open(path, {}, &rep);
  ASSERT_FALSE(j);
  EXPECT_EQ(j.error(), make_error_code(errc::corrupt));
  EXPECT_NE(rep.message.find(path), std::string::npos) << rep.message;
  EXPECT_NE(rep.message.find("offset " + std::to_string(journal_magic.size())), std::string::npos)
      << rep.message;
  EXPECT_EQ(file_size(path), size);  // nothing dropped
}

TEST(journal, compaction_keeps_state_and_shrinks_file) {
  store_test::temp_dir d;
  const auto path = d.file("cache");
  journal_options o;
  o.compact_min_dead = 0;
  std::vector<std::string> logs;
  o.log = [&](std::string_view m) { logs.emplace_back(m); };
  auto j = must_open(path, o);
  io::ring r;
  ASSERT_TRUE(r.run(j->append(account_record{store_test::make_key_pem(), "u", {}, true})));
  ASSERT_TRUE(r.run(j->append(store_test::cert_record_for({"a.example", "b.example"}))));
  for (int round = 0; round < 5; ++round) r.run(append_concurrently(*j, round * 100, 100, 4));
  const auto big = j->stats().bytes;
  state before = j->state();
  auto c = r.run(j->compact());
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_LT(j->stats().bytes, big);
  EXPECT_EQ(j->stats().generation, 1u);
  EXPECT_EQ(j->stats().records, before.live_records() + 1);
  EXPECT_TRUE(j->state() == before);
  // Appends after compaction go to the new file.
  ASSERT_TRUE(r.run(j->append(bucket(1000, 4))));
  ASSERT_TRUE(before.apply(bucket(1000, 4)));
  for (auto& l : logs) EXPECT_EQ(l.find("BEGIN"), std::string::npos);
  // The new file is locked and still 0600.
  EXPECT_EQ(journal::open(path).error(), make_error_code(errc::busy));
  struct stat st{};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  j.reset();
  open_report rep;
  auto j2 = must_open(path, {}, &rep);
  ASSERT_TRUE(j2);
  EXPECT_TRUE(j2->state() == before);
  EXPECT_EQ(j2->stats().generation, 1u);
}

TEST(journal, automatic_compaction_when_dead_records_pile_up) {
  store_test::temp_dir d;
  journal_options o;
  o.compact_min_dead = 200;
  auto j = must_open(d.file("cache"), o);
  io::ring r;
  for (int round = 0; round < 10; ++round) r.run(append_concurrently(*j, round * 100, 100, 3));
  EXPECT_GE(j->stats().compactions, 1u);
  EXPECT_LT(j->stats().records, 400u);
  state s = j->state();
  j.reset();
  auto j2 = must_open(d.file("cache"));
  EXPECT_TRUE(j2->state() == s);
  EXPECT_EQ(j2->state().rate_limits.at("b2").tokens, 998.0);
}

TEST(journal, compaction_waits_for_in_flight_appends) {
  store_test::temp_dir d;
  journal_options o;
  o.compact_min_dead = 0;
  auto j = must_open(d.file("cache"), o);
  io::ring r;
  auto both = [&]() -> io::task<void> {
    std::vector<io::task<std::uint64_t>> ts;
    for (int k = 0; k < 50; ++k) ts.push_back(append_ok(*j, bucket(k, 5)));
    auto compactor = [&]() -> io::task<void> { EXPECT_TRUE(co_await j->compact()); };
    co_await io::when_all(io::when_all(std::move(ts)), compactor());
  };
  r.run(both());
  state s = j->state();
  EXPECT_EQ(s.rate_limits.size(), 5u);
  j.reset();
  auto j2 = must_open(d.file("cache"));
  EXPECT_TRUE(j2->state() == s);
}

// A writer child appends and reports each durable record through a pipe; the parent
// SIGKILLs it at a random moment, then every reported record must be found on replay.
TEST(journal, crash_at_random_points_loses_no_durable_record) {
  store_test::temp_dir d;
  const auto path = d.file("cache");
  std::mt19937 rng(std::random_device{}());
  constexpr std::uint64_t buckets = 64;
  std::vector<double> reported(buckets, -1);
  std::uint64_t total_reported = 0;
  std::uint64_t next = 0;
  for (int round = 0; round < 30; ++round) {
    int p[2];
    ASSERT_EQ(::pipe(p), 0);
    const std::uint64_t base = next;
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(p[0]);
      journal_options o;
      o.compact_min_dead = 300;  // crashes also land inside compactions
      o.lock_timeout = 30s;
      auto j = journal::open(path, o);
      if (!j) ::_exit(3);
      io::ring ring;
      auto worker = [&](std::uint64_t lane) -> io::task<void> {
        // Lane `lane` owns the buckets congruent to it mod 8, so per bucket values grow.
        for (std::uint64_t k = base + lane;; k += 8) {
          auto s = co_await (*j)->append(bucket(k, buckets));
          if (!s) ::_exit(4);
          if (::write(p[1], &k, sizeof k) != sizeof k) ::_exit(5);
        }
      };
      std::vector<io::task<void>> ws;
      for (std::uint64_t lane = 0; lane < 8; ++lane) ws.push_back(worker(lane));
      ring.run(io::when_all(std::move(ws)));
      ::_exit(0);
    }
    ::close(p[1]);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(5 + rng() % 60);
    std::uint64_t k;
    auto drain = [&](int timeout_ms) {
      pollfd pf{p[0], POLLIN, 0};
      while (::poll(&pf, 1, timeout_ms) > 0) {
        ssize_t n = ::read(p[0], &k, sizeof k);
        if (n != sizeof k) return;
        reported[k % buckets] = std::max(reported[k % buckets], double(k));
        ++total_reported;
        next = std::max(next, k + 1);
        if (timeout_ms > 0 && std::chrono::steady_clock::now() >= deadline) return;
      }
    };
    drain(100);
    ::kill(pid, SIGKILL);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status)) << "child exited with " << WEXITSTATUS(status);
    drain(0);  // whatever it reported before dying
    ::close(p[0]);
    next += 8;

    open_report rep;
    journal_options o;
    o.lock_timeout = 30s;  // the dead child's io_uring lets go of the file asynchronously
    auto j = journal::open(path, o, &rep);
    ASSERT_TRUE(j) << "round " << round << ": " << rep.message;
    for (std::uint64_t b = 0; b < buckets; ++b) {
      if (reported[b] < 0) continue;
      auto it = (*j)->state().rate_limits.find("b" + std::to_string(b));
      ASSERT_NE(it, (*j)->state().rate_limits.end()) << "round " << round << " bucket " << b;
      EXPECT_GE(it->second.tokens, reported[b]) << "round " << round << " bucket " << b;
    }
  }
  EXPECT_GT(total_reported, 0u);
}

TEST(journal, lock_timeout_waits_for_the_holder_to_let_go) {
  store_test::temp_dir d;
  const auto path = d.file("cache");
  auto j = must_open(path);
  ASSERT_TRUE(j);
  std::thread t([&] {
    std::this_thread::sleep_for(50ms);
    j.reset();
  });
  journal_options o;
  o.lock_timeout = 5s;
  auto j2 = journal::open(path, o);
  t.join();
  EXPECT_TRUE(j2);
  journal_options short_wait;
  short_wait.lock_timeout = 20ms;
  auto j3 = journal::open(path, short_wait);
  ASSERT_FALSE(j3);
  EXPECT_EQ(j3.error(), make_error_code(errc::busy));
}
