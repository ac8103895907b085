// journal: locking, replay on open, group commit through the ring, compaction.
#include "letsencrypt/store/journal.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cassert>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>

#include <fmt/format.h>

#include "letsencrypt/io/ops.hpp"
#include "letsencrypt/io/ring.hpp"

namespace letsencrypt::store {
namespace {

std::error_code last_errno() { return errno_error(-errno); }

result<void> write_all_blocking(int fd, std::span<const std::byte> data, std::uint64_t off) {
  while (!data.empty()) {
    ssize_t n = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(off));
    if (n < 0) {
      if (errno == EINTR) continue;
      return last_errno();
    }
    data = data.subspan(static_cast<std::size_t>(n));
    off += static_cast<std::uint64_t>(n);
  }
  return {};
}

result<std::vector<std::byte>> read_all(int fd) {
  struct stat st{};
  if (::fstat(fd, &st) != 0) return last_errno();
  std::vector<std::byte> buf(static_cast<std::size_t>(st.st_size));
  std::size_t got = 0;
  while (got < buf.size()) {
    ssize_t n = ::pread(fd, buf.data() + got, buf.size() - got, static_cast<off_t>(got));
    if (n < 0) {
      if (errno == EINTR) continue;
      return last_errno();
    }
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  buf.resize(got);
  return buf;
}

std::string dir_of(const std::string& path) {
  auto p = std::filesystem::path(path).parent_path();
  return p.empty() ? std::string(".") : p.string();
}

// Writes all of `data` at `off` through the ring.
io::task<result<void>> ring_write_all(int fd, std::span<const std::byte> data, std::uint64_t off) {
  while (!data.empty()) {
    auto n = co_await io::write(fd, data, off);
    if (!n) co_return unexpected(n.error());
    if (*n == 0) co_return errno_error(-EIO);
    data = data.subspan(*n);
    off += *n;
  }
  co_return ok();
}

}  // namespace

struct journal::suspend_waiter {
  waiter* w;
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) noexcept { w->handle = h; }
  void await_resume() const noexcept {}
};

journal::journal(std::string path, io::unique_fd fd, io::unique_fd dir_fd, journal_options o,
                 replay_result rr, std::uint64_t size)
    : path_(std::move(path)),
      fd_(std::move(fd)),
      dir_fd_(std::move(dir_fd)),
      options_(std::move(o)),
      replayed_(std::move(rr)),
      size_(size) {
  next_seq_ = durable_seq_ = replayed_.records;
  stats_.records = replayed_.records;
  stats_.generation = replayed_.generation;
  if (!replayed_.state.empty()) notifier_.set_version(1);
}

journal::~journal() {
  assert(!flushing_ && "journal destroyed with an append in flight");
  // Closing our descriptor does not release the lock while anything else still holds the
  // open file: a child forked meanwhile, or an io_uring request the kernel frees after its
  // completion was reported (ring teardown runs asynchronously). Unlock explicitly so the
  // next opener, in this process or another, finds the journal free at once.
  if (fd_) ::flock(fd_.get(), LOCK_UN);
}

void journal::log(std::string_view msg) const {
  if (options_.log) options_.log(msg);
}

result<std::unique_ptr<journal>> journal::open(const std::string& path, journal_options options,
                                               open_report* report) {
  open_report local;
  open_report& rep = report ? *report : local;
  rep = {};
  auto fail = [&](std::error_code ec, std::string msg) -> result<std::unique_ptr<journal>> {
    rep.message = std::move(msg);
    return ec;
  };

  io::unique_fd fd;
  // A compaction elsewhere may rename a new file over the path between our open and flock;
  // then we locked a dead inode and must open again.
  for (int attempt = 0;; ++attempt) {
    int flags = O_RDWR | O_CLOEXEC | (options.create ? O_CREAT : 0);
    fd.reset(::open(path.c_str(), flags, 0600));
    if (!fd) {
      auto ec = last_errno();
      return fail(ec, fmt::format("journal {}: open: {}", path, ec.message()));
    }
    const auto give_up = std::chrono::steady_clock::now() + options.lock_timeout;
    while (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK &&
           std::chrono::steady_clock::now() < give_up)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
      if (errno == EWOULDBLOCK)
        return fail(make_error_code(errc::busy),
                    fmt::format("journal {} is locked by another writer", path));
      auto ec = last_errno();
      return fail(ec, fmt::format("journal {}: flock: {}", path, ec.message()));
    }
    struct stat a{}, b{};
    if (::fstat(fd.get(), &a) != 0 || ::stat(path.c_str(), &b) != 0) {
      auto ec = last_errno();
      return fail(ec, fmt::format("journal {}: stat: {}", path, ec.message()));
    }
    if (a.st_ino == b.st_ino && a.st_dev == b.st_dev) break;
    if (attempt == 10)
      return fail(make_error_code(errc::busy), fmt::format("journal {} keeps being replaced", path));
  }
  io::unique_fd dir_fd(::open(dir_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd) {
    auto ec = last_errno();
    return fail(ec, fmt::format("journal {}: open directory: {}", path, ec.message()));
  }

  auto image = read_all(fd.get());
  if (!image) return fail(image.error(), fmt::format("journal {}: read: {}", path, image.error().message()));
  rep.file_size = image->size();
  replay_result rr = replay(*image);
  image->clear();
  image->shrink_to_fit();
  if (rr.error)
    return fail(rr.error, fmt::format("journal {}: {}", path, rr.message));
  rep.records = rr.records;

  std::uint64_t size = rep.file_size;
  if (rr.torn_bytes > 0) {
    if (::ftruncate(fd.get(), static_cast<off_t>(rr.good_end)) != 0 || ::fsync(fd.get()) != 0) {
      auto ec = last_errno();
      return fail(ec, fmt::format("journal {}: cutting torn tail: {}", path, ec.message()));
    }
    rep.truncated_at = rr.good_end;
    rep.torn_bytes = rr.torn_bytes;
    size = rr.good_end;
    if (options.log)
      options.log(fmt::format("journal {}: cut a torn tail of {} bytes at offset {}", path,
                              rr.torn_bytes, rr.good_end));
  }
  if (size == 0) {
    rep.created = true;
    auto magic = std::as_bytes(std::span(journal_magic.data(), journal_magic.size()));
    if (auto w = write_all_blocking(fd.get(), magic, 0); !w)
      return fail(w.error(), fmt::format("journal {}: write: {}", path, w.error().message()));
    if (::fsync(fd.get()) != 0 || ::fsync(dir_fd.get()) != 0) {
      auto ec = last_errno();
      return fail(ec, fmt::format("journal {}: fsync: {}", path, ec.message()));
    }
    size = journal_magic.size();
  }
  return std::unique_ptr<journal>(new journal(path, std::move(fd), std::move(dir_fd),
                                              std::move(options), std::move(rr), size));
}

journal_stats journal::stats() const noexcept {
  journal_stats s = stats_;
  s.bytes = size_;
  s.live_records = replayed_.state.live_records();
  return s;
}

bool journal::should_compact() const noexcept {
  if (options_.compact_min_dead == 0) return false;
  const std::uint64_t live = replayed_.state.live_records() + 1;  // + the checkpoint
  if (stats_.records <= live) return false;
  const std::uint64_t dead = stats_.records - live;
  return dead >= options_.compact_min_dead &&
         static_cast<double>(dead) > static_cast<double>(live) * options_.compact_ratio;
}

void journal::release_token() {
  if (!pending_waiters_.empty()) {
    waiter* next = pending_waiters_.front();
    next->leader = true;
    io::ring::current()->schedule(next->handle);
  } else if (!compact_waiters_.empty()) {
    waiter* next = compact_waiters_.front();
    compact_waiters_.erase(compact_waiters_.begin());
    next->leader = true;
    io::ring::current()->schedule(next->handle);
  } else {
    flushing_ = false;
  }
}

io::task<result<std::uint64_t>> journal::append(record r) {
  if (failed_) co_return unexpected(failed_);
  LE_CO_TRY_VOID(validate(r));
  LE_CO_TRY_VOID(encode(r, pending_buf_));
  pending_recs_.push_back(std::move(r));
  waiter w;
  w.seq = ++next_seq_;
  pending_waiters_.push_back(&w);
  if (!flushing_) {
    flushing_ = true;
    w.leader = true;
  } else {
    co_await suspend_waiter{&w};
  }
  if (w.leader) {
    // This coroutine holds the writer token: commit the batch holding its record (and
    // every record queued behind it), maybe compact, then hand the token on.
    co_await commit_batch();
    if (!failed_ && should_compact()) {
      if (auto c = co_await compact_locked(); !c)
        log(fmt::format("journal {}: compaction failed: {}", path_, c.error().message()));
    }
    release_token();
  }
  assert(w.done);
  if (w.ec) co_return unexpected(w.ec);
  co_return w.seq;
}

io::task<void> journal::commit_batch() {
  std::vector<std::byte> buf;
  std::vector<record> recs;
  std::vector<waiter*> ws;
  buf.swap(pending_buf_);
  recs.swap(pending_recs_);
  ws.swap(pending_waiters_);

  std::error_code ec;
  if (failed_) {
    ec = failed_;
  } else if (auto wr = co_await ring_write_all(fd_.get(), buf, size_); !wr) {
    ec = wr.error();
    // Keep the file a valid journal: drop whatever part of the batch reached it.
    if (::ftruncate(fd_.get(), static_cast<off_t>(size_)) != 0) failed_ = ec;
  } else {
    auto s = co_await io::fdatasync(fd_.get());
    ++stats_.fdatasyncs;
    if (!s) {
      // After a failed fdatasync the kernel may have dropped the dirty pages; nothing
      // written from now on could be trusted, so the journal stops taking appends.
      ec = s.error();
      failed_ = ec;
      log(fmt::format("journal {}: fdatasync failed: {}; refusing further appends", path_,
                      ec.message()));
    }
  }
  if (!ec) {
    size_ += buf.size();
    for (auto& rec : recs) (void)replayed_.state.apply(rec);  // validated before queueing
    stats_.records += recs.size();
    stats_.appends += recs.size();
    ++stats_.commits;
    durable_seq_ = ws.back()->seq;
    notifier_.notify();
  }
  for (auto* w : ws) {
    w->ec = ec;
    w->done = true;
    if (!w->leader) io::ring::current()->schedule(w->handle);
  }
}

io::task<result<void>> journal::compact() {
  if (failed_) co_return unexpected(failed_);
  waiter w;
  if (flushing_) {
    compact_waiters_.push_back(&w);
    co_await suspend_waiter{&w};
  } else {
    flushing_ = true;
  }
  auto r = co_await compact_locked();
  release_token();
  co_return r;
}

io::task<result<void>> journal::compact_locked() {
  const std::uint64_t generation = stats_.generation + 1;
  std::vector<std::byte> buf(journal_magic.size());
  std::memcpy(buf.data(), journal_magic.data(), journal_magic.size());
  auto recs = replayed_.state.snapshot();
  for (auto& rec : recs) LE_CO_TRY_VOID(encode(rec, buf));
  checkpoint_record cp{generation, std::chrono::time_point_cast<std::chrono::seconds>(
                                       std::chrono::system_clock::now())};
  LE_CO_TRY_VOID(encode(cp, buf));

  const std::string tmp = path_ + ".compact";
  io::unique_fd nfd(::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!nfd) co_return last_errno();
  // Lock the new inode before it takes the path, so no other opener can ever hold it.
  if (::flock(nfd.get(), LOCK_EX | LOCK_NB) != 0) {
    auto ec = last_errno();
    ::unlink(tmp.c_str());
    co_return ec;
  }
  std::error_code ec;
  if (auto wr = co_await ring_write_all(nfd.get(), buf, 0); !wr) ec = wr.error();
  if (!ec)
    if (auto s = co_await io::fsync(nfd.get()); !s) ec = s.error();
  if (!ec && ::rename(tmp.c_str(), path_.c_str()) != 0) ec = last_errno();
  if (ec) {
    ::unlink(tmp.c_str());
    co_return ec;
  }
  // The new file is in place: from here on it is the journal, whatever fsync(dir) says.
  fd_ = std::move(nfd);
  const std::uint64_t before = size_;
  size_ = buf.size();
  stats_.records = recs.size() + 1;
  stats_.generation = generation;
  ++stats_.compactions;
  if (auto s = co_await io::fsync(dir_fd_.get()); !s) {
    log(fmt::format("journal {}: fsync of the directory after compaction failed: {}", path_,
                    s.error().message()));
    co_return unexpected(s.error());
  }
  log(fmt::format("journal {}: compacted {} bytes to {} ({} live records)", path_, before,
                  size_, recs.size()));
  co_return ok();
}

}  // namespace letsencrypt::store
