// journal: the append-only state file (the manager's cache file). One writer per file
// (an exclusive flock), CRC-framed records (record.hpp), replay on open, group commit
// through the io ring, compaction by write-new + fsync + rename + fsync(dir).
#pragma once

#include <chrono>
#include <coroutine>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "letsencrypt/io/task.hpp"
#include "letsencrypt/io/unique_fd.hpp"
#include "letsencrypt/result.hpp"
#include "letsencrypt/store/record.hpp"
#include "letsencrypt/store/replay.hpp"
#include "letsencrypt/store/state.hpp"
#include "letsencrypt/store/watch.hpp"

namespace letsencrypt::store {

struct journal_options {
  /// Receives notes about recovery and compaction (a torn tail cut, a compaction done or
  /// failed). Never receives key material. May be empty.
  std::function<void(std::string_view)> log;
  /// Compact after a commit when at least this many records are dead and dead records
  /// outnumber live ones by `compact_ratio`. 0 disables automatic compaction.
  std::uint64_t compact_min_dead = 4096;
  double compact_ratio = 1.0;
  /// Create the file when it does not exist.
  bool create = true;
  /// How long open keeps retrying a lock held by someone else before errc::busy. A
  /// process killed with appends in flight keeps its lock until the kernel has torn down its
  /// io_uring, which finishes shortly after the process is gone; a restart right after a
  /// crash may want a second or two here.
  std::chrono::milliseconds lock_timeout{0};
};

/// What open found.
struct open_report {
  bool created = false;             ///< the file did not exist (or was empty)
  std::uint64_t records = 0;        ///< intact records replayed
  std::uint64_t file_size = 0;      ///< size before any cut
  std::uint64_t truncated_at = 0;   ///< when torn_bytes > 0: the new size
  std::uint64_t torn_bytes = 0;     ///< bytes of a torn tail that were cut off
  std::string message;              ///< on failure: what and where (names the file and offset)
};

struct journal_stats {
  std::uint64_t appends = 0;        ///< records committed since open
  std::uint64_t commits = 0;        ///< write + fdatasync rounds since open
  std::uint64_t fdatasyncs = 0;
  std::uint64_t bytes = 0;          ///< file size
  std::uint64_t records = 0;        ///< records in the file
  std::uint64_t live_records = 0;   ///< records a compacted file would hold
  std::uint64_t compactions = 0;    ///< since open
  std::uint64_t generation = 0;     ///< compactions over the file's life
};

class journal {
 public:
  /// Opens (creating it 0600 unless options.create is false) and locks `path`, replays it,
  /// cuts a torn tail (logged and reported) and makes the cut durable. Blocking: call it at
  /// setup. Fails with errc::busy when another open journal (any process) holds the file,
  /// errc::corrupt when damage is followed by intact records or the file is not a journal,
  /// errc::invalid_argument for a record that applies to nothing, or the errno of a failed
  /// system call; `report->message` then names the file (and the offset).
  static result<std::unique_ptr<journal>> open(const std::string& path,
                                               journal_options options = {},
                                               open_report* report = nullptr);

  /// Closes the file and releases the lock. No append may be in flight.
  ~journal();
  journal(const journal&) = delete;
  journal& operator=(const journal&) = delete;

  /// Appends a record and completes after it is durable (written and fdatasync'ed), with its
  /// sequence number: the count of records replayed at open plus the appends issued in
  /// this object before it, plus one (increasing; not a file offset). Appends issued while a commit is in flight are
  /// batched into the next single write + fdatasync. The record is applied to state() and
  /// the notifier fires only once durable. Must be awaited on one io::ring thread (the
  /// same for every call); the journal must outlive the await. Not cancellable: once
  /// issued the record is committed or the append fails. Fails with errc::invalid_argument
  /// (record has no meaning, nothing written), errc::message_too_large, or the error of the
  /// write/fdatasync; after a failed fdatasync the journal refuses further appends
  /// (errc::corrupt) because the kernel may have dropped the dirty pages.
  io::task<result<std::uint64_t>> append(record r);

  /// Rewrites the file as a snapshot of the live state plus a checkpoint: write a new file
  /// next to it, fsync, rename over, fsync the directory. Runs on the ring thread; appends
  /// issued meanwhile wait and go to the new file. On failure the old file stays in use.
  io::task<result<void>> compact();

  /// The durable state (ring thread; it changes only when an append completes).
  const store::state& state() const noexcept { return replayed_.state; }
  change_notifier& notifier() noexcept { return notifier_; }
  journal_stats stats() const noexcept;
  const std::string& path() const noexcept { return path_; }
  /// Sequence number of the last durable record.
  std::uint64_t last_sequence() const noexcept { return durable_seq_; }

 private:
  struct waiter {
    std::coroutine_handle<> handle;
    std::uint64_t seq = 0;
    std::error_code ec;
    bool leader = false;
    bool done = false;
  };
  struct suspend_waiter;

  journal(std::string path, io::unique_fd fd, io::unique_fd dir_fd, journal_options o,
          replay_result rr, std::uint64_t size);
  io::task<void> commit_batch();
  io::task<result<void>> compact_locked();
  void release_token();
  void log(std::string_view msg) const;
  bool should_compact() const noexcept;

  std::string path_;
  io::unique_fd fd_;
  io::unique_fd dir_fd_;
  journal_options options_;
  replay_result replayed_;
  change_notifier notifier_;
  std::uint64_t size_ = 0;
  std::uint64_t next_seq_ = 0;
  std::uint64_t durable_seq_ = 0;
  std::vector<std::byte> pending_buf_;
  std::vector<record> pending_recs_;
  std::vector<waiter*> pending_waiters_;
  std::vector<waiter*> compact_waiters_;
  bool flushing_ = false;
  bool compacting_ = false;
  std::error_code failed_;
  journal_stats stats_{};
};

}  // namespace letsencrypt::store
